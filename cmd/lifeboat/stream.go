package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/lifeboat-backup/lifeboat/internal/streamcmd"
)

// stdinSource returns standard input for a backup, and a function that
// makes a Read blocked on it return (Stream.Abort). A terminal is refused:
// it would wait for typing, which is never what a backup meant.
func stdinSource() (io.Reader, func(), error) {
	if term.IsTerminal(0) {
		return nil, nil, usageError("--stdin: standard input is a terminal; pipe the data in (pg_dump db | lifeboat backup --stdin --stdin-filename db.sql) or use --stdin-from-command")
	}
	// In non-blocking mode a pipe is read through Go's poller, so Close
	// makes a Read that waits on a stalled writer return. (A regular file
	// is read as before: its reads do not wait.)
	if err := syscall.SetNonblock(0, true); err != nil {
		return nil, nil, fmt.Errorf("standard input: %w", err)
	}
	in := os.NewFile(0, "standard input")
	return in, func() { in.Close() }, nil
}

// startCommand starts args[0] with args[1:] for --stdin-from-command,
// its standard error passed through to stderr, its standard input empty.
func startCommand(args []string, stderr io.Writer) (*streamcmd.Source, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = stderr
	src, err := streamcmd.Start(cmd, shellQuote(args))
	if err != nil {
		return nil, usageError("--stdin-from-command: %v", err)
	}
	return src, nil
}

// shellQuote writes a command line as a shell would read it back: words
// with spaces or shell characters in single quotes.
func shellQuote(args []string) string {
	words := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`;&|<>()*?[]{}~#!") {
			words[i] = a
			continue
		}
		words[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(words, " ")
}
