package spool

import (
	"bytes"
	"fmt"
	"io"
)

// Records are self-delimiting: a magic, a length and a checksum over the
// header and the payload. The scanner walks a file record by record while
// they verify; at one that does not, it searches the following bytes for the
// next record that does and goes on from there. What lies between two kept
// records (or before the first, or after the last) is a damaged region.

// region is a damaged byte range [start, end) of a file: bytes that are not
// kept records.
type region struct {
	start, end int64
	// reason says what was wrong at start.
	reason string
	// corrupt is set when the region holds a whole record with a valid
	// checksum that does not belong where it is (wrong kind, sequence
	// number, or a sequence jump the damaged bytes cannot explain): no
	// interrupted write makes one.
	corrupt bool
	// maxSeq is the highest sequence number among such records, 0 if none.
	maxSeq uint64
}

// run is a stretch of kept records with consecutive sequence numbers and no
// damage between them.
type run struct {
	first   uint64  // sequence number of the first record
	offsets []int64 // file offset of record first+i
	end     int64   // offset just past the last record
	// batchEnd is the number of leading records that end with a batch end
	// record; the records after it are a batch whose end is not in the run.
	batchEnd int
}

func (r *run) last() uint64 { return r.first + uint64(len(r.offsets)) - 1 }

// segScan is what a scan of a segment file found: kept runs and damaged
// regions, both in file order; together they cover the whole file.
type segScan struct {
	runs []run
	bad  []region
}

// ackScan is what a scan of the ack log found: the kept ack records and the
// damaged regions.
type ackScan struct {
	offsets []int64
	floors  []uint64
	spans   [][]span
	bad     []region
}

// window reads a file through a buffer, so that the scanner decodes records
// from memory: a sequential scan reads the file in large chunks, and the
// search for the next record after damage re-reads only when it leaves the
// buffer.
type window struct {
	r    io.ReaderAt
	size int64
	buf  []byte
	off  int64 // file offset of buf[0]
}

const windowBytes = 1 << 20

// at returns the file's bytes [off, off+n), cut at the end of the file. The
// slice is valid until the next call.
func (w *window) at(off int64, n int) ([]byte, error) {
	end := min(off+int64(n), w.size)
	if off >= end {
		return nil, nil
	}
	if off >= w.off && end <= w.off+int64(len(w.buf)) {
		return w.buf[off-w.off : end-w.off], nil
	}
	want := min(max(int64(n), windowBytes), w.size-off)
	if int64(cap(w.buf)) < want {
		w.buf = make([]byte, want)
	}
	w.buf = w.buf[:want]
	got, err := w.r.ReadAt(w.buf, off)
	if int64(got) < want {
		w.buf = w.buf[:0]
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %d bytes at offset %d: %w", want, off, err)
	}
	w.off = off
	return w.buf[:end-off], nil
}

// record decodes the record at off. rerr says why the bytes there are not a
// valid record (h is set when at least its header parsed); err is a read
// failure. The payload aliases the window.
func (w *window) record(off int64) (h header, p []byte, n int64, rerr *recordError, err error) {
	hb, err := w.at(off, headerSize)
	if err != nil {
		return header{}, nil, 0, nil, err
	}
	if h, rerr = parseHeader(hb); rerr != nil {
		return header{}, nil, 0, rerr, nil
	}
	n = headerSize + int64(h.length)
	if n > w.size-off {
		return h, nil, n, &recordError{
			reason:     fmt.Sprintf("partial payload: %d of %d bytes", w.size-off-headerSize, h.length),
			incomplete: true,
		}, nil
	}
	b, err := w.at(off, int(n))
	if err != nil {
		return header{}, nil, 0, nil, err
	}
	return h, b[headerSize:], n, h.verify(b, b[headerSize:]), nil
}

