package modemsim

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"
)

// pacer spaces transfers so that n bytes take n*10/baud seconds, the time
// a UART with one start and one stop bit needs. Lateness up to idleAfter is
// timer overshoot and is caught up, so a long burst keeps the exact line
// rate; beyond it the line was idle, and idle time earns no credit.
type pacer struct {
	next time.Time
}

const idleAfter = 20 * time.Millisecond

func (p *pacer) wait(ctx context.Context, n, baud int) error {
	if baud <= 0 || n <= 0 {
		return nil
	}
	now := time.Now()
	if now.Sub(p.next) > idleAfter {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(n) * 10 * time.Second / time.Duration(baud))
	return sleepCtx(ctx, time.Until(p.next))
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lineBaud is the rate both directions are paced at right now.
func (m *Modem) lineBaud() int {
	switch {
	case m.cfg.Baud > 0:
		return m.cfg.Baud
	case m.cfg.Baud < 0:
		return 0
	default:
		return m.pty.baud()
	}
}

// chunkFor is the transfer unit at baud: about 5 ms of line time, so pacing
// is smooth without a system call per byte.
func chunkFor(baud int) int {
	if baud <= 0 {
		return 4096
	}
	return min(max(baud/10/200, 16), 4096)
}

// readLoop takes bytes from the host, paces them to the line rate and hands
// them to the core. When the core stops taking input the pty fills up and
// the host's writes block, as with a real UART.
func (m *Modem) readLoop() {
	defer m.wg.Done()
	var p pacer
	buf := make([]byte, 4096)
	for {
		baud := m.lineBaud()
		n, err := m.pty.master.Read(buf[:chunkFor(baud)])
		if n > 0 {
			m.counters.serialIn.Add(int64(n))
			if p.wait(m.ctx, n, baud) != nil {
				return
			}
			b := make([]byte, n)
			copy(b, buf[:n])
			select {
			case m.in <- b:
			case <-m.ctx.Done():
				return
			}
		}
		if err != nil {
			if m.ctx.Err() != nil || errors.Is(err, os.ErrClosed) || errors.Is(err, fs.ErrClosed) {
				return
			}
			m.log.Error("pty read failed; modem stops reading the line", "modem", m.path, "err", err)
			return
		}
	}
}

// writeLoop writes one output item at a time, after its delay, paced to the
// line rate, and reports each completed item to the core.
func (m *Modem) writeLoop() {
	defer m.wg.Done()
	var p pacer
	for {
		var it outItem
		select {
		case it = <-m.writeCh:
		case <-m.ctx.Done():
			return
		}
		if sleepCtx(m.ctx, it.delay) != nil {
			return
		}
		if it.traceAs != nil {
			m.trace.record("modem>host", it.traceAs)
		} else {
			m.trace.record("modem>host", it.data)
		}
		data := it.data
		for len(data) > 0 {
			baud := m.lineBaud()
			n := min(len(data), chunkFor(baud))
			w, err := m.pty.master.Write(data[:n])
			m.counters.serialOut.Add(int64(w))
			if err != nil {
				if m.ctx.Err() == nil {
					m.log.Error("pty write failed; modem stops writing the line", "modem", m.path, "err", err)
				}
				return
			}
			if p.wait(m.ctx, w, baud) != nil {
				return
			}
			data = data[w:]
		}
		select {
		case m.writeDone <- struct{}{}:
		case <-m.ctx.Done():
			return
		}
	}
}
