package at

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Defaults for the limits that options can change.
const (
	// DefaultMaxLine is the longest line, in bytes without its terminator,
	// that the channel accepts; see WithMaxLine.
	DefaultMaxLine = 4096
	// DefaultMaxBinary is the largest binary payload a header may announce;
	// see WithMaxBinary.
	DefaultMaxBinary = 64 << 10
	// DefaultQueueSize is the number of URCs that may wait for the
	// dispatcher before the reader blocks; see WithQueueSize.
	DefaultQueueSize = 64
)

// readBufferSize is what one Read may return; larger only helps bulk
// payloads, and serial ports rarely return more per call.
const readBufferSize = 8192

// Zero-length reads that return faster than fastZeroRead are counted; after
// fastZeroLimit of them in a row the reader backs off, so a port without a
// read timeout that keeps answering (0, nil) cannot spin a core. A port with
// a read timeout never trips this: its empty reads take the timeout.
const (
	fastZeroRead    = time.Millisecond
	fastZeroLimit   = 8
	maxZeroReadWait = 20 * time.Millisecond
)

type options struct {
	logger      *slog.Logger
	trace       io.Writer
	maxLine     int
	maxBinary   int
	queueSize   int
	unsolicited func(URC)
	// parsedHook, set only by tests, is called by the reader after each
	// chunk has been fully parsed and routed, with the chunk's length.
	parsedHook func(n int)
}

// Option configures a Channel at construction.
type Option func(*options)

// WithLogger sets the logger; the default discards everything. Payload bytes
// are never logged, only their counts.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithTrace writes a timestamped transcript of the line to w: "> " lines for
// bytes the host wrote, "< " lines for what the modem sent (one entry per
// line, prompt or binary payload). Non-printable bytes are shown with Go
// escapes. w is written from the reader and the writer goroutines under a
// lock; write errors are ignored so a broken trace never stops the channel.
func WithTrace(w io.Writer) Option {
	return func(o *options) { o.trace = w }
}

// WithMaxLine sets the longest accepted line (default DefaultMaxLine). The
// bytes of a longer line are dropped up to the next CR or LF, the drop is
// logged, and parsing continues with the next line. n <= 0 keeps the default.
func WithMaxLine(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxLine = n
		}
	}
}

// WithMaxBinary caps the payload length a binary URC header may announce
// (default DefaultMaxBinary). A header announcing more is a protocol error:
// it is logged and routed as an ordinary line. n <= 0 keeps the default.
func WithMaxBinary(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxBinary = n
		}
	}
}

// WithQueueSize sets how many URCs may wait for the dispatcher (default
// DefaultQueueSize). When the queue is full the reader waits for the
// handlers rather than drop a URC, so slow handlers slow the channel but
// never lose data. n <= 0 keeps the default.
func WithQueueSize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.queueSize = n
		}
	}
}

// WithUnsolicited sets the handler for lines that no waiter, URC handler or
// in-flight command takes (for example "RDY" after a reboot, or a late
// result after a timeout). It runs on the dispatcher goroutine like URC
// handlers. Without it such lines are logged at debug level and dropped.
func WithUnsolicited(h func(URC)) Option {
	return func(o *options) { o.unsolicited = h }
}

// withParsedHook lets tests learn when the reader has consumed the bytes a
// scripted peer wrote.
func withParsedHook(f func(n int)) Option {
	return func(o *options) { o.parsedHook = f }
}

