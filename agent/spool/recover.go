package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
)

// recover rebuilds the index from disk. It runs in Open, before the
// committer starts, so it owns every field.
func (s *Spool) recover() error {
	rep := RecoveryReport{Dir: s.opts.Dir}
	if err := os.Remove(s.path(ackLogTemp)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: remove stale %s: %w", s.path(ackLogTemp), err)
	}

	// Acks first: segment accounting needs to know what is acknowledged.
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

	// Removed segments stay removed across a crash only once the directory
	// is synced.
	if len(rep.Removed) > 0 && !s.opts.NoSync {
		if err := syncDir(s.opts.Dir); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	// A fresh snapshot makes the ack log small and free of damage, and
	// records the gone seqs found above.
	if err := s.writeAckSnapshot(s.floor, slices.Clone(s.acked.s)); err != nil {
		return fmt.Errorf("spool: %w", err)
	}

	rep.Pending, rep.PendingBytes, rep.NextSeq = s.pending, s.pendingBytes, s.nextSeq
	s.report = rep
	s.logRecovery(&rep)
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
	for i, fn := range names {
		g, removed, err := s.recoverSegment(fn.name, fn.first, i == len(names)-1, prevLast, rep, &maxSeen)
		if err != nil {
			return 0, err
		}
		if removed {
			rep.Removed = append(rep.Removed, fn.name)
		}
		if g == nil {
			continue
		}
		s.segs = append(s.segs, g)
		rep.Records += g.count
		prevLast = g.last()
		maxSeen = max(maxSeen, prevLast)
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
			"first_seq", d.FirstSeq, "last_seq", d.LastSeq)
	}
	s.log.Info("spool: opened", "segments", len(s.segs), "pending", s.pending,
		"pending_bytes", s.pendingBytes, "next_seq", s.nextSeq, "damaged_files", len(rep.Damage),
		"removed_segments", len(rep.Removed))
}

