package local_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) chunkstore.Store {
		s, err := local.Open(filepath.Join(t.TempDir(), "repo"), true)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing", "repo")
	_, err := local.Open(missing, false)
	if !errors.Is(err, chunkstore.ErrBucketNotFound) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Open(missing, create=false) = %v, want ErrBucketNotFound naming %s", err, missing)
	}
	s, err := local.Open(missing, true)
	if err != nil {
		t.Fatalf("Open(missing, create=true): %v", err)
	}
	if s.Location() != missing {
		t.Errorf("Location() = %q, want %q", s.Location(), missing)
	}
	if fi, err := os.Stat(missing); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created dir: %v, %v; want mode 0700", fi.Mode(), err)
	}
	if _, err := local.Open(missing, false); err != nil {
		t.Errorf("reopen existing: %v", err)
	}
	if _, err := local.Open("relative/repo", true); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("Open(relative) = %v, want an error about absolute paths", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := local.Open(file, true); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Open(regular file) = %v, want 'not a directory'", err)
	}
}

// TestSharedRepository: in a repository whose root is setgid, files and
// directories take the root's group access, whatever the umask, so a
// group can read what another user's backups write; any other root
// keeps them private, group-readable or not.
func TestSharedRepository(t *testing.T) {
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })
	for _, tc := range []struct {
		root          os.FileMode
		file, dir     os.FileMode
		setgidSubdirs bool
	}{
		{root: 0o700, file: 0o600, dir: 0o700},
		{root: 0o750, file: 0o600, dir: 0o700},
		{root: 0o770, file: 0o600, dir: 0o700},
		{root: 0o2750, file: 0o640, dir: 0o750, setgidSubdirs: true},
		{root: 0o2770, file: 0o660, dir: 0o770, setgidSubdirs: true},
	} {
		t.Run(fmt.Sprintf("%04o", uint32(tc.root)), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "repo")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			mode := tc.root.Perm()
			if tc.root&0o2000 != 0 {
				mode |= os.ModeSetgid
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			s, err := local.Open(dir, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Put(t.Context(), "data/ab/abcd", []byte("x")); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(dir, "data", "ab", "abcd"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tc.file {
				t.Errorf("file mode %v, want %v", fi.Mode().Perm(), tc.file)
			}
			for _, d := range []string{"data", "data/ab"} {
				fi, err := os.Stat(filepath.Join(dir, d))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != tc.dir || (fi.Mode()&os.ModeSetgid != 0) != tc.setgidSubdirs {
					t.Errorf("%s: mode %v, want %v (setgid %v)", d, fi.Mode(), tc.dir, tc.setgidSubdirs)
				}
			}
		})
	}
}

// TestSharedRepositoryConcurrentDirs: writers that create the same new
// directories of a shared repository at once all succeed, and every
// directory ends up with the shared mode.
func TestSharedRepositoryConcurrentDirs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o750|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := range 4 {
		s, err := local.Open(dir, false)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := range 100 {
				if err := s.Put(t.Context(), fmt.Sprintf("data/%02x/%d/o-%d", i, i%7, w), []byte("x")); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o640)
		if d.IsDir() {
			want = 0o750 | os.ModeDir | os.ModeSetgid
		}
		if fi.Mode() != want {
			t.Errorf("%s: %v, want %v", p, fi.Mode(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTempFilesInvisible(t *testing.T) {
	dir := t.TempDir()
	s, err := local.Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// Leftovers of a crashed Put.
	os.MkdirAll(filepath.Join(dir, "data", "ab"), 0o700)
	os.WriteFile(filepath.Join(dir, "data", "ab", ".tmp-123"), []byte("partial"), 0o600)
	os.WriteFile(filepath.Join(dir, ".tmp-456"), []byte("partial"), 0o600)

	// Concurrent Puts and Lists: a List must never see a temp file.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bad []string
	var mu sync.Mutex
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.List(ctx, "", func(oi chunkstore.ObjectInfo) error {
				if strings.Contains(oi.Name, ".tmp-") {
					mu.Lock()
					bad = append(bad, oi.Name)
					mu.Unlock()
				}
				return nil
			})
		}
	})
	for i := range 50 {
		if err := s.Put(ctx, "data/ab/obj"+string(rune('a'+i%26))+string(rune('a'+i/26)), storetest.Data(uint64(i), 50000)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("List reported temporary files: %q", bad[:min(len(bad), 5)])
	}
	n := 0
	s.List(ctx, "", func(oi chunkstore.ObjectInfo) error { n++; return nil })
	if n != 50 {
		t.Errorf("List found %d objects, want 50", n)
	}
	if err := s.Put(ctx, "data/.tmp-x", []byte("x")); err == nil {
		t.Error("Put of a name that looks like a temp file succeeded")
	}
	// Put leaves no temp file behind.
	entries, _ := os.ReadDir(filepath.Join(dir, "data", "ab"))
	tmps := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			tmps++
		}
	}
	if tmps != 1 { // the planted one
		t.Errorf("found %d temp files in data/ab, want only the planted one", tmps)
	}
}

