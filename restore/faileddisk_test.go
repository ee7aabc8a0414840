package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
)

// failingDisk mounts a new ext4 filesystem of 256 MiB and returns its
// mount point. Its loop device is backed by a sparse image on a tmpfs
// with room for only room bytes: once the image has grown that much,
// every write the kernel sends to the device fails, as on a disk that
// dies (or a thin volume that runs out) while the page cache still holds
// the data — the write-back of a restore fails after its write(2) calls
// succeeded. The filesystem has no journal, so a failed write-back fails
// the data it carried and nothing else. Skips the test where mounting is
// not allowed (not root, no loop devices).
func failingDisk(t *testing.T, room int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a loop device needs root")
	}
	for _, tool := range []string{"mount", "umount", "losetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
	}
	dir := t.TempDir()
	back, mnt := filepath.Join(dir, "back"), filepath.Join(dir, "mnt")
	fixture.MountTmpfs(t, back, fmt.Sprintf("size=%d", room))
	run := func(name string, args ...string) error {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	img := filepath.Join(back, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		t.Fatal(err)
	}
	// Lazy inode tables and no background zeroing (noinit_itable): only
	// the restore's data should fill the tmpfs.
	if err := run("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard", img); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("cannot set up a loop device: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if err := run("losetup", "-d", dev); err != nil {
			t.Log(err)
		}
	})
	// One page per request. Without this, about half the runs had a
	// file whose last MiB read back wrong although the kernel reported
	// no error for it: a request that the full tmpfs took only in part
	// appears to complete as a success. A page it takes whole or not at
	// all (0 such runs in 8 with this limit).
	limit := filepath.Join("/sys/block", filepath.Base(dev), "queue/max_sectors_kb")
	if err := os.WriteFile(limit, []byte("4"), 0o644); err != nil {
		t.Fatalf("limit %s to one page per request: %v", dev, err)
	}
	fixture.Mount(t, mnt, "-o", "noinit_itable", dev)
	return mnt
}

// randomTree writes n files of size random bytes under a new directory
// and returns it with each file's absolute path and content.
func randomTree(t *testing.T, n, size int) (string, map[string][]byte) {
	t.Helper()
	src := t.TempDir()
	tree, files := fixture.Tree{}, map[string][]byte{}
	for i := range n {
		name := fmt.Sprintf("f%02d", i)
		tree[name] = fixture.Entry{Content: fixture.Random(uint64(i), size)}
		files[filepath.Join(src, name)] = tree[name].Content
	}
	fixture.Create(t, src, tree)
	return src, files
}

// TestRestoreOntoFailingDisk restores 96 MiB, one pack at a time, onto
// a disk that fails after about 48 MiB, through a window of 8 MiB. The
// window waits for the write-back of what it holds beyond that, so the
// failures reach the restore: the files they hit are reported by name
// with the device's error, and are not counted as restored; the files
// written back before the disk failed read back whole (the window
// dropped their pages after waiting, so they are read from the disk,
// unless the kernel kept some). With Sync the flush fails
// too, and the restore's error says so. What the window had not yet
// waited for when the restore ended is the part only Sync checks
// (documented in Options.Sync).
func TestRestoreOntoFailingDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MiB")
	}
	r := newRepo(t, "local")
	src, files := randomTree(t, 12, 8<<20)
	snap := r.backup(t, src)

	deviceErr := func(err error) bool { return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOSPC) }

	t.Run("window", func(t *testing.T) {
		dst := failingDisk(t, 48<<20)
		res, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst, WriteBehind: 8 << 20, Packs: 1})
		if err != nil {
			t.Fatalf("restore: %v; want the failed files reported and the rest restored", err)
		}
		if len(res.Failures) == 0 || res.Files == 0 {
			t.Fatalf("%d files restored, failures %v; want some of each on a disk that failed after 48 of 96 MiB", res.Files, res.Failures)
		}
		failed := map[string]bool{}
		for _, f := range res.Failures {
			if _, ok := files["/"+f.Path]; !ok || !deviceErr(f.Err) || !strings.Contains(f.Err.Error(), f.Path) {
				t.Errorf("failure %s: %v; want a file of the snapshot, named, with the device's error", f.Path, f.Err)
			}
			failed["/"+f.Path] = true
		}
		// The files it did not report were written back before the
		// disk failed, or were still in the window when the restore
		// ended (then they read back from the page cache).
		for p, data := range files {
			if failed[p] {
				continue
			}
			if msg := fixture.ContentDiff(filepath.Join(dst, p), data); msg != "" {
				t.Errorf("%s: not reported as failed, but reads back wrong: %s", p, msg)
			}
		}
		t.Logf("%d files restored, %d failed: first %s: %v", res.Files, len(res.Failures), res.Failures[0].Path, res.Failures[0].Err)
	})

	t.Run("sync", func(t *testing.T) {
		dst := failingDisk(t, 24<<20)
		res, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst, Sync: true})
		if err == nil {
			t.Fatalf("restore with Sync onto a failing disk succeeded: %d files, failures %v", res.Files, res.Failures)
		}
		if !deviceErr(err) || !strings.Contains(err.Error(), dst) {
			t.Fatalf("restore with Sync: %v; want the device's error naming %s", err, dst)
		}
		t.Logf("restore with Sync: %v", err)
	})
}

