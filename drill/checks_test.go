package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCheckEnvAllowList: verify commands see the drill's variables, a
// few harmless ones of the runner's environment, and none of its
// secrets.
func TestCheckEnvAllowList(t *testing.T) {
	// Not parallel: t.Setenv.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
	t.Setenv("LIFEBOAT_IDENTITY", "/etc/lifeboat/id.txt")
	t.Setenv("LIFEBOAT_PASSPHRASE", "hunter2")
	t.Setenv("LC_ALL", "C.UTF-8")
	t.Setenv("TZ", "UTC")
	e := newEnv(t, "local", smallTree())
	e.backup(t, base.Add(-time.Hour))
	out := filepath.Join(t.TempDir(), "env")
	o := e.opts(t, "env-1")
	o.Env = []string{"EXTRA_VAR=extra"}
	o.Verify = []Command{{Command: fmt.Sprintf("env > %q", out)}}
	if r := e.run(t, o); !r.Passed {
		t.Fatalf("drill: %s %+v", r.Summary(), r.Failures)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for _, kv := range []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C.UTF-8", "TZ=UTC", "EXTRA_VAR=extra", "LIFEBOAT_DRILL_ID=env-1"} {
		if !slices.Contains(lines, kv) {
			t.Errorf("verify command environment lacks %s", kv)
		}
	}
	for _, k := range []string{"AWS_SECRET_ACCESS_KEY", "LIFEBOAT_IDENTITY", "LIFEBOAT_PASSPHRASE"} {
		for _, l := range lines {
			if strings.HasPrefix(l, k+"=") {
				t.Errorf("verify command sees %s", l)
			}
		}
	}
}

// TestAllowCommand: a command the runner refuses is recorded as a
// failed check and never runs; the others run as usual.
func TestAllowCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "local", smallTree())
	e.backup(t, base.Add(-time.Hour))
	marker := filepath.Join(t.TempDir(), "ran")
	refused := "touch " + marker
	o := e.opts(t, "allow-1")
	o.Verify = []Command{{Command: "true"}, {Command: refused}}
	o.AllowCommand = func(c string) error {
		if c == "true" {
			return nil
		}
		return errors.New("not in this runner's allow-list (test)")
	}
	r := e.run(t, o)
	if r.Passed || !slices.Equal(r.Reasons(), []string{ReasonCheck}) {
		t.Fatalf("drill %s: want a check failure", r.Summary())
	}
	if f := failureFor(r, ReasonCheck); f.Message != fmt.Sprintf(`verify command %q refused on this runner: not in this runner's allow-list (test)`, refused) {
		t.Errorf("failure %q", f.Message)
	}
	if len(r.Checks) != 2 || !r.Checks[0].Passed || r.Checks[1] != (CheckResult{Command: refused, ExitCode: -1}) {
		t.Errorf("checks %+v", r.Checks)
	}
	if _, err := os.Lstat(marker); err == nil {
		t.Error("the refused command ran")
	}
}

// A verify command killed by a signal (the OOM killer, an operator) ran:
// the drill must say it was killed and by what, not that it "could not
// run" (which points at the runner's configuration).
func TestCheckKilledBySignal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cr, err := runCheck(context.Background(), Command{Command: "kill -9 $$", Timeout: time.Minute}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Passed || cr.TimedOut || cr.Signal != "killed" {
		t.Errorf("check killed by SIGKILL: %+v, want not passed and signal \"killed\"", cr)
	}
	e := newEnv(t, "local", smallTree())
	e.backup(t, base.Add(-time.Hour))
	o := e.opts(t, "sig")
	o.Verify = []Command{{Command: "kill -KILL $$"}}
	r := e.run(t, o)
	f := failureFor(r, ReasonCheck)
	if r.Passed || f == nil || !strings.Contains(f.Message, "was killed by signal") || strings.Contains(f.Message, "could not run") {
		t.Errorf("failure %+v: want it to say the command was killed by a signal", f)
	}
}
