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
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/tied"
)

// Source is a started command's output.
type Source struct {
	cmd   *exec.Cmd
	out   io.ReadCloser
	name  string // the command, for messages
	group bool   // the command leads a process group of its own

	once    sync.Once
	err     error  // the command's failure, once its output ended
	release func() // lets tied.Start's thread go, once the command has been waited for
}

// Start starts cmd, whose Stdout must be unset (it becomes the stream).
// name names the command in errors. The caller sets everything else
// (arguments, environment, Stderr) and must call Stop once the backup is
// over.
//
// Without a controlling terminal (an agent, cron, systemd), the command
// gets a process group of its own, so that Abort ends what it started
// too (the shell of "sh -c '...'" and its children), not just its first
// process. On a terminal it stays in lifeboat's foreground group: in a
// group of its own it would be stopped (SIGTTIN) the moment it asked for
// a password, and Ctrl-C reaches it there anyway.
func Start(cmd *exec.Cmd, name string) (*Source, error) {
	return start(cmd, name, !hasTerminal())
}

// StartGroup is Start for a daemon (an agent): the command always gets a
// process group of its own, terminal or not, since nobody answers its
// prompts.
func StartGroup(cmd *exec.Cmd, name string) (*Source, error) {
	return start(cmd, name, true)
}

func start(cmd *exec.Cmd, name string, group bool) (*Source, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = group
	// A lifeboat that dies without ending the command (kill -9, the OOM
	// killer) would leave it running: a dump waiting for a lock writes
	// nothing, so no broken pipe ever stops it, and it holds the lock.
	// tied.Start has the kernel send it SIGTERM instead.
	//
	// Wait returns once the command has exited and its pipes are closed;
	// a process it left behind holding its stderr (ssh's ControlPersist
	// master, say) would hold Wait, and with it the backup, for good.
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 2 * time.Second
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	release, err := tied.Start(cmd, syscall.SIGTERM)
	if err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", name, err)
	}
	return &Source{cmd: cmd, out: out, name: name, group: group, release: release}, nil
}

// Group returns the command's process group, if it leads one of its own.
func (s *Source) Group() (pgid int, ok bool) {
	return s.cmd.Process.Pid, s.group
}

// hasTerminal reports whether this process has a controlling terminal.
func hasTerminal() bool {
	f, err := os.Open("/dev/tty")
	if err != nil {
		return false
	}
	f.Close()
	return true
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
		err := s.cmd.Wait()
		s.release()
		if errors.Is(err, exec.ErrWaitDelay) {
			// It exited with status 0 and its output ended; only a
			// process it left behind still holds a pipe.
			err = nil
		}
		if err != nil {
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
	s.signal(syscall.SIGTERM)
	s.signal(syscall.SIGCONT) // a stopped process would not see the SIGTERM
}

// signal sends sig to the command's process group, or to the command
// alone if it has none of its own.
func (s *Source) signal(sig syscall.Signal) {
	if s.group {
		syscall.Kill(-s.cmd.Process.Pid, sig)
		return
	}
	s.cmd.Process.Signal(sig)
}

// Stop, once the backup is over, makes sure the command has ended: it is
// aborted if it is still running, and killed (with its process group) if
// it still runs 10 seconds after that; what is left of its group after
// the abort is killed too.
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
	}
	s.signal(syscall.SIGKILL)
	<-done
}