// TestSweepTemp: SweepTemp, reached through the retry decorator, removes
// the temporary files (and empty temporary directories) of Puts that
// never finished and were last modified before the cut-off, at any depth,
// and leaves newer ones, objects, and a temporary directory that is not
// empty; a dry run counts what it would remove and removes nothing.
func TestSweepTemp(t *testing.T) {
	dir := t.TempDir()
	s, err := local.Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, "data/ab/abc", []byte("object")); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	plant := func(rel string, content []byte, dirEntry bool, mtime time.Time) string {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if dirEntry {
			err = os.Mkdir(p, 0o700)
		} else {
			err = os.WriteFile(p, content, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gone := []string{
		plant("data/ab/.tmp-1", make([]byte, 1000), false, old),
		plant("index/.tmp-2", make([]byte, 24), false, old),
		plant(".tmp-3", nil, true, old), // an empty directory mkdirShared left
	}
	kept := []string{
		plant("data/ab/.tmp-4", []byte("a Put in progress"), false, time.Now()),
		filepath.Join(dir, "data", "ab", "abc"),
	}
	full := plant("data/.tmp-5", nil, true, old)
	plant("data/.tmp-5/x", []byte("x"), false, old)
	if err := os.Chtimes(full, old, old); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, full)

	st := chunkstore.WithRetry(s, chunkstore.RetryConfig{})
	cut := time.Now().Add(-24 * time.Hour)
	n, b, err := chunkstore.SweepTemp(ctx, st, cut, true)
	if err != nil || n != 3 || b != 1024 {
		t.Fatalf("dry run: %d files, %d bytes, %v; want 3, 1024 bytes", n, b, err)
	}
	for _, p := range gone {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("dry run removed %s", p)
		}
	}
	n, b, err = chunkstore.SweepTemp(ctx, st, cut, false)
	if err != nil || n != 3 || b != 1024 {
		t.Fatalf("sweep: %d files, %d bytes, %v; want 3, 1024 bytes", n, b, err)
	}
	for _, p := range gone {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left (%v)", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed", p)
		}
	}
	if n, _, err := chunkstore.SweepTemp(ctx, storetest.NewFaulty(s), cut, false); err != nil || n != 0 {
		t.Errorf("second sweep through a decorator without Unwrap: %d, %v; want 0 (it cannot see the store)", n, err)
	}
}

func TestUnwritable(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := local.Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	// A path component that is a regular file fails for root too.
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = s.Put(ctx, "data/ab/obj", []byte("x"))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "data")) {
		t.Errorf("Put under a regular file = %v, want an error naming the path", err)
	}
	if !chunkstore.IsPermanent(err) {
		t.Errorf("Put under a regular file = %v, want a permanent error", err)
	}

	t.Run("permission", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory permissions")
		}
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o500)
		s, err := local.Open(ro, false)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Put(ctx, "obj", []byte("x"))
		if !errors.Is(err, os.ErrPermission) || !chunkstore.IsPermanent(err) || !strings.Contains(err.Error(), ro) {
			t.Errorf("Put into read-only dir = %v, want a permanent permission error naming %s", err, ro)
		}
	})
}

func TestENOSPC(t *testing.T) {
	// Filling a real filesystem needs a mount this test cannot count on, so
	// take a genuine ENOSPC from /dev/full and check how Put would report it.
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("/dev/full not available")
	}
	defer f.Close()
	_, werr := f.Write([]byte("x"))
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Skipf("/dev/full write = %v, not ENOSPC", werr)
	}
	err = local.ClassifyForTest(werr, "/repo/data/x")
	if !errors.Is(err, syscall.ENOSPC) || !chunkstore.IsPermanent(err) ||
		!strings.Contains(err.Error(), "/repo/data/x") || !strings.Contains(err.Error(), "full") {
		t.Errorf("classified ENOSPC = %v", err)
	}
}

