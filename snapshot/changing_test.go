package snapshot_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
	"golang.org/x/sys/unix"
)

// backupOf backs paths up into repos with a files cache and returns the
// result (warnings included) and the node at each of lookups (relative
// to paths[0]; nil where the snapshot lacks it).
func backupOf(t *testing.T, repos storetest.Repos, fc *snapshot.FilesCache, opts snapshot.BackupOptions, lookups ...string) (*snapshot.Result, []*snapshot.Node) {
	t.Helper()
	ctx := context.Background()
	opts.Host, opts.FilesCache = "h", fc
	res, err := snapshot.Backup(ctx, repos.Writer, opts)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if err := repos.Reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	var nodes []*snapshot.Node
	for _, p := range lookups {
		n, err := snapshot.Lookup(ctx, repos.Reader, res.Manifest.Tree, filepath.Join(opts.Paths[0], p))
		if errors.Is(err, snapshot.ErrNotInSnapshot) {
			n = nil
		} else if err != nil {
			t.Fatalf("lookup %s: %v", p, err)
		}
		nodes = append(nodes, n)
	}
	return res, nodes
}

// warned returns the warnings about path.
func warned(res *snapshot.Result, path string) []string {
	var out []string
	for _, w := range res.Warnings {
		if w.Path == path {
			out = append(out, w.Err.Error())
		}
	}
	return out
}

// TestFileChangedWhileRead: a file whose size or content changes while
// a backup reads it is saved as read with a warning (the snapshot is
// partial), and the next backup reads it again rather than trusting the
// files cache; a file that is left alone is not. One changed after the
// backup began but before it was opened is saved as it then was, without
// a warning, and read again next time too: a second change within the
// same timestamp tick would not show in its stat.
func TestFileChangedWhileRead(t *testing.T) {
	snapshot.WithRacyMargin(t, 0) // "calm" is made just before the backup
	for _, change := range []string{"grown", "same size", "before the read"} {
		t.Run(change, func(t *testing.T) {
			repos := storetest.InitRepos(t, mem.New())
			src := t.TempDir()
			f := filepath.Join(src, "f")
			old := bytes.Repeat([]byte("old "), 1<<18) // 1 MiB: several chunks
			fixture.Create(t, src, fixture.Tree{"f": {Content: old}, "calm": {Content: []byte("left alone\n")}})
			hook := snapshot.AfterOpen
			if change == "before the read" {
				hook = snapshot.BeforeOpen
			}
			hook(t, func(p string) {
				if p != f {
					return
				}
				b := bytes.Repeat([]byte("new "), 1<<18)
				if change == "grown" {
					b = append(b, "more"...)
				}
				time.Sleep(10 * time.Millisecond) // a later modification time, whatever the tick
				if err := os.WriteFile(f, b, 0o644); err != nil {
					t.Fatal(err)
				}
			})
			fc := snapshot.NewFilesCache(repos.Writer.Config().ID)
			res, nodes := backupOf(t, repos, fc, snapshot.BackupOptions{Paths: []string{src}}, "f")
			if change == "before the read" {
				if len(res.Warnings) != 0 || nodes[0] == nil || nodes[0].Size != 1<<20 {
					t.Errorf("warnings %v, f saved as %v: want the new content, no warning", res.Warnings, nodes[0])
				}
			} else {
				if w := warned(res, f); len(w) != 1 || !strings.Contains(w[0], "changed while it was read") {
					t.Errorf("warnings %v, want one about f changing", res.Warnings)
				}
				if len(res.Warnings) != 1 || res.Manifest.Summary.Errors != 1 {
					t.Errorf("warnings %v, errors %d: want the snapshot partial for f alone", res.Warnings, res.Manifest.Summary.Errors)
				}
			}
			hook(t, nil)
			again, _ := backupOf(t, repos, reloaded(t, fc, repos), snapshot.BackupOptions{Paths: []string{src}})
			if s := again.Manifest.Summary; len(again.Warnings) != 0 || s.FilesUnmodified != 1 || s.FilesChanged != 1 {
				t.Errorf("next backup: warnings %v, %d unmodified, %d changed: want f read again, calm not", again.Warnings, s.FilesUnmodified, s.FilesChanged)
			}
		})
	}
}

