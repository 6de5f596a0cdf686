package fleet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture the project ships for.
const clockTicks = 100

// procSample is what /proc says about one process at one moment.
type procSample struct {
	cpuTicks int64   // utime + stime
	rssMiB   float64 // VmRSS
}

// sample reads /proc/pid/stat and /proc/pid/status.
func sample(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	// The command name is in parentheses and may hold spaces: the fields
	// that follow start after the last ')'.
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return procSample{}, fmt.Errorf("pid %d: /proc stat has %d fields after the name", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procSample{}, fmt.Errorf("pid %d: /proc stat utime %q stime %q", pid, f[11], f[12])
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return procSample{}, fmt.Errorf("pid %d: VmRSS %q", pid, v)
			}
			return procSample{cpuTicks: utime + stime, rssMiB: float64(kb) / 1024}, nil
		}
	}
	return procSample{}, fmt.Errorf("pid %d: no VmRSS in /proc status", pid)
}

// childNamed returns the pid of a child of parent whose command name
// starts with name, or 0.
func childNamed(parent int, name string) int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || end+2 > len(s) {
			continue
		}
		f := strings.Fields(s[end+2:])
		if len(f) < 2 || f[1] != strconv.Itoa(parent) || !strings.HasPrefix(s[open+1:end], name[:min(len(name), 15)]) {
			continue
		}
		pid, _ := strconv.Atoi(strings.Fields(s)[0])
		return pid
	}
	return 0
}
