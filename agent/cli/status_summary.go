package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/cellgate/cellgate/agent"
	"github.com/cellgate/cellgate/sdk"
)

// printStatusSummary writes `cellgate status`'s summary of the agent's
// /v1/status. It reads the JSON loosely: a field the agent does not report
// (an older agent, a modem not open yet) is left out or shown as unknown.
func printStatusSummary(w io.Writer, st map[string]any) {
	device := str(st, "device_id")
	if up, ok := st["uptime"]; ok {
		device += " (up " + uptime(up) + ")"
	}
	fmt.Fprintf(w, "device:   %s\n", device)
	if h := str(st, "health.status"); h != "" {
		if reasons, ok := lookup(st, "health.reasons"); ok {
			if list, isList := reasons.([]any); isList && len(list) > 0 {
				words := make([]string, len(list))
				for i, r := range list {
					words[i] = fmt.Sprint(r)
				}
				h += ": " + strings.Join(words, "; ")
			}
		}
		fmt.Fprintf(w, "health:   %s\n", h)
	}
	fmt.Fprintf(w, "modem:    %s\n", modemLine(st))
	fmt.Fprintf(w, "signal:   %s\n", signalLine(st))
	fmt.Fprintf(w, "link:     %s\n", linkLine(st))
	oldest := ""
	if age, ok := lookup(st, "spool.oldest_age_seconds"); ok {
		oldest = ", oldest " + uptime(age) + " old"
	}
	fmt.Fprintf(w, "spool:    %s readings pending (%s bytes%s), %s dropped\n",
		num(st, "spool.pending_readings"), num(st, "spool.pending_bytes"), oldest, num(st, "spool.dropped_readings"))
	fmt.Fprintf(w, "error:    %s\n", lastErrorLine(st))
	if raw, ok := st["cert"]; ok {
		var cs agent.CertStatus
		if b, err := json.Marshal(raw); err == nil && json.Unmarshal(b, &cs) == nil {
			fmt.Fprintf(w, "cert:     %s\n", certLine(&cs, time.Now()))
		}
	}
	if raw, ok := st["remote_config"]; ok {
		var rc agent.RemoteConfigStatus
		if b, err := json.Marshal(raw); err == nil && json.Unmarshal(b, &rc) == nil {
			printRemoteStatus(w, &rc)
		}
	}
}

// modemStatePaths are where the agent may report the polled modem state,
// newest first; the modem's identity is under "modem".
var modemStatePaths = []string{"modem_status", "modem_state", "modem.status", "modem"}

// modemField is the first of the modem objects holding key.
func modemField(st map[string]any, key string) (any, bool) {
	for _, p := range modemStatePaths {
		if v, ok := lookup(st, p+"."+key); ok {
			return v, true
		}
	}
	return nil, false
}

func modemLine(st map[string]any) string {
	parts := []string{"not ready"}
	if b, _ := lookupBool(st, "modem_ready"); b {
		parts[0] = "ready"
	}
	if m := strings.TrimSpace(str(st, "modem.model") + " " + str(st, "modem.revision")); m != "" {
		parts = append(parts, m)
	}
	if v, ok := modemField(st, "sim"); ok && fmt.Sprint(v) != "" {
		parts = append(parts, "SIM "+fmt.Sprint(v))
	}
	if v, ok := modemField(st, "registration"); ok && fmt.Sprint(v) != "" {
		parts = append(parts, "registration "+fmt.Sprint(v))
	}
	if v, ok := modemField(st, "operator"); ok && fmt.Sprint(v) != "" {
		parts = append(parts, "operator "+fmt.Sprint(v))
	}
	if restarts, ok := lookup(st, "plugin_restarts"); ok {
		parts = append(parts, fmt.Sprintf("plugin restarts %v", restarts))
	}
	return strings.Join(parts, ", ")
}

func signalLine(st map[string]any) string {
	v, ok := modemField(st, "signal_rssi")
	rssi, isNum := v.(float64)
	if !ok || !isNum {
		if dbm, ok := modemField(st, "signal_dbm"); ok && dbm != nil {
			return fmt.Sprintf("%v dBm", dbm)
		}
		return "unknown"
	}
	dbm, ok := sdk.RSSIToDBM(int(rssi))
	if !ok {
		return fmt.Sprintf("no signal (rssi %d)", int(rssi))
	}
	return fmt.Sprintf("%d dBm (rssi %d)", dbm, int(rssi))
}

func linkLine(st map[string]any) string {
	var parts []string
	state := "unknown"
	if up, ok := lookupBool(st, "uplink.connected"); ok {
		state = map[bool]string{true: "up", false: "down"}[up]
	}
	if since := str(st, "uplink.connected_since", "uplink.since"); since != "" {
		state += " since " + localTime(since)
	}
	parts = append(parts, state)
	if kind := str(st, "uplink.kind"); kind != "" {
		parts = append(parts, kind)
	}
	parts = append(parts, fmt.Sprintf("%s readings in %s batches acknowledged", num(st, "uplink.acked_readings"), num(st, "uplink.acked_batches")))
	last := "never"
	if t := str(st, "uplink.last_ack"); t != "" {
		last = localTime(t)
	}
	parts = append(parts, "last ack "+last)
	if n, ok := lookup(st, "uplink.reconnects"); ok {
		parts = append(parts, fmt.Sprintf("%v reconnects", n))
	}
	return strings.Join(parts, ", ")
}

