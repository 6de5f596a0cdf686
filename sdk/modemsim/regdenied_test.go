package modemsim

import "testing"

// TestFaultRegistrationDenied: the network refuses the module, <stat> 3 on
// every registration and no signal until network-restore.
func TestFaultRegistrationDenied(t *testing.T) {
	m, h := newHostModem(t, Config{})
	h.ok("AT+CREG=1")
	if err := m.Fault(Fault{Kind: FaultRegistrationDenied}); err != nil {
		t.Fatal(err)
	}
	h.waitLine("+CREG: 3")
	checkAnswers(t, h, "while denied",
		answer{"AT+CREG?", "+CREG: 1,3"}, answer{"AT+CGREG?", "+CGREG: 0,3"}, answer{"AT+CEREG?", "+CEREG: 0,3"}, answer{"AT+CSQ", "+CSQ: 99,99"})
	if err := m.Fault(Fault{Kind: FaultNetworkRestore}); err != nil {
		t.Fatal(err)
	}
	h.waitLine("+CREG: 1")
	checkAnswers(t, h, "after restore", answer{"AT+CREG?", "+CREG: 1,1"})
	f, err := ParseFault("registration-denied")
	if err != nil || f != (Fault{Kind: FaultRegistrationDenied}) || f.String() != "registration-denied" {
		t.Errorf("ParseFault(registration-denied) = %+v, %v", f, err)
	}
	if _, err := ParseFault("registration-denied 5s"); err == nil {
		t.Error("registration-denied with a duration parsed; want an error")
	}
}
