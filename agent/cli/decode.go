package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"os"

	"github.com/cellgate/cellgate/agent/reading"
)

// `cellgate decode` turns a batch payload of any encoding into JSON lines
// (docs/payloads.md, "cellgate decode").

func init() {
	extraCommands["decode"] = decodeCmd
	extraShort["decode"] = "Turn a batch payload (json, cbor, cbor+deflate, compact) into JSON lines"
}

const decodeHelp = `Turn one batch payload into JSON lines, one reading per line:

  {"device_id":"gw-0001","reading":{"id":"…","sensor":"…","ts":"…","value":…}}

where "reading" is the reading's stored canonical JSON, byte for byte.

Usage:
  cellgate decode [--encoding NAME | --content-type T [--content-encoding E]]
                  [--context FILE]... [FILE|-]

The payload is read from FILE, or standard input when FILE is - or absent.
Without --encoding or --content-type the encoding is told from the first
bytes: '{' json, 0x84 cbor, 0x87 to 0x8a compact, a zlib header with a
preset dictionary compact, without one cbor+deflate. A compact version 2
batch that references its context by id needs that context: pass the
context as published (the retained message on <telemetry topic>/ctx/<id>)
with --context, once per context. A malformed payload exits 1 with the
byte offset of the problem; a missing context exits 1 naming its id.

Flags:
  --encoding NAME          json, cbor, cbor+deflate or compact
  --content-type T         the payload's media type as received (HTTP
                           Content-Type, MQTT v5 content type)
  --content-encoding E     the HTTP Content-Encoding received with it
  --context FILE           a compact context, as published (repeatable)

Examples:
  cellgate decode batch.bin
  cellgate decode --context ctx.bin batch.bin
  cellgate decode --encoding compact batch.bin
  cellgate decode --content-type application/cbor --content-encoding deflate - < body
`

// maxDecodeInput bounds what decode reads: a batch payload is far smaller.
const maxDecodeInput = 256 << 20

func decodeCmd(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	encoding := fs.String("encoding", "", "")
	contentType := fs.String("content-type", "", "")
	contentEncoding := fs.String("content-encoding", "", "")
	var contextFiles []string
	fs.Func("context", "", func(v string) error { contextFiles = append(contextFiles, v); return nil })
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(env.Stdout, decodeHelp)
			return errHelp
		}
		return usageError("decode: %v", err)
	}
	switch {
	case fs.NArg() > 1:
		return usageError("decode: want at most one FILE, got %d arguments", fs.NArg())
	case *encoding != "" && (*contentType != "" || *contentEncoding != ""):
		return usageError("decode: --encoding and --content-type/--content-encoding exclude each other")
	case *contentEncoding != "" && *contentType == "":
		return usageError("decode: --content-encoding needs --content-type")
	}
	if *encoding != "" {
		if _, err := reading.NewEncoder(*encoding); err != nil {
			return usageError("decode: --encoding: %v", err)
		}
	}
	contexts, err := readContexts(contextFiles)
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	payload, err := readDecodeInput(name, env)
	if err != nil {
		return err
	}
	batch, err := decodePayload(payload, *encoding, *contentType, *contentEncoding, contexts)
	if err != nil {
		return fmt.Errorf("decode %s: %w", displayName(name), err)
	}
	if err := batch.WriteJSONLines(env.Stdout); err != nil {
		return fmt.Errorf("decode: write: %w", err)
	}
	return nil
}

func displayName(name string) string {
	if name == "" || name == "-" {
		return "standard input"
	}
	return name
}

func readDecodeInput(name string, env Env) ([]byte, error) {
	var r io.Reader = env.Stdin
	if name != "" && name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		defer f.Close()
		r = f
	}
	if r == nil {
		return nil, usageError("decode: no standard input")
	}
	b, err := io.ReadAll(io.LimitReader(r, maxDecodeInput+1))
	if err != nil {
		return nil, fmt.Errorf("decode: reading %s: %w", displayName(name), err)
	}
	if len(b) > maxDecodeInput {
		return nil, fmt.Errorf("decode: %s is larger than %d bytes", displayName(name), maxDecodeInput)
	}
	return b, nil
}

// readContexts reads and parses each --context file, keyed by id.
func readContexts(files []string) (map[uint32]*reading.CompactContext, error) {
	out := make(map[uint32]*reading.CompactContext, len(files))
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("decode: --context: %w", err)
		}
		if st.Size() > reading.MaxContextBytes {
			return nil, fmt.Errorf("decode: --context %s: %d bytes, more than a context's %d", f, st.Size(), reading.MaxContextBytes)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("decode: --context: %w", err)
		}
		c, err := reading.ParseCompactContext(b)
		if err != nil {
			return nil, fmt.Errorf("decode: --context %s: %w", f, err)
		}
		out[c.ID()] = c
	}
	return out, nil
}

func decodePayload(payload []byte, encoding, contentType, contentEncoding string, contexts map[uint32]*reading.CompactContext) (reading.Batch, error) {
	lookup := func(id uint32) (*reading.CompactContext, bool) { c, ok := contexts[id]; return c, ok }
	if contentType != "" {
		if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt == reading.ContentTypeCompact && contentEncoding == "" {
			return reading.DecodeCompact(payload, lookup)
		}
		return reading.DecodeBatch(contentType, contentEncoding, payload)
	}
	if encoding == "" {
		var err error
		if encoding, err = reading.DetectEncoding(payload); err != nil {
			return reading.Batch{}, err
		}
	}
	if encoding == reading.EncodingCompact {
		return reading.DecodeCompact(payload, lookup)
	}
	enc, err := reading.NewEncoder(encoding)
	if err != nil {
		return reading.Batch{}, err
	}
	return enc.Decode(payload)
}