func lastErrorLine(st map[string]any) string {
	v, ok := lookup(st, "uplink.last_error")
	if !ok {
		v, ok = lookup(st, "last_error")
	}
	if !ok || v == nil || v == "" {
		return "none"
	}
	msg, at := fmt.Sprint(v), str(st, "uplink.last_error_at", "uplink.last_error_time", "last_error_at")
	if m, isObj := v.(map[string]any); isObj {
		msg = str(m, "message", "error", "reason")
		at = cmp.Or(str(m, "at", "time"), at)
	}
	if at != "" {
		return localTime(at) + " " + msg
	}
	return msg
}

// certLine is the client certificate and its rotation in words: "serial
// 1f2e, expires 2027-12-06T10:00:00Z (in 364d); rolled_back at ...: the
// broker refused ...". now dates the expiry.
func certLine(cs *agent.CertStatus, now time.Time) string {
	var parts []string
	if cs.Serial != "" {
		parts = append(parts, "serial "+cs.Serial)
	}
	if cs.NotAfter != nil {
		left := cs.NotAfter.Sub(now)
		when := fmt.Sprintf("in %dd", int(left.Hours()/24))
		if left <= 0 {
			when = "EXPIRED"
		}
		parts = append(parts, fmt.Sprintf("expires %s (%s)", cs.NotAfter.Local().Format(time.RFC3339), when))
	}
	line := cmp.Or(strings.Join(parts, ", "), "unknown")
	state := cmp.Or(cs.State, "idle")
	switch {
	case state == "rotating":
		var what []string
		if cs.Step != "" {
			what = append(what, "step "+cs.Step)
		}
		if cs.Trigger != "" {
			what = append(what, "trigger "+cs.Trigger)
		}
		if len(what) > 0 {
			state += " (" + strings.Join(what, ", ") + ")"
		}
	case state != "idle" && !cs.At.IsZero():
		state += " at " + cs.At.Local().Format(time.RFC3339)
	}
	line += "; " + state
	if cs.Error != "" {
		line += ": " + cs.Error
	}
	if cs.Refused != "" {
		line += "; renewal request refused: " + cs.Refused
	}
	return line
}

// lookup finds a dotted path ("uplink.last_ack") in a decoded JSON object.
func lookup(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func lookupBool(m map[string]any, path string) (bool, bool) {
	v, ok := lookup(m, path)
	b, isBool := v.(bool)
	return b, ok && isBool
}

// str is the first of paths holding a non-empty string.
func str(m map[string]any, paths ...string) string {
	for _, p := range paths {
		if v, ok := lookup(m, p); ok {
			if s, ok := v.(string); ok && s != "" {
				return s
			}
		}
	}
	return ""
}

// num formats a JSON number at path, "?" when absent.
func num(m map[string]any, path string) string {
	v, ok := lookup(m, path)
	if f, isNum := v.(float64); ok && isNum {
		return fmt.Sprintf("%.0f", f)
	}
	return "?"
}

// uptime formats /v1/status's uptime: seconds, or an older agent's
// duration string.
func uptime(v any) string {
	switch u := v.(type) {
	case float64:
		return time.Duration(u * float64(time.Second)).Round(time.Second).String()
	case string:
		return u
	}
	return fmt.Sprint(v)
}

func localTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.Local().Format(time.RFC3339)
}

// loopbackURL is http://addr, on loopback when addr is every address.
func loopbackURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// printRemoteStatus writes the remote configuration lines of `cellgate
// status`.
func printRemoteStatus(w io.Writer, rc *agent.RemoteConfigStatus) {
	committed := "none committed"
	if rc.CommittedVersion > 0 {
		committed = fmt.Sprintf("version %d (key %s)", rc.CommittedVersion, rc.KeyID)
		if rc.CommittedAt != nil {
			committed += ", committed " + rc.CommittedAt.Local().Format(time.RFC3339)
		}
	}
	fmt.Fprintf(w, "remote:   %s\n", committed)
	if p := rc.Pending; p != nil {
		by := ""
		if p.ConfirmBy != nil {
			by = ", rolled back at " + p.ConfirmBy.Local().Format(time.RFC3339) + " unless healthy"
		}
		fmt.Fprintf(w, "          pending version %d (key %s) since %s%s\n", p.Version, p.KeyID, p.Since.Local().Format(time.RFC3339), by)
	}
	if l := rc.Last; l != nil {
		line := fmt.Sprintf("last push: version %d %s at %s", l.Version, l.State, l.At.Local().Format(time.RFC3339))
		if l.Reason != "" {
			line += " (" + l.Reason + ")"
		}
		fmt.Fprintf(w, "          %s\n", line)
	}
}
