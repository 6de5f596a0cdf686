package spool

import (
	"bufio"
	"fmt"
	"io"
)

// scanned is what a scan of one file found.
type scanned struct {
	// offsets holds the start offset of every accepted record, in order.
	offsets []int64
	// seqs holds the sequence number of every accepted record (ack log scans
	// only; a segment's are first+index).
	seqs []uint64
	// payloads holds the payload of every accepted record (ack log scans only).
	payloads [][]byte
	// end is where the accepted records end; bytes from end on are damage.
	end int64
	// bad describes the damage, or is nil when the whole file is valid.
	bad *badRegion
}

// badRegion describes the bytes from offset to the end of a file that recovery
// must remove.
type badRegion struct {
	offset int64
	reason string
	// validAfter counts records with a valid checksum found after the first
	// bad byte. Zero means the damage looks like an interrupted write; more
	// means something corrupted bytes that were once complete.
	validAfter   int
	minSeqAfter  uint64
	maxSeqAfter  uint64
	batchRecords int // records cut only because their batch had no end record
	// corrupt is set when the first bad record has a valid checksum but does
	// not belong (wrong sequence number or kind): no torn write makes that.
	corrupt bool
}

// scanSegment reads a segment file of the given size and accepts records
// while they are valid, hold data, and carry the sequence numbers first,
// first+1, ... in order. A trailing batch without its end record is not
// accepted. It returns an error only when reading fails.
func scanSegment(r io.ReaderAt, size int64, first uint64) (scanned, error) {
	return scanFile(r, size, func(i int, h header) string {
		if !isDataKind(h.kind) {
			return fmt.Sprintf("record kind %d does not belong in a segment", h.kind)
		}
		if want := first + uint64(i); h.seq != want {
			return fmt.Sprintf("sequence %d where %d was expected", h.seq, want)
		}
		return ""
	}, true)
}

// scanAckLog reads an ack log and accepts its valid ack records in order.
func scanAckLog(r io.ReaderAt, size int64) (scanned, error) {
	return scanFile(r, size, func(_ int, h header) string {
		if h.kind != kindAcks {
			return fmt.Sprintf("record kind %d does not belong in the ack log", h.kind)
		}
		return ""
	}, false)
}

// scanFile is the shared scanner. check returns a non-empty reason to reject
// the i-th record although its checksum is valid. batches turns on the rule
// that a file must end with a batch end record.
func scanFile(r io.ReaderAt, size int64, check func(i int, h header) string, batches bool) (scanned, error) {
	var out scanned
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10)
	var hb [headerSize]byte
	var payload []byte
	var off int64
	batchStart := 0 // index of the first record of the batch in progress
	for off < size {
		reason := ""
		n, err := io.ReadFull(br, hb[:min(int64(headerSize), size-off)])
		if err != nil {
			return out, fmt.Errorf("read header at offset %d: %w", off, err)
		}
		h, rerr := parseHeader(hb[:n])
		switch {
		case rerr != nil:
			reason = rerr.reason
		case int64(h.length) > size-off-headerSize:
			reason = fmt.Sprintf("partial payload: %d of %d bytes", size-off-headerSize, h.length)
		}
		corrupt := false
		if reason == "" {
			if cap(payload) < int(h.length) {
				payload = make([]byte, h.length)
			}
			payload = payload[:h.length]
			if _, err := io.ReadFull(br, payload); err != nil {
				return out, fmt.Errorf("read payload at offset %d: %w", off+headerSize, err)
			}
			if verr := h.verify(hb[:], payload); verr != nil {
				reason = verr.reason
			} else {
				reason = check(len(out.offsets), h)
				corrupt = reason != ""
			}
		}
		if reason != "" {
			out.bad = &badRegion{offset: off, reason: reason, corrupt: corrupt}
			break
		}
		out.offsets = append(out.offsets, off)
		if !batches {
			out.seqs = append(out.seqs, h.seq)
			out.payloads = append(out.payloads, append([]byte(nil), payload...))
		}
		off += headerSize + int64(h.length)
		if h.kind == kindDataEnd {
			batchStart = len(out.offsets)
		}
	}
	out.end = off
	if batches && batchStart < len(out.offsets) {
		// Records of a batch whose end record never reached the disk: the
		// batch was not acknowledged to its appender, so it goes with the tail.
		cut := len(out.offsets) - batchStart
		reason := fmt.Sprintf("incomplete batch: %d record(s) without a batch end", cut)
		if out.bad != nil {
			reason += ", then " + out.bad.reason
		}
		corrupt := out.bad != nil && out.bad.corrupt
		out.bad = &badRegion{offset: out.offsets[batchStart], reason: reason, batchRecords: cut, corrupt: corrupt}
		out.offsets = out.offsets[:batchStart]
		out.end = out.bad.offset
	}
	if out.bad != nil {
		if err := findValidAfter(r, size, out.bad); err != nil {
			return out, err
		}
	}
	return out, nil
}

// findValidAfter searches the bytes after the first bad byte for records with
// a valid checksum, which tells an interrupted write (nothing valid follows)
// from corruption of once-complete data. It only runs on damaged files.
func findValidAfter(r io.ReaderAt, size int64, bad *badRegion) error {
	region := make([]byte, size-bad.offset)
	if _, err := r.ReadAt(region, bad.offset); err != nil && err != io.EOF {
		return fmt.Errorf("read damaged region at offset %d: %w", bad.offset, err)
	}
	// A region cut for an incomplete batch starts with that batch's valid
	// records; they are not evidence of later data, so the search starts
	// after them (and always after the first bad byte).
	pos := 0
	for i := 0; i < bad.batchRecords; i++ {
		_, _, n, derr := decodeRecord(region[pos:])
		if derr != nil {
			break
		}
		pos += n
	}
	if pos == 0 {
		pos = 1
	}
	for i := pos; i < len(region); {
		if region[i] != magic0 {
			i++
			continue
		}
		h, _, n, derr := decodeRecord(region[i:])
		if derr != nil {
			i++
			continue
		}
		if bad.validAfter == 0 || h.seq < bad.minSeqAfter {
			bad.minSeqAfter = h.seq
		}
		bad.maxSeqAfter = max(bad.maxSeqAfter, h.seq)
		bad.validAfter++
		i += n
	}
	return nil
}
