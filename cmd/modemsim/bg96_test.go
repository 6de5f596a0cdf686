package main

import (
	"bufio"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/cellgate/cellgate/sdk/modemsim"
)

func TestBinaryRunsTheBG96Personality(t *testing.T) {
	ms := startModemsim(t, "bg96")
	p, err := serial.Open(ms.link, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatalf("open %s: %v\nstderr: %s", ms.link, err, ms.stderr.String())
	}
	p.SetReadTimeout(100 * time.Millisecond)
	exchange(t, p, "ATE0", "OK\r\n")
	if got := exchange(t, p, "ATI", "OK\r\n"); !strings.Contains(got, "Quectel\r\nBG96\r\nRevision: ") {
		t.Errorf("ATI = %q", got)
	}
	exchange(t, p, `AT+QFUPL="ca.pem",5`, "CONNECT\r\n")
	// exchange ends what it writes with CR: the five bytes "PEM!\r".
	if got := exchange(t, p, "PEM!", "OK\r\n"); !strings.Contains(got, "+QFUPL: 5,") {
		t.Errorf("upload answered %q", got)
	}
	c, err := net.Dial("unix", ms.ctl)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	r := bufio.NewReader(c)
	c.Write([]byte("fault peer-close all\n"))
	if line, _ := r.ReadString('\n'); line != "error: fault peer-close: no session is open\n" {
		t.Errorf("peer-close all answered %q", line)
	}
	c.Write([]byte("fault reboot\n"))
	if line, _ := r.ReadString('\n'); line != "ok\n" {
		t.Errorf("fault reboot answered %q", line)
	}
	exchange(t, p, "", "APP RDY\r\n")
	p.Close()

	ms.terminate(t)
	var counters modemsim.Counters
	if err := json.Unmarshal([]byte(ms.stdout.String()), &counters); err != nil {
		t.Fatalf("stdout is not the counters JSON: %v\n%q", err, ms.stdout.String())
	}
	if counters.CertUploads != 1 || counters.Commands["AT+QFUPL"] != 1 || counters.Reboots != 1 {
		t.Errorf("counters = %+v", counters)
	}
}
