package input

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/spool"
)

// BenchmarkHTTPIngestSingle is issue 13's figure: 64 sensors, each on its
// own HTTP/1.1 keep-alive connection, POST one reading per request and
// wait for the 202, which the input sends only once the reading is
// durable (group-commit fdatasync). The clients are lean (one goroutine,
// one connection, a prebuilt request, a minimal response parser), as
// sensors are separate devices: the server, not Go's HTTP client, gets
// the machine's two cores. BenchmarkHTTPIngestOnePerRequest is the same
// load through net/http's client. Reported: readings/s made durable and
// readings per spool commit (one fdatasync each), durable and, as the
// in-run baseline, without fsync.
func BenchmarkHTTPIngestSingle(b *testing.B) {
	benchIntoSpools(b, func(b *testing.B, sp *spool.Spool) { benchRawIngest(b, sp, 64, 1) })
}

// BenchmarkHTTPIngestBatch is the same clients posting arrays of 100.
func BenchmarkHTTPIngestBatch(b *testing.B) {
	benchIntoSpools(b, func(b *testing.B, sp *spool.Spool) { benchRawIngest(b, sp, 64, 100) })
}

// BenchmarkHTTPIngestSingleNoSink is BenchmarkHTTPIngestSingle's floor:
// the same clients and requests, every one parsed and answered 202, into
// discardSink, which stores nothing. What it costs is HTTP, parsing and
// the clients; what the durable figure costs beyond it is the spool.
func BenchmarkHTTPIngestSingleNoSink(b *testing.B) {
	benchRawClients(b, NewHTTP(config.HTTPInput{MaxBody: config.MiB}, discardSink{}, quiet, nil), 64, 1)
}

// discardSink is a test double that accepts every append at once and
// stores nothing.
type discardSink struct{}

func (discardSink) Append(context.Context, ...[]byte) ([]uint64, error) { return nil, nil }

// ingestBody is a JSON body of per readings (an object for one, an array
// otherwise), cycling through four sensors.
func ingestBody(per int) []byte {
	sensors := []string{`"t1","value":21.5,"unit":"C"`, `"t2","value":18.7,"unit":"C"`, `"h1","value":45.2,"unit":"%"`, `"p1","value":1013.2,"unit":"hPa"`}
	if per == 1 {
		return []byte(`{"sensor":` + sensors[0] + `}`)
	}
	var body strings.Builder
	body.WriteByte('[')
	for i := range per {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"sensor":%s}`, sensors[i%len(sensors)])
	}
	body.WriteByte(']')
	return []byte(body.String())
}

func benchRawIngest(b *testing.B, sp *spool.Spool, clients, per int) {
	before := sp.Stats()
	benchRawClients(b, NewHTTP(config.HTTPInput{MaxBody: config.MiB}, sp, quiet, nil), clients, per)
	st := sp.Stats()
	b.ReportMetric(float64(st.Appended-before.Appended)/float64(max(st.Commits-before.Commits, 1)), "readings/commit")
}

// benchRawClients serves h and runs clients lean clients against it, each
// posting bodies of per readings, and reports readings/s accepted and the
// process's CPU per reading.
func benchRawClients(b *testing.B, h *HTTP, clients, per int) {
	srv := startHTTP(b, h)
	body := ingestBody(per)
	addr := strings.TrimPrefix(srv.url, "http://")
	req := []byte(fmt.Sprintf("POST /v1/readings HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", addr, len(body), body))
	b.SetBytes(int64(len(body)))
	b.SetParallelism(max(clients/runtime.GOMAXPROCS(0), 1))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		rc := rawClient{c: c, r: bufio.NewReader(c)}
		for pb.Next() {
			if err := rc.post(req, per); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	accepted := srv.h.Stats().Accepted
	b.ReportMetric(float64(accepted)/b.Elapsed().Seconds(), "readings/s")
	// CPU per reading (server, spool and the lean clients, user and
	// system) depends far less than readings/s on what else the shared
	// machine runs.
	b.ReportMetric(float64(cpu.Microseconds())/float64(max(accepted, 1)), "cpu-us/reading")
}

// rawClient is one keep-alive HTTP/1.1 connection that sends a prebuilt
// request and checks its answer: 202 with per ids.
type rawClient struct {
	c    net.Conn
	r    *bufio.Reader
	body []byte
}

func (rc *rawClient) post(req []byte, per int) error {
	rc.c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := rc.c.Write(req); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	line, err := rc.r.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("read status line: %w", err)
	}
	status := string(bytes.TrimSpace(line))
	length := -1
	for {
		h, err := rc.r.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read header: %w", err)
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(h, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	if length < 0 {
		return fmt.Errorf("answer %q without a Content-Length", status)
	}
	if cap(rc.body) < length {
		rc.body = make([]byte, length)
	}
	rc.body = rc.body[:length]
	if _, err := io.ReadFull(rc.r, rc.body); err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 202 ") {
		return fmt.Errorf("answer %q: %s", status, rc.body)
	}
	if n := bytes.Count(rc.body, []byte(`","`)) + 1; !bytes.HasPrefix(rc.body, []byte(`{"ids":["`)) || n != per {
		return fmt.Errorf("202 with %d ids for %d readings: %s", n, per, rc.body)
	}
	return nil
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
