package streamcmd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/tied/tiedtest"
)

// modes runs a test with the command in a process group of its own (no
// terminal) and in lifeboat's group (a terminal).
func modes(t *testing.T, f func(t *testing.T, group bool)) {
	t.Run("own group", func(t *testing.T) { f(t, true) })
	t.Run("shared group", func(t *testing.T) { f(t, false) })
}

func startSh(t *testing.T, script string, group bool) (*Source, *bytes.Buffer) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stderr = &stderr
	src, err := start(cmd, "test command", group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if group {
			syscall.Kill(-src.cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	return src, &stderr
}

// within fails the test if f has not returned after d: the cases below
// are about not hanging.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
	}
}

func TestExitStatus(t *testing.T) {
	modes(t, func(t *testing.T, group bool) {
		src, _ := startSh(t, "echo ok", group)
		b, err := io.ReadAll(src)
		if err != nil || string(b) != "ok\n" {
			t.Errorf("a command that succeeds: %q, %v", b, err)
		}
		src.Stop()

		src, _ = startSh(t, "echo partial; exit 3", group)
		b, err = io.ReadAll(src)
		if err == nil || !strings.Contains(err.Error(), "exit status 3") || string(b) != "partial\n" {
			t.Errorf("a command that fails: %q, %v; want its output and an error with its status", b, err)
		}
		src.Stop()
	})
}

// TestLeftBehindHoldsStderr: a command exits 0 but leaves a process
// holding its stderr (as ssh's ControlPersist master does). The stream
// still ends, successfully, soon after the command.
func TestLeftBehindHoldsStderr(t *testing.T) {
	modes(t, func(t *testing.T, group bool) {
		src, _ := startSh(t, "echo data; sleep 20 >/dev/null &", group)
		within(t, 10*time.Second, "reading a command whose child holds stderr", func() {
			b, err := io.ReadAll(src)
			if err != nil || string(b) != "data\n" {
				t.Errorf("%q, %v; want the output and no error", b, err)
			}
		})
		src.Stop()
	})
}

// TestAbortEndsStalledCommand: a command that writes and then waits (a
// dump waiting for a lock), and one that is stopped (as a background
// process asking the terminal for a password is): Abort makes the
// blocked Read return, and Stop ends the command and what it started.
func TestAbortEndsStalledCommand(t *testing.T) {
	for name, script := range map[string]string{
		// exec: with no process group of its own, only the command
		// itself is ended.
		"waiting": "echo x; exec sleep 600",
		"stopped": "echo x; kill -STOP $$; exec sleep 600",
	} {
		t.Run(name, func(t *testing.T) {
			modes(t, func(t *testing.T, group bool) {
				src, _ := startSh(t, script, group)
				buf := make([]byte, 2)
				if _, err := io.ReadFull(src, buf); err != nil {
					t.Fatal(err)
				}
				readErr := make(chan error, 1)
				go func() { _, err := src.Read(buf); readErr <- err }()
				time.Sleep(100 * time.Millisecond)
				src.Abort()
				within(t, 5*time.Second, "a Read after Abort", func() {
					if err := <-readErr; err == nil || errors.Is(err, io.EOF) {
						t.Errorf("Read after Abort: %v, want an error", err)
					}
				})
				// Well under Stop's 10 s before SIGKILL: SIGTERM
				// (with SIGCONT for the stopped one) did it.
				within(t, 5*time.Second, "Stop after Abort", src.Stop)
				if err := src.cmd.Process.Signal(syscall.Signal(0)); err == nil {
					t.Errorf("the command still runs after Stop")
				}
				if group {
					// The killed sleep is reaped by init, soon.
					deadline := time.Now().Add(5 * time.Second)
					for syscall.Kill(-src.cmd.Process.Pid, 0) == nil {
						if time.Now().After(deadline) {
							t.Errorf("its process group still has members 5 s after Stop")
							break
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
			})
		})
	}
}

// orphanEnv, set to a file name, makes the test binary stand in for a
// lifeboat that started a command (TestCommandEndsWithLifeboat).
const orphanEnv = "STREAMCMD_TEST_ORPHAN_PIDFILE"

func TestMain(m *testing.M) {
	if pidFile := os.Getenv(orphanEnv); pidFile != "" {
		startOrphan(pidFile)
		return
	}
	os.Exit(m.Run())
}

// startOrphan starts a command that writes its PID to pidFile and then
// waits, from a goroutine whose thread then ends (it exits locked to
// it), and waits to be killed.
func startOrphan(pidFile string) {
	// The main thread is never ended (a goroutine locked to it that
	// exits wedges it instead): kept here, so the goroutine below runs
	// on another.
	runtime.LockOSThread()
	started := make(chan error)
	go func() {
		runtime.LockOSThread()
		cmd := exec.Command("/bin/sh", "-c", `echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 600`, pidFile)
		_, err := StartGroup(cmd, "sleeper")
		started <- err
	}()
	if err := <-started; err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	time.Sleep(time.Hour)
}

// TestCommandEndsWithLifeboat: a lifeboat killed with SIGKILL (the OOM
// killer, a supervisor's last resort) cannot end its command, and a
// command that writes nothing (a dump waiting for a lock) would run on
// forever; the kernel ends it. The thread that started it ending, while
// lifeboat lives, must not.
func TestCommandEndsWithLifeboat(t *testing.T) {
	lb, pid := tiedtest.StartSelf(t, orphanEnv)
	time.Sleep(300 * time.Millisecond) // the starting goroutine's thread has ended by now
	if !tiedtest.Running(pid) {
		t.Fatal("the command ended with the thread that started it, while lifeboat runs")
	}
	tiedtest.KillSelf(t, lb, pid)
}
