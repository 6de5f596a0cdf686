package agent_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/cellgate/cellgate/internal/fleet"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// Parts the integration worlds (integration_test.go, remote_, rotation_,
// certificates_) share.

// newWorldDir is where every world starts: a directory mosquitto can read
// (it may drop to its own user) with the test PKI's files in it.
func newWorldDir(t *testing.T, mode string) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), mode: mode}
	if err := os.Chmod(w.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w.pki = plugintest.NewPKI(t, plugintest.P256)
	w.pki.WriteFiles(t, w.dir)
	return w
}

// startModemsim starts the emulated modem of model behind w.dir/ttyUSB2,
// its flash in w.dir/flash and its AT transcript to trace (nil: none),
// closed when the test ends.
func (w *world) startModemsim(model string, trace io.Writer) {
	w.t.Helper()
	var err error
	w.modem, err = modemsim.Start(modemsim.Config{Model: model, Baud: -1, Link: filepath.Join(w.dir, "ttyUSB2"),
		StateDir: filepath.Join(w.dir, "flash"), Trace: trace})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { w.modem.Close() })
}

// watchTopic connects to the broker at addr as clientID with p's client
// certificate, subscribes to topic (again on every reconnection) and hands
// each message to handle, until the test ends.
func watchTopic(t *testing.T, p *plugintest.PKI, addr, clientID, topic string, handle func(paho.PublishReceived)) {
	t.Helper()
	u, _ := url.Parse("tls://" + addr)
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls:       []*url.URL{u},
		TlsCfg:           &tls.Config{RootCAs: p.CertPool(), Certificates: []tls.Certificate{p.Client.TLSCertificate(t)}, ServerName: "127.0.0.1"},
		KeepAlive:        10,
		ReconnectBackoff: autopaho.NewConstantBackoff(200 * time.Millisecond),
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				sctx, c := context.WithTimeout(ctx, 10*time.Second)
				defer c()
				cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}})
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: clientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				handle(pr)
				return true, nil
			}},
		},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, dc := context.WithTimeout(context.Background(), 5*time.Second)
		defer dc()
		cm.Disconnect(dctx)
		cancel()
		<-cm.Done()
	})
}

// startBroker starts mosquitto on w.dir (with extra configuration lines)
// and the subscriber that counts what reaches it, and picks the agent's
// ingest and status ports: w.ingest and w.status are their URLs.
func (w *world) startBroker(extra ...string) (ingestPort, statusPort int) {
	w.t.Helper()
	w.broker = startMosquitto(w.t, w.dir, 0, extra...)
	w.sub = newSubscriber(w.t, w.pki, w.broker.addr)
	ingestPort, statusPort = testutil.FreePort(w.t), testutil.FreePort(w.t)
	w.ingest = fmt.Sprintf("http://127.0.0.1:%d", ingestPort)
	w.status = fmt.Sprintf("http://127.0.0.1:%d", statusPort)
	return ingestPort, statusPort
}

// eachProc calls fn with the pid and the content of /proc/PID/file of each
// process that has one, until fn returns true.
func eachProc(file string, fn func(pid int, content string) (stop bool)) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), file))
		if err == nil && fn(pid, string(data)) {
			return
		}
	}
}

// newPKIDir is the agent's binaries and a directory mosquitto can read holding
// a fresh test PKI's files.
func newPKIDir(tb testing.TB) (bin, dir string, pki *plugintest.PKI) {
	tb.Helper()
	bin, err := binaries()
	if err != nil {
		tb.Fatal(err)
	}
	dir = tb.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	pki = plugintest.NewPKI(tb, plugintest.P256)
	pki.WriteFiles(tb, dir)
	return bin, dir, pki
}

// startPKIBroker is newPKIDir with a mosquitto (fleet.StartMosquitto) requiring
// the PKI's client certificates, stopped when the test ends.
func startPKIBroker(tb testing.TB) (bin, dir string, pki *plugintest.PKI, broker *fleet.Mosquitto) {
	tb.Helper()
	bin, dir, pki = newPKIDir(tb)
	broker, err := fleet.StartMosquitto(context.Background(), dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(broker.Stop)
	return bin, dir, pki, broker
}

// deliveryCounts says, of ids, how many never arrived and how many
// arrivals were repeats, from seen (arrivals by id).
func deliveryCounts(seen map[string]int, ids []string) (missing, dups int) {
	for _, id := range ids {
		switch c := seen[id]; {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	return missing, dups
}
