package modemsim

import (
	"fmt"
	"sort"
	"strings"
)

// profile is one module personality: the identification strings a host
// reads to tell modules apart, and the limits that differ between models.
type profile struct {
	manufacturer string // AT+CGMI and ATI "Manufacturer:"
	model        string // AT+CGMM and ATI "Model:"
	revision     string // ATI "Revision:"
	cgmr         string // AT+CGMR "+CGMR: <cgmr>"
	imeiPrefix   string // TAC (8 digits) + serial (6 digits); the Luhn digit is computed
	maxSend      int    // AT+CCHSEND <len> upper bound
	dialect      dialect
	cmeeDefault  int      // AT+CMEE after power-up
	lteAcT       int      // <AcT> that +CEREG shows with <n>=2
	bootURCs     []string // printed at power-up, before the SIM is ready
	simReadyURCs []string // printed when the SIM is ready after a boot; a SIM busy window alone ends with the first
}

// dialect is the command set a personality speaks. The network, TLS and
// serial engine is shared; each dialect has its own handlers and URCs.
type dialect int

const (
	dialectSIMCom  dialect = iota // AT+CCERT*, AT+CSSLCFG, AT+CCH* (cch.go, ssl.go, certs.go)
	dialectQuectel                // AT+QFUPL, AT+QSSLCFG, AT+QSSL*, AT+QI* (quectel*.go)
)

// simcomBoot and simcomSIMReady are the SIMCom power-up URCs.
var (
	simcomBoot     = []string{"RDY"}
	simcomSIMReady = []string{"+CPIN: READY", "SMS DONE", "PB DONE"}
)

// profiles is the personality table. The SIM7600 strings are those of a real
// SIM7600G-H (ATI, AT+CGMM, AT+CGMR captures); no public SIM7800 capture
// exists, so its strings follow the SIM7600 pattern (reference §1, UNSURE)
// and its limits are the SIM7600 ones, as the reference assumes. The
// Quectel BG96 is described in quectel.go.
var profiles = map[string]profile{
	"sim7600": {
		manufacturer: "SIMCOM INCORPORATED",
		model:        "SIMCOM_SIM7600G-H",
		revision:     "SIM7600M22_V2.0",
		cgmr:         "LE20B04SIM7600M22",
		imeiPrefix:   "86263605047123",
		maxSend:      2048,
		dialect:      dialectSIMCom,
		cmeeDefault:  2,
		lteAcT:       7,
		bootURCs:     simcomBoot,
		simReadyURCs: simcomSIMReady,
	},
	"sim7800": {
		manufacturer: "SIMCOM INCORPORATED",
		model:        "SIMCOM_SIM7800E",
		revision:     "SIM7800M22_V2.0",
		cgmr:         "LE20B04SIM7800M22",
		imeiPrefix:   "86885203047123",
		maxSend:      2048,
		dialect:      dialectSIMCom,
		cmeeDefault:  2,
		lteAcT:       7,
		bootURCs:     simcomBoot,
		simReadyURCs: simcomSIMReady,
	},
	"bg96": bg96Profile,
}

// Models lists the model names Config.Model accepts, sorted.
func Models() []string {
	names := make([]string, 0, len(profiles))
	for k := range profiles {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func lookupProfile(model string) (profile, error) {
	p, ok := profiles[model]
	if !ok {
		return profile{}, fmt.Errorf("modemsim: unknown model %q (known: %s)", model, strings.Join(Models(), ", "))
	}
	return p, nil
}

// luhn returns digits with its Luhn check digit appended, the form of an
// IMEI and an ICCID.
func luhn(digits string) string {
	sum := 0
	double := true
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return digits + string(rune('0'+(10-sum%10)%10))
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
