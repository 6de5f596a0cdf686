package sdk

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/cellgate/cellgate/sdk/proto"
)

// This file converts between the Go contract and its protobuf form, and
// carries typed errors across the boundary as pb.ErrorDetail.

func modemConfigToPB(c ModemConfig) *pb.ModemConfig {
	return &pb.ModemConfig{
		Port:                     c.Port,
		Baud:                     int32(c.Baud),
		Apn:                      c.APN,
		Model:                    c.Model,
		Options:                  c.Options,
		RegistrationTimeoutNanos: int64(c.RegistrationTimeout),
		NoNetwork:                c.NoNetwork,
	}
}

func modemConfigFromPB(c *pb.ModemConfig) ModemConfig {
	return ModemConfig{
		Port:                c.GetPort(),
		Baud:                int(c.GetBaud()),
		APN:                 c.GetApn(),
		Model:               c.GetModel(),
		Options:             c.GetOptions(),
		RegistrationTimeout: time.Duration(c.GetRegistrationTimeoutNanos()),
		NoNetwork:           c.GetNoNetwork(),
	}
}

func modemInfoToPB(i ModemInfo) *pb.ModemInfo {
	return &pb.ModemInfo{
		Model:        i.Model,
		Manufacturer: i.Manufacturer,
		Revision:     i.Revision,
		Imei:         i.IMEI,
		Iccid:        i.ICCID,
		SignalRssi:   int32(i.SignalRSSI),
		SignalBer:    int32(i.SignalBER),
		Registration: i.Registration,
		Operator:     i.Operator,
		ClockSynced:  i.ClockSynced,
	}
}

func modemInfoFromPB(i *pb.ModemInfo) ModemInfo {
	return ModemInfo{
		Model:        i.GetModel(),
		Manufacturer: i.GetManufacturer(),
		Revision:     i.GetRevision(),
		IMEI:         i.GetImei(),
		ICCID:        i.GetIccid(),
		SignalRSSI:   int(i.GetSignalRssi()),
		SignalBER:    int(i.GetSignalBer()),
		Registration: i.GetRegistration(),
		Operator:     i.GetOperator(),
		ClockSynced:  i.GetClockSynced(),
	}
}

func bundleToPB(b Bundle) *pb.Bundle {
	return &pb.Bundle{
		Profile:     int32(b.Profile),
		Ca:          b.CA,
		Cert:        b.Cert,
		Key:         b.Key,
		KeyPassword: b.KeyPassword,
		Insecure:    b.Insecure,
		TlsVersion:  b.TLSVersion,
	}
}

func bundleFromPB(b *pb.Bundle) Bundle {
	return Bundle{
		Profile:     int(b.GetProfile()),
		CA:          b.GetCa(),
		Cert:        b.GetCert(),
		Key:         b.GetKey(),
		KeyPassword: b.GetKeyPassword(),
		Insecure:    b.GetInsecure(),
		TLSVersion:  b.GetTlsVersion(),
	}
}

func reportToPB(r ProvisionReport) *pb.ProvisionReport {
	return &pb.ProvisionReport{
		Profile:    int32(r.Profile),
		Downloaded: r.Downloaded,
		Deleted:    r.Deleted,
		Kept:       r.Kept,
		AuthMode:   int32(r.AuthMode),
	}
}

func reportFromPB(r *pb.ProvisionReport) ProvisionReport {
	return ProvisionReport{
		Profile:    int(r.GetProfile()),
		Downloaded: r.GetDownloaded(),
		Deleted:    r.GetDeleted(),
		Kept:       r.GetKept(),
		AuthMode:   int(r.GetAuthMode()),
	}
}

func dialRequestToPB(r DialRequest) *pb.DialRequest {
	return &pb.DialRequest{
		Host:         r.Host,
		Port:         int32(r.Port),
		Profile:      int32(r.Profile),
		Mode:         pb.DialMode(r.Mode),
		ServerName:   r.ServerName,
		TimeoutNanos: int64(r.Timeout),
	}
}

func dialRequestFromPB(r *pb.DialRequest) DialRequest {
	return DialRequest{
		Host:       r.GetHost(),
		Port:       int(r.GetPort()),
		Profile:    int(r.GetProfile()),
		Mode:       DialMode(r.GetMode()),
		ServerName: r.GetServerName(),
		Timeout:    time.Duration(r.GetTimeoutNanos()),
	}
}

func eventToPB(e *SessionEvent) *pb.SessionEvent {
	return &pb.SessionEvent{Kind: pb.EventKind(e.Kind), Code: int32(e.Code), Detail: e.Detail}
}

func eventFromPB(e *pb.SessionEvent) *SessionEvent {
	return &SessionEvent{Kind: EventKind(e.GetKind()), Code: int(e.GetCode()), Detail: e.GetDetail()}
}

// netKindToPB and netKindFromPB map NetKind to the wire, where the numbers
// are the same. A kind is sent as it is, so a newer plugin's kinds reach an
// agent that knows them; a kind the receiver does not know arrives as
// NetOther.
func netKindToPB(k NetKind) pb.NetKind { return pb.NetKind(k) }

func netKindFromPB(k pb.NetKind) NetKind {
	if nk := NetKind(k); nk.known() {
		return nk
	}
	return NetOther
}

// typedCause returns the outermost error in err's tree that is one of the
// contract's typed errors, so a plugin that wraps errors with context still
// sends the type the caller cares about.
func typedCause(err error) error {
	if err == nil {
		return nil
	}
	switch err.(type) {
	case *ModemError, *NetError, *SerialError, *TimeoutError, *BundleError, *OptionError, *ModelMismatchError:
		return err
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return typedCause(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if t := typedCause(e); t != nil {
				return t
			}
		}
	}
	return nil
}

