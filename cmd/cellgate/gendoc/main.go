// Command gendoc writes cellgate's man pages and shell completion scripts
// from its command tree, for the packages (`make man`):
//
//	go run ./cmd/cellgate/gendoc -out dist/doc
//
// writes <out>/man/man1/cellgate*.1.gz (gzip -9n style: no name, no time)
// and <out>/completion/{cellgate.bash,_cellgate,cellgate.fish}. The man
// pages' date is $SOURCE_DATE_EPOCH when set, so a rebuild is identical.
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/cellgate/cellgate/agent/cli"
)

func main() {
	out := flag.String("out", "dist/doc", "directory to write man/man1 and completion into")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc: "+err.Error())
		os.Exit(1)
	}
}

func run(out string) error {
	date, err := sourceDate()
	if err != nil {
		return err
	}
	root := cli.Command(cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	markdownLong(root)
	if err := writeMan(root, filepath.Join(out, "man", "man1"), date); err != nil {
		return err
	}
	return writeCompletion(root, filepath.Join(out, "completion"))
}

// markdownLong rewrites every command's Long for the man page, which
// reads it as markdown: indented lines (lists of flags, variables, examples)
// become literal blocks, and in the prose the characters markdown would
// take for markup are escaped ("__", "<KEY>", "*").
func markdownLong(c *cobra.Command) {
	var b strings.Builder
	inBlock := false
	for _, line := range strings.Split(c.Long, "\n") {
		literal := strings.HasPrefix(line, "  ")
		if literal && !inBlock {
			b.WriteString("\n")
		}
		if !literal && inBlock && line != "" {
			b.WriteString("\n")
		}
		inBlock = literal
		if literal {
			b.WriteString("  " + line + "\n")
			continue
		}
		b.WriteString(markdownEscaper.Replace(line) + "\n")
	}
	c.Long = strings.TrimSuffix(b.String(), "\n")
	for _, sub := range c.Commands() {
		markdownLong(sub)
	}
}

var markdownEscaper = strings.NewReplacer(`\`, `\\`, "_", `\_`, "*", `\*`, "<", `\<`, ">", `\>`, "`", "\\`", "[", `\[`, "]", `\]`)

// sourceDate is $SOURCE_DATE_EPOCH, or now.
func sourceDate() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Now().UTC(), nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// writeMan writes one gzipped page per command into dir, replacing the
// pages a previous run left.
func writeMan(root *cobra.Command, dir string, date time.Time) error {
	tmp, err := os.MkdirTemp("", "cellgate-man-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	header := &doc.GenManHeader{Title: "CELLGATE", Section: "1", Source: "cellgate", Manual: "cellgate manual", Date: &date}
	if err := doc.GenManTree(root, header, tmp); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pages, err := filepath.Glob(filepath.Join(tmp, "*.1"))
	if err != nil {
		return err
	}
	for _, p := range pages {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return err
		}
		if _, err := zw.Write(data); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)+".gz"), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("gendoc: %d man pages in %s\n", len(pages), dir)
	return nil
}

// writeCompletion writes the bash, zsh and fish completion scripts into
// dir under the names those shells look for.
func writeCompletion(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, gen := range map[string]func(*bytes.Buffer) error{
		"cellgate.bash": func(b *bytes.Buffer) error { return root.GenBashCompletionV2(b, true) },
		"_cellgate":     func(b *bytes.Buffer) error { return root.GenZshCompletion(b) },
		"cellgate.fish": func(b *bytes.Buffer) error { return root.GenFishCompletion(b, true) },
	} {
		var b bytes.Buffer
		if err := gen(&b); err != nil {
			return fmt.Errorf("completion %s: %w", name, err)
		}
		if !strings.Contains(b.String(), "cellgate") {
			return fmt.Errorf("completion %s: script does not name cellgate", name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("gendoc: bash, zsh and fish completion in %s\n", dir)
	return nil
}
