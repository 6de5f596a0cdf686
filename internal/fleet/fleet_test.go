package fleet

import (
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/devpki"
	"github.com/cellgate/cellgate/internal/testutil"
)

func TestSampleReadsCPUAndRSSOfARealProcess(t *testing.T) {
	s, err := sample(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.rssMiB <= 0 {
		t.Fatalf("RSS %v MiB for this test process", s.rssMiB)
	}
	// Burn CPU until the kernel's tick count moves.
	if !testutil.WaitFor(time.Minute, func() bool {
		x := 0
		for i := range 1 << 22 {
			x += i
		}
		_ = x
		n, err := sample(os.Getpid())
		return err == nil && n.cpuTicks > s.cpuTicks
	}) {
		t.Fatal("CPU ticks never moved")
	}
	if _, err := sample(1 << 30); err == nil {
		t.Fatal("a pid that does not exist sampled without error")
	}
}

func TestChildNamedFindsAChildByCommandName(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var pid int
	testutil.Eventually(t, 30*time.Second, "sleep under this process", func() bool {
		pid = childNamed(os.Getpid(), "sleep")
		return pid != 0
	})
	if pid != cmd.Process.Pid {
		t.Fatalf("childNamed = %d, want %d", pid, cmd.Process.Pid)
	}
	if p := childNamed(os.Getpid(), "cellgate-plugin"); p != 0 {
		t.Fatalf("found a cellgate-plugin child %d that does not exist", p)
	}
}

func TestMosquittoStartsAndStops(t *testing.T) {
	if _, err := MosquittoBinary(); err != nil {
		t.Fatal(err) // make deps installs it; a missing broker fails, never skips
	}
	dir := t.TempDir()
	for _, f := range []string{"ca.pem", "server.pem", "server.key"} {
		// mosquitto refuses to start on files that are not PEM: the error
		// must carry its log.
		os.WriteFile(dir+"/"+f, []byte("not pem"), 0o644)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if m, err := StartMosquitto(ctx, dir); err == nil {
		m.Stop()
		t.Fatal("mosquitto started on files that are not PEM")
	}
	pki, err := devpki.New(devpki.P256)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	m, err := StartMosquitto(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	conn, err := (&tls.Dialer{Config: pki.ClientTLS()}).DialContext(ctx, "tcp", m.Addr)
	if err != nil {
		t.Fatalf("TLS with the client certificate to %s: %v", m.Addr, err)
	}
	conn.Close()
}
