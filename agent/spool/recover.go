package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// recover rebuilds the index from disk. It runs in Open, before the
// committer starts, so it owns every field.
func (s *Spool) recover() error {
	rep := RecoveryReport{Dir: s.opts.Dir}
	if err := os.Remove(s.path(ackLogTemp)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: remove stale %s: %w", s.path(ackLogTemp), err)
	}
	if err := s.removeSalvageTemps(); err != nil {
		return err
	}

	// Acks first: segment accounting, and counting what damage lost, need
	// to know what is acknowledged.
	if err := s.readAckLog(&rep); err != nil {
		return err
	}
	maxSeen, err := s.recoverSegments(&rep)
	if err != nil {
		return err
	}
	s.markGoneSeqs(maxSeen)
	if err := s.dropAcknowledgedSegments(&rep); err != nil {
		return err
	}
	s.placeSegments()

	// Removed segments stay removed, and salvaged pieces stay, across a
	// crash only once the directory is synced.
	if len(rep.Removed)+len(rep.Pieces) > 0 && !s.opts.NoSync {
		if err := syncDir(s.opts.Dir); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	// A fresh snapshot makes the ack log small and free of damage, and
	// records the gone seqs found above.
	if err := s.writeAckSnapshot(s.floor, slices.Clone(s.acked.s)); err != nil {
		return fmt.Errorf("spool: %w", err)
	}

	for _, d := range rep.Damage {
		rep.Lost += d.Readings
		if d.ReadingsUnknown {
			rep.LostUnknown++
		}
	}
	rep.Pending, rep.PendingBytes, rep.NextSeq = s.pending, s.pendingBytes, s.nextSeq
	s.report = rep
	s.logRecovery(&rep)
	// The lost seqs are gone in the snapshot above, so a crash from here on
	// cannot count them again; it can only miss this count.
	if err := s.addDrops(Drops{Damaged: rep.Lost, DamagedUncounted: uint64(rep.LostUnknown)}); err != nil {
		s.log.Error("spool: could not keep the count of readings lost to damage", "err", err)
	}
	return nil
}

// salvageSuffix ends the temporary name of a segment file being salvaged.
const salvageSuffix = ".salvage"

// removeSalvageTemps removes the temporary files of a salvage that a crash
// interrupted; the salvage runs again from the damaged segment.
func (s *Spool) removeSalvageTemps() error {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("spool: list %s: %w", s.opts.Dir, err)
	}
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), salvageSuffix); ok {
			if _, seg := parseSegmentName(name); seg {
				if err := os.Remove(s.path(e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("spool: remove stale %s: %w", s.path(e.Name()), err)
				}
			}
		}
	}
	return nil
}

// recoverSegments recovers the segment files oldest first, appends those
// that still hold records to s.segs, and returns the highest seq ever
// written, including quarantined records.
func (s *Spool) recoverSegments(rep *RecoveryReport) (maxSeen uint64, err error) {
	names, err := s.segmentFiles()
	if err != nil {
		return 0, err
	}
	rep.Segments = len(names)
	var prevLast uint64
	// Pieces written by this recovery are listed already when an earlier
	// salvage of the same segment was interrupted: they were rewritten.
	written := map[string]bool{}
	for i, fn := range names {
		if written[fn.name] {
			continue
		}
		segs, removed, err := s.recoverSegment(fn, names[i+1:], prevLast, rep, &maxSeen)
		if err != nil {
			return 0, err
		}
		if removed {
			rep.Removed = append(rep.Removed, fn.name)
		}
		for _, g := range segs {
			if g.name != fn.name {
				written[g.name] = true
				rep.Pieces = append(rep.Pieces, g.name)
			}
			s.segs = append(s.segs, g)
			rep.Records += g.count
			prevLast = g.last()
			maxSeen = max(maxSeen, prevLast)
		}
	}
	return maxSeen, nil
}

// markGoneSeqs sets nextSeq past every seq ever handed out (maxSeen being
// the highest found on disk). Those in no segment were acknowledged,
// dropped, cut or quarantined: it marks them gone so that the floor can
// move past them.
func (s *Spool) markGoneSeqs(maxSeen uint64) {
	s.floor = s.acked.absorbFloor(s.floor)
	s.nextSeq = max(s.floor, s.acked.maxMember(), maxSeen) + 1
	prev := s.floor
	for _, g := range s.segs {
		if g.first > prev+1 {
			s.acked.add(prev+1, g.first-1)
		}
		prev = max(prev, g.last())
	}
	if s.nextSeq-1 > prev {
		s.acked.add(prev+1, s.nextSeq-1)
	}
	s.floor = s.acked.absorbFloor(s.floor)
	s.lastSeq = s.nextSeq - 1
}