// TestFullTargetLeavesNoPartialFile: a restore that runs out of space
// leaves no file partly written under its own name, not even one written
// in one go (a single chunk), so a rerun with OverwriteNever once there
// is room, which keeps whatever has a file's name, restores every file
// whole.
func TestFullTargetLeavesNoPartialFile(t *testing.T) {
	r := newRepo(t, "local")
	src, files := randomTree(t, 5, 400_000) // one chunk each, 2 MB in all
	snap := r.backup(t, src)
	dst := filepath.Join(t.TempDir(), "mnt")
	fixture.MountTmpfs(t, dst, "size=1m")
	_, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst})
	if err == nil {
		t.Fatal("2 MB restored into a 1 MiB filesystem")
	}
	if !strings.Contains(err.Error(), "restore target is full while writing "+src+"/") {
		t.Errorf("error %q does not name the file as the snapshot does (%s/...)", err, src)
	}
	rel := func(p string) string { return filepath.Join(dst, strings.TrimPrefix(p, "/")) }
	for p, data := range files {
		got, err := os.ReadFile(rel(p))
		if err == nil && !bytes.Equal(got, data) {
			t.Errorf("%s left under its own name with %d of its %d bytes", p, len(got), len(data))
		}
	}
	if out, err := exec.Command("mount", "-o", "remount,size=10m", dst).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v %s", err, out)
	}
	if _, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst, Overwrite: restore.OverwriteNever}); err != nil {
		t.Fatal(err)
	}
	for p, data := range files {
		if got, err := os.ReadFile(rel(p)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s after the rerun with OverwriteNever: %d bytes (%v), want the snapshot's %d", p, len(got), err, len(data))
		}
	}
}

// TestTargetOutOfInodesLeavesNoTempFiles: a restore that cannot create
// a file (the target has no inodes left) removes the temporary files it
// created for the others before it fails; it left them all, holding the
// inodes and space a rerun needs, until a rerun swept them.
func TestTargetOutOfInodesLeavesNoTempFiles(t *testing.T) {
	r := newRepo(t, "local")
	src, _ := randomTree(t, 12, 3_000_000) // several chunks each: created before the download
	snap := r.backup(t, src)
	dst := filepath.Join(t.TempDir(), "mnt")
	depth := strings.Count(strings.Trim(src, "/"), "/") + 1
	fixture.MountTmpfs(t, dst, fmt.Sprintf("size=100m,nr_inodes=%d", depth+1+6)) // root, the path's directories, 6 files
	_, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst})
	if err == nil || !strings.Contains(err.Error(), "restore target is full") {
		t.Fatalf("12 files restored into a filesystem with inodes for 6: %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(dst, strings.TrimPrefix(src, "/")))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".lifeboat-restore-") {
			t.Errorf("left %s after failing", e.Name())
		}
	}
}
