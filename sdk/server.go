package sdk

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/cellgate/cellgate/sdk/proto"
)

const (
	// maxRecvFrame bounds one data frame from plugin to host, so the host's
	// receive queue (recvQueueFrames frames) is bounded in bytes too.
	maxRecvFrame = 16 << 10
	// defaultSessionCloseTimeout bounds Session.Close when the host vanished
	// or gave no deadline, so a modem session is closed even then.
	defaultSessionCloseTimeout = 10 * time.Second
)

// server adapts a SecureTransport to the gRPC service. It runs in the plugin
// process.
type server struct {
	pb.UnimplementedSecureTransportServer
	impl SecureTransport
	log  *slog.Logger
	// protocol is the go-plugin protocol version negotiated at launch.
	protocol int
}

func (s *server) Open(ctx context.Context, req *pb.OpenRequest) (*pb.OpenResponse, error) {
	info, err := s.impl.Open(ctx, modemConfigFromPB(req.GetConfig()))
	if err != nil {
		return nil, statusFromError(err)
	}
	return &pb.OpenResponse{Info: modemInfoToPB(info)}, nil
}

func (s *server) Provision(ctx context.Context, req *pb.ProvisionRequest) (*pb.ProvisionResponse, error) {
	rep, err := s.impl.Provision(ctx, bundleFromPB(req.GetBundle()))
	if err != nil {
		return nil, statusFromError(err)
	}
	return &pb.ProvisionResponse{Report: reportToPB(rep)}, nil
}

func (s *server) ListCerts(ctx context.Context, _ *pb.ListCertsRequest) (*pb.ListCertsResponse, error) {
	names, err := s.impl.ListCerts(ctx)
	if err != nil {
		return nil, statusFromError(err)
	}
	return &pb.ListCertsResponse{Names: names}, nil
}

func (s *server) DeleteCert(ctx context.Context, req *pb.DeleteCertRequest) (*pb.DeleteCertResponse, error) {
	if err := s.impl.DeleteCert(ctx, req.GetName()); err != nil {
		return nil, statusFromError(err)
	}
	return &pb.DeleteCertResponse{}, nil
}

func (s *server) Stop(ctx context.Context, _ *pb.StopRequest) (*pb.StopResponse, error) {
	if err := s.impl.Stop(ctx); err != nil {
		return nil, statusFromError(err)
	}
	return &pb.StopResponse{}, nil
}

func (s *server) Ping(context.Context, *pb.PingRequest) (*pb.PingResponse, error) {
	return &pb.PingResponse{ProtocolVersion: int32(s.protocol)}, nil
}

// Session serves one modem session; see the proto for the frame protocol.
// The handler goroutine owns the host→modem direction (it reads a frame,
// hands it to Session.Send, acknowledges it, reads the next); a second
// goroutine owns modem→host (Session.Recv, then stream.Send). gRPC forbids
// concurrent stream.Send, so both send through one mutex.
func (s *server) Session(stream pb.SecureTransport_SessionServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	dialPB := first.GetDial()
	if dialPB == nil {
		return status.Error(codes.InvalidArgument, "session stream: first frame must be a dial request")
	}
	req := dialRequestFromPB(dialPB)
	dialCtx := ctx
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		dialCtx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	sess, err := s.impl.Dial(dialCtx, req)
	if err != nil {
		return statusFromError(err)
	}
	log := s.log.With("session", sess.ID())

	var sendMu sync.Mutex
	send := func(f *pb.ServerFrame) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(f)
	}
	if err := send(&pb.ServerFrame{Kind: &pb.ServerFrame_Dialed{Dialed: &pb.Dialed{SessionId: int32(sess.ID())}}}); err != nil {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultSessionCloseTimeout)
		defer cancel()
		if cerr := sess.Close(closeCtx); cerr != nil {
			log.Warn("closing a session the host never saw", "op", "close", "error", cerr)
		}
		return err
	}

	recvCtx, stopRecv := context.WithCancel(ctx)
	defer stopRecv()
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		pumpModemToHost(recvCtx, sess, send)
	}()

	closeReq, hostGone := pumpHostToModem(ctx, stream, sess, send, log)

	timeout := defaultSessionCloseTimeout
	if t := time.Duration(closeReq.GetTimeoutNanos()); t > 0 {
		timeout = t
	}
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	closeErr := sess.Close(closeCtx)
	stopRecv()
	select {
	case <-recvDone:
	case <-closeCtx.Done():
		log.Error("session Recv did not return after Close and cancellation", "op", "close")
		if closeErr == nil {
			closeErr = closeCtx.Err()
		}
	}
	if hostGone {
		if closeErr != nil {
			log.Warn("closing the session of a vanished host", "op", "close", "error", closeErr)
		}
		return nil
	}
	closed := &pb.Closed{}
	if closeErr != nil {
		closed.Error = errorDetail(closeErr)
	}
	return send(&pb.ServerFrame{Kind: &pb.ServerFrame_Closed{Closed: closed}})
}

// pumpHostToModem feeds data frames to sess.Send one at a time until the host
// asks to close (closeReq non-nil) or the stream ends (hostGone).
func pumpHostToModem(ctx context.Context, stream pb.SecureTransport_SessionServer, sess Session, send func(*pb.ServerFrame) error, log *slog.Logger) (closeReq *pb.CloseRequest, hostGone bool) {
	broken := false
	for {
		f, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				log.Warn("session stream from host failed", "op", "recv", "error", err)
			}
			return nil, true
		}
		switch k := f.GetKind().(type) {
		case *pb.ClientFrame_Close:
			return k.Close, false
		case *pb.ClientFrame_Data:
			if broken || len(k.Data) == 0 {
				continue
			}
			if err := sess.Send(ctx, k.Data); err != nil {
				broken = true
				if send(&pb.ServerFrame{Kind: &pb.ServerFrame_SendFailed{SendFailed: errorDetail(err)}}) != nil {
					return nil, true
				}
				continue
			}
			if send(&pb.ServerFrame{Kind: &pb.ServerFrame_Ack{Ack: &pb.Ack{Bytes: uint64(len(k.Data))}}}) != nil {
				return nil, true
			}
		default:
			log.Warn("ignoring an unexpected frame from the host", "op", "recv")
		}
	}
}

// pumpModemToHost forwards what sess.Recv returns until the session ends or
// ctx is cancelled. stream.Send blocks while the host is not consuming
// (gRPC flow control), so a slow host stops this loop instead of growing a
// buffer.
func pumpModemToHost(ctx context.Context, sess Session, send func(*pb.ServerFrame) error) {
	for {
		fr, err := sess.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			end := &pb.RecvEnd{}
			if !errors.Is(err, io.EOF) {
				end.Error = errorDetail(err)
			}
			_ = send(&pb.ServerFrame{Kind: &pb.ServerFrame_RecvEnd{RecvEnd: end}})
			return
		}
		for data := fr.Data; len(data) > 0; {
			n := min(len(data), maxRecvFrame)
			if send(&pb.ServerFrame{Kind: &pb.ServerFrame_Data{Data: data[:n]}}) != nil {
				return
			}
			data = data[n:]
		}
		if fr.Event != nil {
			if send(&pb.ServerFrame{Kind: &pb.ServerFrame_Event{Event: eventToPB(fr.Event)}}) != nil {
				return
			}
		}
	}
}
