package input

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/cellgate/cellgate/agent/reading"
)

// How a request holds its readings: their canonical JSON, written into
// chunks as the body is decoded, and dropped with the request (never
// pooled). Chunks double from minChunk to maxChunk, so a small request
// allocates little and a large one wastes at most a few percent.
const (
	minChunk = 4 << 10
	maxChunk = 256 << 10
	// readingGrowth is the most a reading's canonical JSON exceeds the
	// bytes it spans in the body: an assigned id (`"id":"<26>",`, 34
	// bytes) and time of receipt (`,"ts":"2024-11-27T04:00:00.123Z"`, 32
	// bytes). Strings and numbers are never longer in canonical form, and
	// whitespace goes.
	readingGrowth = 66
	// readingIndex is what a request keeps per reading besides its JSON:
	// a payload slice header (24 bytes) and an id string header (16),
	// twice for the room append leaves, and the id's bytes (up to 64).
	readingIndex = 2*(24+16) + 64
	// minReadingBytes is the shortest reading a body can hold,
	// {"sensor":"a","value":0}.
	minReadingBytes = 24
	// slackFixed bounds the chunks' unused space besides slackDivisor: the
	// chunk being filled (at most maxChunk) and the small chunks before
	// the first maxChunk one (their sum is below maxChunk). A body whose
	// readings take c bytes has chunks of at most 2c + minChunk in all
	// (they double), so its slack is also at most c + minChunk.
	slackFixed = 2 * maxChunk
	// slackDivisor: a full chunk left behind wastes less than one canonical
	// reading (MaxReadingBytes + readingGrowth), under 1/16 of maxChunk.
	slackDivisor = 16
)

// reservation is the memory a request whose body has n bytes can hold at
// most, and what it takes from the budget once it holds more than
// unreservedBytes: its readings' canonical JSON (n plus readingGrowth per
// reading), chunk slack (1/16 of that, and up to 512 KiB), and
// readingIndex per reading, for as many readings as n bytes can hold (at
// most reading.DefaultMaxReadings).
func reservation(n int64) int64 {
	readings := min(int64(reading.DefaultMaxReadings), n/minReadingBytes+1)
	canonical := n + readings*readingGrowth
	return canonical + canonical/slackDivisor + min(slackFixed, canonical+minChunk) + readings*readingIndex
}

// MemoryBudget is the memory the HTTP input lets the readings of requests
// in progress take, for bodies of at most maxBody bytes: room for 16
// bodies of maxBody at once, reservation(maxBody) each. A request holds
// its first 64 KiB outside the budget (so small requests never wait for
// it); past that it reserves, at once, room for the whole body it
// announced (max_body when the body is chunked), waiting up to 10 s for it
// (then 503). The input's share of the heap is this, plus up to 64 KiB per
// request still in its first 64 KiB, plus the spool's copy of the batch it
// is writing; ResidentBound says what that comes to.
func MemoryBudget(maxBody int64) int64 { return maxConcurrentIngest * reservation(maxBody) }

// errBusy fails a request that found no room in the budget.
var errBusy = errors.New("busy")

// batch is one request's readings as canonical JSON, the payloads handed to
// the sink, and their ids. Only the request's handler touches it.
type batch struct {
	h         *HTTP
	announced int64  // the body's Content-Length, -1 when unknown
	chunk     []byte // the chunk being filled
	chunks    int64  // bytes of every chunk so far
	scratch   []byte // one reading's canonical JSON, before it is placed
	payloads  [][]byte
	ids       []string
	held      int64 // chunk bytes plus readingIndex per reading
	reserved  int64 // taken from h.budget; 0 until held passes unreservedBytes
}

// add places rd's canonical JSON in the batch. It returns how long it
// waited for the budget, and an error wrapping errBusy when no room came
// within the wait.
func (b *batch) add(ctx context.Context, rd reading.Reading) (time.Duration, error) {
	var err error
	if b.scratch, err = rd.AppendJSON(b.scratch[:0]); err != nil {
		return 0, fmt.Errorf("bug: a parsed reading does not marshal: %w", err)
	}
	var waited time.Duration
	need := len(b.scratch)
	if need > cap(b.chunk)-len(b.chunk) {
		size := b.nextChunkSize(need)
		if waited, err = b.hold(ctx, int64(size)); err != nil {
			return waited, err
		}
		b.chunk = make([]byte, 0, size)
		b.chunks += int64(size)
	}
	w, err := b.hold(ctx, readingIndex)
	if waited += w; err != nil {
		return waited, err
	}
	start := len(b.chunk)
	b.chunk = append(b.chunk, b.scratch...)
	b.payloads = append(b.payloads, b.chunk[start:len(b.chunk):len(b.chunk)])
	b.ids = append(b.ids, rd.ID)
	return waited, nil
}

// nextChunkSize is the size of the next chunk, for a reading of need
// bytes: as large as the chunks so far, within [minChunk, maxChunk]. The
// first chunk of a small announced body fits the body instead.
func (b *batch) nextChunkSize(need int) int {
	size := int(min(max(b.chunks, minChunk), maxChunk))
	if b.chunks == 0 && b.announced >= 0 {
		size = int(min(b.announced+(b.announced/minReadingBytes+1)*readingGrowth, minChunk))
	}
	return max(size, need)
}

