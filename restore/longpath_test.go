package restore_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
)

// TestRestorePathsBeyondPathMax restores a tree whose deepest entries
// have paths longer than PATH_MAX into a new target, over itself (all
// identical), and over a target whose deep part was changed: a file
// rewritten, entries the snapshot lacks (with Delete: removed), a
// directory where the snapshot has a file and a file where it has a
// directory — each put right, with nothing written outside the target.
func TestRestorePathsBeyondPathMax(t *testing.T) {
	const levels = 18
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.CreateDeep(t, src, levels)
	snap := r.backup(t, src)
	want := fixture.ReadDeep(t, src)
	parent := t.TempDir()
	dst := filepath.Join(parent, "target")
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	check := func(round string) {
		t.Helper()
		got := fixture.ReadDeep(t, restoredAt(dst, src))
		if !maps.Equal(got, want) {
			for p, w := range want {
				if got[p] != w {
					t.Errorf("%s: …%s restored as %q, want %q", round, p[max(0, len(p)-30):], got[p], w)
				}
			}
			for p := range got {
				if _, ok := want[p]; !ok {
					t.Errorf("%s: …%s restored, the snapshot has no such entry", round, p[max(0, len(p)-30):])
				}
			}
		}
		if ents, err := os.ReadDir(parent); err != nil || len(ents) != 1 {
			t.Errorf("%s: the target's parent holds %v (%v), want the target alone", round, ents, err)
		}
	}

	res := r.restore(t, snap, restore.Options{Target: dst})
	check("new target")
	if res.Files != levels+1 {
		t.Errorf("new target: %d files restored, want %d", res.Files, levels+1)
	}
	res = r.restore(t, snap, restore.Options{Target: dst})
	check("over itself")
	if res.FilesSkipped != levels+1 || res.BytesWritten != 0 {
		t.Errorf("over itself: %d files found identical, %d bytes written; want all %d identical, nothing written", res.FilesSkipped, res.BytesWritten, levels+1)
	}

	// The deepest directory, reached one level at a time.
	fd, err := unix.Open(restoredAt(dst, src), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for l := range levels {
		next, err := unix.Openat(fd, fixture.DeepName(l), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	f, err := unix.Openat(fd, "data", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	must(err)
	_, err = unix.Pwrite(f, []byte("changed"), 100)
	must(err)
	unix.Close(f)
	f, err = unix.Openat(fd, "extra", unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	must(err)
	unix.Close(f)
	must(unix.Mkdirat(fd, "extradir", 0o755))
	must(unix.Unlinkat(fd, "link", 0))
	must(unix.Mkdirat(fd, "link", 0o755)) // a directory where a symlink was
	must(unix.Unlinkat(fd, "empty", unix.AT_REMOVEDIR))
	f, err = unix.Openat(fd, "empty", unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644) // a file where a directory was
	must(err)
	unix.Close(f)
	unix.Close(fd)

	res = r.restore(t, snap, restore.Options{Target: dst, Delete: true, Verify: true})
	check("over a changed target")
	if res.Deleted != 2 || res.FilesVerified != levels+1 {
		t.Errorf("over a changed target: %d entries deleted, %d files verified; want 2 and %d", res.Deleted, res.FilesVerified, levels+1)
	}
	for _, c := range res.Changes {
		if !strings.HasSuffix(c.Path, "/extra") && !strings.HasSuffix(c.Path, "/extradir") {
			t.Errorf("unexpected change %+v", c)
		}
	}
}

// TestRestoreTargetBeyondPathMax: a target too long for the kernel is
// refused, saying so and what to do.
func TestRestoreTargetBeyondPathMax(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.CreateDeep(t, src, 1)
	snap := r.backup(t, src)
	dst := t.TempDir()
	fixture.CreateDeep(t, dst, 18)
	for l := range 18 {
		dst += "/" + fixture.DeepName(l)
	}
	_, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst})
	if err == nil || !errors.Is(err, syscall.ENAMETOOLONG) || !strings.Contains(err.Error(), "PATH_MAX") || !strings.Contains(err.Error(), "choose a shorter target") {
		t.Fatalf("restore into a %d-byte target: %v; want it refused, naming PATH_MAX and what to do", len(dst), err)
	}
}