// A repository on a read-only mount says so: checking the permissions
// of the directory, the hint for EACCES, would not help.
func TestReadOnlyFilesystem(t *testing.T) {
	err := local.ClassifyForTest(&fs.PathError{Op: "mkdir", Path: "/repo/sessions/x", Err: syscall.EROFS}, "/repo/sessions/x")
	if !errors.Is(err, syscall.EROFS) || !chunkstore.IsPermanent(err) ||
		!strings.Contains(err.Error(), "mounted read-only") || strings.Contains(err.Error(), "permissions") {
		t.Errorf("classified EROFS = %v, want a permanent error saying the filesystem is read-only", err)
	}
}

func TestRootVanished(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "repo")
	s, err := local.Open(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "data/x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)
	err = s.List(ctx, "data/", func(chunkstore.ObjectInfo) error { return nil })
	if err == nil || errors.Is(err, chunkstore.ErrNotFound) {
		t.Errorf("List on a vanished root = %v, want an error (never an empty listing)", err)
	}
	if _, err := s.Stat(ctx, "data/x"); !errors.Is(err, chunkstore.ErrBucketNotFound) {
		t.Errorf("Stat on a vanished root = %v, want ErrBucketNotFound", err)
	}
}

// A stream of a file that shrinks while it is read fails with
// io.ErrUnexpectedEOF instead of ending quietly short.
func TestStreamOfShrunkFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	s, err := local.Open(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "data/x", storetest.Data(4, 5000)); err != nil {
		t.Fatal(err)
	}
	rc, err := s.OpenRange(t.Context(), "data/x", 100, 4000)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	var shrunk bool
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "x" {
			shrunk = os.Truncate(p, 2000) == nil
		}
		return nil
	})
	if !shrunk {
		t.Fatal("could not find and truncate the object's file")
	}
	if b, err := io.ReadAll(rc); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("after the file shrank: %d more bytes, %v; want io.ErrUnexpectedEOF", len(b), err)
	}
}