// unackedIn counts the seqs in [lo, hi] that are neither at or below the
// floor nor acknowledged (recovery only: the spans may still reach below
// the floor).
func (s *Spool) unackedIn(lo, hi uint64) uint64 {
	lo = max(lo, s.floor+1)
	if lo > hi {
		return 0
	}
	n := hi - lo + 1
	for _, sp := range s.acked.s {
		if a, b := max(sp.lo, lo), min(sp.hi, hi); a <= b {
			n -= b - a + 1
		}
	}
	return n
}

// dropAcknowledgedSegments accounts acknowledged records per segment,
// deletes the segments that hold nothing else, and totals what the rest
// hold pending.
func (s *Spool) dropAcknowledgedSegments(rep *RecoveryReport) error {
	kept := s.segs[:0]
	for _, g := range s.segs {
		for i := uint64(0); i < g.count; i++ {
			if q := g.first + i; q <= s.floor || s.acked.contains(q) {
				g.ackedCount++
				g.ackedBytes += g.recordSize(i)
			}
		}
		if g.ackedCount == g.count {
			g.unload()
			if err := os.Remove(g.path); err != nil {
				return fmt.Errorf("spool: delete acknowledged segment %s: %w", g.path, err)
			}
			rep.Removed = append(rep.Removed, g.name)
			continue
		}
		kept = append(kept, g)
		s.diskBytes += g.size
		s.pending += g.count - g.ackedCount
		s.pendingBytes += g.size - g.ackedBytes
	}
	s.segs = kept
	return nil
}

// placeSegments chooses the active segment and the sealed segments that
// stay loaded. Appends continue in the newest segment when its records run
// up to nextSeq-1 and it has room; otherwise the next append starts a new
// one. Sealed segments past the first loadedCap give back their index.
func (s *Spool) placeSegments() {
	if n := len(s.segs); n > 0 {
		if g := s.segs[n-1]; g.last() == s.nextSeq-1 && g.size < s.opts.SegmentBytes {
			s.active = g
		}
	}
	for _, g := range s.segs {
		if g == s.active {
			continue
		}
		if len(s.loaded) < loadedCap {
			s.loaded = append(s.loaded, g)
		} else {
			g.unload()
		}
	}
}

// logRecovery logs every repair recovery made and what Open found.
func (s *Spool) logRecovery(rep *RecoveryReport) {
	for _, d := range rep.Damage {
		s.log.Warn("spool: recovery removed damaged bytes", "kind", d.Kind.String(), "file", d.File,
			"offset", d.Offset, "bytes", d.Bytes, "reason", d.Reason, "quarantine", d.Quarantine,
			"first_seq", d.FirstSeq, "last_seq", d.LastSeq, "readings_lost", d.Readings, "readings_unknown", d.ReadingsUnknown)
	}
	if rep.Lost > 0 || rep.LostUnknown > 0 {
		s.log.Warn("spool: dropped readings", "cause", string(CauseDamaged), "readings", rep.Lost,
			"uncounted_regions", rep.LostUnknown, "salvaged", rep.Salvaged)
	}
	s.log.Info("spool: opened", "segments", len(s.segs), "pending", s.pending,
		"pending_bytes", s.pendingBytes, "next_seq", s.nextSeq, "damaged_regions", len(rep.Damage),
		"salvaged", rep.Salvaged, "removed_segments", len(rep.Removed))
}

type segmentFile struct {
	name  string
	first uint64
	size  int64
}

// segmentFiles lists the segment files in the directory, oldest first.
func (s *Spool) segmentFiles() ([]segmentFile, error) {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", s.opts.Dir, err)
	}
	var out []segmentFile
	for _, e := range entries {
		if first, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			info, err := e.Info()
			if err != nil {
				return nil, fmt.Errorf("spool: stat %s: %w", s.path(e.Name()), err)
			}
			out = append(out, segmentFile{e.Name(), first, info.Size()})
		}
	}
	slices.SortFunc(out, func(a, b segmentFile) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	return out, nil
}

