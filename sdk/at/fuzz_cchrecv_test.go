package at

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"testing"
	"time"
)

// FuzzCCHRecvLengthBeyondData feeds the channel a "+CCHRECV: DATA,7,<len>"
// header announcing more bytes than its payload has, followed by whatever
// tail the fuzzer picks (lines, a final result, another header), while a
// command is in flight. The payload is counted, never scanned: when the
// payload and the tail hold the announced length, exactly those bytes are
// delivered once, the tail's first bytes included; when they do not, the
// payload is dropped when the port ends, never delivered short. Either way
// nothing panics and the command ends with the port, not its deadline.
func FuzzCCHRecvLengthBeyondData(f *testing.F) {
	for _, s := range []struct {
		extra   uint16
		payload string
		tail    string
	}{
		{1, "abc", "\r\nOK\r\n"},
		{6, "hello", "\r\nOK\r\n"},
		{100, "", "\r\n+CCHRECV: DATA,7,2\r\nxy\r\nOK\r\n"},
		{2, "\r\nOK\r\n", "\r\n+CSQ: 20,99\r\n\r\nOK\r\n"},
		{4096, "x", ""},
		{1, "\n", "\r\n"},
		{3, "ab", "+CCH_PEER_CLOSED: 7\r\nERROR\r\n"},
	} {
		f.Add(s.extra, []byte(s.payload), []byte(s.tail))
	}
	const maxBinary = 4096
	f.Fuzz(func(t *testing.T, extra uint16, payload, tail []byte) {
		announced := len(payload) + int(extra)
		if extra == 0 || announced > maxBinary {
			return
		}
		header := "+CCHRECV: DATA,7," + strconv.Itoa(announced)
		data := append([]byte("\r\n"+header+"\r\n"), payload...)
		data = append(data, tail...)
		port := &fuzzPort{data: data, chunk: 7, wrote: make(chan struct{}), closed: make(chan struct{})}

		var mu sync.Mutex
		var got [][]byte
		audit := &urcAudit{}
		c := New(port, WithMaxLine(256), WithMaxBinary(maxBinary), WithUnsolicited(audit.line))
		c.HandleBinary("+CCHRECV: DATA,", CCHRecvLength, func(u URC) {
			audit.binary(CCHRecvLength)(u)
			if u.Line == header {
				mu.Lock()
				got = append(got, u.Payload)
				mu.Unlock()
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		runFuzzCommand(t, ctx, c, false)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		audit.check(t, len(data))

		after := append(append([]byte(nil), payload...), tail...)
		mu.Lock()
		defer mu.Unlock()
		if len(after) < announced {
			if len(got) > 0 {
				t.Fatalf("announced %d bytes, %d followed, yet a payload of %d was delivered", announced, len(after), len(got[0]))
			}
			return
		}
		if len(got) == 0 {
			t.Fatalf("announced %d bytes and %d followed, but nothing was delivered", announced, len(after))
		}
		if !bytes.Equal(got[0], after[:announced]) {
			t.Fatalf("delivered %q, want the %d bytes after the header, %q", got[0], announced, after[:announced])
		}
	})
}