type segmentFile struct {
	name  string
	first uint64
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
			out = append(out, segmentFile{e.Name(), first})
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

// recoverSegment scans one segment, cuts or quarantines damage, and returns
// the segment with its offsets loaded, or nil (and removed = true) if no
// complete batch is left in it.
func (s *Spool) recoverSegment(name string, first uint64, last bool, prevLast uint64, rep *RecoveryReport, maxSeen *uint64) (*segment, bool, error) {
	path := s.path(name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, false, fmt.Errorf("spool: open segment %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	info, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("spool: stat segment %s: %w", path, err)
	}
	size := info.Size()

	sc, err := scanSegmentAfter(f, size, first, prevLast)
	if err != nil {
		return nil, false, fmt.Errorf("spool: scan segment %s: %w", path, err)
	}
	if sc.bad != nil {
		d, err := s.cutSegmentDamage(f, name, size, first, last, sc)
		if err != nil {
			return nil, false, err
		}
		if d.Kind == DamageCorrupt {
			// Never hand out again a sequence number that the quarantined
			// bytes hold: an operator may yet salvage them.
			*maxSeen = max(*maxSeen, d.LastSeq)
		}
		rep.Damage = append(rep.Damage, d)
		size = sc.bad.offset
	}

	if len(sc.offsets) == 0 {
		f.Close()
		ok = true
		if err := os.Remove(path); err != nil {
			return nil, false, fmt.Errorf("spool: remove empty segment %s: %w", path, err)
		}
		return nil, true, nil
	}
	ok = true
	return &segment{
		name:    name,
		path:    path,
		first:   first,
		count:   uint64(len(sc.offsets)),
		size:    size,
		written: size,
		offsets: sc.offsets,
		f:       f,
	}, false, nil
}

// scanSegmentAfter scans the segment whose name says it starts at first,
// following one that ends at prevLast. A segment that starts inside the
// previous one cannot be trusted: all of it is bad, and the previous
// segment's records win.
func scanSegmentAfter(f *os.File, size int64, first, prevLast uint64) (scanned, error) {
	if first > prevLast {
		return scanSegment(f, size, first)
	}
	if size == 0 {
		return scanned{}, nil
	}
	return scanned{bad: &badRegion{offset: 0, corrupt: true,
		reason: fmt.Sprintf("file name says it starts at sequence %d, inside the previous segment (which ends at %d)", first, prevLast)}}, nil
}

// cutSegmentDamage truncates segment f (size bytes, named name, first seq
// first) where sc found damage, and returns the Damage to report. Only a
// torn tail of the last segment is simply cut: anything else is copied to
// a quarantine file first and reported as DamageCorrupt.
func (s *Spool) cutSegmentDamage(f *os.File, name string, size int64, first uint64, last bool, sc scanned) (Damage, error) {
	b := sc.bad
	d := Damage{
		Kind:     DamageTornTail,
		File:     name,
		Offset:   b.offset,
		Bytes:    size - b.offset,
		Reason:   b.reason,
		FirstSeq: first + uint64(len(sc.offsets)),
	}
	if b.batchRecords > 0 {
		d.LastSeq = d.FirstSeq + uint64(b.batchRecords) - 1
	}
	d.LastSeq = max(d.LastSeq, b.maxSeqAfter)
	if !last || b.validAfter > 0 || b.corrupt {
		d.Kind = DamageCorrupt
		q, err := s.quarantine(f, name, b.offset, size)
		if err != nil {
			return Damage{}, err
		}
		d.Quarantine = q
	}
	path := s.path(name)
	if err := f.Truncate(b.offset); err != nil {
		return Damage{}, fmt.Errorf("spool: cut segment %s at offset %d: %w", path, b.offset, err)
	}
	if !s.opts.NoSync {
		if err := fdatasync(f); err != nil {
			return Damage{}, fmt.Errorf("spool: sync segment %s after cutting it: %w", path, err)
		}
	}
	return d, nil
}

// quarantine copies src's bytes from offset to size into a new file named
// after the damaged file and offset, syncs it, and returns its name.
func (s *Spool) quarantine(src *os.File, name string, offset, size int64) (string, error) {
	var qname string
	var f *os.File
	for i := 0; ; i++ {
		qname = fmt.Sprintf("%s.%d.corrupt", name, offset)
		if i > 0 {
			qname = fmt.Sprintf("%s.%d.%d.corrupt", name, offset, i)
		}
		var err error
		f, err = os.OpenFile(s.path(qname), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("spool: create quarantine file for %s: %w", name, err)
		}
	}
	if _, err := io.Copy(f, io.NewSectionReader(src, offset, size-offset)); err != nil {
		f.Close()
		return "", fmt.Errorf("spool: copy damaged bytes of %s from offset %d to %s: %w", name, offset, qname, err)
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

// readAckLog replays the ack log into floor and acked. Damage in it can only
// lose acknowledgements, which means records are delivered again, never
// lost; the log is rewritten as a snapshot at the end of recovery anyway.
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
	for i, p := range sc.payloads {
		spans, err := decodeSpans(p)
		if err != nil {
			after := len(sc.payloads) - i - 1
			if sc.bad != nil {
				after += sc.bad.validAfter
			}
			sc.bad = &badRegion{offset: sc.offsets[i], reason: err.Error(), validAfter: after, corrupt: true}
			break
		}
		s.floor = max(s.floor, sc.seqs[i])
		for _, sp := range spans {
			s.acked.add(sp.lo, sp.hi)
		}
		rep.AckRecords++
	}
	if b := sc.bad; b != nil {
		d := Damage{Kind: DamageTornTail, File: ackLogName, Offset: b.offset, Bytes: size - b.offset, Reason: b.reason}
		if b.validAfter > 0 || b.corrupt {
			d.Kind = DamageCorrupt
			q, err := s.quarantine(f, ackLogName, b.offset, size)
			if err != nil {
				return err
			}
			d.Quarantine = q
		}
		rep.Damage = append(rep.Damage, d)
	}
	return nil
}
