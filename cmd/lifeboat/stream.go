package main

import (
	"context"
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

// stdinSource checks that standard input can be backed up: a terminal
// would wait for typing, which is never what a backup meant.
func stdinSource(f *os.File) (io.Reader, error) {
	if term.IsTerminal(int(f.Fd())) {
		return nil, usageError("--stdin: standard input is a terminal; pipe the data in (pg_dump db | lifeboat backup --stdin --stdin-filename db.sql) or use --stdin-from-command")
	}
	return f, nil
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
	cmd.Stderr = stderr // a command still running when the backup gives up is ended by stop
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	name := strings.Join(args, " ")
	if err := cmd.Start(); err != nil {
		return nil, usageError("--stdin-from-command: cannot start %q: %v", name, err)
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
				err = fmt.Errorf("command %q failed (%s); its output is not a complete backup", c.name, ee.ProcessState)
			} else {
				err = fmt.Errorf("command %q: %w", c.name, err)
			}
			c.err = err
		}
	})
	return c.err
}

// stop ends a command the backup no longer reads (it failed or was
// interrupted): its pipe is closed, so a command blocked writing gets
// EPIPE or SIGPIPE, and one that still runs after that gets SIGTERM.
func (c *commandSource) stop(ctx context.Context) {
	c.out.Close()
	done := make(chan struct{})
	go func() { c.wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}
