// Restores into a target that already holds entries where the snapshot
// has others: directories, hard links, kept files, special files.

package restore_test

import (
	"bytes"
	"context"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestReplaceKeepsGuardedDirs: where the snapshot holds a file, a
// symlink, a hard link or an empty file and the target a directory with
// entries, Delete removes the directory to make room (without it, it is
// a conflict: TestDirConflicts) — unless it holds what the restore
// must never remove (Options.Protect: the repository being read, a key,
// the cache) or, as root, a mounted file system. Then that path fails,
// naming why, the directory and what it holds stay, and the rest of the
// snapshot is restored.
func TestReplaceKeepsGuardedDirs(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"big":      {Content: fixture.Random(3, 3<<20)}, // several chunks: created up front
		"small":    {Content: []byte("small\n")},
		"empty":    {Content: []byte{}},
		"link":     {Symlink: "small"},
		"hard/a":   {Content: []byte("linked\n")},
		"hard/b":   {HardlinkTo: "hard/a"},
		"mnt":      {Content: []byte("a file where the target has a mount\n")},
		"ok/plain": {Content: []byte("restored anyway\n")},
	})
	snap := r.backup(t, src)
	dst := t.TempDir()
	at := func(p string) string { return filepath.Join(restoredAt(dst, src), p) }
	guarded := []string{"big", "small", "empty", "link", "hard/b"}
	var protect []string
	for _, p := range guarded {
		keep := filepath.Join(at(p), "repo", "config")
		if err := os.MkdirAll(filepath.Dir(keep), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keep, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		protect = append(protect, filepath.Dir(keep))
	}
	mounted := false
	if os.Geteuid() == 0 {
		if err := os.MkdirAll(at("mnt"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", at("mnt"), "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("mount a tmpfs: %v", err)
		}
		t.Cleanup(func() { _ = unix.Unmount(at("mnt"), unix.MNT_DETACH) })
		if err := os.WriteFile(at("mnt/on-tmpfs"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		mounted = true
	}

	res, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst, Protect: protect, Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]string{}
	for _, f := range res.Failures {
		failed[strings.TrimPrefix(f.Path, strings.TrimPrefix(src, "/")+"/")] = f.Err.Error()
	}
	for _, p := range guarded {
		if !strings.Contains(failed[p], "which this restore uses") || !strings.Contains(failed[p], "not removed") {
			t.Errorf("%s: failure %q, want it to say the directory is not removed because the restore uses what it holds", p, failed[p])
		}
		if b, err := os.ReadFile(filepath.Join(at(p), "repo", "config")); err != nil || string(b) != "precious" {
			t.Errorf("%s: the protected file is gone or changed: %q %v", p, b, err)
		}
	}
	want := len(guarded)
	if mounted {
		want++
		if !strings.Contains(failed["mnt"], "a file system is mounted at") {
			t.Errorf("mnt: failure %q, want it to name the mount", failed["mnt"])
		}
		if _, err := os.Stat(at("mnt/on-tmpfs")); err != nil {
			t.Errorf("the mounted file system was emptied: %v", err)
		}
	}
	if len(failed) != want {
		t.Errorf("failures %v, want %d", failed, want)
	}
	if b, err := os.ReadFile(at("ok/plain")); err != nil || string(b) != "restored anyway\n" {
		t.Errorf("the rest of the snapshot: ok/plain = %q, %v", b, err)
	}
	if b, err := os.ReadFile(at("hard/a")); err != nil || string(b) != "linked\n" {
		t.Errorf("hard/a = %q, %v", b, err)
	}

	// Without the guard's reasons, the directories make room as before.
	res, err = restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst, Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Failures {
		if !mounted || !strings.HasSuffix(f.Path, "/mnt") {
			t.Errorf("unprotected restore: failure %v", f)
		}
	}
	if b, err := os.ReadFile(at("big")); err != nil || len(b) != 3<<20 {
		t.Errorf("big after the unprotected restore: %d bytes, %v", len(b), err)
	}
}

// TestIdenticalButLinked: a target file with the snapshot's content but
// more names than the snapshot gives it (two files the snapshot holds
// apart, linked in the target; a link to a file outside the target) is
// replaced, so the restore sets the snapshot's mode and times on its own
// file only: the other names keep theirs. A hard link the snapshot
// itself holds is still found identical when restored again.
func TestIdenticalButLinked(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"private": {Content: []byte("same\n"), Mode: 0o600},
		"public":  {Content: []byte("same\n"), Mode: 0o644},
		"h/a":     {Content: []byte("linked in the snapshot\n")},
		"h/b":     {HardlinkTo: "h/a"},
	})
	snap := r.backup(t, src)
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	at := func(p string) string { return filepath.Join(restoredAt(dst, src), p) }
	// The target links private and public, and public to a file outside.
	if err := os.Remove(at("private")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(at("public"), at("private")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.Link(at("public"), outside); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(outside, 0o640); err != nil {
		t.Fatal(err)
	}
	res := r.restore(t, snap, restore.Options{Target: dst})
	for p, mode := range map[string]os.FileMode{"private": 0o600, "public": 0o644} {
		fi, err := os.Stat(at(p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), mode)
		}
		if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 1 {
			t.Errorf("%s: %d names, want its own file", p, n)
		}
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the file outside the target: %v %v, want mode 640 untouched", fi.Mode(), err)
	}
	if res.FilesSkipped != 1 { // h/a, linked as the snapshot links it
		t.Errorf("FilesSkipped = %d, want 1 (h/a)", res.FilesSkipped)
	}
}

// TestIdenticalLinkGroupLinkedOutside: a name of a hard-link group whose
// target file has the snapshot's content but is linked to a file outside
// the target (as many names as the group has, so a count alone cannot
// tell) is replaced: the file outside keeps its mode and its single name,
// and the group's names are linked to each other only. A group restored
// before, linked only within the target, is still found identical.
func TestIdenticalLinkGroupLinkedOutside(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	content := []byte("linked in the snapshot\n")
	fixture.Create(t, src, fixture.Tree{
		"h/a": {Content: content, Mode: 0o644},
		"h/b": {HardlinkTo: "h/a"},
	})
	snap := r.backup(t, src)
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	at := func(p string) string { return filepath.Join(restoredAt(dst, src), p) }
	if res := r.restore(t, snap, restore.Options{Target: dst}); res.FilesSkipped != 1 {
		t.Errorf("again into the same target: FilesSkipped = %d, want 1 (the group, linked as in the snapshot)", res.FilesSkipped)
	}
	for _, p := range []string{"h/a", "h/b"} {
		if err := os.Remove(at(p)); err != nil {
			t.Fatal(err)
		}
	}
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, at("h/a")); err != nil {
		t.Fatal(err)
	}
	r.restore(t, snap, restore.Options{Target: dst})
	fi, err := os.Stat(outside)
	if err != nil {
		t.Fatal(err)
	}
	if n := fi.Sys().(*syscall.Stat_t).Nlink; fi.Mode().Perm() != 0o600 || n != 1 {
		t.Errorf("the file outside the target: mode %o, %d names; want 600 and its own name only", fi.Mode().Perm(), n)
	}
	a, errA := os.Stat(at("h/a"))
	b, errB := os.Stat(at("h/b"))
	if errA != nil || errB != nil || !os.SameFile(a, b) || a.Mode().Perm() != 0o644 || a.Sys().(*syscall.Stat_t).Nlink != 2 {
		t.Errorf("h/a and h/b: %v %v; want one file of mode 644 with the two names", errA, errB)
	}
}

