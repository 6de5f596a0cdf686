package modemsim

import (
	"reflect"
	"strings"
	"testing"
)

func TestEchoIsOnAfterStartAndATE0TurnsItOff(t *testing.T) {
	m := startModem(t, Config{})
	h := openHost(t, m.Path(), 115200)
	lines, final := h.cmd("AT")
	if final != "OK" || !reflect.DeepEqual(lines, []string{"AT"}) {
		t.Fatalf("AT with echo: got %q %s, want echo line then OK", lines, final)
	}
	h.ok("ATE0")
	lines, final = h.cmd("AT")
	if final != "OK" || len(lines) != 0 {
		t.Fatalf("AT without echo: got %q %s", lines, final)
	}
	h.ok("ATE1")
	if lines, _ := h.cmd("at"); !reflect.DeepEqual(lines, []string{"at"}) {
		t.Fatalf("lower-case at with echo: got %q", lines)
	}
}

func TestIdentificationPerModel(t *testing.T) {
	for _, tc := range []struct{ model, wantModel, wantRev string }{
		{"sim7600", "SIMCOM_SIM7600G-H", "+CGMR: LE20B04SIM7600M22"},
		{"sim7800", "SIMCOM_SIM7800E", "+CGMR: LE20B04SIM7800M22"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			_, h := newHostModem(t, Config{Model: tc.model})
			if got := h.ok("AT+CGMM"); !reflect.DeepEqual(got, []string{tc.wantModel}) {
				t.Errorf("AT+CGMM = %q, want %q", got, tc.wantModel)
			}
			if got := h.ok("AT+CGMR"); !reflect.DeepEqual(got, []string{tc.wantRev}) {
				t.Errorf("AT+CGMR = %q, want %q", got, tc.wantRev)
			}
			info := h.ok("ATI")
			if len(info) != 5 || info[1] != "Model: "+tc.wantModel || !strings.HasPrefix(info[3], "IMEI: ") {
				t.Errorf("ATI = %q", info)
			}
			imei := h.ok("AT+CGSN")
			if len(imei) != 1 || len(imei[0]) != 15 || luhn(imei[0][:14]) != imei[0] {
				t.Errorf("AT+CGSN = %q, want a 15-digit IMEI with a valid check digit", imei)
			}
		})
	}
}

func TestUnknownModelIsRefused(t *testing.T) {
	_, err := Start(Config{Model: "sim900"})
	if err == nil || !strings.Contains(err.Error(), `unknown model "sim900"`) {
		t.Fatalf("Start(sim900) error = %v, want unknown model", err)
	}
}