// recoverSegment scans one segment and repairs its damage: every damaged
// region goes aside, every valid record stays. later lists the segment
// files after it and prevLast is the last seq of the segments before it. It
// returns the segments now holding its records, loaded and open (the file
// itself, and a file per run of records salvaged after damage), and whether
// the file itself was removed.
func (s *Spool) recoverSegment(fn segmentFile, later []segmentFile, prevLast uint64, rep *RecoveryReport, maxSeen *uint64) ([]*segment, bool, error) {
	path := s.path(fn.name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, false, fmt.Errorf("spool: open segment %s: %w", path, err)
	}
	keepOpen := false
	defer func() {
		if !keepOpen {
			f.Close()
		}
	}()
	info, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("spool: stat segment %s: %w", path, err)
	}
	size := info.Size()

	var sc segScan
	overlap := fn.first <= prevLast
	if overlap {
		// A segment that starts inside the previous one cannot be trusted:
		// all of it is bad, and the previous segment's records win.
		if size > 0 {
			sc.bad = []region{{start: 0, end: size, corrupt: true,
				reason: fmt.Sprintf("file name says it starts at sequence %d, inside the previous segment (which ends at %d)", fn.first, prevLast)}}
		}
	} else if sc, err = scanSegment(f, size, fn.first); err != nil {
		return nil, false, fmt.Errorf("spool: scan segment %s: %w", path, err)
	}
	next := nextSegmentFirst(later, max(sc.lastKept(fn.first), fn.first))
	if next == 0 && !overlap {
		// Only the newest segment can hold a write interrupted by a crash.
		sc.cutIncompleteBatch(size)
	}
	if next != 0 && !overlap && !s.ackLogCorrupt && (len(sc.bad) == 0 || sc.bad[len(sc.bad)-1].end < size) {
		// An older segment holds every seq up to the next one's first, but
		// for acknowledged ones: any other missing seq was lost with bytes
		// cut from the end of this file.
		if from := sc.lastKept(fn.first) + 1; s.unackedIn(from, next-1) > 0 {
			sc.bad = append(sc.bad, region{start: size, end: size, corrupt: true,
				reason: fmt.Sprintf("records %d to %d are missing: the file ends at offset %d and the next segment starts at %d", from, next-1, size, next)})
		}
	}
	if len(sc.bad) == 0 {
		if len(sc.runs) == 0 {
			if err := os.Remove(path); err != nil {
				return nil, false, fmt.Errorf("spool: remove empty segment %s: %w", path, err)
			}
			return nil, true, nil
		}
		keepOpen = true
		r := sc.runs[0]
		return []*segment{{name: fn.name, path: path, first: r.first, count: uint64(len(r.offsets)),
			size: size, written: size, offsets: r.offsets, f: f}}, false, nil
	}

	ds, err := s.describeDamage(f, fn, size, sc, next, overlap, prevLast)
	if err != nil {
		return nil, false, err
	}
	for _, d := range ds {
		if d.Kind == DamageCorrupt {
			// Never hand out again a sequence number that the quarantined
			// bytes hold: an operator may yet salvage them.
			*maxSeen = max(*maxSeen, d.LastSeq)
		}
	}
	keepOpen = true // salvage takes f over
	segs, removed, err := s.salvage(f, fn, sc, ds)
	rep.Damage = append(rep.Damage, ds...)
	if err != nil {
		return nil, false, err
	}
	for _, r := range sc.runs {
		if r.offsets[0] > 0 {
			rep.Salvaged += uint64(len(r.offsets))
		}
	}
	return segs, removed, nil
}

// lastKept returns the last seq kept by the scan of a segment named after
// first, or first-1 if it kept none.
func (sc *segScan) lastKept(first uint64) uint64 {
	if n := len(sc.runs); n > 0 {
		return sc.runs[n-1].last()
	}
	return first - 1
}

// nextSegmentFirst returns the first seq of the first of later (sorted)
// that starts above last and is not empty, or 0 if there is none: the
// segment is then the newest. Files named at or below last are pieces of
// this segment left by an interrupted salvage, rewritten when it runs
// again; an empty file was created by a process that died before writing
// to it, and proves nothing.
func nextSegmentFirst(later []segmentFile, last uint64) uint64 {
	for _, l := range later {
		if l.first > last && l.size > 0 {
			return l.first
		}
	}
	return 0
}

