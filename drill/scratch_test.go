package drill

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScratchRefusals: a scratch directory others could tamper with is
// refused before anything is restored.
func TestScratchRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "local", smallTree())
	e.backup(t, base.Add(-time.Hour))
	for _, tc := range []struct {
		name string
		prep func(t *testing.T) string
		want string
	}{
		{"symlink", func(t *testing.T) string {
			real := t.TempDir()
			link := filepath.Join(t.TempDir(), "scratch")
			if err := os.Symlink(real, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "is a symlink"},
		{"world-writable", func(t *testing.T) string {
			d := filepath.Join(t.TempDir(), "scratch")
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, 0o1777); err != nil {
				t.Fatal(err)
			}
			return d
		}, "writable by other users (mode 0777); run 'chmod go-w"},
		{"group-writable", func(t *testing.T) string {
			d := t.TempDir()
			if err := os.Chmod(d, 0o770); err != nil {
				t.Fatal(err)
			}
			return d
		}, "writable by other users (mode 0770)"},
		{"a file", func(t *testing.T) string {
			f := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return f
		}, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := e.opts(t, "scratch-1")
			o.Scratch = tc.prep(t)
			o.Verify = []Command{{Command: "true"}}
			r := e.run(t, o)
			f := failureFor(r, ReasonScratch)
			if r.Passed || f == nil || !strings.Contains(f.Message, o.Scratch) || !strings.Contains(f.Message, tc.want) {
				t.Fatalf("drill %s, failures %+v: want a scratch failure naming %s and %q", r.Summary(), r.Failures, o.Scratch, tc.want)
			}
			if r.Files != 0 || r.RestoreSeconds != 0 || len(r.Checks) != 0 {
				t.Errorf("something ran: %+v", r)
			}
			if _, err := os.Lstat(ScratchDir(o.Scratch, o.ID)); err == nil {
				t.Errorf("a restore directory was created in %s", o.Scratch)
			}
		})
	}
	// A missing one is created, mode 0700.
	o := e.opts(t, "scratch-2")
	o.Scratch = filepath.Join(t.TempDir(), "a", "scratch")
	if r := e.run(t, o); !r.Passed {
		t.Fatalf("drill into a new scratch directory: %s %+v", r.Summary(), r.Failures)
	}
	if fi, err := os.Stat(o.Scratch); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created scratch directory: %v %v, want mode 0700", fi.Mode(), err)
	}
}
