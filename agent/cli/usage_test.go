package cli

import (
	"bytes"
	"strings"
	"testing"
)

// `cellgate run` is the command operators start the agent with; the help
// must name it.
func TestHelpNamesEveryCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main([]string{"help"}, Env{Stdout: &out, Stderr: &errOut}); code != 0 {
		t.Fatalf("cellgate help: exit %d, stderr %q", code, errOut.String())
	}
	for _, cmd := range []string{"cellgate run", "cellgate modem", "cellgate config check", "cellgate status", "cellgate version"} {
		if !strings.Contains(out.String(), cmd) {
			t.Errorf("help does not mention %q:\n%s", cmd, out.String())
		}
	}
}
