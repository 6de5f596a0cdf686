package modemsim

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ufsStore is the BG96's user file system (UFS): flat files in the ufs
// folder of the state directory, so they survive reboots and restarts
// like the module's flash. Certificates for AT+QSSLCFG live here.
type ufsStore struct {
	dir string
}

// UFS limits (FILE manual): names up to 80 bytes; the total is what
// AT+QFLDS="UFS" shows on a BG96 in the manual's example; 10240 is
// AT+QFUPL's default <file_size>, 5 s its default <timeout>.
const (
	ufsNameMax        = 80
	ufsTotal          = 14483456
	ufsDefaultSize    = 10240
	ufsDefaultTimeout = 5
	ufsAckBlock       = 1024
)

// ufsFile is one entry of the store.
type ufsFile struct {
	name string
	size int64
}

// ufsName strips the optional storage prefix "UFS:" (any case) that
// EC2x-style drivers write; the BG96 itself uses bare names.
func ufsName(name string) string {
	if len(name) >= 4 && strings.EqualFold(name[:4], "UFS:") {
		return name[4:]
	}
	return name
}

// validUFSName applies the manual's length limit plus the emulator's own
// rules: no path separators, NUL, wildcards or leading '.', so a name can
// never leave the store or collide with its temporary files.
func validUFSName(name string) bool {
	return name != "" && len(name) <= ufsNameMax &&
		!strings.ContainsAny(name, "/\\\x00*?") && !strings.HasPrefix(name, ".")
}

// ufsNameArg parses a quoted file name that validUFSName accepts, prefix
// stripped.
func ufsNameArg(a atArg) (string, bool) {
	if !a.present || !a.quoted {
		return "", false
	}
	name := ufsName(a.text)
	return name, validUFSName(name)
}

func (s *ufsStore) list() ([]ufsFile, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list UFS directory %s: %w", s.dir, err)
	}
	var files []ufsFile
	for _, e := range entries {
		if !e.Type().IsRegular() || !validUFSName(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("list UFS directory %s: %w", s.dir, err)
		}
		files = append(files, ufsFile{name: e.Name(), size: fi.Size()})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files, nil
}

// used is the bytes the files take and their number.
func (s *ufsStore) used() (int64, int, error) {
	files, err := s.list()
	var sum int64
	for _, f := range files {
		sum += f.size
	}
	return sum, len(files), err
}

// free is the room left for files.
func (s *ufsStore) free() (int64, error) {
	used, _, err := s.used()
	return ufsTotal - used, err
}

func (s *ufsStore) read(name string) ([]byte, error) {
	name = ufsName(name)
	if !validUFSName(name) {
		return nil, fmt.Errorf("UFS file name %q is invalid", name)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return nil, fmt.Errorf("read UFS file %q: %w", name, err)
	}
	return b, nil
}

func (s *ufsStore) exists(name string) bool {
	fi, err := os.Stat(filepath.Join(s.dir, name))
	return err == nil && fi.Mode().IsRegular()
}

// write stores data under name atomically (a power cut leaves the old
// file or the new one, never half of it).
func (s *ufsStore) write(name string, data []byte) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create UFS directory %s: %w", s.dir, err)
	}
	f, err := os.CreateTemp(s.dir, ".tmp-ufs-")
	if err != nil {
		return fmt.Errorf("create temporary UFS file in %s: %w", s.dir, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store UFS file %q: %w", name, err)
	}
	return nil
}

func (s *ufsStore) remove(name string) error {
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
		return fmt.Errorf("delete UFS file %q: %w", name, err)
	}
	return nil
}

// seedUFSFile stores a file in the UFS of a module whose state directory
// is stateDir, before it starts: a module provisioned earlier.
func seedUFSFile(stateDir, name string, data []byte) error {
	if !validUFSName(name) {
		return fmt.Errorf("UFS file name %q is invalid", name)
	}
	return (&ufsStore{dir: filepath.Join(stateDir, "ufs")}).write(name, data)
}

// qfileChecksum is the FILE manual's <checksum>: the XOR of the data as
// big-endian 16-bit words, an odd last byte being the high byte of a last
// word whose low byte is 0.
func qfileChecksum(b []byte) uint16 {
	var sum uint16
	for i := 0; i < len(b); i += 2 {
		w := uint16(b[i]) << 8
		if i+1 < len(b) {
			w |= uint16(b[i+1])
		}
		sum ^= w
	}
	return sum
}

// formatChecksum prints a checksum as real modules do: lower-case hex, no
// "0x", no padding (f5f, 7b68).
func formatChecksum(b []byte) string { return fmt.Sprintf("%x", qfileChecksum(b)) }

// ufsFailed logs a store failure and answers the FILE error code.
func (m *Modem) ufsFailed(op string, code int, err error) string {
	m.log.Error("UFS operation failed", "modem", m.path, "op", op, "code", code, "err", err)
	return m.cme(code)
}

