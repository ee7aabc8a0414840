package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/lifeboat-backup/lifeboat/internal/streamcmd"
)

// stdinSource returns standard input for a backup, a function that makes
// a Read blocked on it return (Stream.Abort) and one to call when the
// backup is over. A terminal is refused: it would wait for typing, which
// is never what a backup meant.
func stdinSource() (in io.Reader, abort, done func(), err error) {
	if term.IsTerminal(0) {
		return nil, nil, nil, usageError("--stdin: standard input is a terminal; pipe the data in (pg_dump db | lifeboat backup --stdin --stdin-filename db.sql) or use --stdin-from-command")
	}
	// In non-blocking mode a pipe is read through Go's poller, so Close
	// makes a Read that waits on a stalled writer return. (A regular file
	// is read as before: its reads do not wait.) The mode belongs to the
	// pipe, which the shell may hand on to the next command: done puts
	// the old mode back, through a second descriptor, as Close may have
	// closed the first.
	keep, err := unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("standard input: %w", err)
	}
	flags, err := unix.FcntlInt(uintptr(keep), unix.F_GETFL, 0)
	if err == nil {
		err = syscall.SetNonblock(0, true)
	}
	if err != nil {
		syscall.Close(keep)
		return nil, nil, nil, fmt.Errorf("standard input: %w", err)
	}
	f := os.NewFile(0, "standard input")
	done = func() {
		unix.FcntlInt(uintptr(keep), unix.F_SETFL, flags)
		syscall.Close(keep)
	}
	return f, func() { f.Close() }, done, nil
}

// startCommand starts args[0] with args[1:] for --stdin-from-command,
// its standard error passed through to stderr, its standard input empty.
func startCommand(args []string, stderr io.Writer) (*streamcmd.Source, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = stderr
	src, err := streamcmd.Start(cmd, shellQuote(args))
	if err != nil {
		return nil, fmt.Errorf("--stdin-from-command: %w; no snapshot was written", err)
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