// describeDamage returns the Damage for each region of sc, with the
// readings each lost: by sequence number where kept records or the next
// segment (first seq next, 0 if none) bound it, else by the headers still
// readable in it.
func (s *Spool) describeDamage(f *os.File, fn segmentFile, size int64, sc segScan, next uint64, overlap bool, prevLast uint64) ([]Damage, error) {
	var out []Damage
	ri := 0 // sc.runs[:ri] end before the region
	for _, b := range sc.bad {
		for ri < len(sc.runs) && sc.runs[ri].end <= b.start {
			ri++
		}
		lo := fn.first
		if ri > 0 {
			lo = sc.runs[ri-1].last() + 1
		}
		d := Damage{Kind: DamageCorrupt, File: fn.name, Offset: b.start, Bytes: b.end - b.start, Reason: b.reason, FirstSeq: lo}
		hi, bounded := uint64(0), true
		switch {
		case ri < len(sc.runs):
			hi = sc.runs[ri].first - 1
		case next != 0:
			hi = next - 1
		default:
			bounded = false
		}
		switch {
		case overlap:
			n, err := s.overlapReadings(f, size, fn.first, prevLast)
			if err != nil {
				return nil, err
			}
			d.Readings = n
		case bounded:
			d.Readings = s.unackedIn(lo, hi)
			if hi >= lo {
				d.LastSeq = hi
			}
		default:
			if !b.corrupt {
				d.Kind = DamageTornTail
			}
			n, unknown, err := countHeaders(f, size, b.start, b.end, lo)
			if err != nil {
				return nil, fmt.Errorf("spool: read damaged segment %s: %w", s.path(fn.name), err)
			}
			if n > 0 {
				d.LastSeq = lo + n - 1
				d.Readings = s.unackedIn(lo, d.LastSeq)
			}
			d.ReadingsUnknown = unknown
		}
		d.LastSeq = max(d.LastSeq, b.maxSeq)
		out = append(out, d)
	}
	return out, nil
}

// overlapReadings counts the unacknowledged records, past the previous
// segment's last seq, that a segment whose name overlaps it holds.
func (s *Spool) overlapReadings(f *os.File, size int64, first, prevLast uint64) (uint64, error) {
	sc, err := scanSegment(f, size, first)
	if err != nil {
		return 0, fmt.Errorf("spool: scan segment %s: %w", f.Name(), err)
	}
	var n uint64
	for _, r := range sc.runs {
		n += s.unackedIn(max(r.first, prevLast+1), r.last())
	}
	return n, nil
}

