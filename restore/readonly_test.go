// Restores into a target with a read-only file system mounted inside it.

package restore_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
)

// TestReadOnlyMountInTarget: the entries of a snapshot that fall on a
// read-only file system mounted inside the target fail, each reported
// saying why and what to do, and everything else is restored; a dry run
// reports the same (found by review: the first file there ended the
// whole restore with "restore target is read-only", and the dry run
// promised success).
func TestReadOnlyMountInTarget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to mount a file system")
	}
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"a":       {Content: []byte("before it in the walk\n")},
		"e/y":     {Content: []byte("on the read-only mount\n")},
		"e/big":   {Content: fixture.Random(7, 3<<20)}, // several chunks: created up front
		"e/l":     {Symlink: "y"},
		"e/sub/w": {Content: []byte("in a directory that cannot be made\n")},
		"z":       {Content: []byte("after it in the walk\n")},
	})
	snap := r.backup(t, src)
	dst := t.TempDir()
	out := restoredAt(dst, src)
	e := filepath.Join(out, "e")
	if err := os.MkdirAll(e, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", e, "tmpfs", unix.MS_RDONLY, "size=1m"); err != nil {
		t.Fatalf("mount a read-only tmpfs at %s: %v", e, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(e, 0); err != nil {
			_ = unix.Unmount(e, unix.MNT_DETACH)
		}
	})

	dry, res := r.dryThenRestore(t, snap, restore.Options{Target: dst})
	failed, errs := failedPaths(res, src)
	if want := []string{"e/big", "e/l", "e/sub", "e/y"}; !slices.Equal(failed, want) {
		t.Fatalf("failures %v, want %v", res.Failures, want)
	}
	for _, p := range failed {
		if !strings.Contains(errs[p], "read-only file system") {
			t.Errorf("%s: %q, want it to say why", p, errs[p])
		}
	}
	for _, p := range []string{"e/big", "e/l", "e/y"} {
		if !strings.Contains(errs[p], "remount") {
			t.Errorf("%s: %q, want it to say what to do", p, errs[p])
		}
	}
	sameFailures(t, dry, res, src)
	if dry.Files != res.Files || dry.Symlinks != res.Symlinks || res.Files != 2 {
		t.Errorf("the dry run would restore %d files and %d symlinks, the restore did %d and %d; want 2 files", dry.Files, dry.Symlinks, res.Files, res.Symlinks)
	}
	wantFiles(t, out, map[string]string{"a": "before it in the walk\n", "z": "after it in the walk\n"})
}

// TestDryRunUnwritableDir: as a user other than root, the files and
// symlinks of a directory the target holds that the user may not write
// to fail, and the dry run says so too rather than promising them.
func TestDryRunUnwritableDir(t *testing.T) {
	r := anyUserRepo(t)
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"locked/f": {Content: []byte("cannot go here\n")},
		"locked/l": {Symlink: "f"},
		"ok":       {Content: []byte("restored anyway\n")},
	})
	snap := r.backup(t, src)
	dst := userTarget(t, nobody)
	out := restoredAt(dst, src)
	must := fatalIf(t)
	must(os.MkdirAll(out, 0o755))
	for p := out; p != dst; p = filepath.Dir(p) {
		must(os.Chown(p, nobody, nobody))
	}
	must(os.Mkdir(filepath.Join(out, "locked"), 0o755)) // root's

	var dry, res *restore.Result
	asUser(t, nobody, func() { dry, res = r.dryThenRestore(t, snap, restore.Options{Target: dst}) })
	failed, errs := failedPaths(res, src)
	if want := []string{"locked/f", "locked/l"}; !slices.Equal(failed, want) {
		t.Fatalf("failures %v, want %v", res.Failures, want)
	}
	dryFailed, dryErrs := failedPaths(dry, src)
	if !slices.Equal(dryFailed, failed) {
		t.Errorf("the dry run's failures %v, the restore's %v", dry.Failures, res.Failures)
	}
	for _, p := range failed {
		if !strings.Contains(errs[p], "permission denied") || !strings.Contains(dryErrs[p], "permission denied") {
			t.Errorf("%s: the restore says %q, the dry run %q; want both to say why", p, errs[p], dryErrs[p])
		}
	}
	if dry.Files != res.Files || dry.Symlinks != res.Symlinks || res.Files != 1 {
		t.Errorf("the dry run would restore %d files and %d symlinks, the restore did %d and %d; want 1 file", dry.Files, dry.Symlinks, res.Files, res.Symlinks)
	}
}