// TestJustChangedFilesReadAgain: a file changed within racyMargin before
// a backup began is not trusted by the next one, which reads it again
// (the filesystem's coarse clock may stamp a change made after the start
// with an earlier time); one changed earlier is trusted.
func TestJustChangedFilesReadAgain(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"old": {Content: []byte("made a while ago\n")}})
	time.Sleep(3100 * time.Millisecond) // longer ago than racyMargin
	fixture.Create(t, src, fixture.Tree{"new": {Content: []byte("made just now\n")}})
	fc := snapshot.NewFilesCache(repos.Writer.Config().ID)
	first, _ := backupOf(t, repos, fc, snapshot.BackupOptions{Paths: []string{src}})
	if s := first.Manifest.Summary; s.FilesNew != 2 {
		t.Fatalf("first backup: %+v", s)
	}
	again, _ := backupOf(t, repos, reloaded(t, fc, repos), snapshot.BackupOptions{Paths: []string{src}})
	if s := again.Manifest.Summary; s.FilesUnmodified != 1 || s.FilesChanged != 1 {
		t.Errorf("next backup: %d unmodified, %d changed; want the old file trusted and the new one read again", s.FilesUnmodified, s.FilesChanged)
	}
}

// TestTwoSecondTimestampFilesReadAgain: a file changed 1.5 s, or 2 s and
// a few milliseconds, before a backup began is read again by the next
// backup. FAT (a USB stick, an EFI system partition) stamps changes to
// 2 s, and Linux keeps a FAT file's change time equal to its
// modification time: a same-size write made after this backup read the
// file can leave its stat exactly as recorded (2 s later, still, when the
// kernel's coarse clock lags by a tick), and a cache that trusted it would
// keep the old content in every later snapshot. The backups are dated
// (Time) after the file's change time, so the test does not depend on how
// long it runs.
func TestTwoSecondTimestampFilesReadAgain(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"f": {Content: []byte("written just before the backup\n")}})
	changed := time.Unix(0, snapshot.StatOfForTest(t, filepath.Join(src, "f")).CTime)
	for _, after := range []time.Duration{1500 * time.Millisecond, 2*time.Second + 5*time.Millisecond} {
		asOf := changed.Add(after)
		time.Sleep(time.Until(asOf) + 10*time.Millisecond) // a backup dated later than its start is refused
		fc := snapshot.NewFilesCache(repos.Writer.Config().ID)
		if first, _ := backupOf(t, repos, fc, snapshot.BackupOptions{Paths: []string{src}, Time: asOf}); first.Manifest.Summary.FilesNew != 1 {
			t.Fatalf("first backup: %+v", first.Manifest.Summary)
		}
		again, _ := backupOf(t, repos, reloaded(t, fc, repos), snapshot.BackupOptions{Paths: []string{src}})
		if s := again.Manifest.Summary; s.FilesChanged != 1 || s.FilesUnmodified != 0 {
			t.Errorf("file changed %s before a backup: the next one found %d unmodified, %d changed; want it read again", after, s.FilesUnmodified, s.FilesChanged)
		}
	}
}