// cmdQFLDS reports space: AT+QFLDS="UFS" free and total bytes, AT+QFLDS
// the bytes and number of the stored files.
func cmdQFLDS(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return ""
	case formExec:
		used, n, err := m.q.ufs.used()
		if err != nil {
			return m.ufsFailed("qflds", 419, err)
		}
		return r.add(fmt.Sprintf("+QFLDS: %d,%d", used, n))
	case formSet:
		name, ok := singleQuoted(c.args, 1, 8)
		if !ok || !strings.EqualFold(name, "UFS") {
			return m.cme(400)
		}
		free, err := m.q.ufs.free()
		if err != nil {
			return m.ufsFailed("qflds", 419, err)
		}
		return r.add(fmt.Sprintf("+QFLDS: %d,%d", free, ufsTotal))
	}
	return "ERROR"
}

// cmdQFLST lists files: AT+QFLST or AT+QFLST="*" all of them, otherwise
// those matching the pattern ('*' and '?' wildcards, optional "UFS:"),
// one +QFLST: "<name>",<size> line each, sorted by name. No match is just
// OK.
func cmdQFLST(m *Modem, c atCommand, r *reply) string {
	pattern := "*"
	switch c.form {
	case formTest:
		return ""
	case formExec:
	case formSet:
		p, ok := singleQuoted(c.args, 1, ufsNameMax+4)
		if !ok {
			return m.cme(400)
		}
		pattern = ufsName(p)
	default:
		return "ERROR"
	}
	files, err := m.q.ufs.list()
	if err != nil {
		return m.ufsFailed("qflst", 417, err)
	}
	for _, f := range files {
		if ok, _ := path.Match(pattern, f.name); ok {
			r.add(fmt.Sprintf(`+QFLST: "%s",%d`, f.name, f.size))
		}
	}
	return ""
}

// cmdQFDEL deletes a file, or with "*" every file; a missing file is
// +CME ERROR: 405.
func cmdQFDEL(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+QFDEL: <filename>")
	case formSet:
		args, ok := argsIn(c.args, 1, 1)
		if !ok || !args[0].quoted {
			return m.cme(400)
		}
		if ufsName(args[0].text) == "*" {
			files, err := m.q.ufs.list()
			if err != nil {
				return m.ufsFailed("qfdel", 418, err)
			}
			for _, f := range files {
				if err := m.q.ufs.remove(f.name); err != nil {
					return m.ufsFailed("qfdel", 418, err)
				}
			}
			return ""
		}
		name, ok := ufsNameArg(args[0])
		if !ok {
			return m.cme(406)
		}
		if !m.q.ufs.exists(name) {
			return m.cme(405)
		}
		if err := m.q.ufs.remove(name); err != nil {
			return m.ufsFailed("qfdel", 418, err)
		}
		return ""
	}
	return "ERROR"
}

// cmdQFDWL reads a file back: CONNECT, its bytes, +QFDWL: <size>,<checksum>,
// OK. The transcript shows the size instead of the contents.
func cmdQFDWL(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+QFDWL: <filename>")
	case formSet:
		args, ok := argsIn(c.args, 1, 1)
		if !ok {
			return m.cme(400)
		}
		name, ok := ufsNameArg(args[0])
		if !ok {
			return m.cme(406)
		}
		if !m.q.ufs.exists(name) {
			return m.cme(405)
		}
		data, err := m.q.ufs.read(name)
		if err != nil {
			return m.ufsFailed("qfdwl", 411, err)
		}
		tail := fmt.Sprintf("+QFDWL: %d,%s", len(data), formatChecksum(data))
		r.add("CONNECT", string(data), tail)
		r.traceLines = []string{"CONNECT", fmt.Sprintf("<%d bytes of certificate file>", len(data)), tail}
		return ""
	}
	return "ERROR"
}

