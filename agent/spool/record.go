package spool

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The record frame shared by segment files and the ack log:
//
//	offset size field
//	0      2    magic 0xCE 0x5A
//	2      1    format version (1)
//	3      1    kind (kindData, kindDataEnd, kindAcks)
//	4      4    payload length, little endian
//	8      8    sequence number, little endian
//	16     4    CRC-32C (Castagnoli) over bytes 0..15 and the payload
//	20     n    payload
//
// The checksum covers the length and the sequence number as well as the
// payload, so a flipped length can never make a shorter or longer payload
// look valid.
const (
	headerSize    = 20
	magic0        = 0xCE
	magic1        = 0x5A
	formatVersion = 1

	// kindData is a record of an Append batch that has more records after it.
	kindData = 1
	// kindDataEnd is the last record of an Append batch. Recovery keeps a batch
	// only when its end record made it to disk, which is what makes Append
	// all-or-nothing across a crash.
	kindDataEnd = 2
	// kindAcks is an ack-log record: its sequence field is the ack floor and
	// its payload the acknowledged spans above it (see encodeSpans).
	kindAcks = 3

	// maxRecordLimit caps the payload length the decoder believes. It is
	// deliberately independent of Options.MaxRecordBytes so that lowering the
	// option between runs never turns old, valid records into damage.
	maxRecordLimit = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is a decoded record header.
type header struct {
	kind   byte
	length uint32
	seq    uint64
	crc    uint32
}

// recordError says why bytes do not hold a valid record. Incomplete is true
// when the bytes simply end too early, which is what a torn write looks like.
type recordError struct {
	reason     string
	incomplete bool
}

func (e *recordError) Error() string { return e.reason }

func badRecord(format string, args ...any) *recordError {
	return &recordError{reason: fmt.Sprintf(format, args...)}
}

// appendRecord appends one framed record to dst and returns the extended slice.
func appendRecord(dst []byte, kind byte, seq uint64, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, magic0, magic1, formatVersion, kind, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	h := dst[start:]
	binary.LittleEndian.PutUint32(h[4:8], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:16], seq)
	crc := crc32.Update(0, castagnoli, h[:16])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(h[16:20], crc)
	return append(dst, payload...)
}

// parseHeader checks the fixed part of a header. It does not verify the
// checksum, which needs the payload.
func parseHeader(b []byte) (header, *recordError) {
	if len(b) < headerSize {
		return header{}, &recordError{
			reason:     fmt.Sprintf("partial header: %d of %d bytes", len(b), headerSize),
			incomplete: true,
		}
	}
	if b[0] != magic0 || b[1] != magic1 {
		return header{}, badRecord("bad magic %#02x%02x", b[0], b[1])
	}
	if b[2] != formatVersion {
		return header{}, badRecord("unsupported format version %d", b[2])
	}
	h := header{
		kind:   b[3],
		length: binary.LittleEndian.Uint32(b[4:8]),
		seq:    binary.LittleEndian.Uint64(b[8:16]),
		crc:    binary.LittleEndian.Uint32(b[16:20]),
	}
	if h.kind != kindData && h.kind != kindDataEnd && h.kind != kindAcks {
		return header{}, badRecord("unknown record kind %d", h.kind)
	}
	if h.length > maxRecordLimit {
		return header{}, badRecord("length %d exceeds the %d-byte record limit", h.length, maxRecordLimit)
	}
	return h, nil
}

// verify checks the checksum of a record whose header bytes are hb and whose
// payload is p.
func (h header) verify(hb, p []byte) *recordError {
	crc := crc32.Update(0, castagnoli, hb[:16])
	crc = crc32.Update(crc, castagnoli, p)
	if crc != h.crc {
		return badRecord("checksum mismatch: stored %#08x, computed %#08x", h.crc, crc)
	}
	return nil
}

// decodeRecord decodes the record at the start of b. On success it returns
// the header, the payload (aliasing b) and the record's total size. It never
// reads past len(b) and never returns a record whose checksum fails.
func decodeRecord(b []byte) (header, []byte, int, *recordError) {
	h, err := parseHeader(b)
	if err != nil {
		return header{}, nil, 0, err
	}
	end := headerSize + int(h.length)
	if len(b) < end {
		return header{}, nil, 0, &recordError{
			reason:     fmt.Sprintf("partial payload: %d of %d bytes", len(b)-headerSize, h.length),
			incomplete: true,
		}
	}
	p := b[headerSize:end]
	if err := h.verify(b, p); err != nil {
		return header{}, nil, 0, err
	}
	return h, p, end, nil
}

// isDataKind reports whether kind belongs in a segment file.
func isDataKind(kind byte) bool { return kind == kindData || kind == kindDataEnd }