// TestBackupAsOfFilesystemSnapshot: a backup dated by Time (when the
// filesystem snapshot it reads was taken) is listed at that time, and the
// files cache measures its margin from it, not from the backup's start: a
// file changed just before the filesystem snapshot is read again by the
// next backup, one changed well before is trusted. A time after the
// backup's start is refused before anything is written.
func TestBackupAsOfFilesystemSnapshot(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"before": {Content: []byte("settled long before\n")}})
	time.Sleep(3100 * time.Millisecond) // longer before the snapshot than racyMargin
	fixture.Create(t, src, fixture.Tree{"frozen": {Content: []byte("written as the snapshot was taken\n")}})
	asOf := time.Now()
	time.Sleep(1100 * time.Millisecond) // the backup starts well after
	fc := snapshot.NewFilesCache(repos.Writer.Config().ID)
	first, _ := backupOf(t, repos, fc, snapshot.BackupOptions{Paths: []string{src}, Time: asOf})
	m := first.Manifest
	if !m.Time.Equal(asOf) || !m.Summary.Start.After(asOf.Add(time.Second)) {
		t.Errorf("snapshot dated %s, started %s; want it dated %s and started later", m.Time, m.Summary.Start, asOf)
	}
	again, _ := backupOf(t, repos, reloaded(t, fc, repos), snapshot.BackupOptions{Paths: []string{src}})
	if s := again.Manifest.Summary; s.FilesUnmodified != 1 || s.FilesChanged != 1 {
		t.Errorf("next backup: %d unmodified, %d changed; want the settled file trusted and the one changed just before the filesystem snapshot read again", s.FilesUnmodified, s.FilesChanged)
	}

	_, err := snapshot.Backup(context.Background(), repos.Writer, snapshot.BackupOptions{
		Paths: []string{src}, Host: "h", Time: time.Now().Add(time.Hour)})
	if err == nil || !strings.Contains(err.Error(), "later than now") {
		t.Errorf("a snapshot dated in the future: %v", err)
	}
	ms, bad, err := snapshot.List(context.Background(), repos.Reader)
	if err != nil || len(bad) > 0 || len(ms) != 2 {
		t.Errorf("%d snapshots (%v, %v), want the two backups only", len(ms), bad, err)
	}
}

