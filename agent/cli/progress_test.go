package cli_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProgressOnlyOnATerminal: the steps of a modem command are shown on a
// terminal (script(1) gives cellgate a pty) and nothing but the result
// reaches a pipe.
func TestProgressOnlyOnATerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Fatal("script(1) not found: it is in Debian's essential bsdutils")
	}
	m := startModem(t)
	args := []string{"modem", "info", "--model", "sim7600", "--port", m.Path()}

	out, errOut, code := cellgate(t, "", args...)
	if code != 0 || errOut != "" || !strings.Contains(out, "model:") {
		t.Fatalf("through a pipe: exit %d, stdout %q, stderr %q; want the result and a silent stderr", code, out, errOut)
	}

	quoted := []string{shellQuote(filepath.Join(binDir(t), "cellgate"))}
	for _, a := range args {
		quoted = append(quoted, shellQuote(a))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tty, err := exec.CommandContext(ctx, script, "-qefc", strings.Join(quoted, " "), "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("on a terminal: %v: %q", err, tty)
	}
	for _, want := range []string{"\r\033[Kopening the modem on " + m.Path(), "modem ready: ", "model:"} {
		if !strings.Contains(string(tty), want) {
			t.Errorf("terminal output %q lacks %q", tty, want)
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
