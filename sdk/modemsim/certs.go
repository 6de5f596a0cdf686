package modemsim

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// certStore is the module's certificate file system: one file per name,
// flat, in the state directory.
type certStore struct {
	dir string
}

// Certificate file name and size limits (AT+CCERTDOWN=?).
const (
	certNameMin = 5
	certNameMax = 128
	certSizeMin = 1
	certSizeMax = 10240
)

// validCertName applies the manual's rules (5-128 bytes, type .pem or
// .der) plus the emulator's own: no path separators, no NUL, no leading
// '.', so a name can never leave the state directory or collide with the
// store's temporary files.
func validCertName(name string) bool {
	if len(name) < certNameMin || len(name) > certNameMax {
		return false
	}
	ext := strings.ToLower(filepath.Ext(name))
	if ext != ".pem" && ext != ".der" {
		return false
	}
	return !strings.ContainsAny(name, "/\\\x00") && !strings.HasPrefix(name, ".")
}

// certNameArg parses a quoted certificate file name that validCertName
// accepts.
func certNameArg(a atArg) (string, bool) {
	name, ok := quotedString(a, certNameMin, certNameMax)
	return name, ok && validCertName(name)
}

func (s *certStore) list() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list certificate directory %s: %w", s.dir, err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && validCertName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

func (s *certStore) read(name string) ([]byte, error) {
	if !validCertName(name) {
		return nil, fmt.Errorf("certificate file name %q is invalid", name)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return nil, fmt.Errorf("read certificate file %q: %w", name, err)
	}
	return b, nil
}

func (s *certStore) exists(name string) bool {
	fi, err := os.Stat(filepath.Join(s.dir, name))
	return err == nil && fi.Mode().IsRegular()
}

// write stores data under name atomically (a power cut leaves the old
// file or the new one, never half of it).
func (s *certStore) write(name string, data []byte) error {
	f, err := os.CreateTemp(s.dir, ".tmp-cert-")
	if err != nil {
		return fmt.Errorf("create temporary certificate file in %s: %w", s.dir, err)
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
		return fmt.Errorf("store certificate file %q: %w", name, err)
	}
	return nil
}

func (s *certStore) remove(name string) error {
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
		return fmt.Errorf("delete certificate file %q: %w", name, err)
	}
	return nil
}

// displayCertName prints a name the way AT+CCERTLIST does: quoted, with
// non-ASCII characters as HTML hex entities ("&#x4E2D;").
func displayCertName(name string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range name {
		if r < 0x80 {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "&#x%X;", r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// cmdCCERTDOWN is AT+CCERTDOWN=<filename>,<len>: prompt '>' and take
// exactly <len> raw bytes, then OK. An existing file of the same name is
// replaced.
func cmdCCERTDOWN(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add(fmt.Sprintf("+CCERTDOWN: (%d-%d),(%d-%d)", certNameMin, certNameMax, certSizeMin, certSizeMax))
	case formSet:
		args, ok := argsIn(c.args, 2, 2)
		if !ok {
			return "ERROR"
		}
		name, nameOK := certNameArg(args[0])
		n, sizeOK := intIn(args[1], certSizeMin, certSizeMax)
		if !nameOK || !sizeOK {
			return "ERROR"
		}
		r.prompt = &payloadWait{need: n, redact: true, done: func(data []byte) reply {
			if err := m.store.write(name, data); err != nil {
				m.log.Error("certificate download failed", "modem", m.path, "op", "certdown", "file", name, "err", err)
				return reply{final: "ERROR"}
			}
			m.counters.certUploads.Add(1)
			m.log.Info("certificate file stored", "modem", m.path, "op", "certdown", "file", name, "bytes", n)
			return reply{final: "OK"}
		}}
		return ""
	}
	return "ERROR"
}

// cmdCCERTLIST lists the stored files, one "+CCERTLIST: <name>" line each.
func cmdCCERTLIST(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return ""
	case formExec:
		names, err := m.store.list()
		if err != nil {
			m.log.Error("certificate list failed", "modem", m.path, "op", "certlist", "err", err)
			return "ERROR"
		}
		for _, n := range names {
			r.add("+CCERTLIST: " + displayCertName(n))
		}
		return ""
	}
	return "ERROR"
}

// cmdCCERTDELE deletes a stored file; a missing file is an error.
func cmdCCERTDELE(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return ""
	case formSet:
		args, ok := argsIn(c.args, 1, 1)
		if !ok {
			return "ERROR"
		}
		name, ok := certNameArg(args[0])
		if !ok || !m.store.exists(name) {
			return "ERROR"
		}
		if err := m.store.remove(name); err != nil {
			m.log.Error("certificate delete failed", "modem", m.path, "op", "certdele", "file", name, "err", err)
			return "ERROR"
		}
		return ""
	}
	return "ERROR"
}