// TestExpectedChange: a file a Changing pattern matches (by name, by
// full path, or through a directory above it) that grows while it is
// read is saved as read without a warning, so the snapshot is not
// partial; it is counted, and the next backup reads it again. A pattern
// that matches neither the file nor its directories leaves the warning.
func TestExpectedChange(t *testing.T) {
	snapshot.WithRacyMargin(t, 0) // "calm" is made just before the backup
	for _, tc := range []struct {
		name     string
		patterns func(src string) []string
		expected bool
	}{
		{"base name", func(string) []string { return []string{"*.log"} }, true},
		{"full path", func(src string) []string { return []string{filepath.Join(src, "logs", "app.log")} }, true},
		{"directory above", func(src string) []string { return []string{filepath.Join(src, "logs") + "/"} }, true},
		{"another file", func(src string) []string { return []string{"*.txt", filepath.Join(src, "other")} }, false},
		// The directories above a backup path are not matched, as by
		// --exclude: "**/tmp/" means tmp directories in the data.
		{"directory above the backup path", func(src string) []string { return []string{"**/" + filepath.Base(filepath.Dir(src)) + "/"} }, false},
		{"the backup path", func(src string) []string { return []string{src} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repos := storetest.InitRepos(t, mem.New())
			src := t.TempDir()
			f := filepath.Join(src, "logs", "app.log")
			old := bytes.Repeat([]byte("line\n"), 200<<10)
			fixture.Create(t, src, fixture.Tree{"logs/app.log": {Content: old}, "calm": {Content: []byte("left alone\n")}})
			snapshot.AfterOpen(t, func(p string) {
				if p != f {
					return
				}
				time.Sleep(10 * time.Millisecond) // a later modification time, whatever the tick
				fh, err := os.OpenFile(f, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := fh.WriteString("appended while read\n"); err != nil {
					t.Fatal(err)
				}
				fh.Close()
			})
			fc := snapshot.NewFilesCache(repos.Writer.Config().ID)
			res, nodes := backupOf(t, repos, fc, snapshot.BackupOptions{Paths: []string{src}, Changing: tc.patterns(src)}, "logs/app.log")
			sum := res.Manifest.Summary
			if sum.FilesChangedWhileRead != 1 {
				t.Errorf("%d files changed while read, want 1", sum.FilesChangedWhileRead)
			}
			if want := map[bool]uint64{true: 1}[tc.expected]; res.ExpectedChanges != want {
				t.Errorf("%d expected changes, want %d", res.ExpectedChanges, want)
			}
			if tc.expected {
				if len(res.Warnings) != 0 || sum.Errors != 0 {
					t.Errorf("warnings %v, errors %d: want none for a file expected to change", res.Warnings, sum.Errors)
				}
			} else if w := warned(res, f); len(w) != 1 || sum.Errors != 1 {
				t.Errorf("warnings %v, errors %d: want one about the log changing", res.Warnings, sum.Errors)
			}
			if n := nodes[0]; n == nil || n.Size < uint64(len(old)) {
				t.Errorf("log saved as %v, want at least what it held when opened", n)
			}
			snapshot.AfterOpen(t, nil)
			again, _ := backupOf(t, repos, reloaded(t, fc, repos), snapshot.BackupOptions{Paths: []string{src}, Changing: tc.patterns(src)})
			if s := again.Manifest.Summary; len(again.Warnings) != 0 || s.FilesUnmodified != 1 || s.FilesChanged != 1 || s.FilesChangedWhileRead != 0 {
				t.Errorf("next backup: warnings %v, %d unmodified, %d changed, %d changed while read: want the log read again, calm not", again.Warnings, s.FilesUnmodified, s.FilesChanged, s.FilesChangedWhileRead)
			}
		})
	}
	if _, err := snapshot.Backup(context.Background(), storetest.InitRepos(t, mem.New()).Writer, snapshot.BackupOptions{Paths: []string{t.TempDir()}, Host: "h", Changing: []string{"[unclosed"}}); err == nil || !strings.Contains(err.Error(), "changing files") || !strings.Contains(err.Error(), "[unclosed") {
		t.Errorf("backup with a malformed Changing pattern: %v, want an error naming it", err)
	}
}

// TestFileReplacedBeforeRead: what stands at a file's path when the
// backup comes to read it must be the file it listed. A FIFO put there
// does not hang the backup (skipped with a warning), a parent directory
// swapped for a symlink to outside the backup paths does not make it
// read the file of that name there (the file is opened from the
// directory listed, and its own content saved, without a warning), and
// a file removed meanwhile is left out quietly.
func TestFileReplacedBeforeRead(t *testing.T) {
	outside := t.TempDir()
	secret := []byte("a file outside the backup paths\n")
	if err := os.WriteFile(filepath.Join(outside, "f"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		swap       func(t *testing.T, src string)
		warning    bool
		saved      string // the content saved; "" for none
	}{
		{"fifo", "f", func(t *testing.T, src string) {
			p := filepath.Join(src, "f")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, true, ""},
		{"parent symlink", "d/f", func(t *testing.T, src string) {
			d := filepath.Join(src, "d")
			if err := os.Rename(d, d+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, d); err != nil {
				t.Fatal(err)
			}
		}, false, "listed too\n"},
		{"removed", "f", func(t *testing.T, src string) {
			if err := os.Remove(filepath.Join(src, "f")); err != nil {
				t.Fatal(err)
			}
		}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repos := storetest.InitRepos(t, mem.New())
			src := t.TempDir()
			fixture.Create(t, src, fixture.Tree{"f": {Content: []byte("listed\n")}, "d": {Dir: true}, "d/f": {Content: []byte("listed too\n")}})
			swapped := false
			snapshot.BeforeOpen(t, func(p string) {
				if p == filepath.Join(src, tc.file) && !swapped {
					swapped = true
					tc.swap(t, src)
				}
			})
			done := make(chan struct{})
			var res *snapshot.Result
			var nodes []*snapshot.Node
			go func() {
				defer close(done)
				res, nodes = backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{src}}, tc.file)
			}()
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatal("the backup hangs")
			}
			if res == nil {
				return // backupOf failed the test
			}
			if !swapped {
				t.Fatalf("%s was never opened", tc.file)
			}
			switch n := nodes[0]; {
			case n == nil && tc.saved != "":
				t.Errorf("%s left out, want it saved with %q", tc.file, tc.saved)
			case n != nil && len(n.Content) != 1:
				t.Errorf("%s saved as %+v", tc.file, n)
			case n != nil:
				b, err := repos.Reader.LoadBlob(context.Background(), chunkstore.DataBlob, n.Content[0])
				if err != nil || string(b) != tc.saved {
					t.Errorf("%s saved (as %s, %q, %v), want %q", tc.file, n.Type, b, err, tc.saved)
				}
			}
			w := warned(res, filepath.Join(src, tc.file))
			if tc.warning != (len(w) == 1 && strings.Contains(w[0], "replaced since it was listed")) || len(res.Warnings) != len(w) {
				t.Errorf("warnings %v, want one about %s: %v", res.Warnings, tc.file, tc.warning)
			}
		})
	}
}

