package agent

import (
	"context"
	"fmt"
	"sync"

	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/transport/uplink"
)

// This file is the forwarder with several batches in flight
// (uplink.max_in_flight > 1, and an uplink that takes more than one): over
// a long round trip one batch at a time leaves the line idle while each
// acknowledgement travels back.
//
// One goroutine (pipeline's) owns the forwarder's state as in the
// one-at-a-time loop: it reads batches from the spool in order (the read
// itself runs in a helper goroutine so that acknowledgements are handled
// while it waits for readings), hands each to a sender goroutine, and acks
// each batch in the spool when its sender reports it acknowledged upstream
// (or refused for good: dead-lettered), in whatever order they complete.
// The spool takes acks in any order and keeps them across a crash
// (agent/spool: ack spans), so a restart sends again exactly the batches not
// acked. The cursor is then the read position: everything at or before it
// is acked, pending an ack (held), or in flight. When the pipeline stops
// (a hold, the end), batches in flight get holdGrace as in the sequential
// loop; the cursor goes back before the first one abandoned, so that it and
// anything after it not acked is read again.

// flight is one batch sent by a sender goroutine, and how it ended.
type flight struct {
	recs []spool.Record
	d    delivery
	err  error
}

// collected is what a spool read returned.
type collected struct {
	recs []spool.Record
	err  error
}

// inFlightLimit is how many batches may be in flight now: maxInFlight,
// lowered to the uplink's bound when it has one (MQTT: the broker's
// Receive Maximum, once connected).
func (f *forwarder) inFlightLimit() int {
	n := max(f.maxInFlight, 1)
	if l, ok := f.uplink.(uplink.InFlightLimiter); ok {
		if m := l.InFlightLimit(); m > 0 && m < n {
			n = m
		}
	}
	return n
}

// pipelineRun is the state of one pipeline run, owned by its goroutine.
type pipelineRun struct {
	f          *forwarder
	drain      context.Context
	send       context.Context // the senders': ctx, cancelled on a failure
	cancelSend context.CancelFunc
	results    chan flight
	senders    sync.WaitGroup
	inflight   int
	read       uint64 // the last sequence number read and sent (or set aside)
	// abandoned is the first sequence number of the earliest batch whose
	// send was abandoned (a hold); 0: none.
	abandoned uint64
	stopping  bool
}

// pipeline sends batches with up to inFlightLimit in flight until drain
// ends (then it waits for those in flight, within holdGrace) or something
// fails that must stop the forwarder.
func (f *forwarder) pipeline(ctx, drain context.Context) error {
	p := &pipelineRun{f: f, drain: drain, results: make(chan flight), read: f.cursor}
	p.send, p.cancelSend = context.WithCancel(ctx)
	readCtx, stopRead := context.WithCancel(drain)
	var col chan collected // non-nil while a read runs
	drainDone := drain.Done()
	err := func() error {
		for {
			if col == nil && !p.stopping && p.inflight < f.inFlightLimit() {
				if ok, err := f.settleAll(drain); !ok {
					if err != nil {
						return err
					}
					p.stopping = true
					continue
				}
				col = make(chan collected, 1)
				go func(c chan<- collected, after uint64) {
					recs, err := f.collect(readCtx, after)
					c <- collected{recs, err}
				}(col, p.read)
			}
			if p.stopping && p.inflight == 0 {
				return nil
			}
			select {
			case c := <-col:
				col = nil
				if err := p.dispatch(c); err != nil {
					return err
				}
			case r := <-p.results:
				p.inflight--
				if err := p.finish(r); err != nil {
					return err
				}
			case <-drainDone:
				drainDone, p.stopping = nil, true
			}
		}
	}()
	// Stop reading and, after a failure, sending; wait for both.
	stopRead()
	if col != nil {
		<-col
	}
	if err != nil {
		p.cancelSend()
	}
	for p.inflight > 0 {
		r := <-p.results
		p.inflight--
		if err == nil {
			err = p.finish(r)
		}
	}
	p.senders.Wait()
	p.cancelSend()
	f.cursor = p.read
	if p.abandoned != 0 {
		f.cursor = p.abandoned - 1
	}
	return err
}

// dispatch sends a batch the read returned.
func (p *pipelineRun) dispatch(c collected) error {
	f := p.f
	if c.err != nil {
		if p.drain.Err() != nil {
			p.stopping = true
			return nil
		}
		return fmt.Errorf("read spool: %w", c.err)
	}
	if p.stopping {
		return nil // read after drain ended: it is read again later
	}
	through := c.recs[len(c.recs)-1].Seq
	recs, msg, ok, err := f.prepare(p.drain, c.recs)
	if !ok {
		// err nil: drain ended while the spool refused the ack of a
		// record set aside; it is settled first next time, and the rest
		// of the batch (after p.read) read again.
		p.stopping = err == nil
		return err
	}
	p.read = through
	if len(recs) == 0 {
		return nil
	}
	p.inflight++
	p.senders.Add(1)
	go func() {
		defer p.senders.Done()
		d, err := f.deliver(p.send, p.drain, recs, msg)
		p.results <- flight{recs: recs, d: d, err: err}
	}()
	return nil
}

// finish acks a batch whose send ended: acknowledged, refused for good
// (dead-lettered first), in part each when it was split, or abandoned (it
// stays in the spool).
func (p *pipelineRun) finish(r flight) error {
	f := p.f
	if r.err != nil {
		// Abandoned (a hold, the end): read again from it later.
		if first := r.recs[0].Seq; p.abandoned == 0 || first < p.abandoned {
			p.abandoned = first
		}
		return nil
	}
	acks, err := f.acks(r.d, true)
	if err != nil {
		return err
	}
	for _, done := range acks {
		if f.unacked != nil || len(f.held) > 0 {
			f.held = append(f.held, done) // acked in order after those before it
			continue
		}
		f.unacked = done
		if err := f.settle(p.drain); err != nil {
			return err
		}
		if f.unacked != nil { // drain ended while the spool refused it
			f.held = append(f.held, f.unacked)
			f.unacked = nil
		}
	}
	return nil
}
