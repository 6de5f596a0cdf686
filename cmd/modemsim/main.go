// Command modemsim runs a virtual cellular module on a pseudo-terminal: a
// SIMCom SIM7600/SIM7800 (AT+CCERT*, AT+CSSLCFG, CCH sessions) or a Quectel
// BG96 (AT+QFUPL files, AT+QSSLCFG, AT+QSSLOPEN/AT+QIOPEN sockets), with
// real TLS to the real network, faults and byte counters (see
// sdk/modemsim).
//
//	modemsim --model sim7600|sim7800|bg96 --link PATH [--state-dir DIR] [--baud N]
//	         [--trace FILE] [--control PATH] [--latency D] [--net-latency D]
//	         [--net-delay D] [--net-rate BYTES]
//	         [--sim-busy D] [--reboot-delay D] [--announce-boot]
//	         [--host NAME=IP]... [--imei N] [--iccid N] [--log-level L]
//
// It logs to stderr, runs until SIGTERM or SIGINT, then removes the link and
// prints the counters as one JSON object on stdout. Exit status: 0 after a
// clean stop, 1 when the modem fails to start or stop, 2 for bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cellgate/cellgate/sdk/modemsim"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// hostFlags collects repeated --host NAME=IP overrides.
type hostFlags map[string]string

func (h hostFlags) String() string {
	var parts []string
	for k, v := range h {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (h hostFlags) Set(s string) error {
	name, ip, ok := strings.Cut(s, "=")
	if !ok || name == "" || ip == "" {
		return fmt.Errorf("want NAME=IP, got %q", s)
	}
	h[name] = ip
	return nil
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("modemsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg modemsim.Config
	hosts := hostFlags{}
	fs.StringVar(&cfg.Model, "model", "", "module personality: "+strings.Join(modemsim.Models(), ", ")+" (required; bg96 speaks Quectel's dialect, the others SIMCom's)")
	fs.StringVar(&cfg.Link, "link", "", "make `PATH` a symlink to the pty slave (removed on exit)")
	fs.StringVar(&cfg.StateDir, "state-dir", "", "keep certificate files (bg96: UFS files) in `DIR` (default: a temporary directory removed on exit)")
	fs.IntVar(&cfg.Baud, "baud", 0, "line rate in bits/s, 10 bits per byte; 0 follows the client's termios, -1 unthrottled")
	trace := fs.String("trace", "", "write a timestamped transcript of the serial line to `FILE`")
	fs.StringVar(&cfg.ControlSocket, "control", "", "serve the control protocol on the unix socket `PATH`")
	fs.DurationVar(&cfg.CommandLatency, "latency", 0, "delay before each command response")
	fs.DurationVar(&cfg.NetworkLatency, "net-latency", 0, "stall before each session connect and network write (the write blocks: a slow link, not distance)")
	fs.DurationVar(&cfg.NetworkDelay, "net-delay", 0, "one-way propagation delay each direction between the socket and the server (round trip: twice this), many writes in flight")
	fs.IntVar(&cfg.NetworkRate, "net-rate", 0, "cap each direction of the network at `BYTES` per second (0: no cap)")
	fs.DurationVar(&cfg.SIMBusy, "sim-busy", 0, "SIM busy window after each boot")
	fs.DurationVar(&cfg.RebootDelay, "reboot-delay", 0, "silence between a reboot and RDY")
	fs.BoolVar(&cfg.AnnounceBoot, "announce-boot", false, "print the boot URCs at start too")
	fs.Var(hosts, "host", "resolve `NAME=IP` without DNS (repeatable)")
	fs.StringVar(&cfg.IMEI, "imei", "", "IMEI to report (15 digits)")
	fs.StringVar(&cfg.ICCID, "iccid", "", "ICCID to report (19-20 digits)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "modemsim: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if cfg.Model == "" {
		fmt.Fprintln(stderr, "modemsim: --model is required ("+strings.Join(modemsim.Models(), ", ")+")")
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "modemsim: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = log
	if len(hosts) > 0 {
		cfg.Hosts = hosts
	}
	if *trace != "" {
		f, err := os.Create(*trace)
		if err != nil {
			log.Error("cannot create trace file", "path", *trace, "err", err)
			return 1
		}
		defer f.Close()
		cfg.Trace = f
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	m, err := modemsim.Start(cfg)
	if err != nil {
		log.Error("modem did not start", "err", err)
		return 1
	}
	log.Info("modem ready", "modem", m.Path(), "model", cfg.Model, "control", cfg.ControlSocket)
	<-ctx.Done()
	log.Info("stopping", "modem", m.Path())
	code := 0
	if err := m.Close(); err != nil {
		log.Error("modem did not stop cleanly", "err", err)
		code = 1
	}
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(m.Counters()); err != nil {
		log.Error("cannot print counters", "err", err)
		code = 1
	}
	return code
}