// TestSwappedFileNotWritten: a file of several chunks whose temporary
// name someone replaced, after the restore created it, with a hard link
// to a file outside the target is not written to: it fails, naming why,
// and the file outside keeps its content.
func TestSwappedFileNotWritten(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"large.bin": {Content: fixture.Random(7, 4<<20)},
		"small":     {Content: []byte("small\n")},
	})
	snap := r.backup(t, src)
	for _, direct := range []bool{false, true} {
		outside := filepath.Join(t.TempDir(), "outside")
		if err := os.WriteFile(outside, bytes.Repeat([]byte("outside\n"), 1<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		swapped := 0
		restore.BeforeFetch(t, func(target string) {
			tmps, err := filepath.Glob(filepath.Join(restoredAt(target, src), ".lifeboat-restore-*"))
			if err != nil || len(tmps) != 1 {
				t.Fatalf("temporary files %q, %v: want large.bin's", tmps, err)
			}
			if err := os.Remove(tmps[0]); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(outside, tmps[0]); err != nil {
				t.Fatal(err)
			}
			swapped++
		})
		dst := t.TempDir()
		res, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst, DirectIO: direct})
		if err != nil {
			t.Fatal(err)
		}
		if swapped != 1 {
			t.Fatalf("direct %v: the hook ran %d times", direct, swapped)
		}
		if len(res.Failures) != 1 || !strings.HasSuffix(res.Failures[0].Path, "/large.bin") || !strings.Contains(res.Failures[0].Err.Error(), "was replaced while the restore wrote it") {
			t.Errorf("direct %v: failures %v, want large.bin's, saying it was replaced", direct, res.Failures)
		}
		if got, err := os.ReadFile(outside); err != nil || !bytes.Equal(got, bytes.Repeat([]byte("outside\n"), 1<<10)) {
			t.Errorf("direct %v: the file outside the target was written to (%d bytes, %v)", direct, len(got), err)
		}
		if got, err := os.ReadFile(filepath.Join(restoredAt(dst, src), "small")); err != nil || string(got) != "small\n" {
			t.Errorf("direct %v: small: %q %v", direct, got, err)
		}
	}
}

