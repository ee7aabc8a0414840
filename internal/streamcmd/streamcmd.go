// Package streamcmd runs a command whose standard output a backup reads as
// a stream (snapshot.Stream): a database dump, say. The command's exit
// status is checked when its output ends, so a command that fails turns
// the end of its output into an error and the backup saves no snapshot of
// a dump cut short; and a backup that stops early ends the command, with
// every process it started, instead of waiting for it.
package streamcmd

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Source is a started command's output.
type Source struct {
	cmd  *exec.Cmd
	out  io.ReadCloser
	name string // the command, for messages

	once sync.Once
	err  error // the command's failure, once its output ended
}

// Start starts cmd, whose Stdout must be unset (it becomes the stream),
// in a process group of its own. name names the command in errors. The
// caller sets everything else (arguments, environment, Stderr) and must
// call Stop once the backup is over.
func Start(cmd *exec.Cmd, name string) (*Source, error) {
	// Its own process group, so that Abort ends what it started too (the
	// shell of "sh -c '...'" and its children), not just its first
	// process.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", name, err)
	}
	return &Source{cmd: cmd, out: out, name: name}, nil
}

// Read reads the command's output. At its end it waits for the command
// and returns io.EOF only if the command succeeded.
func (s *Source) Read(p []byte) (int, error) {
	n, err := s.out.Read(p)
	if err == io.EOF {
		if werr := s.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// wait waits for the command once.
func (s *Source) wait() error {
	s.once.Do(func() {
		if err := s.cmd.Wait(); err != nil {
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				err = fmt.Errorf("command %s failed (%s); its output is not a complete backup", s.name, ee.ProcessState)
			} else {
				err = fmt.Errorf("command %s: %w", s.name, err)
			}
			s.err = err
		}
	})
	return s.err
}

// Abort makes a Read blocked on the command's output return and ends the
// command's process group with SIGTERM (snapshot.Stream.Abort): the backup
// stopped before the output's end, and a command that writes nothing (a
// dump waiting for a lock) would otherwise keep it waiting.
func (s *Source) Abort() {
	s.out.Close()
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
}

// Stop, once the backup is over, makes sure the command has ended: it is
// aborted if it is still running, and its process group killed if it
// still runs 10 seconds after that.
func (s *Source) Stop() {
	done := make(chan struct{})
	go func() { s.wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(100 * time.Millisecond):
	}
	s.Abort()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}
