package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"
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

// commandSource is the standard output of a command run for a backup
// (--stdin-from-command). Unlike a pipe into --stdin, whose writer's
// failure the backup cannot see, the command's exit status is checked
// when its output ends: a command that fails turns the end of its output
// into an error, so the backup fails and no snapshot of a truncated dump
// is saved.
type commandSource struct {
	cmd  *exec.Cmd
	out  io.ReadCloser
	name string // the command line, for messages

	once sync.Once
	err  error // the command's failure, once its output ended
}

// startCommand starts args[0] with args[1:], its standard error passed
// through to stderr, its standard input empty.
func startCommand(args []string, stderr io.Writer) (*commandSource, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = stderr
	// Its own process group, so that abort ends what it started too (the
	// shell of "sh -c '...'" and its children), not just its first process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	name := shellQuote(args)
	if err := cmd.Start(); err != nil {
		return nil, usageError("--stdin-from-command: cannot start %s: %v", name, err)
	}
	return &commandSource{cmd: cmd, out: out, name: name}, nil
}

func (c *commandSource) Read(p []byte) (int, error) {
	n, err := c.out.Read(p)
	if err == io.EOF {
		if werr := c.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// wait waits for the command once, after its output ended or the backup
// stopped reading it.
func (c *commandSource) wait() error {
	c.once.Do(func() {
		if err := c.cmd.Wait(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("command %s failed (%s); its output is not a complete backup", c.name, ee.ProcessState)
			} else {
				err = fmt.Errorf("command %s: %w", c.name, err)
			}
			c.err = err
		}
	})
	return c.err
}

// abort makes a Read blocked on the command's output return and ends
// the command (Stream.Abort): the backup stopped before the output's end,
// so it is not needed any more, and a command that writes nothing (a
// dump waiting for a lock) would otherwise keep the backup waiting.
func (c *commandSource) abort() {
	c.out.Close()
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
}

// stop, once the backup is over, makes sure the command has ended: it is
// aborted if its output was not read to the end, and killed if it is
// still running 10 seconds after that (with its process group).
func (c *commandSource) stop() {
	done := make(chan struct{})
	go func() { c.wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(100 * time.Millisecond):
	}
	c.abort()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
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