// TestBackupEdgeEntries: a socket is left out without a warning; a file
// dated after the year 9999 (tmpfs allows it) is saved with the last
// date a snapshot holds and a warning, not fail every backup; an
// unchanged file whose cached chunks are gone is read again and counted
// as unmodified.
func TestBackupEdgeEntries(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"f": {Content: []byte("unchanged\n")}})
	ln, err := net.Listen("unix", filepath.Join(src, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fc := snapshot.NewFilesCache(repos.Writer.Config().ID)
	// The cache holds f with its stat, but chunks no repository has.
	fc.Record(filepath.Join(src, "f"), snapshot.StatOfForTest(t, filepath.Join(src, "f")), []chunkstore.ID{{1, 2, 3}})
	res, nodes := backupOf(t, repos, reloaded(t, fc, repos), snapshot.BackupOptions{Paths: []string{src}}, "sock", "f")
	if len(res.Warnings) != 0 || nodes[0] != nil {
		t.Errorf("socket: warnings %v, node %v; want it left out quietly", res.Warnings, nodes[0])
	}
	if s := res.Manifest.Summary; s.FilesUnmodified != 1 || s.FilesChanged != 0 || s.FilesNew != 0 || nodes[1] == nil || len(nodes[1].Content) != 1 {
		t.Errorf("f: %d unmodified, %d changed, %d new; node %v", s.FilesUnmodified, s.FilesChanged, s.FilesNew, nodes[1])
	}

	// Far in the future: on tmpfs, where such times can be set.
	shm, err := os.MkdirTemp("/dev/shm", "lifeboat-test-")
	if err != nil {
		t.Skipf("no tmpfs at /dev/shm to date a file after 9999: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	far := filepath.Join(shm, "far")
	if err := os.WriteFile(far, []byte("from the far future\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The year 14645: beyond time.Time's UnixNano, which os.Chtimes uses.
	when, err := unix.TimeToTimespec(time.Unix(400000000000, 0))
	if err != nil {
		t.Skipf("time_t cannot hold the year 14645 here: %v", err)
	}
	if err := unix.UtimesNano(far, []unix.Timespec{when, when}); err != nil {
		t.Skipf("cannot date a file in %s after 9999: %v", shm, err)
	}
	if fi, err := os.Stat(far); err != nil || fi.ModTime().Year() <= 9999 {
		t.Skipf("%s does not keep a date after 9999: %v %v", shm, fi.ModTime(), err)
	}
	res, nodes = backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{shm}}, "far")
	if w := warned(res, far); len(w) != 1 || !strings.Contains(w[0], "outside the years 0 to 9999") {
		t.Errorf("warnings %v, want one about far's date", res.Warnings)
	}
	if nodes[0] == nil || nodes[0].ModTime.Year() != 9999 {
		t.Errorf("far saved as %v", nodes[0])
	}
}

// reloaded is fc saved and loaded again, as the next backup's cache.
func reloaded(t *testing.T, fc *snapshot.FilesCache, repos storetest.Repos) *snapshot.FilesCache {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cache")
	if err := fc.Save(p); err != nil {
		t.Fatal(err)
	}
	out, err := snapshot.LoadFilesCache(p, repos.Writer.Config().ID)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBackupPathsThroughSymlinks: a path below a symlink that is also
// given is refused, not silently reduced to the symlink; a symlink given
// with a trailing slash is the directory it points to; a directory on
// the way to a backup path, reached through a symlink, is saved with the
// directory's mode, not the symlink's 0777.
func TestBackupPathsThroughSymlinks(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	base := t.TempDir()
	fixture.Create(t, base, fixture.Tree{"real": {Dir: true, Mode: 0o750}, "real/app": {Dir: true}, "real/app/x": {Content: []byte("x\n")}})
	link := filepath.Join(base, "link")
	if err := os.Symlink(filepath.Join(base, "real"), link); err != nil {
		t.Fatal(err)
	}
	// Also with a path sorting between them ("link-old": '-' before '/').
	if err := os.Mkdir(link+"-old", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, paths := range [][]string{{link, filepath.Join(link, "app")}, {link, link + "-old", filepath.Join(link, "app")}} {
		_, err := snapshot.Backup(context.Background(), repos.Writer, snapshot.BackupOptions{Paths: paths, Host: "h"})
		if err == nil || !strings.Contains(err.Error(), "which is a symlink") {
			t.Errorf("%q, a path below a given symlink: %v", paths, err)
		}
	}
	res, _ := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{link + "/"}})
	if p := res.Manifest.Paths; len(p) != 1 || p[0] != filepath.Join(base, "real") {
		t.Errorf("link/ backed up as %q, want the real directory", p)
	}
	res, _ = backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{filepath.Join(link, "app")}})
	n, err := snapshot.Lookup(context.Background(), repos.Reader, res.Manifest.Tree, link)
	if err != nil {
		t.Fatal(err)
	}
	if n.Type != snapshot.TypeDir || n.Mode.Perm() != 0o750 {
		t.Errorf("the way through the symlink saved as %s %v, want the directory's 0750", n.Type, n.Mode)
	}
	if _, err := snapshot.Lookup(context.Background(), repos.Reader, res.Manifest.Tree, filepath.Join(link, "app", "x")); err != nil {
		t.Errorf("link/app/x: %v", err)
	}
}

// TestExcludeDirOnly: a pattern with a trailing slash matches
// directories only, by name or by whole path.
func TestExcludeDirOnly(t *testing.T) {
	ex, err := snapshot.NewExcluder([]string{"node_modules/", "/srv/*/cache/", "*.tmp"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		dir  bool
		want bool
	}{
		{"/a/node_modules", true, true},
		{"/a/node_modules", false, false},
		{"/srv/app/cache", true, true},
		{"/srv/app/cache", false, false},
		{"/a/x.tmp", false, true},
		{"/a/x.tmp", true, true},
	} {
		if got := ex.Excluded(tc.path, tc.dir); got != tc.want {
			t.Errorf("Excluded(%s, dir %v) = %v", tc.path, tc.dir, got)
		}
	}
}

// TestFileSavedByRename: a file replaced by renaming a new one over it
// (how editors and package managers save) between the listing and the
// read is saved with its new content and metadata, not left out: below
// a backup path it is opened without following any symlink, so the
// inode may change safely.
func TestFileSavedByRename(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"d": {Dir: true}, "d/conf": {Content: []byte("old\n"), Mode: 0o644}})
	conf := filepath.Join(src, "d", "conf")
	snapshot.BeforeOpen(t, func(p string) {
		if p != conf {
			return
		}
		if err := os.WriteFile(conf+".new", []byte("new, and longer\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(conf+".new", conf); err != nil {
			t.Fatal(err)
		}
	})
	res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{src}}, "d/conf")
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %v", res.Warnings)
	}
	if n := nodes[0]; n == nil || n.Size != uint64(len("new, and longer\n")) || n.Mode.Perm() != 0o600 {
		t.Fatalf("d/conf saved as %+v, want the new file", n)
	}
	b, err := repos.Reader.LoadBlob(context.Background(), chunkstore.DataBlob, nodes[0].Content[0])
	if err != nil || string(b) != "new, and longer\n" {
		t.Errorf("d/conf's content %q, %v", b, err)
	}
}