// salvage puts segment f's damaged regions aside and leaves its kept runs
// on disk as segment files, in an order that a crash at any point leaves
// either the file as it was (with pieces that the next salvage rewrites)
// or the finished result:
//
//  1. each region's bytes are copied to <file>.<offset>.corrupt (or .torn);
//  2. each run that cannot stay in place in the file (a run after damage,
//     or one whose batch end was in the damage) is written to a temporary
//     file, synced, and renamed to the segment name of its first seq; the
//     directory is synced;
//  3. the file itself is cut after its first run, or replaced by that run
//     rewritten, or removed when no run starts at its beginning.
//
// It takes f over and returns the segments holding the kept records.
func (s *Spool) salvage(f *os.File, fn segmentFile, sc segScan, ds []Damage) (segs []*segment, removed bool, err error) {
	path := s.path(fn.name)
	defer func() {
		if err != nil {
			f.Close()
			for _, g := range segs {
				g.unload()
			}
			segs = nil
		}
	}()
	for i, b := range sc.bad {
		suffix := "corrupt"
		if ds[i].Kind == DamageTornTail {
			suffix = "torn"
		}
		if ds[i].Quarantine, err = s.keepAside(f, fn.name, b.start, b.end, suffix); err != nil {
			return nil, false, err
		}
		if err = s.opts.fault(hookSalvageKept); err != nil {
			return nil, false, err
		}
	}
	runs := sc.runs
	inPlace := len(runs) > 0 && runs[0].offsets[0] == 0 && runs[0].batchEnd == len(runs[0].offsets)
	var replace *run // the first run, rewritten over the file itself
	if len(runs) > 0 && runs[0].first == fn.first && !inPlace {
		replace = &runs[0]
	}
	for k := range runs {
		if k == 0 && (inPlace || replace != nil) {
			continue
		}
		g, err := s.writePiece(f, runs[k])
		if err != nil {
			return segs, false, err
		}
		segs = append(segs, g)
	}
	if len(segs) > 0 && !s.opts.NoSync {
		if err = syncDir(s.opts.Dir); err != nil {
			return segs, false, fmt.Errorf("spool: %w", err)
		}
	}

	switch {
	case inPlace:
		r := runs[0]
		if err = f.Truncate(r.end); err != nil {
			return segs, false, fmt.Errorf("spool: cut segment %s at offset %d: %w", path, r.end, err)
		}
		if !s.opts.NoSync {
			if err = fdatasync(f); err != nil {
				return segs, false, fmt.Errorf("spool: sync segment %s after cutting it: %w", path, err)
			}
		}
		g := &segment{name: fn.name, path: path, first: r.first, count: uint64(len(r.offsets)),
			size: r.end, written: r.end, offsets: r.offsets, f: f}
		segs = append([]*segment{g}, segs...)
	case replace != nil:
		g, err := s.writePiece(f, *replace)
		if err != nil {
			return segs, false, err
		}
		f.Close()
		segs = append([]*segment{g}, segs...)
	default:
		f.Close()
		if err = os.Remove(path); err != nil {
			return segs, false, fmt.Errorf("spool: remove damaged segment %s: %w", path, err)
		}
		removed = true
	}
	if err = s.opts.fault(hookSalvageCut); err != nil {
		return segs, removed, err
	}
	if !s.opts.NoSync {
		if err = syncDir(s.opts.Dir); err != nil {
			return segs, removed, fmt.Errorf("spool: %w", err)
		}
	}
	return segs, removed, nil
}

// writePiece writes run r of segment file src to a segment file of its own,
// named after its first seq: to a temporary file, synced, then renamed over
// any file of that name. If r's last record does not end a batch (its
// batch's end record was in the damage), it is written as a batch end, so
// that a later recovery does not take the run for an interrupted write.
func (s *Spool) writePiece(src *os.File, r run) (*segment, error) {
	name := segmentName(r.first)
	path := s.path(name)
	tmp := path + salvageSuffix
	start, last := r.offsets[0], r.offsets[len(r.offsets)-1]
	fix := r.batchEnd < len(r.offsets)
	copyEnd := r.end
	if fix {
		copyEnd = last
	}
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool: create salvage file %s: %w", tmp, err)
	}
	buf := make([]byte, 1<<20)
	_, err = copyRange(out, src, start, copyEnd, buf)
	if err == nil && fix {
		rec := make([]byte, r.end-last)
		if _, err = src.ReadAt(rec, last); err == nil {
			h, p, _, derr := decodeRecord(rec)
			if derr != nil {
				err = fmt.Errorf("record %d at offset %d changed during recovery: %s", r.last(), last, derr.reason)
			} else {
				_, err = out.Write(appendRecord(nil, kindDataEnd, h.seq, p))
			}
		}
	}
	if err == nil && !s.opts.NoSync {
		err = fdatasync(out)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("spool: write salvaged records %d..%d of %s to %s: %w", r.first, r.last(), src.Name(), name, err)
	}
	if err := s.opts.fault(hookSalvagePiece); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("spool: open salvaged segment %s: %w", path, err)
	}
	offsets := make([]int64, len(r.offsets))
	for i, o := range r.offsets {
		offsets[i] = o - start
	}
	return &segment{name: name, path: path, first: r.first, count: uint64(len(r.offsets)),
		size: r.end - start, written: r.end - start, offsets: offsets, f: f}, nil
}

// copyRange copies src's bytes [from, to) to dst through buf.
func copyRange(dst *os.File, src *os.File, from, to int64, buf []byte) (int64, error) {
	var n int64
	for off := from; off < to; {
		b := buf[:min(int64(len(buf)), to-off)]
		if _, err := src.ReadAt(b, off); err != nil {
			return n, fmt.Errorf("read %s at offset %d: %w", src.Name(), off, err)
		}
		if _, err := dst.Write(b); err != nil {
			return n, err
		}
		off += int64(len(b))
		n += int64(len(b))
	}
	return n, nil
}