// errorDetail describes err for the wire.
func errorDetail(err error) *pb.ErrorDetail {
	d := &pb.ErrorDetail{Message: err.Error(), Session: -1}
	switch t := typedCause(err).(type) {
	case *ModemError:
		d.Kind, d.Op, d.Code, d.Text = pb.ErrorKind_ERROR_KIND_MODEM, t.Op, int32(t.Code), t.Text
	case *NetError:
		d.Kind, d.Op, d.Session, d.NetKind = pb.ErrorKind_ERROR_KIND_NET, t.Op, int32(t.Session), netKindToPB(t.Kind)
		d.Vendor, d.Code, d.Text = t.Vendor, int32(t.Code), t.Text
	case *SerialError:
		d.Kind, d.Op, d.Port, d.Err = pb.ErrorKind_ERROR_KIND_SERIAL, t.Op, t.Port, t.Err
	case *TimeoutError:
		d.Kind, d.Op, d.AfterNanos = pb.ErrorKind_ERROR_KIND_TIMEOUT, t.Op, int64(t.After)
	case *BundleError:
		d.Kind, d.Field, d.Reason = pb.ErrorKind_ERROR_KIND_BUNDLE, t.Field, t.Reason
	case *OptionError:
		d.Kind, d.Key, d.Reason = pb.ErrorKind_ERROR_KIND_OPTION, t.Key, t.Reason
	case *ModelMismatchError:
		d.Kind, d.Want, d.Got = pb.ErrorKind_ERROR_KIND_MODEL_MISMATCH, t.Want, t.Got
	default:
		switch {
		case errors.Is(err, context.Canceled):
			d.Kind = pb.ErrorKind_ERROR_KIND_CANCELED
		case errors.Is(err, context.DeadlineExceeded):
			d.Kind = pb.ErrorKind_ERROR_KIND_DEADLINE_EXCEEDED
		}
	}
	return d
}

// errorFromDetail rebuilds the typed error described by d. op names the
// method for errors that carried no type.
func errorFromDetail(op string, d *pb.ErrorDetail) error {
	var typed error
	switch d.GetKind() {
	case pb.ErrorKind_ERROR_KIND_MODEM:
		typed = &ModemError{Op: d.GetOp(), Code: int(d.GetCode()), Text: d.GetText()}
	case pb.ErrorKind_ERROR_KIND_NET:
		typed = &NetError{Op: d.GetOp(), Session: int(d.GetSession()), Kind: netKindFromPB(d.GetNetKind()),
			Vendor: d.GetVendor(), Code: int(d.GetCode()), Text: d.GetText()}
	case pb.ErrorKind_ERROR_KIND_SERIAL:
		typed = &SerialError{Op: d.GetOp(), Port: d.GetPort(), Err: d.GetErr()}
	case pb.ErrorKind_ERROR_KIND_TIMEOUT:
		typed = &TimeoutError{Op: d.GetOp(), After: time.Duration(d.GetAfterNanos())}
	case pb.ErrorKind_ERROR_KIND_BUNDLE:
		typed = &BundleError{Field: d.GetField(), Reason: d.GetReason()}
	case pb.ErrorKind_ERROR_KIND_OPTION:
		typed = &OptionError{Key: d.GetKey(), Reason: d.GetReason()}
	case pb.ErrorKind_ERROR_KIND_MODEL_MISMATCH:
		typed = &ModelMismatchError{Want: d.GetWant(), Got: d.GetGot()}
	case pb.ErrorKind_ERROR_KIND_CANCELED:
		typed = context.Canceled
	case pb.ErrorKind_ERROR_KIND_DEADLINE_EXCEEDED:
		typed = context.DeadlineExceeded
	default:
		// An unspecified kind, or one a newer sdk added: the message is
		// all this side can use.
		return &PluginError{Op: op, Message: d.GetMessage()}
	}
	if d.GetMessage() == "" || d.GetMessage() == typed.Error() {
		return typed
	}
	return &remoteError{msg: d.GetMessage(), typed: typed}
}

// statusFromError turns a plugin method's error into a gRPC status carrying
// an ErrorDetail, with a code that a generic gRPC client can act on too.
func statusFromError(err error) error {
	d := errorDetail(err)
	code := codes.Unknown
	switch d.Kind {
	case pb.ErrorKind_ERROR_KIND_BUNDLE, pb.ErrorKind_ERROR_KIND_OPTION:
		code = codes.InvalidArgument
	case pb.ErrorKind_ERROR_KIND_MODEL_MISMATCH:
		code = codes.FailedPrecondition
	case pb.ErrorKind_ERROR_KIND_TIMEOUT, pb.ErrorKind_ERROR_KIND_DEADLINE_EXCEEDED:
		code = codes.DeadlineExceeded
	case pb.ErrorKind_ERROR_KIND_CANCELED:
		code = codes.Canceled
	}
	st, detailErr := status.New(code, d.Message).WithDetails(d)
	if detailErr != nil {
		return status.New(code, d.Message).Err()
	}
	return st.Err()
}

// detailFromStatus returns the ErrorDetail a plugin attached to err, if any.
func detailFromStatus(err error) (*pb.ErrorDetail, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return nil, false
	}
	for _, det := range st.Details() {
		if d, ok := det.(*pb.ErrorDetail); ok {
			return d, true
		}
	}
	return nil, false
}