// TestRestoreSpecialFiles: FIFOs and (as root) device nodes come back
// with their modes, which are set without opening them for I/O.
func TestRestoreSpecialFiles(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	fifo := filepath.Join(src, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fifo, 0o624); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{"fifo": unix.S_IFIFO | 0o624}
	if os.Geteuid() == 0 {
		null := filepath.Join(src, "null")
		if err := unix.Mknod(null, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(null, 0o640); err != nil {
			t.Fatal(err)
		}
		want["null"] = unix.S_IFCHR | 0o640
	}
	snap := r.backup(t, src)
	dst := t.TempDir()
	for _, round := range []string{"new target", "over the first restore"} {
		r.restore(t, snap, restore.Options{Target: dst})
		for name, mode := range want {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(restoredAt(dst, src), name), &st); err != nil {
				t.Fatal(err)
			}
			if st.Mode != mode {
				t.Errorf("%s: %s has mode %o, want %o", round, name, st.Mode, mode)
			}
		}
	}
}

// TestLinkToKeptFirstName: with --overwrite never, the first name of a
// hard link the target holds is kept as it is; a missing second name is
// linked to it only if it holds the snapshot's content, and otherwise
// fails, naming why, instead of becoming a link to the target's edit.
func TestLinkToKeptFirstName(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"h/a": {Content: []byte("the snapshot's\n")},
		"h/b": {HardlinkTo: "h/a"},
	})
	snap := r.backup(t, src)
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	at := func(p string) string { return filepath.Join(restoredAt(dst, src), p) }

	// Unchanged first name: the second is linked to it again.
	if err := os.Remove(at("h/b")); err != nil {
		t.Fatal(err)
	}
	r.restore(t, snap, restore.Options{Target: dst, Overwrite: restore.OverwriteNever})
	if b, err := os.ReadFile(at("h/b")); err != nil || string(b) != "the snapshot's\n" {
		t.Fatalf("h/b = %q, %v", b, err)
	}

	// Edited first name: kept, and the second is not made a link to it.
	if err := os.Remove(at("h/b")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(at("h/a"), []byte("local edit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst, Overwrite: restore.OverwriteNever})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) != 1 || !strings.HasSuffix(res.Failures[0].Path, "h/b") || !strings.Contains(res.Failures[0].Err.Error(), "is not the snapshot's file") {
		t.Fatalf("failures %v, want h/b's, saying its first name is not the snapshot's file", res.Failures)
	}
	if _, err := os.Lstat(at("h/b")); !os.IsNotExist(err) {
		t.Errorf("h/b exists: %v", err)
	}
	if b, _ := os.ReadFile(at("h/a")); string(b) != "local edit\n" {
		t.Errorf("h/a = %q, want the kept edit", b)
	}
}

// TestRerunAsUserIntoReadOnlyDirs: a user other than root restores again
// into a target where an earlier restore made a directory read-only, as
// the snapshot has it (0555): the file changed there since is restored
// (the directory is made writable for its owner meanwhile), and the
// directory ends with the snapshot's mode again.
func TestRerunAsUserIntoReadOnlyDirs(t *testing.T) {
	r := anyUserRepo(t)
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"ro": {Dir: true, Mode: 0o555}, "ro/f": {Content: []byte("as backed up\n"), Mode: 0o644}})
	snap := r.backup(t, src)
	dst := userTarget(t, nobody)
	asNobody := func() *restore.Result { t.Helper(); return restoreAs(t, nobody, r, snap, dst) }
	asNobody()
	f := filepath.Join(restoredAt(dst, src), "ro", "f")
	if err := os.WriteFile(f, []byte("changed since\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := asNobody(); res != nil && len(res.Failures) > 0 {
		t.Errorf("second restore as uid %d: %v", nobody, res.Failures)
	}
	if got, err := os.ReadFile(f); err != nil || string(got) != "as backed up\n" {
		t.Errorf("ro/f: %q, %v; want the snapshot's content", got, err)
	}
	if fi, err := os.Stat(filepath.Dir(f)); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("ro: %v, %v; want mode 555", fi.Mode(), err)
	}
}