// keepAside copies src's bytes [start, end) into a new file named after the
// damaged file, the offset and suffix ("corrupt" or "torn"), syncs it, and
// returns its name. Nothing is written for an empty range or one of zeros,
// which hold nothing to keep (""). A file of that name holding the same
// bytes, left by an interrupted recovery, is reused.
func (s *Spool) keepAside(src *os.File, name string, start, end int64, suffix string) (string, error) {
	if end <= start {
		return "", nil
	}
	buf := make([]byte, 1<<20)
	zero := true
	for off := start; off < end && zero; {
		b := buf[:min(int64(len(buf)), end-off)]
		if _, err := src.ReadAt(b, off); err != nil {
			return "", fmt.Errorf("spool: read damaged bytes of %s at offset %d: %w", name, off, err)
		}
		zero = allZero(b)
		off += int64(len(b))
	}
	if zero {
		return "", nil
	}
	for i := 0; ; i++ {
		qname := fmt.Sprintf("%s.%d.%s", name, start, suffix)
		if i > 0 {
			qname = fmt.Sprintf("%s.%d.%d.%s", name, start, i, suffix)
		}
		f, err := os.OpenFile(s.path(qname), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, fs.ErrExist) {
			same, err := sameBytes(s.path(qname), src, start, end, buf)
			if err != nil {
				return "", err
			}
			if same {
				return qname, nil
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("spool: create quarantine file for %s: %w", name, err)
		}
		if _, err := copyRange(f, src, start, end, buf); err != nil {
			f.Close()
			return "", fmt.Errorf("spool: copy damaged bytes of %s from offset %d to %s: %w", name, start, qname, err)
		}
		if !s.opts.NoSync {
			if err := fdatasync(f); err != nil {
				f.Close()
				return "", fmt.Errorf("spool: sync quarantine file %s: %w", qname, err)
			}
		}
		if err := f.Close(); err != nil {
			return "", fmt.Errorf("spool: close quarantine file %s: %w", qname, err)
		}
		if !s.opts.NoSync {
			if err := syncDir(s.opts.Dir); err != nil {
				return "", fmt.Errorf("spool: %w", err)
			}
		}
		return qname, nil
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// sameBytes reports whether the file at path holds exactly src's bytes
// [start, end).
func sameBytes(path string, src *os.File, start, end int64, buf []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("spool: open %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || info.Size() != end-start {
		return false, err
	}
	half := len(buf) / 2
	a, b := buf[:half], buf[half:]
	for off := start; off < end; {
		n := min(int64(half), end-off)
		if _, err := src.ReadAt(a[:n], off); err != nil {
			return false, fmt.Errorf("spool: read %s at offset %d: %w", src.Name(), off, err)
		}
		if _, err := f.ReadAt(b[:n], off-start); err != nil {
			return false, fmt.Errorf("spool: read %s: %w", path, err)
		}
		if string(a[:n]) != string(b[:n]) {
			return false, nil
		}
		off += n
	}
	return true, nil
}

// readAckLog replays the ack log into floor and acked, keeping every ack
// record that verifies, before and after damage. Damage in it can only lose
// acknowledgements, which means records are delivered again, never lost;
// the log is rewritten as a snapshot at the end of recovery anyway, so a
// torn tail (acks never reported durable) is not kept aside.
func (s *Spool) readAckLog(rep *RecoveryReport) error {
	path := s.path(ackLogName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spool: open ack log %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("spool: stat ack log %s: %w", path, err)
	}
	size := info.Size()
	sc, err := scanAckLog(f, size)
	if err != nil {
		return fmt.Errorf("spool: scan ack log %s: %w", path, err)
	}
	for i := range sc.offsets {
		s.floor = max(s.floor, sc.floors[i])
		for _, sp := range sc.spans[i] {
			s.acked.add(sp.lo, sp.hi)
		}
		rep.AckRecords++
	}
	for _, b := range sc.bad {
		d := Damage{Kind: DamageTornTail, File: ackLogName, Offset: b.start, Bytes: b.end - b.start, Reason: b.reason}
		if b.end < size || b.corrupt {
			d.Kind = DamageCorrupt
			s.ackLogCorrupt = true
			if d.Quarantine, err = s.keepAside(f, ackLogName, b.start, b.end, "corrupt"); err != nil {
				return err
			}
		}
		rep.Damage = append(rep.Damage, d)
	}
	return nil
}
