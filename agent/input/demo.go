package input

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/cellgate/cellgate/agent/reading"
)

// Demo rate limits: the configuration allows 0 to 10000 readings/s.
const (
	maxDemoRate = 10000
	// demoMinTick keeps high rates from waking the generator more than 100
	// times a second: it emits what is due in one append per tick.
	demoMinTick = 10 * time.Millisecond
)

// demoSensors are the sensors the demo generator reports, in turn.
var demoSensors = []string{"demo-temp", "demo-humidity", "demo-pressure", "demo-co2", "demo-door", "demo-gps", "demo-status"}

// Demo generates plausible readings for the quickstart: a room's
// temperature, humidity, pressure and CO2 drifting as random walks, a door
// that opens now and then, a GPS position wandering a few metres, and a
// status string. Every reading has an id, a timestamp and the tag
// source=demo.
type Demo struct {
	rate   float64
	sink   Sink
	log    *slog.Logger
	errLog *logLimiter
	stats  counters
	// The generator's state is owned by Run's goroutine.
	rng                                     *rand.Rand
	next                                    int
	temp, humidity, pressure, co2, lat, lon float64
	door                                    bool
}

// NewDemo returns a generator of rate readings per second (0 < rate ≤
// 10000) into sink. Its log lines carry input=demo, added here. log nil
// means slog.Default().
func NewDemo(rate float64, sink Sink, log *slog.Logger) (*Demo, error) {
	if math.IsNaN(rate) || rate <= 0 || rate > maxDemoRate {
		return nil, fmt.Errorf("demo input: rate %v readings/s is out of range (want more than 0, at most %d)", rate, maxDemoRate)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Demo{
		rate: rate, sink: sink, log: log.With("input", "demo"), errLog: newLogLimiter(),
		rng:  rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		temp: 21.0, humidity: 45.0, pressure: 1013.2, co2: 600, lat: 52.520008, lon: 13.404954,
	}, nil
}

// RunDemo runs a Demo of rate readings per second into sink until ctx ends;
// see Demo and Demo.Run.
func RunDemo(ctx context.Context, rate float64, sink Sink, log *slog.Logger) error {
	d, err := NewDemo(rate, sink, log)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// Stats returns the generator's counters: readings accepted, and readings
// the sink refused (dropped) by reason.
func (d *Demo) Stats() Stats { return d.stats.snapshot() }

// Run generates readings until ctx ends, then returns nil once the batch
// being appended, if any, is stored. Each tick appends the readings due
// since the last one as one batch. When the sink
// fails the readings are dropped, counted in Stats.Rejected and logged (at
// most 10 lines per 10 s), and generation goes on; a backlog of more than a
// second's worth (after a slow append) is skipped rather than burst. Run
// must not be called twice at once.
func (d *Demo) Run(ctx context.Context) error {
	tick := max(time.Duration(float64(time.Second)/d.rate), demoMinTick)
	t := time.NewTicker(tick)
	defer t.Stop()
	d.log.Info("demo input generating", "rate", d.rate)
	start := time.Now()
	var due, emitted uint64
	for {
		select {
		case <-ctx.Done():
			d.log.Info("demo input stopped", "generated", emitted)
			return nil
		case now := <-t.C:
			due = uint64(now.Sub(start).Seconds() * d.rate)
		}
		if backlog := due - emitted; backlog > uint64(math.Ceil(d.rate)) {
			emitted = due - uint64(math.Ceil(d.rate))
		}
		n := int(due - emitted)
		if n == 0 {
			continue
		}
		emitted = due
		payloads := make([][]byte, n)
		now := time.Now()
		for i := range payloads {
			b, err := d.reading(now).MarshalJSON()
			if err != nil {
				return fmt.Errorf("demo input: bug: generated reading does not marshal: %w", err)
			}
			payloads[i] = b
		}
		// Not ctx: a batch whose append has begun is finished and
		// counted, rather than left in doubt by a cancellation.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), appendTimeout)
		_, err := d.sink.Append(actx, payloads...)
		cancel()
		if err != nil {
			d.stats.reject(sinkReason(err), n)
			d.errLog.log(ctx, d.log, slog.LevelWarn, "demo readings dropped: the spool refused them", "readings", n, "err", err)
			continue
		}
		d.stats.accepted.Add(uint64(n))
	}
}

// drift moves *v by a random step of at most step, kept within [lo, hi],
// and returns the new value as a JSON number with the given decimals, the
// precision a real sensor of that kind reports.
func (d *Demo) drift(v *float64, step, lo, hi float64, decimals int) json.Number {
	*v = min(max(*v+(d.rng.Float64()*2-1)*step, lo), hi)
	return json.Number(strconv.FormatFloat(*v, 'f', decimals, 64))
}

// reading makes the next demo reading, cycling through demoSensors.
func (d *Demo) reading(now time.Time) reading.Reading {
	sensor := demoSensors[d.next%len(demoSensors)]
	d.next++
	r := reading.Reading{ID: reading.NewID(now), Sensor: sensor, TS: now, Tags: map[string]string{"source": "demo"}}
	switch sensor {
	case "demo-temp":
		r.Value, r.Unit = d.drift(&d.temp, 0.2, 15, 30, 1), "C"
	case "demo-humidity":
		r.Value, r.Unit = d.drift(&d.humidity, 0.5, 20, 80, 1), "%"
	case "demo-pressure":
		r.Value, r.Unit = d.drift(&d.pressure, 0.1, 980, 1040, 1), "hPa"
	case "demo-co2":
		r.Value, r.Unit = d.drift(&d.co2, 15, 400, 2000, 0), "ppm"
	case "demo-door":
		if d.rng.IntN(20) == 0 {
			d.door = !d.door
		}
		r.Value = d.door
	case "demo-gps":
		lat := d.drift(&d.lat, 0.00002, 52.50, 52.54, 6)
		lon := d.drift(&d.lon, 0.00002, 13.38, 13.42, 6)
		r.Value = map[string]any{"lat": lat, "lon": lon}
	case "demo-status":
		r.Value = "ok"
		if d.co2 > 1500 {
			r.Value = "ventilate"
		}
	}
	return r
}