// Acting as another user: users_internal_test.go.
var (
	asUser     = restore.AsUser
	userTarget = restore.UserTarget
)

const nobody = restore.Nobody

// anyUserRepo skips the test unless it runs as root (needed to act as
// another user) and returns an in-memory repository, readable by any
// user.
func anyUserRepo(t *testing.T) testRepo {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as another user")
	}
	repos := storetest.InitRepos(t, mem.New())
	return testRepo{writer: repos.Writer, reader: repos.Reader}
}

// restoreAs restores snap into dst acting as user and group id (asUser).
func restoreAs(t *testing.T, id int, r testRepo, snap *snapshot.Snapshot, dst string) (res *restore.Result) {
	t.Helper()
	asUser(t, id, func() {
		var err error
		if res, err = restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst}); err != nil {
			t.Fatalf("restore as uid %d: %v", id, err)
		}
	})
	return res
}

// TestSetuidOnlyForItsOwner: a user other than root cannot give a
// restored file the snapshot's owner, so a setuid (setgid) file of
// another user (group) is restored without that bit: it would otherwise
// run as the restoring user instead, a setuid program nobody made
// (found by review: it was restored 6755 and owned by the restoring
// user, without a word). The bits stay where the owner is the
// snapshot's, and the bits left out are metadata errors. Files of one
// chunk, of several, all zeros, and already identical on a second run.
func TestSetuidOnlyForItsOwner(t *testing.T) {
	r := anyUserRepo(t)
	src := t.TempDir()
	suid := fs.ModeSetuid | fs.ModeSetgid | 0o755
	tree := fixture.Tree{
		"small": {Content: []byte("one chunk\n")},
		"big":   {Content: fixture.Random(5, 3<<20)},
		"zeros": {Content: make([]byte, 3<<20)},
		"mine":  {Content: []byte("the restoring user's own\n")},
	}
	fixture.Create(t, src, tree)
	for p := range tree {
		owner := 1234
		if p == "mine" {
			owner = nobody
		}
		// chown clears the setuid and setgid bits: the mode after it.
		if err := os.Chown(filepath.Join(src, p), owner, owner); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(src, p), suid); err != nil {
			t.Fatal(err)
		}
	}
	snap := r.backup(t, src)
	dst := userTarget(t, nobody)
	for run := 1; run <= 2; run++ {
		res := restoreAs(t, nobody, r, snap, dst)
		if len(res.Failures) > 0 {
			t.Fatalf("run %d: %v", run, res.Failures)
		}
		if res.MetadataErrors < 3 {
			t.Errorf("run %d: %d metadata errors, want the 3 files whose bits were left out named", run, res.MetadataErrors)
		}
		for p := range tree {
			fi, err := os.Stat(filepath.Join(restoredAt(dst, src), p))
			if err != nil {
				t.Fatal(err)
			}
			want := fs.FileMode(0o755)
			if p == "mine" {
				want = suid
			}
			if got := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid); got != want {
				t.Errorf("run %d: %s restored by uid %d with mode %v, want %v", run, p, nobody, got, want)
			}
		}
	}
}

// TestOwnerOnGroupInheritingFilesystem: on a filesystem mounted with
// grpid (bsdgroups: ext4, XFS), a new entry takes its directory's group,
// not the process's, as below a setgid directory. Root restoring into a
// new, empty target whose group is another then still gives every entry
// the snapshot's group (found by review: entries the snapshot has as
// root's were left with the target's group, as if they needed no chown).
func TestOwnerOnGroupInheritingFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to mount and to set owners")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skipf("no mkfs.ext4: %v", err)
	}
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"f":     {Content: []byte("one chunk\n")},
		"big":   {Content: fixture.Random(11, 3<<20)},
		"empty": {Content: []byte{}},
		"d/g":   {Content: []byte("deeper\n")},
		"link":  {Symlink: "f"},
	})
	snap := r.backup(t, src)
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	fixture.Mount(t, mnt, "-o", "loop,grpid", img)
	dst := filepath.Join(mnt, "t")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dst, 0, nobody); err != nil {
		t.Fatal(err)
	}
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)
	err := filepath.WalkDir(out, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: owner %d:%d, want the snapshot's 0:0", p, st.Uid, st.Gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
