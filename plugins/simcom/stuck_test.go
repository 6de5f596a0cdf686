package simcom

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestOpenRecoversAModemLeftWaitingForPayload: a previous driver died
// between AT+CCERTDOWN and its payload (a plugin killed with SIGKILL), so the
// emulated modem takes every byte as certificate content and answers
// nothing. Open must bring it back, and the next Provision must replace the
// file that download produced instead of trusting its name.
func TestOpenRecoversAModemLeftWaitingForPayload(t *testing.T) {
	m, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pki := plugintest.NewPKI(t, plugintest.P256)
	caName := nameFor("ca", pki.CA.CertPEM)

	// The dead driver: the command went out, the payload never did.
	port, err := serial.Open(m.Path(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(port, "ATE0\rAT+CCERTDOWN=%q,%d\r", caName, len(pki.CA.CertPEM))
	// The emulator has taken both lines once it prompts for the payload.
	if err := port.SetReadTimeout(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var answer []byte
	testutil.Eventually(t, 10*time.Second, "the prompt for the certificate", func() bool {
		buf := make([]byte, 64)
		n, err := port.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		answer = append(answer, buf[:n]...)
		return strings.Contains(string(answer), ">")
	})
	port.Close()

	d := New(SIM7600, nil)
	ctx := testCtx(t)
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: m.Path()}); err != nil {
		t.Fatalf("Open on a modem waiting for payload: %v", err)
	}
	defer d.Stop(ctx)
	names, err := d.ListCerts(ctx)
	if err != nil || !slices.Contains(names, caName) {
		t.Fatalf("ListCerts = %v, %v: the filler should have completed the download of %s", names, err, caName)
	}
	r, err := d.Provision(ctx, sdk.Bundle{CA: pki.CA.CertPEM})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.Downloaded, caName) {
		t.Fatalf("Provision = %+v: the suspect %s must be downloaded again, not kept", r, caName)
	}
	// Once replaced, the store is trusted again.
	r, err = d.Provision(ctx, sdk.Bundle{CA: pki.CA.CertPEM})
	if err != nil || len(r.Downloaded) != 0 {
		t.Fatalf("second Provision = %+v, %v: want nothing downloaded", r, err)
	}
}

// TestSecondDriverWaitsForThePort: two drivers on one modem would steal
// each other's answers (root ignores TIOCEXCL), so a second Open waits
// for the first driver to let go.
func TestSecondDriverWaitsForThePort(t *testing.T) {
	m, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := testCtx(t)
	first := New(SIM7600, nil)
	if _, err := first.Open(ctx, sdk.ModemConfig{Port: m.Path()}); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	second := New(SIM7600, nil)
	if _, err := second.Open(short, sdk.ModemConfig{Port: m.Path()}); err == nil || !strings.Contains(err.Error(), "held by another process") {
		t.Fatalf("second Open while the first holds the port = %v, want a wait that ends with the context", err)
	}
	// This time the first driver lets go only once the second is waiting
	// for the lock.
	waiting := make(chan struct{})
	openPort := second.openPort
	second.openPort = func(ctx context.Context, name string, baud int) (io.ReadWriteCloser, error) {
		return openPort(&waitSignal{Context: ctx, waiting: waiting}, name, baud)
	}
	released := make(chan error, 1)
	go func() {
		_, err := second.Open(ctx, sdk.ModemConfig{Port: m.Path()})
		released <- err
	}()
	select {
	case <-waiting:
	case err := <-released:
		t.Fatalf("second Open returned (%v) while the first driver holds the port", err)
	}
	if err := first.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-released; err != nil {
		t.Fatalf("second Open after the first stopped: %v", err)
	}
	second.Stop(ctx)
}

// waitSignal is a context that closes waiting the first time someone
// waits on it (calls Done): the port lock waits on its context only while
// another process holds the lock.
type waitSignal struct {
	context.Context
	waiting chan struct{}
	once    sync.Once
}

func (w *waitSignal) Done() <-chan struct{} {
	w.once.Do(func() { close(w.waiting) })
	return w.Context.Done()
}
