package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestPruneRemovesTempFilesOfKilledBackups: a backup into a local
// repository killed with SIGKILL while it writes a pack leaves the pack's
// temporary file behind (nothing else ever removes it). prune removes such
// files once they are a day old, and only then; --dry-run counts them.
func TestPruneRemovesTempFilesOfKilledBackups(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	fixture.Create(t, src, fixture.Tree{"big.bin": {Content: fixture.Random(9, 96<<20)}})

	temps := func() (out []string) {
		filepath.WalkDir(r.path, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	var left []string
	for attempt := 0; attempt < 10 && len(left) == 0; attempt++ {
		cmd := c.command(r.writer("backup", "--no-cache", src)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(temps()) == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		left = temps()
	}
	if len(left) == 0 {
		t.Fatal("no backup killed mid-write left a temporary file in 10 attempts")
	}

	type pruneOut struct {
		TempFiles int   `json:"temp_files_removed"`
		TempBytes int64 `json:"temp_file_bytes_removed"`
	}
	if got := decodeJSON[pruneOut](t, c.ok(r.reader("prune", "--json")...).stdout); got.TempFiles != 0 {
		t.Fatalf("prune removed %d temporary files that are not a day old", got.TempFiles)
	}
	if n := len(temps()); n != len(left) {
		t.Fatalf("%d temporary files after prune, want the %d left", n, len(left))
	}
	old := time.Now().Add(-25 * time.Hour)
	var size int64 // a write killed at once may have left an empty file
	for _, p := range left {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if got := decodeJSON[pruneOut](t, c.ok(r.reader("prune", "--dry-run", "--json")...).stdout); got.TempFiles != len(left) || got.TempBytes != size {
		t.Errorf("prune --dry-run: %+v, want %d files of %d bytes to remove", got, len(left), size)
	}
	if n := len(temps()); n != len(left) {
		t.Fatalf("prune --dry-run removed temporary files: %d left of %d", n, len(left))
	}
	res := c.ok(r.reader("prune")...)
	if !strings.Contains(res.stdout, "temporary") || !strings.Contains(res.stdout, "writes that never finished") {
		t.Errorf("prune does not say it removed temporary files:\n%s", res.stdout)
	}
	if n := temps(); len(n) != 0 {
		t.Errorf("temporary files left after prune: %v", n)
	}
	c.ok(r.reader("check", "--read-data")...)
	c.ok(r.writer("backup", "--no-cache", src)...)
}

// TestPruneRemovesClockObjectsOfKilledCommands: a command killed between
// writing and removing the empty object that reads the store's clock
// (gc/clock-..., written by prune and 'sessions') leaves it behind, and
// nothing else removes it. prune removes such objects once they are a
// day old, and only then; --dry-run counts them.
func TestPruneRemovesClockObjectsOfKilledCommands(t *testing.T) {
	c, r, _, _ := backedUpSmallTree(t)
	gc := filepath.Join(r.path, "gc")
	if err := os.MkdirAll(gc, 0o700); err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(gc, "clock-00112233aabbccdd"), filepath.Join(gc, "clock-44556677eeff0011")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	there := func(p string) bool {
		_, err := os.Stat(p)
		return err == nil
	}
	type pruneOut struct {
		TempFiles int `json:"temp_files_removed"`
	}
	if got := decodeJSON[pruneOut](t, c.ok(r.reader("prune", "--dry-run", "--json")...).stdout); got.TempFiles != 1 {
		t.Errorf("prune --dry-run: %+v, want the day-old clock object counted", got)
	}
	if !there(stale) {
		t.Fatal("prune --dry-run removed the clock object")
	}
	if got := decodeJSON[pruneOut](t, c.ok(r.reader("prune", "--json")...).stdout); got.TempFiles != 1 {
		t.Errorf("prune: %+v, want the day-old clock object removed", got)
	}
	if there(stale) || !there(fresh) {
		t.Errorf("after prune: day-old clock object there %v (want gone), new one there %v (want kept)", there(stale), there(fresh))
	}
	c.ok(r.reader("check", "--read-data")...)
	c.ok(r.reader("sessions")...)
}

// TestPruneOnFullDisk: on a repository whose disk is full, prune's
// repacking of partly used packs fails for want of space; the error says
// so and how to go on ('--max-unused unlimited', which frees the packs
// nothing references without writing any), not "free space or prune".
// That prune works, and the next one repacks; the repository checks
// clean and restores.
func TestPruneOnFullDisk(t *testing.T) {
	c := newCLI(t)
	full, _ := fullDir(t, c)
	// fullDir's tmpfs is too small: a larger one in its place.
	if err := syscall.Unmount(full, syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", full, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	r := repo{path: filepath.Join(full, "repo"), identity: filepath.Join(c.dir, "id.txt"), key: filepath.Join(c.dir, "w.key")}
	c.ok("init", "--repo", r.path, "--identity-out", r.identity, "--key-out", r.key)
	src := filepath.Join(c.dir, "src")
	var ids []string
	backup := func(tree fixture.Tree) {
		t.Helper()
		if err := os.RemoveAll(src); err != nil {
			t.Fatal(err)
		}
		fixture.Create(t, src, tree)
		ids = append(ids, strings.TrimSpace(c.ok(r.writer("backup", "-q", src)...).stdout))
	}
	x, y := fixture.Random(1, 2<<20), fixture.Random(2, 2<<20)
	backup(fixture.Tree{"x": {Content: x}, "y": {Content: y}})                                           // a pack of x and y
	backup(fixture.Tree{"x": {Content: x}, "y": {Content: y}, "z": {Content: fixture.Random(3, 2<<20)}}) // a pack of z
	backup(fixture.Tree{"x": {Content: x}, "y": {Content: fixture.Random(4, 2<<20)}})                    // x's pack is half garbage
	c.ok(r.writer(append([]string{"forget"}, ids[:2]...)...)...)

	// Fill the disk but for 64 KiB: room for a mark and an index file,
	// not for a new pack.
	filler := filepath.Join(full, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	for err == nil {
		_, err = f.Write(block)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v", full, err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(fi.Size() - 64<<10); err != nil {
		t.Fatal(err)
	}
	f.Close()

	c.fails(1, r.reader("prune"), "no space left on device", "lifeboat prune --max-unused unlimited")
	c.ok(r.reader("prune", "--max-unused", "unlimited")...)
	c.ok(r.reader("prune")...)
	c.ok(r.reader("check", "--read-data")...)
	c.ok(r.reader("restore", ids[2], "--target", filepath.Join(c.dir, "target"))...)
}
