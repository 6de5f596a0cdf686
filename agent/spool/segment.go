package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cellgate/cellgate/internal/atomicfile"
)

const (
	segmentSuffix = ".seg"
	ackLogName    = "acks.log"
	ackLogTemp    = "acks.log.tmp"
	lockName      = "LOCK"
	// loadedCap is how many sealed segments keep their offset index and file
	// open at once. The reader works through the oldest segments and acks land
	// near it, so a few suffice; the rest cost no memory until touched.
	loadedCap = 4
)

// segment is one append-only log file holding records first..first+count-1.
// Its fields are guarded by Spool.mu; size, count and offsets grow only in
// the committer's publish step.
type segment struct {
	name  string
	path  string
	first uint64
	// count and size cover published (durable) records only.
	count uint64
	size  int64
	// written is where the committer writes next: size plus the bytes in
	// flight to the syncer. Owned by the committer.
	written int64
	// ackedCount and ackedBytes cover records acknowledged or given up.
	ackedCount uint64
	ackedBytes int64
	// offsets[i] is where record first+i starts; nil while not loaded.
	offsets []int64
	// f is open while the segment is loaded (read-write for the active one).
	f *os.File
}

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentSuffix) }

// parseSegmentName returns the first sequence number encoded in a segment
// file name, or false for any other file.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	first, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || first == 0 {
		return 0, false
	}
	return first, true
}

func (g *segment) last() uint64 { return g.first + g.count - 1 }

func (g *segment) contains(seq uint64) bool {
	return g.count > 0 && seq >= g.first && seq <= g.last()
}

// recordSize returns the on-disk size of the i-th record; g must be loaded.
func (g *segment) recordSize(i uint64) int64 {
	end := g.size
	if i+1 < uint64(len(g.offsets)) {
		end = g.offsets[i+1]
	}
	return end - g.offsets[i]
}

// load opens the file and rebuilds the offset index by walking the record
// headers. Recovery verified every checksum, so only framing and sequence
// numbers are checked here; a mismatch means the file changed under the spool.
func (g *segment) load() error {
	f, err := os.Open(g.path)
	if err != nil {
		return fmt.Errorf("spool: open segment %s: %w", g.name, err)
	}
	offsets := make([]int64, 0, g.count)
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, g.size), 64<<10)
	var hb [headerSize]byte
	var off int64
	for i := uint64(0); i < g.count; i++ {
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			f.Close()
			return fmt.Errorf("spool: segment %s: read header of record %d at offset %d: %w", g.name, g.first+i, off, err)
		}
		h, rerr := parseHeader(hb[:])
		if rerr == nil && h.seq != g.first+i {
			rerr = badRecord("sequence %d where %d was expected", h.seq, g.first+i)
		}
		if rerr != nil {
			f.Close()
			return fmt.Errorf("spool: segment %s changed on disk since it was opened: offset %d: %s", g.name, off, rerr.reason)
		}
		offsets = append(offsets, off)
		if _, err := br.Discard(int(h.length)); err != nil {
			f.Close()
			return fmt.Errorf("spool: segment %s: skip payload of record %d at offset %d: %w", g.name, g.first+i, off, err)
		}
		off += headerSize + int64(h.length)
	}
	if off != g.size {
		f.Close()
		return fmt.Errorf("spool: segment %s changed on disk since it was opened: records end at %d, expected %d", g.name, off, g.size)
	}
	g.f, g.offsets = f, offsets
	return nil
}

// unload drops the offset index and closes the file.
func (g *segment) unload() error {
	g.offsets = nil
	if g.f == nil {
		return nil
	}
	err := g.f.Close()
	g.f = nil
	return err
}

// fdatasync flushes f's data (and the metadata needed to read it back).
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// syncDir makes a file creation, rename or removal in dir durable.
func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

// lockDir takes an exclusive, non-blocking flock on dir/LOCK. The lock lives
// as long as the returned file is open and dies with the process, so a
// crashed agent never leaves a stale lock behind.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool: open lock file %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool: directory %s is in use by another spool (is another cellgate agent running?): flock %s: %w", dir, path, err)
		}
		return nil, fmt.Errorf("spool: lock directory %s: flock %s: %w", dir, path, err)
	}
	return f, nil
}
