package sdk

// SetContractVersion makes this process speak contract v, for the tests of
// the version negotiation: a test binary playing a plugin of another
// version, or an agent of a newer minor version. It returns a func that
// restores the previous version. Not safe to call while a Launch or Serve
// runs.
func SetContractVersion(v string) (restore func()) {
	prev := contract
	contract = mustParseVersion(v)
	return func() { contract = prev }
}
