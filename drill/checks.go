package drill

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/tied"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// outputTail is how much of a verify command's output a result keeps.
const outputTail = 4 << 10

// inheritedEnv are the variables of the drill's own environment that
// verify commands see (when set); LC_* are passed too. Nothing else is:
// the runner's environment may hold storage credentials, the identity's
// location or its passphrase.
var inheritedEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "TERM"}

// checkEnv is the environment of verify commands: the allowed variables
// of the drill's own (inheritedEnv, LC_*), opts.Env, then the LIFEBOAT_*
// variables that describe the drill (later entries win).
func (d *drill) checkEnv(dir string, snap *snapshot.Snapshot) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LC_") || slices.Contains(inheritedEnv, k) {
			env = append(env, kv)
		}
	}
	env = append(env, d.opts.Env...)
	return append(env,
		"LIFEBOAT_DRILL_DIR="+dir,
		"LIFEBOAT_DRILL_ID="+d.opts.ID,
		"LIFEBOAT_SNAPSHOT_ID="+snap.ID.String(),
		"LIFEBOAT_SNAPSHOT_TIME="+snap.Time.UTC().Format(time.RFC3339),
		"LIFEBOAT_SNAPSHOT_HOST="+snap.Host,
		"LIFEBOAT_SNAPSHOT_PATHS="+strings.Join(snap.Paths, "\n"),
		"LIFEBOAT_POLICY="+d.opts.Policy,
	)
}

func timeoutOf(c Command) time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultCheckTimeout
}

// runCheck runs one verify command with /bin/sh -c in dir, in a process
// group of its own. When it times out the whole group is killed
// (SIGKILL), so a pipeline or a daemon it started cannot outlive it; the
// group is also killed after a normal exit, for the same reason. The
// error is non-nil only when ctx is cancelled.
func runCheck(ctx context.Context, c Command, dir string, env []string) (CheckResult, error) {
	res := CheckResult{Command: c.Command, ExitCode: -1}
	tctx, cancel := context.WithTimeout(ctx, timeoutOf(c))
	defer cancel()
	cmd := exec.CommandContext(tctx, "/bin/sh", "-c", c.Command)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &tailBuffer{max: outputTail}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Stdin = nil
	cmd.Cancel = func() error { return killGroup(cmd) }
	// Output pipes held open by a process outside the group must not
	// stall the drill.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	// A drill killed meanwhile (kill -9, the OOM killer) cannot end the
	// check; the kernel kills it then (not what it started: a pipeline's
	// other processes run on until they next write).
	release, err := tied.Start(cmd, syscall.SIGKILL)
	if err != nil {
		res.Output = "could not start /bin/sh: " + err.Error()
		res.Seconds = time.Since(start).Seconds()
		return res, nil
	}
	err = cmd.Wait()
	release()
	_ = killGroup(cmd)
	res.Seconds = time.Since(start).Seconds()
	res.Output = out.String()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if errors.Is(tctx.Err(), context.DeadlineExceeded) {
		res.TimedOut = true
		return res, nil
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		res.ExitCode = 0
		res.Passed = true
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode() // -1 when killed by a signal
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal().String()
		}
	default:
		res.Output = strings.TrimSpace(res.Output + "\n" + err.Error())
	}
	return res, nil
}

func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu   sync.Mutex
	max  int
	buf  []byte
	lost bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		t.lost = t.lost || len(t.buf) > 0 || len(p) > t.max
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.lost = true
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost {
		return "…" + string(t.buf)
	}
	return string(t.buf)
}
