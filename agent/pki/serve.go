package pki

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// The topics of the rotation protocol, with {device_id} in the middle:
// the gateway publishes its CSR on cellgate/{device_id}/cert/csr and takes
// the certificate from cellgate/{device_id}/cert/issued.
const (
	topicPrefix  = "cellgate/"
	CSRSuffix    = "/cert/csr"
	IssuedSuffix = "/cert/issued"
)

// CSRTopic, IssuedTopic and StatusTopic are the rotation's topics for
// deviceID.
func CSRTopic(deviceID string) string    { return topicPrefix + deviceID + CSRSuffix }
func IssuedTopic(deviceID string) string { return topicPrefix + deviceID + IssuedSuffix }
func StatusTopic(deviceID string) string { return topicPrefix + deviceID + "/cert/status" }
func RenewTopic(deviceID string) string  { return topicPrefix + deviceID + "/cert/renew" }

// ServeConfig says where Serve answers CSRs and with what.
type ServeConfig struct {
	// Broker is the mqtts:// URL of the broker.
	Broker *url.URL
	// TLS is the client's TLS configuration: the broker's CA and the
	// server's own client certificate.
	TLS *tls.Config
	// CA signs the certificates.
	CA *CA
	// Validity is the issued certificates' life; 0 means DefaultValidity.
	Validity time.Duration
	// ClientID is the MQTT client id; empty means "cellgate-pki".
	ClientID string
	// Log receives one line per CSR answered or refused; nil means
	// slog.Default().
	Log *slog.Logger
	// Issued, when set, is called after each certificate the broker
	// acknowledged (tests and `pki serve`'s output).
	Issued func(deviceID, serial string)
}

// Serve subscribes to cellgate/+/cert/csr and answers each CSR with a
// certificate, published retained at QoS 1 on the device's issued topic,
// until ctx ends. A CSR whose signature does not verify, or whose common
// name is not the topic's device id, is refused with a log line and no
// answer. The same CSR seen twice (a retained one after a reconnect) is
// answered once per run.
func Serve(ctx context.Context, c ServeConfig) error {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.ClientID == "" {
		c.ClientID = "cellgate-pki"
	}
	if c.Validity == 0 {
		c.Validity = DefaultValidity
	}
	if c.Validity > MaxValidity {
		return fmt.Errorf("pki serve: validity %s exceeds %s", c.Validity, MaxValidity)
	}
	s := &server{c: c, ctx: ctx, work: make(chan paho.Publish, 64), seen: map[[32]byte]bool{}}
	u := *c.Broker
	if u.Scheme == "mqtts" {
		u.Scheme = "tls"
	}
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{&u},
		TlsCfg:                        c.TLS,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(500*time.Millisecond, 30*time.Second, time.Second, 2),
		OnConnectionUp:                s.connected,
		OnConnectError:                func(err error) { c.Log.Warn("pki serve: cannot connect to the broker", "err", err) },
		ClientConfig: paho.ClientConfig{
			ClientID:          c.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){s.received},
		},
	})
	if err != nil {
		return fmt.Errorf("pki serve: %w", err)
	}
	s.cm = cm
	for {
		select {
		case <-ctx.Done():
			<-cm.Done()
			return nil
		case p := <-s.work:
			s.answer(ctx, p)
		}
	}
}

type server struct {
	c    ServeConfig
	ctx  context.Context // Serve's
	cm   *autopaho.ConnectionManager
	work chan paho.Publish
	// seen is the CSRs answered, by hash; only Serve's loop touches it.
	seen map[[32]byte]bool
}

func (s *server) connected(cm *autopaho.ConnectionManager, _ *paho.Connack) {
	go func() {
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		defer cancel()
		if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topicPrefix + "+" + CSRSuffix, QoS: 1}}}); err != nil {
			if s.ctx.Err() == nil {
				s.c.Log.Warn("pki serve: subscribe failed", "err", err)
			}
			return
		}
		s.c.Log.Info("pki serve: answering CSRs", "topic", topicPrefix+"+"+CSRSuffix, "ca", s.c.CA.Cert.Subject.CommonName)
	}()
}

// received queues a CSR for Serve's loop; it never blocks paho for long.
func (s *server) received(pr paho.PublishReceived) (bool, error) {
	select {
	case s.work <- *pr.Packet:
	default:
		s.c.Log.Warn("pki serve: too many CSRs waiting; one dropped", "topic", pr.Packet.Topic)
	}
	return true, nil
}

func (s *server) answer(ctx context.Context, p paho.Publish) {
	device, ok := strings.CutPrefix(p.Topic, topicPrefix)
	device, ok2 := strings.CutSuffix(device, CSRSuffix)
	if !ok || !ok2 || device == "" || strings.Contains(device, "/") || len(p.Payload) == 0 {
		return // a cleared retained CSR, or not ours
	}
	sum := sha256.Sum256(p.Payload)
	if s.seen[sum] {
		return
	}
	certPEM, cert, err := s.c.CA.Sign(SignRequest{CSR: p.Payload, DeviceID: device, Validity: s.c.Validity})
	if err != nil {
		s.c.Log.Warn("pki serve: CSR refused", "device", device, "err", err)
		s.seen[sum] = true
		return
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := s.cm.Publish(pctx, &paho.Publish{Topic: IssuedTopic(device), QoS: 1, Retain: true, Payload: certPEM}); err != nil {
		s.c.Log.Warn("pki serve: publishing the certificate failed; the next CSR is answered again", "device", device, "err", err)
		return
	}
	s.seen[sum] = true
	serial := fmt.Sprintf("%x", cert.SerialNumber)
	s.c.Log.Info("pki serve: certificate issued", "device", device, "serial", serial, "not_after", cert.NotAfter.UTC().Format(time.RFC3339))
	if s.c.Issued != nil {
		s.c.Issued(device, serial)
	}
}