// TestFileSavedByRenameXAttrs: a file replaced by renaming a new one
// over it between the listing and the read is saved with the new file's
// extended attributes, not the listed file's: an ACL or a file
// capability of the old file must not come back on the new one.
func TestFileSavedByRenameXAttrs(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	conf := filepath.Join(src, "conf")
	if err := os.WriteFile(conf, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := unix.Lsetxattr(conf, "user.old", []byte("1"), 0)
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		t.Skip("no user extended attributes here")
	}
	if err != nil {
		t.Fatal(err)
	}
	snapshot.BeforeOpen(t, func(p string) {
		if p != conf {
			return
		}
		if err := os.WriteFile(conf+".new", []byte("new\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lsetxattr(conf+".new", "user.new", []byte("2"), 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(conf+".new", conf); err != nil {
			t.Fatal(err)
		}
	})
	res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{src}}, "conf")
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %v", res.Warnings)
	}
	n := nodes[0]
	if n == nil || n.Mode.Perm() != 0o600 {
		t.Fatalf("conf saved as %+v, want the new file", n)
	}
	if len(n.XAttrs) != 1 || n.XAttrs[0].Name != "user.new" || string(n.XAttrs[0].Value) != "2" {
		t.Errorf("conf saved with extended attributes %v, want the new file's (user.new=2)", n.XAttrs)
	}
}