// nextMagic returns the offset of the first byte at or after from, before
// limit, that could start a record, or limit.
func (w *window) nextMagic(from, limit int64) (int64, error) {
	for from < limit {
		b, err := w.at(from, int(min(limit-from, windowBytes)))
		if err != nil {
			return 0, err
		}
		if i := bytes.IndexByte(b, magic0); i >= 0 {
			return from + int64(i), nil
		}
		from += int64(len(b))
	}
	return limit, nil
}

// scanRecords walks a file of the given size from offset 0. Every record
// that verifies goes to check, which returns "" to keep it (keep is then
// called; p aliases a buffer) or why it does not belong there. damaged is
// -1 while the scan runs through kept records, and otherwise how many bytes
// lie between the last kept record (or the file's start) and this one.
// Everything not kept is returned as damaged regions. A record that verifies
// but does not belong is skipped whole; after any other bad byte the scan
// resynchronises on the next byte that could start a record.
func scanRecords(r io.ReaderAt, size int64, check func(h header, p []byte, damaged int64) string, keep func(off, n int64, h header, p []byte)) ([]region, error) {
	w := &window{r: r, size: size}
	var out []region
	var cur *region
	for off := int64(0); off < size; {
		h, p, n, rerr, err := w.record(off)
		if err != nil {
			return nil, err
		}
		var reason string
		if rerr == nil {
			damaged := int64(-1)
			if cur != nil {
				damaged = off - cur.start
			}
			if reason = check(h, p, damaged); reason == "" {
				if cur != nil {
					cur.end = off
					out = append(out, *cur)
					cur = nil
				}
				keep(off, n, h, p)
				off += n
				continue
			}
		} else {
			reason = rerr.reason
		}
		if cur == nil {
			cur = &region{start: off, reason: reason}
		}
		if rerr == nil {
			cur.corrupt = true
			cur.maxSeq = max(cur.maxSeq, h.seq)
			off += n
			continue
		}
		if off, err = w.nextMagic(off+1, size); err != nil {
			return nil, err
		}
	}
	if cur != nil {
		cur.end = size
		out = append(out, *cur)
	}
	return out, nil
}

// scanSegment scans a segment file whose name says it starts at first. It
// keeps every record that verifies, holds data and carries the sequence
// number that follows the last kept one; after damage, a record is kept if
// its sequence number is above the last kept one by no more than the
// damaged bytes could have held (one record per header size). It returns an
// error only when reading fails. It does not apply the batch rule: see
// cutIncompleteBatch.
func scanSegment(r io.ReaderAt, size int64, first uint64) (segScan, error) {
	var sc segScan
	last := first - 1 // the last kept sequence number
	check := func(h header, _ []byte, damaged int64) string {
		if !isDataKind(h.kind) {
			return fmt.Sprintf("record kind %d does not belong in a segment", h.kind)
		}
		if damaged < 0 {
			if h.seq != last+1 {
				return fmt.Sprintf("sequence %d where %d was expected", h.seq, last+1)
			}
			return ""
		}
		if h.seq <= last || h.seq-last-1 > uint64(damaged/headerSize) {
			return fmt.Sprintf("sequence %d cannot follow %d across %d damaged bytes", h.seq, last, damaged)
		}
		return ""
	}
	keep := func(off, n int64, h header, _ []byte) {
		if k := len(sc.runs); k == 0 || sc.runs[k-1].end != off {
			sc.runs = append(sc.runs, run{first: h.seq})
		}
		r := &sc.runs[len(sc.runs)-1]
		r.offsets = append(r.offsets, off)
		r.end = off + n
		if h.kind == kindDataEnd {
			r.batchEnd = len(r.offsets)
		}
		last = h.seq
	}
	bad, err := scanRecords(r, size, check, keep)
	sc.bad = bad
	return sc, err
}

