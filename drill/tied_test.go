package drill

import (
	"context"
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

// checkPIDEnv, set to a file name, makes the test binary stand in for a
// drill running a verify command that writes its PID there and waits
// (TestCheckEndsWithDrill).
const checkPIDEnv = "DRILL_TEST_CHECK_PIDFILE"

func TestMain(m *testing.M) {
	if pidFile := os.Getenv(checkPIDEnv); pidFile != "" {
		env := append(os.Environ(), "PIDFILE="+pidFile)
		_, err := runCheck(context.Background(), Command{Command: `echo $$ > "$PIDFILE.tmp" && mv "$PIDFILE.tmp" "$PIDFILE" && exec sleep 600`}, os.TempDir(), env)
		fmt.Fprintln(os.Stderr, "check returned:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestCheckEndsWithDrill: a drill killed with SIGKILL while a verify
// command runs cannot end it; the kernel does, instead of leaving it
// running in a restored tree nobody will remove.
func TestCheckEndsWithDrill(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	d := exec.Command(os.Args[0])
	d.Env = append(os.Environ(), checkPIDEnv+"="+pidFile)
	d.Stderr = os.Stderr
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Process.Kill(); d.Wait() })
	var pid int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(pidFile)
		if err == nil {
			if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the verify command did not start")
		}
	}
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	if err := d.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.Wait()
	for deadline := time.Now().Add(5 * time.Second); processRunning(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the verify command still runs 5 s after its drill was killed")
		}
	}
}

// processRunning reports whether process pid exists and is not a zombie.
func processRunning(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
