// Package tiedtest helps tests prove that a command started with
// tied.Start ends when lifeboat is killed: the test binary re-runs
// itself as the "lifeboat" that starts the command, and is killed.
package tiedtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartSelf runs the test binary again with env set to a file name (its
// TestMain must then start a command that writes its PID there, and
// wait), and returns that process and the command's PID once written.
func StartSelf(t *testing.T, env string) (*exec.Cmd, int) {
	t.Helper()
	pidFile := filepath.Join(t.TempDir(), "pid")
	self := exec.Command(os.Args[0])
	self.Env = append(os.Environ(), env+"="+pidFile)
	self.Stderr = os.Stderr
	if err := self.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { self.Process.Kill(); self.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(pidFile)
		if err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
			return self, pid
		}
		if time.Now().After(deadline) {
			t.Fatal("the command did not start")
		}
	}
}

// KillSelf kills self with SIGKILL and fails the test unless process
// pid is gone within 5 s.
func KillSelf(t *testing.T, self *exec.Cmd, pid int) {
	t.Helper()
	if err := self.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	self.Wait()
	for deadline := time.Now().Add(5 * time.Second); Running(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the command still runs 5 s after the process that started it was killed")
		}
	}
}

// Running reports whether process pid exists and is not a zombie.
func Running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// PIDIn returns the process ID a shell wrote to file ("echo $$ > file"),
// or 0 while the file lacks a whole line.
func PIDIn(file string) int {
	b, err := os.ReadFile(file)
	if err != nil || !strings.HasSuffix(string(b), "\n") {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}
