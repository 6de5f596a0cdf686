package sdktest_test

import (
	"context"
	"fmt"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/sdktest"
)

// A Transport whose Dial refuses one host, echoes on the others, and whose
// far side then hangs up a session.
func Example() {
	ctx := context.Background()
	tr := sdktest.New(sdktest.Config{
		Dial: func(_ context.Context, s *sdktest.Session) (sdktest.SessionConfig, error) {
			if s.Request().Host == "untrusted.example" {
				return sdktest.SessionConfig{}, &sdk.NetError{Op: "open", Session: s.ID(), Kind: sdk.NetHandshake}
			}
			return sdktest.SessionConfig{Echo: true}, nil
		},
	})
	info, _ := tr.Open(ctx, sdk.ModemConfig{Port: "/dev/ttyUSB2"})
	fmt.Println("opened", info.Model)

	_, err := tr.Dial(ctx, sdk.DialRequest{Host: "untrusted.example", Port: 8883})
	fmt.Println(err)

	s, _ := tr.Dial(ctx, sdk.DialRequest{Host: "broker.example", Port: 8883})
	defer s.Close(ctx)
	_ = s.Send(ctx, []byte("ping"))
	f, _ := s.Recv(ctx)
	fmt.Printf("echoed %q\n", f.Data)

	s.(*sdktest.Session).Disconnect(sdk.SessionEvent{Kind: sdk.EventPeerClosed})
	f, _ = s.Recv(ctx)
	fmt.Println("event", f.Event.Kind)
	_, err = s.Recv(ctx)
	fmt.Println(err)
	// Output:
	// opened CELLGATE-TEST-DOUBLE
	// open session 0: TLS handshake failed
	// echoed "ping"
	// event peer_closed
	// EOF
}
