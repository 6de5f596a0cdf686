package transcript_test

import (
	"context"
	"fmt"
	"net"

	"github.com/cellgate/cellgate/sdk/atkit/transcript"
)

func ExampleParse() {
	src := "> AT+CSQ\n<\n< +CSQ: 20,99\n<data +CCHRECV: DATA,0,{len} \"hi\"\n"
	tr, err := transcript.Parse("csq.txt", []byte(src), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range tr.Steps {
		fmt.Printf("%s %-5s %q\n", s.Pos, s.Side(), s.Bytes)
	}
	// Output:
	// csq.txt:1 host  "AT+CSQ\r"
	// csq.txt:2 modem "\r\n"
	// csq.txt:3 modem "+CSQ: 20,99\r\n"
	// csq.txt:4 modem "\r\n+CCHRECV: DATA,0,2\r\nhi"
}

func ExamplePlayer_PlayModem() {
	tr, err := transcript.Parse("csq.txt", []byte("> AT+CSQ\n<\n< +CSQ: 20,99\n<\n< OK\n"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	host, modem := net.Pipe()
	defer host.Close()
	defer modem.Close()
	played := make(chan error, 1)
	go func() {
		var p transcript.Player
		played <- p.PlayModem(context.Background(), modem, tr)
	}()
	fmt.Fprint(host, "AT+CREG?\r") // not what the transcript says
	fmt.Println(<-played)
	// Output: csq.txt:1: host sent "AT+CREG?\r", transcript wants "AT+CSQ\r"
}