// TestDryRunImmutableFile: an immutable file (chattr +i) where the
// snapshot has a file or a symlink cannot be replaced: the restore fails
// that path, and the dry run says so too rather than listing it as
// replaced.
func TestDryRunImmutableFile(t *testing.T) {
	chattr := needChattr(t)
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"f":   {Content: []byte("the snapshot's\n")},
		"big": {Content: fixture.Random(9, 3<<20)}, // several chunks
		"l":   {Symlink: "f"},
		"ok":  {Content: []byte("restored anyway\n")},
	})
	snap := r.backup(t, src)
	dst := t.TempDir()
	out := restoredAt(dst, src)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"f", "big", "l"} {
		fp := filepath.Join(out, p)
		if err := os.WriteFile(fp, []byte("immutable\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command(chattr, "+i", fp).CombinedOutput(); err != nil {
			t.Skipf("the filesystem of %s has no immutable flag: %v %s", fp, err, b)
		}
		t.Cleanup(func() { _ = exec.Command(chattr, "-i", fp).Run() })
	}

	dry, res := r.dryThenRestore(t, snap, restore.Options{Target: dst})
	failed, errs := failedPaths(res, src)
	if want := []string{"big", "f", "l"}; !slices.Equal(failed, want) {
		t.Fatalf("failures %v, want %v", res.Failures, want)
	}
	dryFailed, dryErrs := failedPaths(dry, src)
	if !slices.Equal(dryFailed, failed) || len(dry.Changes) != 0 {
		t.Errorf("the dry run: failures %v, changes %v; the restore's failures %v", dry.Failures, dry.Changes, res.Failures)
	}
	for _, p := range failed {
		if !strings.Contains(errs[p], "operation not permitted") || !strings.Contains(dryErrs[p], "operation not permitted") {
			t.Errorf("%s: the restore says %q, the dry run %q; want both to say why", p, errs[p], dryErrs[p])
		}
	}
	if dry.Files != res.Files || dry.Symlinks != res.Symlinks || res.Files != 1 {
		t.Errorf("the dry run would restore %d files and %d symlinks, the restore did %d and %d; want 1 file", dry.Files, dry.Symlinks, res.Files, res.Symlinks)
	}
	if b, err := os.ReadFile(filepath.Join(out, "ok")); err != nil || string(b) != "restored anyway\n" {
		t.Errorf("ok: %q, %v", b, err)
	}
}

// TestDeleteOnReadOnlyMount: with Delete, what the target holds on a
// read-only file system mounted inside it and the snapshot lacks cannot
// be removed: the restore reports it, and the dry run too rather than
// listing it as deleted.
func TestDeleteOnReadOnlyMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to mount a file system")
	}
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"e/y": {Content: []byte("the same on the mount\n")}, "a": {Content: []byte("restored\n")}})
	snap := r.backup(t, src)
	dst := t.TempDir()
	out := restoredAt(dst, src)
	e := filepath.Join(out, "e")
	must := fatalIf(t)
	must(os.MkdirAll(e, 0o755))
	if err := unix.Mount("tmpfs", e, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount a tmpfs at %s: %v", e, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(e, 0); err != nil {
			_ = unix.Unmount(e, unix.MNT_DETACH)
		}
	})
	must(os.WriteFile(filepath.Join(e, "extra"), []byte("not in the snapshot\n"), 0o644))
	must(os.WriteFile(filepath.Join(e, "y"), []byte("the same on the mount\n"), 0o644))
	if err := unix.Mount("", e, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", e, err)
	}

	dry, res := r.dryThenRestore(t, snap, restore.Options{Target: dst, Delete: true})
	failed, _ := failedPaths(res, src)
	if want := []string{"e/extra"}; !slices.Equal(failed, want) {
		t.Fatalf("failures %v, want %v", res.Failures, want)
	}
	if dryFailed, _ := failedPaths(dry, src); !slices.Equal(dryFailed, failed) || dry.Deleted != res.Deleted {
		t.Errorf("the dry run: failures %v, %d deleted (%v); the restore: %v, %d", dry.Failures, dry.Deleted, dry.Changes, res.Failures, res.Deleted)
	}
}