// TestBackupReadAll: a files cache entry whose stat still matches but
// whose content is not the file's (a FAT, exFAT or sshfs file rewritten
// and its modification time set back: there the change time is the
// modification time) puts the wrong content in the snapshot, and
// ReadAll is the way out: it reads every file, saves what it read,
// counts the file as changed and records the content it found.
func TestBackupReadAll(t *testing.T) {
	snapshot.WithRacyMargin(t, 0) // the files are made just before the backup
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"a": {Content: []byte("the content of a\n")},
		"b": {Content: []byte("what b holds, b\n!")},
	})
	fc := snapshot.NewFilesCache(repos.Writer.Config().ID)
	_, nodes := backupOf(t, repos, fc, snapshot.BackupOptions{Paths: []string{src}}, "a", "b")
	contentA, contentB := nodes[0].Content, nodes[1].Content
	// A cache that holds b's content under a's stat, as if a had been
	// rewritten with b's bytes and its stat had come back unchanged.
	wrong := snapshot.NewFilesCache(repos.Writer.Config().ID)
	wrong.Record(filepath.Join(src, "a"), snapshot.StatOfForTest(t, filepath.Join(src, "a")), contentB)
	wrongFile := filepath.Join(t.TempDir(), "cache")
	if err := wrong.Save(wrongFile); err != nil {
		t.Fatal(err)
	}
	load := func() *snapshot.FilesCache {
		c, err := snapshot.LoadFilesCache(wrongFile, repos.Writer.Config().ID)
		if err != nil || c.Len() != 1 {
			t.Fatalf("load the cache: %d entries, %v", c.Len(), err)
		}
		return c
	}

	trusted, nodes := backupOf(t, repos, load(), snapshot.BackupOptions{Paths: []string{src}}, "a")
	if s := trusted.Manifest.Summary; s.FilesUnmodified != 1 || !slices.Equal(nodes[0].Content, contentB) {
		t.Fatalf("without ReadAll: %d unmodified, content of a %v; want the cache trusted (b's content %v)", s.FilesUnmodified, nodes[0].Content, contentB)
	}
	again := load()
	res, nodes := backupOf(t, repos, again, snapshot.BackupOptions{Paths: []string{src}, ReadAll: true}, "a", "b")
	if s := res.Manifest.Summary; s.FilesChanged != 1 || s.FilesNew != 1 || s.FilesUnmodified != 0 || s.BytesRead != 34 {
		t.Errorf("ReadAll: %d new, %d changed, %d unmodified, %d bytes read; want a changed, b new, 34 bytes read", s.FilesNew, s.FilesChanged, s.FilesUnmodified, s.BytesRead)
	}
	if !slices.Equal(nodes[0].Content, contentA) || !slices.Equal(nodes[1].Content, contentB) {
		t.Errorf("ReadAll: content of a %v, b %v; want %v, %v", nodes[0].Content, nodes[1].Content, contentA, contentB)
	}
	// What it read is recorded: the next backup trusts a's real content.
	_, nodes = backupOf(t, repos, reloaded(t, again, repos), snapshot.BackupOptions{Paths: []string{src}}, "a")
	if !slices.Equal(nodes[0].Content, contentA) {
		t.Errorf("after ReadAll: content of a %v, want %v", nodes[0].Content, contentA)
	}
}