// hold counts n more bytes against the request. Past unreservedBytes the
// request reserves, once, room for its whole body, waiting for it up to
// h.budgetWait; should it ever outgrow that, it takes more only if it is
// free at once.
func (b *batch) hold(ctx context.Context, n int64) (time.Duration, error) {
	b.held += n
	switch {
	case b.reserved == 0 && b.held <= unreservedBytes, b.held <= b.reserved:
		return 0, nil
	case b.reserved == 0:
		size := b.announced
		if size < 0 {
			size = b.h.maxBody
		}
		want := max(reservation(size), b.held)
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, b.h.budgetWait)
		err := b.h.budget.Acquire(wctx, want)
		cancel()
		waited := time.Since(start)
		if err != nil {
			return waited, fmt.Errorf("%w: no room for a %d-byte body within %v (readings of requests in progress may take %d bytes); retry later",
				errBusy, size, b.h.budgetWait, MemoryBudget(b.h.maxBody))
		}
		b.reserved = want
		b.h.returns.reserved()
		return waited, nil
	}
	extra := b.held - b.reserved
	if !b.h.budget.TryAcquire(extra) {
		return 0, fmt.Errorf("%w: a body outgrew its %d-byte reservation and no more room is free", errBusy, b.reserved)
	}
	b.reserved += extra
	return 0, nil
}

// release gives the request's budget back and drops its readings; a
// request that held budget asks for its memory to be returned.
func (b *batch) release() {
	if b.reserved > 0 {
		b.h.budget.Release(b.reserved)
		b.h.returns.released(b.chunks)
		b.reserved = 0
	}
	b.chunk, b.scratch, b.payloads, b.ids = nil, nil, nil, nil
}

// When the memory of large requests goes back to the operating system.
const (
	// returnAtLeast: less is not worth a collection.
	returnAtLeast = 16 << 20
	// returnDelay: a burst of large requests ends before its memory goes
	// back, and steady traffic returns it at most this often.
	returnDelay = time.Second
)

// memoryReturn gives the memory of large requests back to the operating
// system (debug.FreeOSMemory) once they have ended: once no request has
// held budget for a second, and they had held at least 16 MiB since the
// last time. The Go runtime would otherwise keep the pages for minutes.
// Small requests never ask for it. Its loop runs while the input serves.
type memoryReturn struct {
	kick chan struct{} // a return may be due; capacity 1, so kicks coalesce

	mu     sync.Mutex
	active int   // requests holding budget
	freed  int64 // bytes they held, since the last return
}

func newMemoryReturn() *memoryReturn { return &memoryReturn{kick: make(chan struct{}, 1)} }

// reserved notes a request that took budget.
func (m *memoryReturn) reserved() {
	m.mu.Lock()
	m.active++
	m.mu.Unlock()
}

// released notes a request that gave its budget back, having held n bytes.
func (m *memoryReturn) released(n int64) {
	m.mu.Lock()
	m.active--
	m.freed += n
	due := m.active == 0 && m.freed >= returnAtLeast
	m.mu.Unlock()
	if due {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
}

// run returns memory when it is due, until ctx ends.
func (m *memoryReturn) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		}
		wait := time.NewTimer(returnDelay)
		select {
		case <-ctx.Done():
			wait.Stop()
			return
		case <-wait.C:
		}
		m.mu.Lock()
		idle := m.active == 0
		if idle {
			m.freed = 0
		}
		m.mu.Unlock()
		if idle {
			// Otherwise the request holding budget now kicks again when it
			// ends.
			debug.FreeOSMemory()
		}
	}
}

// ResidentBound is how far the HTTP input lets the process's resident
// memory grow above what it was when Serve started, for bodies of at most
// maxBody bytes: goMemoryAllowance, which Serve makes the Go runtime keep
// to (see limitMemory), and a margin of 2 × maxBody + 16 MiB for what that
// soft limit does not hold exactly: the heap grows on while the collector
// marks (measured: up to 1.3 × maxBody with 60 MiB bodies), and memory
// outside the heap.
func ResidentBound(maxBody int64) int64 {
	return goMemoryAllowance(maxBody) + 2*maxBody + 16<<20
}

// goMemoryAllowance is what limitMemory lets the Go runtime use above the
// memory in use when Serve starts: the budget of the readings of requests
// in progress (MemoryBudget), the spool's copy of the batch it is writing
// (up to 3 times the batch while its write buffer grows), and room for the
// garbage the collector has not reclaimed yet (maxBody and 16 MiB).
func goMemoryAllowance(maxBody int64) int64 {
	return MemoryBudget(maxBody) + 3*maxBody + maxBody + 16<<20
}

// limitMemory sets the Go runtime's soft memory limit to the memory in use
// now plus goMemoryAllowance, unless a limit is in force already (GOMEMLIMIT,
// or debug.SetMemoryLimit by someone else), and returns what undoes it.
// Without a limit the collector lets the heap grow to twice what was live
// at its last cycle: with 16 large bodies live, twice the budget.
func (h *HTTP) limitMemory() (restore func()) {
	if debug.SetMemoryLimit(-1) != math.MaxInt64 {
		return func() {}
	}
	samples := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(samples)
	inUse := int64(samples[0].Value.Uint64() - samples[1].Value.Uint64())
	limit := inUse + goMemoryAllowance(h.maxBody)
	debug.SetMemoryLimit(limit)
	h.log.Info("go memory limit set for the http input's large bodies", "bytes", limit, "in_use", inUse)
	return func() {
		// Only our own limit is undone.
		if debug.SetMemoryLimit(-1) == limit {
			debug.SetMemoryLimit(math.MaxInt64)
		}
	}
}
