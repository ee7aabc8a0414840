package drill

import (
	"context"
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

// TestKeptTreesPruned: failed drills kept for inspection do not fill
// the scratch directory: a drill leaves only the newest KeptTrees
// earlier trees.
func TestKeptTreesPruned(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "local", smallTree())
	e.backup(t, base.Add(-time.Hour))
	scratch := t.TempDir()
	now := time.Now()
	for i, id := range []string{"old-1", "old-2", "old-3"} {
		d := ScratchDir(scratch, id)
		// A read-only directory inside, as a restored tree may hold.
		if err := os.MkdirAll(filepath.Join(d, "srv", "ro"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(d, "srv", "ro"), 0o500); err != nil {
			t.Fatal(err)
		}
		at := now.Add(time.Duration(i-3) * time.Hour)
		if err := os.Chtimes(d, at, at); err != nil {
			t.Fatal(err)
		}
	}
	// Not drill trees: left alone.
	if err := os.Mkdir(filepath.Join(scratch, "other"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(scratch, "lifeboat-drill-link")); err != nil {
		t.Fatal(err)
	}
	present := func(want ...string) {
		t.Helper()
		ents, err := os.ReadDir(scratch)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("scratch holds %v, want %v", got, want)
		}
	}
	for _, id := range []string{"fail-1", "fail-2"} {
		o := e.opts(t, id)
		o.Scratch = scratch
		o.KeepOnFailure = true
		o.Verify = []Command{{Command: "exit 1"}}
		if r := e.run(t, o); r.Passed || r.KeptAt != ScratchDir(scratch, id) {
			t.Fatalf("drill %s: %s, kept at %q", id, r.Summary(), r.KeptAt)
		}
	}
	// fail-1 removed old-1 (old-2 and old-3 were newer); fail-2 then
	// removed old-2 (fail-1, kept just now, and old-3 are newer).
	present("lifeboat-drill-fail-1", "lifeboat-drill-fail-2", "lifeboat-drill-link", "lifeboat-drill-old-3", "other")
	t.Cleanup(func() {
		for _, id := range []string{"fail-1", "fail-2", "old-3"} {
			removeTree(ScratchDir(scratch, id))
		}
	})
}

// Two drills sharing a scratch directory (two policies' drills on one
// runner, two 'drill local' runs): the second's clean-up of old trees
// must not remove the tree the first is still verifying, even when
// newer kept trees push it beyond the newest KeptTrees, and a drill with
// the ID of a running one must not take over its tree.
func TestPruneSparesRunningDrill(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "local", smallTree())
	e.backup(t, base.Add(-time.Hour))
	scratch := t.TempDir()
	started, release := filepath.Join(t.TempDir(), "started"), filepath.Join(t.TempDir(), "release")
	o := e.opts(t, "running")
	o.Scratch = scratch
	o.Verify = []Command{{Command: `touch ` + started + `; while [ ! -e ` + release + ` ]; do sleep 0.02; done; test -f "$LIFEBOAT_DRILL_DIR/` + e.rel("hello.txt") + `"`, Timeout: time.Minute}}
	done := make(chan *Result, 1)
	go func() {
		r, err := Run(context.Background(), e.repos.Reader, o)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first drill's verify command did not start")
		}
	}
	// Two kept trees newer than the running drill's.
	future := time.Now().Add(time.Hour)
	for _, id := range []string{"kept-1", "kept-2"} {
		d := ScratchDir(scratch, id)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(d, future, future)
	}
	o2 := e.opts(t, "second")
	o2.Scratch = scratch
	if r := e.run(t, o2); !r.Passed {
		t.Errorf("second drill: %s", r.Summary())
	}
	o3 := e.opts(t, "running") // same ID as the running drill
	o3.Scratch = scratch
	if r := e.run(t, o3); r.Passed || failureFor(r, ReasonScratch) == nil {
		t.Errorf("a drill with the ID of a running one: %s, want a scratch failure", r.Summary())
	}
	os.WriteFile(release, nil, 0o600)
	if r := <-done; r == nil || !r.Passed {
		t.Errorf("the running drill lost its tree to another drill's clean-up: %v", r.Failures)
	}
}
