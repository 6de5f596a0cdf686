// Command ingestd runs the HTTP input over a real spool, alone in its
// process, so that a test can measure the input's resident memory without
// the test's own (and without the race detector's). It prints "listening
// ADDR" once it serves, and stops when its stdin closes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/input"
	"github.com/cellgate/cellgate/agent/spool"
)

func main() {
	dir := flag.String("spool", "", "spool directory")
	maxBody := flag.Int64("max-body", 64<<20, "inputs.http.max_body in bytes")
	flag.Parse()
	if err := run(*dir, *maxBody); err != nil {
		fmt.Fprintln(os.Stderr, "ingestd:", err)
		os.Exit(1)
	}
}

func run(dir string, maxBody int64) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sp, err := spool.Open(spool.Options{Dir: dir, MaxBytes: 1 << 40, Logger: log})
	if err != nil {
		return err
	}
	defer sp.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	h := input.NewHTTP(config.HTTPInput{MaxBody: config.ByteSize(maxBody)}, sp, log, nil)
	fmt.Printf("listening %s\n", ln.Addr())
	return h.Serve(ctx, ln)
}
