package snapshot_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestFilesCacheAnotherFilesystem: a file recorded on one filesystem is
// read again when the filesystem at its path is another one (statfs's
// f_fsid differs) though its name, size, times, inode and device numbers
// are the same, as a second image on a reused loop device; on the same
// filesystem it is trusted. Each backup asks each device once, not each
// file.
func TestFilesCacheAnotherFilesystem(t *testing.T) {
	snapshot.WithRacyMargin(t, 0) // the files are made just before the backup
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"hostname":   {Content: []byte("first image\n")},
		"other":      {Content: []byte("other image\n")},
		"sub":        {Dir: true},
		"sub/more":   {Content: []byte("more\n")},
		"sub/more.2": {Content: []byte("more 2\n")},
	})
	fc := snapshot.NewFilesCache(repos.Writer.Config().ID)
	_, nodes := backupOf(t, repos, fc, snapshot.BackupOptions{Paths: []string{src}}, "hostname", "other")
	own, other := nodes[0].Content, nodes[1].Content

	// The cache holds other's content under hostname's stat, on the
	// filesystem whose identity is 1: what a backup of the first image
	// recorded, seen from the second.
	const first, second = 1, 2
	st := snapshot.StatOfForTest(t, filepath.Join(src, "hostname"))
	st.FSID = first
	recorded := snapshot.NewFilesCache(repos.Writer.Config().ID)
	recorded.Record(filepath.Join(src, "hostname"), st, other)
	cacheFile := filepath.Join(t.TempDir(), "cache")
	if err := recorded.Save(cacheFile); err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	fsid := uint64(first)
	snapshot.WithFSID(t, func(fd int) (uint64, uint64, error) {
		asked.Add(1)
		_, dev, err := snapshot.ReadFSID(fd)
		return fsid, dev, err
	})
	for _, tc := range []struct {
		name    string
		fsid    uint64
		content []chunkstore.ID
		changed uint64
	}{
		{"the same filesystem", first, other, 0}, // trusted, as it must be: the test reaches the cache
		{"another filesystem", second, own, 1},
	} {
		fsid = tc.fsid
		asked.Store(0)
		c, err := snapshot.LoadFilesCache(cacheFile, repos.Writer.Config().ID)
		if err != nil {
			t.Fatal(err)
		}
		res, nodes := backupOf(t, repos, c, snapshot.BackupOptions{Paths: []string{src}}, "hostname")
		c.Discard()
		if s := res.Manifest.Summary; s.FilesChanged != tc.changed || s.FilesUnmodified != 1-tc.changed || !slices.Equal(nodes[0].Content, tc.content) {
			t.Errorf("%s: %d changed, %d unmodified, content %v; want %d changed, content %v", tc.name, s.FilesChanged, s.FilesUnmodified, nodes[0].Content, tc.changed, tc.content)
		}
		if n := asked.Load(); n != 1 {
			t.Errorf("%s: the filesystem's identity was read %d times for 4 files on one device, want once", tc.name, n)
		}
	}
}

// TestFilesCacheImagesOnOneLoopDevice is the reproduction: two ext4
// images, each with a file of the same name and size written in the
// same second (1 s timestamps, 128-byte inodes) and so the same inode
// number, are mounted in turn at one path through one loop device (the
// same device number). The second backup must read its file, not take
// the first image's content from the files cache.
func TestFilesCacheImagesOnOneLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to attach loop devices and mount ext4 images")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices: %v", err)
	}
	for _, tool := range []string{"mkfs.ext4", "losetup", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
	}
	snapshot.WithRacyMargin(t, 0) // the files are written just before the backups
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	images := []string{filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")}
	// attach mounts image at at through a loop device (dev, or the first
	// free one if "") and returns the device and a function that undoes it.
	attach := func(image, dev, at string) (string, func()) {
		t.Helper()
		if dev == "" {
			dev = run("losetup", "--find", "--show", image)
		} else {
			run("losetup", dev, image)
		}
		detached := false
		detach := func() {
			if !detached {
				detached = true
				exec.Command("umount", at).Run()
				exec.Command("losetup", "-d", dev).Run()
			}
		}
		t.Cleanup(detach)
		if out, err := exec.Command("mount", "-t", "ext4", dev, at).CombinedOutput(); err != nil {
			detach()
			t.Skipf("cannot mount an ext4 image here: %v: %s", err, out)
		}
		return dev, detach
	}
	for _, img := range images {
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 8<<20); err != nil {
			t.Fatal(err)
		}
		run("mkfs.ext4", "-q", "-F", "-I", "128", img)
	}
	// Write both files in one second, both images mounted side by side.
	var undo []func()
	var paths []string
	for i, img := range images {
		at := filepath.Join(dir, "w"+string(rune('a'+i)))
		if err := os.Mkdir(at, 0o755); err != nil {
			t.Fatal(err)
		}
		_, detach := attach(img, "", at)
		undo = append(undo, detach)
		paths = append(paths, filepath.Join(at, "hostname"))
	}
	contents := [][]byte{[]byte("alpha\n"), []byte("bravo\n")}
	var stats [2]syscall.Stat_t
	for try := 0; ; try++ {
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 50*time.Millisecond)))
		for i, p := range paths {
			if err := os.WriteFile(p, contents[i], 0o644); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Stat(p, &stats[i]); err != nil {
				t.Fatal(err)
			}
		}
		if stats[0].Mtim == stats[1].Mtim && stats[0].Ctim == stats[1].Ctim {
			break
		}
		if try == 3 {
			t.Fatalf("could not write both files in one second: %v, %v", stats[0].Ctim, stats[1].Ctim)
		}
	}
	if stats[0].Ino != stats[1].Ino {
		t.Fatalf("the files have inodes %d and %d: the reproduction needs one", stats[0].Ino, stats[1].Ino)
	}
	for _, u := range undo {
		u()
	}
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second))) // past the files' second

	repos := storetest.InitRepos(t, mem.New())
	cacheFile := filepath.Join(dir, "cache")
	var devs []uint64
	var dev string
	for i, img := range images {
		var detach func()
		dev, detach = attach(img, dev, mnt)
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(mnt, "hostname"), &st); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, st.Dev)
		fc, err := snapshot.LoadFilesCache(cacheFile, repos.Writer.Config().ID)
		if err != nil {
			t.Fatal(err)
		}
		res, nodes := backupOf(t, repos, fc, snapshot.BackupOptions{Paths: []string{mnt}}, "hostname")
		if err := fc.Save(cacheFile); err != nil {
			t.Fatal(err)
		}
		fc.Discard()
		detach()
		b, err := repos.Reader.LoadBlob(context.Background(), chunkstore.DataBlob, nodes[0].Content[0])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, contents[i]) {
			t.Errorf("backup of image %d holds %q, want %q (unmodified %d)", i+1, b, contents[i], res.Manifest.Summary.FilesUnmodified)
		}
	}
	if devs[0] != devs[1] {
		t.Fatalf("the images were mounted with device numbers %d and %d: the reproduction needs one", devs[0], devs[1])
	}
}