// cmdQFUPL uploads a file: AT+QFUPL="<name>"[,<file_size>[,<timeout>[,
// <ackmode>]]] answers CONNECT and takes raw bytes until <file_size> of them
// arrived, <timeout> seconds passed without one, or "+++" escaped; then
// +QFUPL: <upload_size>,<checksum> and OK. An existing name is +CME ERROR:
// 407 (delete it first).
func cmdQFUPL(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		free, err := m.q.ufs.free()
		if err != nil {
			return m.ufsFailed("qfupl", 419, err)
		}
		return r.add(fmt.Sprintf("+QFUPL: <filename>,(1-%d),(1-65535),(0,1)", free))
	case formSet:
		args, ok := argsIn(c.args, 1, 4)
		if !ok {
			return m.cme(400)
		}
		name, ok := ufsNameArg(args[0])
		if !ok {
			return m.cme(406)
		}
		size, sizeOK := optionalInt(args, 1, 1, ufsTotal, ufsDefaultSize)
		timeout, timeoutOK := optionalInt(args, 2, 1, 65535, ufsDefaultTimeout)
		ack, ackOK := optionalInt(args, 3, 0, 1, 0)
		if !sizeOK || !timeoutOK || !ackOK {
			return m.cme(400)
		}
		if m.q.ufs.exists(name) {
			return m.cme(407)
		}
		free, err := m.q.ufs.free()
		if err != nil {
			return m.ufsFailed("qfupl", 419, err)
		}
		if int64(size) > free {
			return m.cme(403)
		}
		u := &upload{m: m, name: name, size: size, timeout: time.Duration(timeout) * time.Second, ack: ack == 1}
		u.p = &payloadWait{redact: true, prompt: []byte("\r\nCONNECT\r\n"), feed: u.feed, done: u.done}
		r.prompt = u.p
		// The stage is open once the response is queued: from then on
		// the module waits <timeout> for the first byte.
		r.after = append(r.after, func() {
			u.lastIn, u.lastByte = time.Now(), time.Now()
			u.watchTimeout()
		})
		return ""
	}
	return "ERROR"
}

// upload is the data stage of one AT+QFUPL. It runs on the core.
type upload struct {
	m        *Modem
	p        *payloadWait
	name     string
	size     int
	timeout  time.Duration
	ack      bool
	buf      []byte
	acked    int       // bytes answered with an 'A' (ack mode)
	lastIn   time.Time // arrival of the last data byte
	lastByte time.Time // arrival of the last byte of any kind
	plus     int       // '+' held back as a possible "+++" escape
	epoch    int       // bumps with every chunk, so older guard timers do nothing
}

// feed takes the upload's bytes: counted, binary-transparent, with "+++"
// (guard time of silence before and after) ending it early.
func (u *upload) feed(in []byte) int {
	u.epoch++
	now := time.Now()
	u.lastByte = now
	i := 0
	for ; i < len(in) && len(u.buf)+u.plus < u.size; i++ {
		b := in[i]
		if b == '+' && u.plus < 3 && (u.plus > 0 || now.Sub(u.lastIn) >= guardTime) {
			u.plus++
			continue
		}
		u.flushPlus()
		u.buf = append(u.buf, b)
		u.lastIn = now
	}
	if len(u.buf)+u.plus >= u.size {
		// Pluses that complete the count are data.
		u.flushPlus()
		u.finish()
		return i
	}
	for u.ack && len(u.buf)-u.acked >= ufsAckBlock {
		u.acked += ufsAckBlock
		u.m.send([]byte("A"), 0, nil, nil)
	}
	if u.plus > 0 {
		u.watchGuard()
	}
	return i
}

func (u *upload) flushPlus() {
	u.buf = append(u.buf, bytes.Repeat([]byte{'+'}, u.plus)...)
	u.plus = 0
}

// watchGuard waits a guard time after held pluses: three of them and
// silence end the upload, fewer are data.
func (u *upload) watchGuard() {
	m, epoch := u.m, u.epoch
	m.after(guardTime, func() {
		if m.payload != u.p || u.epoch != epoch {
			return
		}
		if u.plus == 3 {
			u.plus = 0
			m.log.Info("upload escaped with +++", "modem", m.path, "op", "qfupl", "file", u.name, "bytes", len(u.buf))
			u.finish()
			return
		}
		u.flushPlus()
		u.lastIn = time.Now()
	})
}

// watchTimeout ends the upload once <timeout> passes without a byte; one
// timer follows the stage, rearming itself while bytes keep coming.
func (u *upload) watchTimeout() {
	m := u.m
	m.after(time.Until(u.lastByte.Add(u.timeout)), func() {
		if m.payload != u.p {
			return
		}
		if time.Since(u.lastByte) < u.timeout {
			u.watchTimeout()
			return
		}
		u.flushPlus()
		m.log.Info("upload timed out", "modem", m.path, "op", "qfupl", "file", u.name, "bytes", len(u.buf))
		u.finish()
	})
}

func (u *upload) finish() { u.m.completePayload(u.buf) }

// done stores what arrived. An upload that got no byte at all stores
// nothing: +CME ERROR: 421 (time out).
func (u *upload) done(data []byte) reply {
	m := u.m
	if len(data) == 0 {
		return reply{final: m.cme(421)}
	}
	if err := m.q.ufs.write(u.name, data); err != nil {
		return reply{final: m.ufsFailed("qfupl", 409, err)}
	}
	m.counters.certUploads.Add(1)
	m.log.Info("UFS file stored", "modem", m.path, "op", "qfupl", "file", u.name, "bytes", len(data))
	return reply{lines: []string{fmt.Sprintf("+QFUPL: %d,%s", len(data), formatChecksum(data))}, final: "OK"}
}
