package at_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/cellgate/cellgate/sdk/at"
)

// modem plays a scripted modem on the far end of a pipe: for each step it
// reads exactly the bytes the host must send, then writes its answer.
func modem(conn net.Conn, steps ...[2]string) {
	r := bufio.NewReader(conn)
	for _, s := range steps {
		got := make([]byte, len(s[0]))
		if _, err := io.ReadFull(r, got); err != nil || string(got) != s[0] {
			conn.Close()
			return
		}
		conn.Write([]byte(s[1]))
	}
}

// A Quectel send ends with SEND OK, SEND FAIL or ERROR after the payload,
// and no OK: the command declares its own final results.
func ExampleWithFinalOK() {
	host, far := net.Pipe()
	go modem(far,
		[2]string{"AT+QSSLSEND=0,5\r", "\r\n> "},
		[2]string{"hello", "\r\nSEND OK\r\n"},
		[2]string{"AT+QSSLSEND=0,5\r", "\r\n> "},
		[2]string{"hello", "\r\nSEND FAIL\r\n"},
	)
	ch := at.New(host)
	defer ch.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	send := func() {
		resp, err := ch.CommandPayload(ctx, "AT+QSSLSEND=0,5", []byte("hello"),
			at.WithFinalOK("SEND OK"), at.WithFinalError("SEND FAIL"))
		var e *at.Error
		switch {
		case errors.As(err, &e) && e.Final == "SEND FAIL":
			fmt.Println("buffer full, try again")
		case err != nil:
			fmt.Println("error:", err)
		default:
			fmt.Println("sent:", resp.Final)
		}
	}
	send()
	send()
	// Output:
	// sent: SEND OK
	// buffer full, try again
}

// Quectel's file upload answers CONNECT, takes the file's bytes, then
// reports its size and checksum and ends with OK: CONNECT is the prompt.
func ExampleWithPromptLine() {
	host, far := net.Pipe()
	go modem(far,
		[2]string{"AT+QFUPL=\"ca.pem\",4,10\r", "\r\nCONNECT\r\n"},
		[2]string{"PEM\n", "\r\n+QFUPL: 4,1d4f\r\n\r\nOK\r\n"},
	)
	ch := at.New(host)
	defer ch.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := ch.CommandPayload(ctx, `AT+QFUPL="ca.pem",4,10`, []byte("PEM\n"),
		at.WithPromptLine("CONNECT"))
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(resp.Lines, resp.Final)
	// Output:
	// [+QFUPL: 4,1d4f] OK
}
