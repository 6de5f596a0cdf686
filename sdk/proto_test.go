package sdk_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
)

// TestProtoRegeneratesIdentically runs scripts/proto.sh (what `make proto`
// runs) into a temporary directory and requires the result to be byte for
// byte the committed sdk/proto code.
func TestProtoRegeneratesIdentically(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Fatal("protoc is not installed: run `make deps` (it installs Debian's protobuf-compiler), then test again")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.CommandContext(testCtx(t), filepath.Join(root, "scripts", "proto.sh"))
	cmd.Env = append(os.Environ(), "PROTO_OUT="+out, "CELLGATE_TOOLS="+t.TempDir())
	if outText, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/proto.sh: %v\n%s", err, outText)
	}
	committed := generated(t, filepath.Join(root, "sdk", "proto"))
	fresh := generated(t, filepath.Join(out, "sdk", "proto"))
	if len(committed) == 0 {
		t.Fatal("no generated *.pb.go files are committed in sdk/proto")
	}
	if !equalKeys(committed, fresh) {
		t.Fatalf("generated files differ: committed %v, regenerated %v; run `make proto`", keys(committed), keys(fresh))
	}
	for name, want := range committed {
		if !bytes.Equal(fresh[name], want) {
			t.Errorf("sdk/proto/%s differs from what scripts/proto.sh generates; run `make proto` and commit", name)
		}
	}
}

func generated(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = b
	}
	return files
}

func keys(m map[string][]byte) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func equalKeys(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}
