package reading

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"
)

// IDGenerator assigns reading ids. An id is 16 bytes written as a ULID (26
// characters of Crockford base32, so it sorts by time as text):
//
//	bytes 0-5   unix milliseconds of the time given to Next (big endian):
//	            Parse gives the reading's ts, which is the time of
//	            receipt only when the reading came without one
//	bytes 6-11  the run: 48 random bits drawn when the generator is made
//	bytes 12-15 a counter, starting at 0, incremented for every id
//
// Ids are unique within a run by the counter (when it wraps the run is
// incremented, so even 2^32 ids in one millisecond do not repeat), and
// across runs and devices by the random run, which a restart draws anew.
// Unlike random ULIDs, consecutive ids share their run and differ by one in
// the counter, which the CBOR batch encoding turns into about a byte per id.
//
// An IDGenerator is safe for concurrent use.
type IDGenerator struct {
	mu  sync.Mutex
	run uint64 // 48 bits
	ctr uint32
}

// NewIDGenerator returns a generator whose run is read from random
// (crypto/rand.Reader when nil). It fails only if random does.
func NewIDGenerator(random io.Reader) (*IDGenerator, error) {
	if random == nil {
		random = rand.Reader
	}
	var b [8]byte
	if _, err := io.ReadFull(random, b[2:]); err != nil {
		return nil, fmt.Errorf("reading: id generator: drawing the run: %w", err)
	}
	return &IDGenerator{run: binary.BigEndian.Uint64(b[:])}, nil
}

// defaultIDs is the process's generator, used by Parse and NewID.
var defaultIDs = func() *IDGenerator {
	g, err := NewIDGenerator(nil)
	if err != nil {
		// crypto/rand does not fail on supported platforms (Go 1.24+
		// crashes the program instead of returning an error).
		panic(err)
	}
	return g
}()

// NewID returns a fresh id from the process's generator for a reading whose
// ts is now.
func NewID(now time.Time) string { return defaultIDs.Next(now) }

// Next returns a fresh id carrying now's unix milliseconds (clamped to the
// 48 bits available, 0 for times before 1970).
func (g *IDGenerator) Next(now time.Time) string {
	g.mu.Lock()
	run, ctr := g.run, g.ctr
	g.ctr++
	if g.ctr == 0 {
		g.run = (g.run + 1) & (1<<48 - 1)
	}
	g.mu.Unlock()
	ms := max(now.UnixMilli(), 0)
	ms = min(ms, 1<<48-1)
	return encodeULID(idFromParts(uint64(ms), run, ctr))
}

// idParts splits a 16-byte id into its millisecond time, run and counter.
func idParts(id [16]byte) (ms, run uint64, ctr uint32) {
	hi := binary.BigEndian.Uint64(id[0:8])
	lo := binary.BigEndian.Uint64(id[8:16])
	return hi >> 16, (hi&0xffff)<<32 | lo>>32, uint32(lo)
}

// idFromParts is the inverse of idParts.
func idFromParts(ms, run uint64, ctr uint32) [16]byte {
	var id [16]byte
	binary.BigEndian.PutUint64(id[0:8], ms<<16|run>>32)
	binary.BigEndian.PutUint64(id[8:16], run<<32|uint64(ctr))
	return id
}

// crockford is the ULID alphabet: base32 without I, L, O and U.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var crockfordValue = func() [256]byte {
	var t [256]byte
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(crockford); i++ {
		t[crockford[i]] = byte(i)
	}
	return t
}()

// encodeULID writes 16 bytes as 26 base32 characters, most significant
// first; the first character carries only 3 bits, so it is 0-7.
func encodeULID(id [16]byte) string {
	hi := binary.BigEndian.Uint64(id[0:8])
	lo := binary.BigEndian.Uint64(id[8:16])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// decodeULID reverses encodeULID. It accepts only the canonical spelling
// (26 upper-case characters, the first 0-7), so that for every id it
// accepts, encodeULID gives back the same string.
func decodeULID(s string) ([16]byte, bool) {
	var id [16]byte
	if len(s) != 26 || s[0] > '7' {
		return id, false
	}
	var hi, lo uint64
	for i := 0; i < 26; i++ {
		v := crockfordValue[s[i]]
		if v == 0xff {
			return id, false
		}
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(v)
	}
	binary.BigEndian.PutUint64(id[0:8], hi)
	binary.BigEndian.PutUint64(id[8:16], lo)
	return id, true
}

// parseUUID accepts the canonical UUID spelling only: 36 characters,
// lower-case hex, hyphens after 8, 12, 16 and 20 digits, so that formatUUID
// gives back the same string. Any version or variant is accepted.
func parseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := lowerHex(s[i])
		lo, ok2 := lowerHex(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return u, true
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// formatUUID writes u in the canonical spelling parseUUID accepts.
func formatUUID(u [16]byte) string {
	var out [36]byte
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexDigits[b>>4], hexDigits[b&0xf]
		j += 2
	}
	return string(out[:])
}
