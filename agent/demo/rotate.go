package demo

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/cellgate/cellgate/agent/pki"
	"github.com/cellgate/cellgate/internal/devpki"
)

// This file is the demo's certificate rotation (DEMO_ROTATE=1): a CSR
// signer with the demo CA answers on the broker, and once the agent takes
// readings the demo asks it for one rotation (POST /v1/cert/renew, what
// `cellgate cert renew` does) and prints the outcome.

// rotationDemo runs the signer and the one rotation; ready hands it the
// agent's status listener, wait waits for both to end after ctx did.
type rotationDemo struct {
	status chan net.Addr
	wg     sync.WaitGroup
}

func (r *rotationDemo) ready(addr net.Addr) {
	if r == nil || addr == nil {
		return
	}
	select {
	case r.status <- addr:
	default:
	}
}

func (r *rotationDemo) wait() {
	if r != nil {
		r.wg.Wait()
	}
}

// startRotationDemo starts the signer on the broker at addr, signing with
// the demo CA, and the goroutine that asks for one rotation.
func startRotationDemo(ctx context.Context, dp *devpki.PKI, addr string, log *slog.Logger, step func(string, ...any)) *rotationDemo {
	r := &rotationDemo{status: make(chan net.Addr, 1)}
	ca := &pki.CA{Cert: dp.CA.Cert, CertPEM: dp.CA.CertPEM, Key: dp.CA.Key}
	broker := &url.URL{Scheme: "mqtts", Host: addr}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		err := pki.Serve(ctx, pki.ServeConfig{Broker: broker, TLS: dp.ClientTLS(), CA: ca, Validity: 30 * 24 * time.Hour,
			ClientID: "demo-pki", Log: log.With("part", "pki serve")})
		if err != nil {
			step("rotation: the CSR signer stopped: %v", err)
		}
	}()
	go func() {
		defer r.wg.Done()
		select {
		case <-ctx.Done():
		case a := <-r.status:
			r.rotateOnce(ctx, "http://"+a.String(), step)
		}
	}()
	return r
}

// rotateOnce waits for the first acknowledged batch, asks for a rotation
// and prints its outcome.
func (r *rotationDemo) rotateOnce(ctx context.Context, base string, step func(string, ...any)) {
	var st demoStatus
	if !poll(ctx, base, &st, func() bool { return st.Uplink.AckedReadings > 0 }) {
		return
	}
	step("rotation: asking the agent for a new certificate (serial now %s): POST %s/v1/cert/renew", st.Cert.Serial, base)
	before := st.Cert.Rotations
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/cert/renew", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		step("rotation: %v", err)
		return
	}
	resp.Body.Close()
	if !poll(ctx, base, &st, func() bool {
		return st.Cert.Rotations["rotated"] > before["rotated"] || st.Cert.Rotations["rolled_back"] > before["rolled_back"]
	}) {
		return
	}
	if st.Cert.State == "rotated" {
		step("rotation: new key made on the gateway, certificate serial %s issued by the demo CA, in use on the modem; the old set is deleted", st.Cert.Serial)
		return
	}
	step("rotation: rolled back, the old certificate stays in use: %s", st.Cert.Error)
}

// demoStatus is what the demo reads of GET /v1/status.
type demoStatus struct {
	Uplink struct {
		AckedReadings int64 `json:"acked_readings"`
	} `json:"uplink"`
	Cert struct {
		Serial    string           `json:"serial"`
		State     string           `json:"state"`
		Error     string           `json:"error"`
		Rotations map[string]int64 `json:"rotations"`
	} `json:"cert"`
}

// poll reads GET /v1/status into st every half second until done says so
// (true) or ctx ends (false).
func poll(ctx context.Context, base string, st *demoStatus, done func() bool) bool {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/status", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		*st = demoStatus{}
		err = json.NewDecoder(resp.Body).Decode(st)
		resp.Body.Close()
		if err == nil && done() {
			return true
		}
	}
}
