package cli_test

import (
	"strings"
	"testing"
)

// TestConventionsThroughTheBinary: the built cellgate answers --help at
// every level and --version with exit 0, and a usage error with exit 2 and
// one line on stderr.
func TestConventionsThroughTheBinary(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"help"}, {"-h"}, {"modem", "--help"}, {"config", "--help"}, {"modem", "certs", "--help"},
		{"modem", "info", "--help"}, {"config", "check", "-h"}, {"status", "--help"}, {"help", "modem", "dial"}, {"completion", "--help"},
	} {
		out, errOut, code := cellgate(t, "", args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "Usage:") {
			t.Errorf("cellgate %v: exit %d, stderr %q, stdout %q; want 0 and the help", args, code, errOut, out)
		}
	}
	version, errOut, code := cellgate(t, "", "version")
	if code != 0 || !strings.HasPrefix(version, "cellgate ") || strings.Count(version, "\n") != 1 {
		t.Fatalf("cellgate version: exit %d, %q, stderr %q", code, version, errOut)
	}
	if out, _, code := cellgate(t, "", "--version"); code != 0 || out != version {
		t.Errorf("cellgate --version: exit %d, %q; want %q as cellgate version prints it", code, out, version)
	}
	for _, args := range [][]string{{}, {"frobnicate"}, {"modem"}, {"modem", "infoo"}, {"config", "check", "--bogus"}, {"version", "extra"}, {"help", "frobnicate"}} {
		out, errOut, code := cellgate(t, "", args...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "cellgate: ") {
			t.Errorf("cellgate %v: exit %d, stdout %q, stderr %q; want exit 2 and one line \"cellgate: ...\"", args, code, out, errOut)
		}
	}
	// What the completion scripts ask the binary: the commands of a group,
	// the flags of a command.
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "modem", ""}, []string{"info", "certs", "dial"}},
		{[]string{"__complete", "modem", "info", "--"}, []string{"--model", "--port", "--registration-wait", "--json"}},
		{[]string{"__complete", "help", "mod"}, []string{"modem"}},
	} {
		out, errOut, code := cellgate(t, "", c.args...)
		for _, w := range c.want {
			if code != 0 || !strings.Contains(out, w+"\n") && !strings.Contains(out, w+"\t") {
				t.Errorf("cellgate %v: exit %d, %q (stderr %q); want %q offered", c.args, code, out, errOut, w)
			}
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, errOut, code := cellgate(t, "", "completion", shell)
		if code != 0 || !strings.Contains(out, "cellgate") || len(out) < 1000 {
			t.Errorf("cellgate completion %s: exit %d, %d bytes, stderr %q", shell, code, len(out), errOut)
		}
	}
}