// Channel is an AT command channel over one io.ReadWriter. It is safe for
// concurrent use; commands are serialised.
//
// Goroutines: the reader (owns parseState, never runs user handlers), the
// dispatcher (runs URC handlers in arrival order) and the writer (performs
// every rw.Write so callers can stop waiting on their context).
type Channel struct {
	rw  io.ReadWriter
	opt options
	log *slog.Logger
	tr  *tracer

	slot     chan struct{} // command slot: holding it means "my command is next/in flight"
	writeReq chan writeReq
	queue    chan dispatchItem
	closing  chan struct{} // closed by Close
	done     chan struct{} // closed by the reader when it stops
	wg       sync.WaitGroup
	// settlers are payload exchanges finishing after their caller left
	// (see settle); Close lets them end before it closes the port. Adds
	// happen under mu while noSettle is false, so none races Close's Wait.
	settlers sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	// queueMu orders test barriers with the reader closing queue.
	queueMu     sync.Mutex
	queueClosed bool

	// mu guards the routing tables and command state that the reader shares
	// with callers. Handlers are never called with mu held.
	mu        sync.Mutex
	pending   *pending // the command in flight, nil when idle
	waiters   []*Waiter
	handlers  []*handlerEntry
	nextID    uint64
	err       error          // why the reader stopped, for Err (nil after Close)
	readErr   error          // the unwrapped read error behind err
	outOfSync bool           // a command was abandoned; its result may still come
	owed      int            // abandoned commands whose final result has not been seen
	abandoned []abandonedCmd // commands abandoned since the last known-good sync
	lastProbe int            // index into probes of the last probe sent
	noSettle  bool           // Close has begun waiting for settlers

	ps parseState // reader-owned
}

// New starts a channel over rw and returns it. rw is typically a serial port
// opened with a read timeout (a Read returning (0, nil) is simply repeated).
// The channel owns rw from now on: Close closes it if it is an io.Closer.
// New panics if rw is nil.
func New(rw io.ReadWriter, opts ...Option) *Channel {
	if rw == nil {
		panic("at: New called with a nil io.ReadWriter")
	}
	o := options{
		logger:    slog.New(slog.DiscardHandler),
		maxLine:   DefaultMaxLine,
		maxBinary: DefaultMaxBinary,
		queueSize: DefaultQueueSize,
	}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Channel{
		rw:        rw,
		opt:       o,
		log:       o.logger,
		tr:        newTracer(o.trace),
		slot:      make(chan struct{}, 1),
		writeReq:  make(chan writeReq),
		queue:     make(chan dispatchItem, o.queueSize),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		lastProbe: len(probes) - 1,
	}
	c.ps.line = make([]byte, 0, min(256, o.maxLine))
	c.wg.Add(3)
	go c.readLoop()
	go c.dispatchLoop()
	go c.writeLoop()
	return c
}

// Close stops the channel: it closes rw if rw is an io.Closer (that is what
// unblocks a Read pending on a serial port), then waits for the reader,
// dispatcher and writer goroutines to exit. URCs already queued are still
// delivered. Calls waiting on the channel fail with an error matching
// ErrClosed. Close is safe to call more than once; only the first call
// reports the error from closing rw.
//
// If rw is not an io.Closer, Close can only stop a Read that returns by
// itself (a port with a read timeout does); Close waits until it does. Close
// must not be called from a URC handler (it would wait for itself).
func (c *Channel) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		// A payload still owed to the modem is written first, or the
		// modem would swallow the next owner's commands as payload.
		c.mu.Lock()
		c.noSettle = true
		c.mu.Unlock()
		settled := make(chan struct{})
		go func() { c.settlers.Wait(); close(settled) }()
		select {
		case <-settled:
		case <-time.After(settleWait):
		}
		close(c.closing)
		if cl, ok := c.rw.(io.Closer); ok {
			if err := cl.Close(); err != nil {
				c.closeErr = fmt.Errorf("at: closing the port: %w", err)
			}
		}
	})
	c.wg.Wait()
	if first {
		return c.closeErr
	}
	return nil
}

// Done returns a channel that is closed when the reader stops, after Close
// or after a read error from rw.
func (c *Channel) Done() <-chan struct{} { return c.done }

// Err reports why the reader stopped: the read error (wrapped, so
// errors.Is(err, io.EOF) works), or nil if it stopped because of Close or is
// still running.
func (c *Channel) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// stoppedErr is the error for a call that found the reader stopped.
func (c *Channel) stoppedErr(what string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &stoppedError{what: what, readErr: c.readErr}
}

