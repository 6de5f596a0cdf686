package simcom

import (
	"strings"
	"time"
)

// Profile describes one SIMCom model: how to recognise it and the limits of
// its CCH stack. The plugin binaries differ only in the Profile they serve.
type Profile struct {
	// Name is the model name used in config and plugin names ("sim7600").
	Name string
	// ModelMarker is a substring of the AT+CGMM answer that identifies the
	// model family ("SIM7600" matches SIMCOM_SIM7600G-H, SIMCOM_SIM7600E…).
	ModelMarker string
	// MaxSend is the largest AT+CCHSEND payload (2048 on the SIM7600 family).
	MaxSend int
	// MaxCertBytes is the largest AT+CCERTDOWN file (10240).
	MaxCertBytes int
	// Sessions is the number of CCH sessions (0..Sessions-1).
	Sessions int
	// Contexts is the number of SSL contexts for AT+CSSLCFG (0..Contexts-1).
	Contexts int
	// NegotiateTime is the TLS handshake bound written to
	// AT+CSSLCFG="negotiatetime" (10-300 s on the module) when the
	// negotiate_time option (OptionNegotiateTime) does not set one.
	NegotiateTime time.Duration
}

// SIM7600 is the profile of the SIM7500/SIM7600 series (M3 manual, ch. 10).
var SIM7600 = Profile{
	Name:          "sim7600",
	ModelMarker:   "SIM7600",
	MaxSend:       2048,
	MaxCertBytes:  10240,
	Sessions:      2,
	Contexts:      10,
	NegotiateTime: 120 * time.Second,
}

// SIM7800 is the profile of the SIM7800 series. SIMCom documents it together
// with the SIM7600 (shared CCH/CSSLCFG manuals) and no deviation in limits is
// published, so the limits are the SIM7600's.
var SIM7800 = Profile{
	Name:          "sim7800",
	ModelMarker:   "SIM7800",
	MaxSend:       2048,
	MaxCertBytes:  10240,
	Sessions:      2,
	Contexts:      10,
	NegotiateTime: 120 * time.Second,
}

// matches reports whether an AT+CGMM or ATI model string names this model.
func (p Profile) matches(model string) bool {
	return strings.Contains(strings.ToUpper(model), p.ModelMarker)
}