// TestListFollowsSymlinks: a repository whose root, or whose data/
// (moved to a larger disk), is a symlink lists what Stat and Get find,
// not nothing; a symlink to nothing, and one looping back up, fail the
// listing, naming it, rather than listing less.
func TestListFollowsSymlinks(t *testing.T) {
	ctx := t.Context()
	base := t.TempDir()
	real := filepath.Join(base, "real")
	s, err := local.Open(real, true)
	if err != nil {
		t.Fatal(err)
	}
	objects := []string{"config", "data/ab/ab01", "data/cd/cd02"}
	for _, n := range objects {
		if err := s.Put(ctx, n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	moved := filepath.Join(base, "larger-disk", "data")
	if err := os.MkdirAll(filepath.Dir(moved), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(real, "data"), moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(moved, filepath.Join(real, "data")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	viaLink, err := local.Open(link, false)
	if err != nil {
		t.Fatal(err)
	}
	list := func(st chunkstore.Store, prefix string) ([]string, error) {
		var names []string
		err := st.List(ctx, prefix, func(oi chunkstore.ObjectInfo) error {
			names = append(names, oi.Name)
			return nil
		})
		return names, err
	}
	for _, st := range []chunkstore.Store{s, viaLink} {
		for prefix, want := range map[string][]string{
			"":         objects,
			"config":   objects[:1],
			"data":     objects[1:],
			"data/":    objects[1:],
			"data/ab/": objects[1:2],
		} {
			got, err := list(st, prefix)
			if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s List(%q) = %q, %v; want %q", st.Location(), prefix, got, err, want)
			}
		}
	}
	// data/ itself pointing nowhere (its disk not mounted).
	if err := os.Rename(moved, moved+".unmounted"); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"data/", "data/ab/", ""} {
		if got, err := list(s, prefix); err == nil || !strings.Contains(err.Error(), "a symlink to nothing") {
			t.Errorf("List(%q) with data/ pointing nowhere: %q, %v", prefix, got, err)
		}
	}
	if err := os.Rename(moved+".unmounted", moved); err != nil {
		t.Fatal(err)
	}
	for what, target := range map[string]string{
		"a symlink to nothing": filepath.Join(base, "gone"),
		"a loop":               moved, // data/ef -> data
	} {
		lnk := filepath.Join(moved, "ef")
		if err := os.Symlink(target, lnk); err != nil {
			t.Fatal(err)
		}
		if got, err := list(s, "data/"); err == nil || !strings.Contains(err.Error(), what) {
			t.Errorf("List with %s: %q, %v", what, got, err)
		}
		if err := os.Remove(lnk); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPutOnFullDisk: a Put into a repository on a full filesystem fails
// with a permanent error that names the file once (not "write F: write
// F: ..."), says the filesystem is full, and leaves no temporary file,
// so that the same Put of less data then succeeds.
func TestPutOnFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	s, err := local.Open(filepath.Join(dir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, "data/ab/first", []byte("x")); err != nil { // the directories
		t.Fatal(err)
	}
	data := make([]byte, 128<<10) // twice the filesystem
	err = s.Put(ctx, "data/ab/big", data)
	if !errors.Is(err, syscall.ENOSPC) || !chunkstore.IsPermanent(err) || !strings.Contains(err.Error(), "filesystem holding the repository is full") {
		t.Fatalf("Put on a full filesystem: %v, want a permanent ENOSPC saying the filesystem is full", err)
	}
	tmp := filepath.Join(dir, "repo", "data", "ab", ".tmp-")
	if n := strings.Count(err.Error(), tmp); n != 1 {
		t.Errorf("Put on a full filesystem: %q names the temporary file %d times, want once", err, n)
	}
	if left, _ := filepath.Glob(tmp + "*"); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := s.Put(ctx, "data/ab/big", data[:16<<10]); err != nil {
		t.Errorf("smaller Put after the failed one: %v", err)
	}
}

// TestDeleteSyncsDirectory: a Delete fsyncs the directory it unlinked
// from, as Put fsyncs the one it renamed into, so that a completed
// Delete survives a power cut (prune relies on the order of its deletes:
// old index files before the packs they name). It did not: the unlink
// could be lost while later ones were kept.
func TestDeleteSyncsDirectory(t *testing.T) {
	s, err := local.Open(filepath.Join(t.TempDir(), "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var synced []string
	local.OnDirSyncForTest(s, func(dir string) {
		mu.Lock()
		defer mu.Unlock()
		synced = append(synced, dir)
	})
	ctx := t.Context()
	dir := filepath.Join(s.Location(), "index", "ab")
	if err := s.Put(ctx, "index/ab/one", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(synced, dir) {
		t.Fatalf("Put synced %v, not %s", synced, dir)
	}
	synced = nil
	if err := s.Delete(ctx, "index/ab/one"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(synced, []string{dir}) {
		t.Errorf("Delete synced %v, want %s", synced, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "one")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("deleted file still there: %v", err)
	}
	synced = nil
	if err := s.Delete(ctx, "index/ab/one"); err != nil {
		t.Fatalf("delete of a missing object: %v", err)
	}
	if len(synced) != 0 {
		t.Errorf("Delete of a missing object synced %v: nothing changed", synced)
	}
}

// BenchmarkDeletePacks deletes packs spread over the 256 data/xx
// directories, one at a time and 8 at a time as prune does: what the
// directory fsync after each unlink costs.
func BenchmarkDeletePacks(b *testing.B) {
	for _, workers := range []int{1, 8} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			s, err := local.Open(filepath.Join(b.TempDir(), "repo"), true)
			if err != nil {
				b.Fatal(err)
			}
			ctx := b.Context()
			name := func(i int) string { return fmt.Sprintf("data/%02x/%08d", i%256, i) }
			for i := 0; i < b.N; i++ {
				if err := s.Put(ctx, name(i), []byte("pack")); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < b.N; i += workers {
						if err := s.Delete(ctx, name(i)); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// TestDeleteRemovesEmptiedDir: deleting the last object of a directory
// below a top-level one removes the directory: data/ab once prune
// deleted its last pack, and sessions/<session>, one per backup ever
// run, which piled up for every listing of the sessions to read. The
// top-level directories stay, and so does one another object is still
// in, and a symlinked directory (rmdir never removes a link).
func TestDeleteRemovesEmptiedDir(t *testing.T) {
	s, err := local.Open(filepath.Join(t.TempDir(), "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	root := s.Location()
	elsewhere := filepath.Join(t.TempDir(), "cd")
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(elsewhere, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(root, "data", "cd")); err != nil {
		t.Fatal(err)
	}
	names := []string{"data/ab/ab1", "data/ab/ab2", "data/cd/cd1", "sessions/s1/000000", "sessions/s1/done", "index/x1"}
	for _, n := range names {
		if err := s.Put(ctx, n, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(rel string) bool {
		t.Helper()
		_, err := os.Lstat(filepath.Join(root, rel))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}
	del := func(n string) {
		t.Helper()
		if err := s.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	del("data/ab/ab1")
	del("sessions/s1/000000")
	if !exists("data/ab") || !exists("sessions/s1") {
		t.Fatal("a directory another object is still in was removed")
	}
	del("data/ab/ab2")
	del("sessions/s1/done")
	del("data/cd/cd1")
	del("index/x1")
	for _, d := range []string{"data/ab", "sessions/s1"} {
		if exists(d) {
			t.Errorf("%s is left empty after its last object was deleted", d)
		}
	}
	for _, d := range []string{"data", "sessions", "index", "data/cd"} {
		if !exists(d) {
			t.Errorf("%s was removed", d)
		}
	}
	if _, err := os.Stat(elsewhere); err != nil {
		t.Errorf("the directory data/cd links to was removed: %v", err)
	}
	// The next Put there makes the directory again.
	if err := s.Put(ctx, "data/ab/ab3", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Get(ctx, "data/ab/ab3", 0, -1); err != nil || string(b) != "y" {
		t.Errorf("Get after the directory was made again = %q, %v", b, err)
	}
}

// TestPutWhileDeleteEmptiesDir: a Delete of the last object in a
// directory removes it, and may do so after a concurrent Put made sure
// the directory is there and before it creates its temporary file
// there. That Put makes the directory again and succeeds.
func TestPutWhileDeleteEmptiesDir(t *testing.T) {
	s, err := local.Open(filepath.Join(t.TempDir(), "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, "data/ab/ab1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	raced := false
	local.BeforeCreateForTest(s, func(dir string) {
		if !raced { // the Delete wins the race once
			raced = true
			if err := s.Delete(ctx, "data/ab/ab1"); err != nil {
				t.Error(err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s not removed by the Delete of its last object (%v)", dir, err)
			}
		}
	})
	if err := s.Put(ctx, "data/ab/ab2", []byte("y")); err != nil {
		t.Fatalf("Put into a directory a concurrent Delete removed: %v", err)
	}
	if b, err := s.Get(ctx, "data/ab/ab2", 0, -1); err != nil || string(b) != "y" {
		t.Errorf("Get = %q, %v", b, err)
	}

	// The same with real concurrency: one writer keeps emptying the
	// directory while another puts, reads and deletes its own object.
	local.BeforeCreateForTest(s, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("data/cd/cd%d", w)
			for range 300 {
				if err := s.Put(ctx, name, []byte(name)); err != nil {
					errs <- err
					return
				}
				if b, err := s.Get(ctx, name, 0, -1); err != nil || string(b) != name {
					errs <- fmt.Errorf("get %s = %q, %v", name, b, err)
					return
				}
				if err := s.Delete(ctx, name); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPutSyncsDirectoryAnotherWriterMade: a Put into an object's
// directory that another writer made (and may not have fsynced into its
// parent yet, as directories under data/ and sessions/ now come and go
// with Delete) fsyncs that parent too before it returns, so a crash
// cannot take the committed object with the directory; a Put that made
// the directory itself, or into a top-level one, adds no fsync.
func TestPutSyncsDirectoryAnotherWriterMade(t *testing.T) {
	s, err := local.Open(filepath.Join(t.TempDir(), "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	var synced []string
	local.OnDirSyncForTest(s, func(dir string) { synced = append(synced, dir) })
	ctx := t.Context()
	root := s.Location()
	for _, d := range []string{"data", "sessions", "index"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"data/ab/ab01", "sessions/s1/lease"} {
		dir := filepath.Dir(filepath.Join(root, filepath.FromSlash(name)))
		// The other writer: its mkdir is done, its fsync of the
		// parent not yet.
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		synced = nil
		if err := s.Put(ctx, name, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if want := []string{dir, filepath.Dir(dir)}; !slices.Equal(synced, want) {
			t.Errorf("Put %s into a directory another writer made synced %v, want %v", name, synced, want)
		}
	}
	synced = nil
	if err := s.Put(ctx, "data/cd/cd01", []byte("x")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "data", "cd")
	if want := []string{filepath.Dir(dir), dir}; !slices.Equal(synced, want) {
		t.Errorf("Put that made its directory synced %v, want %v", synced, want)
	}
	synced = nil
	if err := s.Put(ctx, "index/01", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(root, "index")}; !slices.Equal(synced, want) {
		t.Errorf("Put into a top-level directory synced %v, want %v", synced, want)
	}
}
