package uplink

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/url"

	"github.com/cellgate/cellgate/transport"
)

// Config selects one uplink: exactly one of MQTT, TLSLines and HTTPS is set.
type Config struct {
	MQTT     *MQTTConfig
	TLSLines *TLSLinesConfig
	HTTPS    *HTTPSConfig
}

// ErrNoUplink is returned for a Config with no uplink set.
var ErrNoUplink = errors.New("no uplink configured")

// Address is the host:port the configured uplink connects to, with the
// protocol's port when the URL names none (8883 for mqtts, 443 for https).
func (c Config) Address() (string, error) {
	withPort := func(u *url.URL, port string) string {
		if u.Port() == "" {
			return net.JoinHostPort(u.Hostname(), port)
		}
		return u.Host
	}
	switch {
	case c.MQTT != nil:
		if c.MQTT.BrokerURL == nil {
			return "", errors.New("mqtt uplink: no broker URL")
		}
		return withPort(c.MQTT.BrokerURL, "8883"), nil
	case c.TLSLines != nil:
		return c.TLSLines.Addr, nil
	case c.HTTPS != nil:
		u, err := url.Parse(c.HTTPS.URL)
		if err != nil {
			return "", err
		}
		return withPort(u, "443"), nil
	}
	return "", ErrNoUplink
}

// New builds the configured uplink over route. In host-TLS mode the HTTPS
// uplink takes the route's plain dialer and TLS config, so that net/http
// runs TLS itself; every other uplink takes the route's secured dialer.
// ctx bounds only the MQTT uplink's background connection: it ends with
// ctx or Close, whichever comes first.
func New(ctx context.Context, cfg Config, route transport.Route, log *slog.Logger) (Uplink, error) {
	switch {
	case cfg.MQTT != nil:
		return NewMQTT(ctx, *cfg.MQTT, route.Dial, log)
	case cfg.TLSLines != nil:
		c := *cfg.TLSLines
		if c.Addr == "" {
			c.Addr = route.Target
		}
		return NewTLSLines(c, route.Dial, log), nil
	case cfg.HTTPS != nil:
		c := *cfg.HTTPS
		if route.Plain != nil {
			c.HostTLS = route.HostTLS
			return NewHTTPS(c, route.Plain, log), nil
		}
		return NewHTTPS(c, route.Dial, log), nil
	}
	return nil, ErrNoUplink
}
