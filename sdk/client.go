package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/cellgate/cellgate/sdk/proto"
)

// exitGrace is how long a failed call waits for go-plugin to notice that the
// process is gone before calling the failure something else. A killed
// plugin's connection breaks within milliseconds and the exit is seen right
// after; a live plugin with a broken connection waits this long once.
const exitGrace = 750 * time.Millisecond

// client is the agent-side SecureTransport: every method is an RPC to the
// plugin process.
type client struct {
	rpc pb.SecureTransportClient
	// exited is closed by go-plugin when the plugin process has exited.
	exited <-chan struct{}
	// window is the per-session send window in bytes.
	window int
	// protocol is the go-plugin protocol version negotiated at launch.
	protocol int
}

var _ SecureTransport = (*client)(nil)

func (c *client) Open(ctx context.Context, cfg ModemConfig) (ModemInfo, error) {
	resp, err := c.rpc.Open(ctx, &pb.OpenRequest{Config: modemConfigToPB(cfg)})
	if err != nil {
		return ModemInfo{}, c.callError(ctx, "Open", err)
	}
	return modemInfoFromPB(resp.GetInfo()), nil
}

func (c *client) Provision(ctx context.Context, b Bundle) (ProvisionReport, error) {
	resp, err := c.rpc.Provision(ctx, &pb.ProvisionRequest{Bundle: bundleToPB(b)})
	if err != nil {
		return ProvisionReport{}, c.callError(ctx, "Provision", err)
	}
	return reportFromPB(resp.GetReport()), nil
}

func (c *client) ListCerts(ctx context.Context) ([]string, error) {
	resp, err := c.rpc.ListCerts(ctx, &pb.ListCertsRequest{})
	if err != nil {
		return nil, c.callError(ctx, "ListCerts", err)
	}
	return resp.GetNames(), nil
}

func (c *client) DeleteCert(ctx context.Context, name string) error {
	if _, err := c.rpc.DeleteCert(ctx, &pb.DeleteCertRequest{Name: name}); err != nil {
		return c.callError(ctx, "DeleteCert", err)
	}
	return nil
}

func (c *client) Stop(ctx context.Context) error {
	if _, err := c.rpc.Stop(ctx, &pb.StopRequest{}); err != nil {
		return c.callError(ctx, "Stop", err)
	}
	return nil
}

func (c *client) ping(ctx context.Context) error {
	resp, err := c.rpc.Ping(ctx, &pb.PingRequest{})
	if err != nil {
		return c.callError(ctx, "Ping", err)
	}
	if v := resp.GetProtocolVersion(); v != int32(c.protocol) {
		return fmt.Errorf("plugin Ping: plugin serves protocol version %d, launch negotiated %d", v, c.protocol)
	}
	return nil
}

func (c *client) Dial(ctx context.Context, req DialRequest) (Session, error) {
	return dialSession(ctx, c, req)
}

// callError turns an RPC failure into the contract's error: the plugin's
// typed error when it sent one, ctx's error when the caller gave up, and
// ErrPluginExited when the process is gone.
func (c *client) callError(ctx context.Context, op string, err error) error {
	if d, ok := detailFromStatus(err); ok {
		typed := errorFromDetail(op, d)
		var pe *PluginError
		if errors.As(typed, &pe) {
			return typed
		}
		return fmt.Errorf("plugin %s: %w", op, typed)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("plugin %s: %w", op, ctxErr)
	}
	return c.transportError(op, err)
}

// transportError classifies a failure that carried no ErrorDetail: the
// connection to the plugin broke, or the plugin answered with a bare status.
func (c *client) transportError(op string, err error) error {
	code := status.Code(err)
	if c.hasExited(code) {
		return fmt.Errorf("plugin %s: %w%s", op, ErrPluginExited, rpcWords(err, ErrPluginExited))
	}
	switch code {
	case codes.Canceled:
		return fmt.Errorf("plugin %s: %w%s", op, context.Canceled, rpcWords(err, context.Canceled))
	case codes.DeadlineExceeded:
		return fmt.Errorf("plugin %s: %w%s", op, context.DeadlineExceeded, rpcWords(err, context.DeadlineExceeded))
	case codes.Unavailable:
		return fmt.Errorf("plugin %s: connection to the plugin lost%s", op, rpcWords(err, nil))
	}
	return &PluginError{Op: op, Message: status.Convert(err).Message()}
}

// rpcWords is the message of a bare gRPC failure, " (<message>)", without
// gRPC's "rpc error: code = ... desc =" framing, which means nothing to an
// operator; empty when the message only repeats sentinel.
func rpcWords(err, sentinel error) string {
	msg := status.Convert(err).Message()
	if msg == "" || (sentinel != nil && strings.Contains(msg, sentinel.Error())) {
		return ""
	}
	return " (" + msg + ")"
}

// hasExited reports whether the plugin process is gone. A connection failure
// (Unavailable) usually arrives a moment before go-plugin reaps the process,
// so for that code it waits up to exitGrace for the exit to be seen.
func (c *client) hasExited(code codes.Code) bool {
	select {
	case <-c.exited:
		return true
	default:
	}
	if code != codes.Unavailable && code != codes.Canceled {
		return false
	}
	t := time.NewTimer(exitGrace)
	defer t.Stop()
	select {
	case <-c.exited:
		return true
	case <-t.C:
		return false
	}
}