func (c *Channel) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// readLoop is the reader goroutine: it reads rw and parses until Close or a
// read error.
func (c *Channel) readLoop() {
	defer c.wg.Done()
	var readErr error
	defer func() {
		c.ps.abortBinary(c)
		c.queueMu.Lock()
		c.queueClosed = true
		close(c.queue)
		c.queueMu.Unlock()
		c.mu.Lock()
		if readErr != nil {
			c.readErr = readErr
			c.err = fmt.Errorf("at: reading from the port: %w", readErr)
		}
		c.mu.Unlock()
		close(c.done)
	}()
	buf := make([]byte, readBufferSize)
	fastZeros := 0
	var backoff *time.Timer
	defer func() {
		if backoff != nil {
			backoff.Stop()
		}
	}()
	for {
		start := time.Now()
		n, err := c.rw.Read(buf)
		if n > 0 {
			fastZeros = 0
			c.parse(buf[:n])
			if c.opt.parsedHook != nil {
				c.opt.parsedHook(n)
			}
		}
		if err != nil {
			if !c.isClosing() {
				readErr = err
				c.log.Warn("AT channel stopped", "op", "read", "err", err)
			}
			return
		}
		if c.isClosing() {
			return
		}
		if n > 0 {
			continue
		}
		if time.Since(start) >= fastZeroRead {
			fastZeros = 0
			continue
		}
		fastZeros++
		if fastZeros < fastZeroLimit {
			continue
		}
		wait := min(time.Duration(fastZeros-fastZeroLimit+1)*time.Millisecond, maxZeroReadWait)
		if backoff == nil {
			backoff = time.NewTimer(wait)
		} else {
			backoff.Reset(wait)
		}
		select {
		case <-c.closing:
			return
		case <-backoff.C:
		}
	}
}

// dispatchItem is one handler call waiting for the dispatcher.
type dispatchItem struct {
	fn    func(URC)
	entry *handlerEntry // nil for the unsolicited handler and barriers
	urc   URC
}

// dispatchLoop runs handlers in arrival order until the reader closes the
// queue, so everything queued before the reader stopped is still delivered.
func (c *Channel) dispatchLoop() {
	defer c.wg.Done()
	for it := range c.queue {
		if it.entry != nil && it.entry.removed.Load() {
			continue
		}
		it.fn(it.urc)
	}
}

// enqueue hands a handler call to the dispatcher. Only the reader calls it.
// It blocks while the queue is full, because dropping would lose data; once
// Close has been called the item is dropped instead, so the reader can stop.
func (c *Channel) enqueue(it dispatchItem) {
	select {
	case c.queue <- it:
		return
	default:
	}
	c.log.Warn("URC queue full; the reader waits for slow handlers", "op", "dispatch", "queue", cap(c.queue))
	select {
	case c.queue <- it:
	case <-c.closing:
	}
}

// flushDispatch waits until every handler call queued so far has run. It is
// for tests, which call it while the reader is idle.
func (c *Channel) flushDispatch() bool {
	ran := make(chan struct{})
	c.queueMu.Lock()
	if c.queueClosed {
		c.queueMu.Unlock()
		return false
	}
	c.queue <- dispatchItem{fn: func(URC) { close(ran) }}
	c.queueMu.Unlock()
	<-ran
	return true
}

// abandonedCmd is a command given up on, as sent and as logs show it.
type abandonedCmd struct{ cmd, shown string }

// writeReq asks the writer goroutine to write b; the outcome goes to done.
type writeReq struct {
	b       []byte
	shown   []byte // what the trace shows instead of b; nil shows b
	secret  bool   // the trace shows only the length of b
	payload bool
	done    chan error // buffered: the writer never blocks on it
}

// writeLoop performs every write, so a caller whose context ends can return
// while a write is stuck on a full serial buffer; Close unblocks the write
// by closing rw.
func (c *Channel) writeLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.closing:
			return
		case <-c.done:
			return
		case req := <-c.writeReq:
			switch {
			case req.secret:
				c.tr.secret(len(req.b))
			case req.shown != nil:
				c.tr.host(req.shown, req.payload)
			default:
				c.tr.host(req.b, req.payload)
			}
			_, err := c.rw.Write(req.b)
			req.done <- err
		}
	}
}