// cutIncompleteBatch applies the batch rule to the newest segment: records
// after the last batch end record in the file (whatever damage lies among
// them) belong to a batch whose end never reached the disk. It was never
// reported durable, so they leave with the damage after them (a write
// interrupted by a crash). Damaged regions the cut leaves at the end of the
// file merge with it.
func (sc *segScan) cutIncompleteBatch(size int64) {
	for len(sc.runs) > 0 {
		r := &sc.runs[len(sc.runs)-1]
		if r.batchEnd == len(r.offsets) {
			return
		}
		cut := len(r.offsets) - r.batchEnd
		tail := region{start: r.offsets[r.batchEnd], end: size,
			reason: fmt.Sprintf("incomplete batch: %d record(s) without a batch end", cut)}
		if n := len(sc.bad); n > 0 && sc.bad[n-1].start >= r.end {
			after := sc.bad[n-1]
			tail.reason += ", then " + after.reason
			tail.corrupt, tail.maxSeq = after.corrupt, after.maxSeq
			sc.bad = sc.bad[:n-1]
		}
		r.offsets, r.end = r.offsets[:r.batchEnd], tail.start
		if len(r.offsets) == 0 {
			sc.runs = sc.runs[:len(sc.runs)-1]
		}
		if n := len(sc.bad); n > 0 && sc.bad[n-1].end == tail.start {
			before := sc.bad[n-1]
			tail.start, tail.reason = before.start, before.reason+", then "+tail.reason
			tail.corrupt, tail.maxSeq = tail.corrupt || before.corrupt, max(tail.maxSeq, before.maxSeq)
			sc.bad = sc.bad[:n-1]
		}
		sc.bad = append(sc.bad, tail)
	}
}

// countHeaders counts the records whose headers can still be read in the
// bytes [start, end) of a segment, expecting sequence number expect first:
// a header counts when it parses and carries the next sequence number, or,
// after unreadable bytes, a higher one that the skipped bytes could have
// been the records before (those count too). It returns the count and
// whether more records may have been there, so that the count is only a
// lower bound: when the region ends in bytes no header accounts for, or
// when the last header counted is not a batch end (at least the batch's
// end record is gone unseen).
func countHeaders(r io.ReaderAt, size, start, end int64, expect uint64) (n uint64, unknown bool, err error) {
	w := &window{r: r, size: size}
	gapStart := int64(-1)
	var lastKind byte
	for pos := start; pos < end; {
		hb, err := w.at(pos, int(min(headerSize, end-pos)))
		if err != nil {
			return 0, false, err
		}
		h, rerr := parseHeader(hb)
		ok := rerr == nil && isDataKind(h.kind)
		if ok && gapStart < 0 {
			ok = h.seq == expect
		} else if ok {
			ok = h.seq >= expect && h.seq-expect <= uint64((pos-gapStart)/headerSize)
		}
		if ok {
			n += h.seq - expect + 1
			expect = h.seq + 1
			gapStart = -1
			lastKind = h.kind
			pos += headerSize + int64(h.length)
			continue
		}
		if gapStart < 0 {
			gapStart = pos
		}
		if pos, err = w.nextMagic(pos+1, end); err != nil {
			return 0, false, err
		}
	}
	return n, gapStart >= 0 || (n > 0 && lastKind != kindDataEnd), nil
}

// scanAckLog scans the ack log, keeping every ack record that verifies and
// whose spans decode, before and after damage.
func scanAckLog(r io.ReaderAt, size int64) (ackScan, error) {
	var sc ackScan
	var spans []span
	check := func(h header, p []byte, _ int64) string {
		if h.kind != kindAcks {
			return fmt.Sprintf("record kind %d does not belong in the ack log", h.kind)
		}
		var err error
		if spans, err = decodeSpans(p); err != nil {
			return err.Error()
		}
		return ""
	}
	keep := func(off, _ int64, h header, _ []byte) {
		sc.offsets = append(sc.offsets, off)
		sc.floors = append(sc.floors, h.seq)
		sc.spans = append(sc.spans, spans)
	}
	bad, err := scanRecords(r, size, check, keep)
	sc.bad = bad
	return sc, err
}
