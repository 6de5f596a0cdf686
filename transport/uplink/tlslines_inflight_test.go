package uplink

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// With acks, several Sends await their acks at once on one connection, and
// acks are matched by id whatever their order: a peer that answers only
// once it has every line of four messages, acking them in reverse, gets all
// four (it could not, were the Sends one at a time), and each Send returns.
func TestTLSLinesSendsAwaitAcksTogetherMatchedByID(t *testing.T) {
	const msgs, per = 4, 3
	u, s, dials := newAckedLines(t, func(_ int, c net.Conn, s *lineServer) {
		sc := bufio.NewScanner(c)
		var ids []string
		for len(ids) < msgs*per && sc.Scan() {
			s.received <- sc.Text()
			var r struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				ids = append(ids, r.ID)
			}
		}
		slices.Reverse(ids)
		for _, id := range ids {
			fmt.Fprintf(c, "ack %s\r\n", id)
		}
		for sc.Scan() { // hold the connection open until the test ends
		}
	})
	if got := u.InFlightLimit(); got < msgs {
		t.Fatalf("InFlightLimit = %d, want at least %d with acks", got, msgs)
	}
	var wg sync.WaitGroup
	errs := make(chan error, msgs)
	for i := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs <- u.Send(ctx, readingLines(fmt.Sprintf("m%d-1", i), fmt.Sprintf("m%d-2", i), fmt.Sprintf("m%d-3", i)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	if n := len(s.received); n != msgs*per {
		t.Errorf("the peer read %d lines, want %d", n, msgs*per)
	}
	checkDials(t, dials, 1, "the messages share the connection")
}

// A Send that gives up (its ctx ended) stops awaiting only its own ids:
// another Send in flight on the connection still gets its acks.
func TestTLSLinesAGivenUpSendLeavesOthersAwaiting(t *testing.T) {
	release := make(chan struct{})
	u, _, _ := newAckedLines(t, func(_ int, c net.Conn, s *lineServer) {
		sc := bufio.NewScanner(c)
		var ids []string
		for len(ids) < 2 && sc.Scan() {
			var r struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				ids = append(ids, r.ID)
			}
		}
		<-release
		for _, id := range ids {
			fmt.Fprintf(c, "ack %s\r\n", id)
		}
		for sc.Scan() {
		}
	})
	gaveUp := make(chan error, 1)
	short, cancel := context.WithCancel(context.Background())
	go func() { gaveUp <- u.Send(short, readingLines("a-1")) }()
	done := make(chan error, 1)
	go func() {
		ctx, c := context.WithTimeout(context.Background(), 30*time.Second)
		defer c()
		done <- u.Send(ctx, readingLines("b-1"))
	}()
	time.Sleep(200 * time.Millisecond) // both written (a Send that is not yet is fine: it waits its turn)
	cancel()
	if err := <-gaveUp; err == nil {
		t.Fatal("the Send whose ctx ended returned nil, with no ack sent")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the other Send: %v", err)
	}
}
