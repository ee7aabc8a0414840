package restore_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
)

// unnamedTree has files of one chunk (written without a name and linked
// in) with modes and times to come back, beside one of several chunks and
// an empty one, which take other paths.
func unnamedTree() fixture.Tree {
	old := time.Date(1999, 12, 31, 23, 59, 58, 123456789, time.UTC)
	return fixture.Tree{
		"a":       {Content: []byte("one chunk\n"), Mode: 0o640, MTime: old},
		"b":       {Content: fixture.Random(1, 300<<10), MTime: old}, // through the write-behind window
		"sub/c":   {Content: []byte("deeper\n"), Mode: 0o755 | fs.ModeSetuid},
		"sub/x":   {Content: []byte("with an attribute\n")}, // user.k=v, set below
		"big":     {Content: fixture.Random(2, 3<<20)},
		"empty":   {Content: []byte{}},
		"sub/lnk": {HardlinkTo: "a"},
	}
}

func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "lifeboat-restore") {
			found = append(found, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestUnnamedFiles: files of one chunk come back with their content,
// mode, times and attributes whether they are created without a name
// and linked in (the default), where the filesystem cannot (under a
// temporary name, renamed), where something appears at their path
// between the plan and the link (replaced, an empty directory too; one
// with entries is left, and the file fails), and for a
// restore as another user (which older kernels make link through /proc;
// TestLinkUnnamed forces that way). None leaves a temporary name behind.
func TestUnnamedFiles(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	tree := unnamedTree()
	fixture.Create(t, src, tree)
	if err := unix.Setxattr(filepath.Join(src, "sub/x"), "user.k", []byte("v"), 0); err != nil {
		t.Skipf("user extended attributes: %v", err)
	}
	snap := r.backup(t, src)

	check := func(t *testing.T, dst string) {
		t.Helper()
		fixture.Compare(t, tree, restoredAt(dst, src))
		v := make([]byte, 16)
		if n, err := unix.Getxattr(filepath.Join(restoredAt(dst, src), "sub/x"), "user.k", v); err != nil || string(v[:n]) != "v" {
			t.Errorf("sub/x: user.k = %q, %v; want v", v[:max(n, 0)], err)
		}
		if l := leftovers(t, dst); len(l) > 0 {
			t.Errorf("temporary names left behind: %q", l)
		}
	}
	t.Run("unnamed", func(t *testing.T) {
		dst := t.TempDir()
		r.restore(t, snap, restore.Options{Target: dst})
		check(t, dst)
	})
	t.Run("filesystem without O_TMPFILE", func(t *testing.T) {
		restore.RefuseUnnamed(t)
		dst := t.TempDir()
		r.restore(t, snap, restore.Options{Target: dst})
		check(t, dst)
	})
	t.Run("something appears at the path", func(t *testing.T) {
		dst := t.TempDir()
		var (
			mu      sync.Mutex // the hook runs on the download workers
			planted []string
		)
		restore.BeforeLink(t, func(p string) {
			at := filepath.Join(dst, p)
			var err error
			switch filepath.Base(p) {
			case "a":
				err = os.WriteFile(at, []byte("written by another process\n"), 0o600)
			case "c":
				err = os.Mkdir(at, 0o755)
			default:
				return
			}
			if err != nil {
				t.Errorf("plant at %s: %v", p, err)
			}
			mu.Lock()
			planted = append(planted, p)
			mu.Unlock()
		})
		r.restore(t, snap, restore.Options{Target: dst})
		if len(planted) != 2 {
			t.Fatalf("planted at %q, want a and sub/c: were they written unnamed?", planted)
		}
		check(t, dst)
	})
	t.Run("a directory with entries appears at the path", func(t *testing.T) {
		// Another process's: left as it is, with what it holds, and the
		// file fails naming --delete (TestDirGainsEntriesDuringRestore).
		dst := t.TempDir()
		restore.BeforeLink(t, func(p string) {
			if filepath.Base(p) != "c" {
				return
			}
			at := filepath.Join(dst, p)
			if err := os.Mkdir(at, 0o755); err != nil {
				t.Error(err)
			}
			if err := os.WriteFile(filepath.Join(at, "inside"), []byte("x"), 0o600); err != nil {
				t.Error(err)
			}
		})
		res, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Failures) != 1 || !strings.HasSuffix(res.Failures[0].Path, "/sub/c") || !strings.Contains(res.Failures[0].Err.Error(), "--delete") {
			t.Fatalf("failures %v, want sub/c's, naming --delete", res.Failures)
		}
		if b, err := os.ReadFile(filepath.Join(restoredAt(dst, src), "sub/c/inside")); err != nil || string(b) != "x" {
			t.Errorf("sub/c/inside: %q, %v; want it kept", b, err)
		}
		if l := leftovers(t, dst); len(l) > 0 {
			t.Errorf("temporary names left behind: %q", l)
		}
	})
	t.Run("as another user", func(t *testing.T) {
		ur := anyUserRepo(t)
		plain := fixture.Tree{ // nobody cannot set another owner or a setuid bit on root's behalf
			"a":     {Content: []byte("one chunk\n"), Mode: 0o640, MTime: time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)},
			"sub/c": {Content: []byte("deeper\n")},
		}
		usrc := t.TempDir()
		fixture.Create(t, usrc, plain)
		if err := os.Chown(filepath.Join(usrc, "a"), nobody, nobody); err != nil {
			t.Fatal(err)
		}
		usnap := ur.backup(t, usrc)
		dst := userTarget(t, nobody)
		asUser(t, nobody, func() { ur.restore(t, usnap, restore.Options{Target: dst}) })
		out := restoredAt(dst, usrc)
		for p, e := range plain {
			got, err := os.ReadFile(filepath.Join(out, p))
			if err != nil || string(got) != string(e.Content) {
				t.Errorf("%s: %q, %v", p, got, err)
			}
		}
		fi, err := os.Stat(filepath.Join(out, "a"))
		if err != nil || fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(plain["a"].MTime) {
			t.Errorf("a: %v, %v, %v; want mode 640 and the snapshot's time", fi.Mode(), fi.ModTime(), err)
		}
		if l := leftovers(t, dst); len(l) > 0 {
			t.Errorf("temporary names left behind: %q", l)
		}
	})
}

// TestFailedUnnamedKeepsForeignFile: a file of one chunk whose blob
// fails was never created at its path, so the cleanup after the failure
// leaves what another process put there meanwhile (found by review: it
// was removed).
func TestFailedUnnamedKeepsForeignFile(t *testing.T) {
	ctx := context.Background()
	dir, _, repos := localRepos(t)
	r := testRepo{writer: repos.Writer, reader: repos.Reader}
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"bad.bin":  {Content: fixture.Random(11, 100<<10)},
		"good.bin": {Content: fixture.Random(12, 100<<10)},
	})
	snap := r.backup(t, src)
	if err := r.reader.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	flipInPack(t, r.reader, dir, r.reader.BlobID(fixture.Random(11, 100<<10)), 0x40)

	dst := t.TempDir()
	foreign := filepath.Join(restoredAt(dst, src), "bad.bin")
	restore.BeforeFetch(t, func(string) {
		if err := os.WriteFile(foreign, []byte("another process's file\n"), 0o600); err != nil {
			t.Error(err)
		}
	})
	res, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: dst})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) != 1 || !strings.HasSuffix(res.Failures[0].Path, "bad.bin") {
		t.Fatalf("failures %v, want bad.bin's only", res.Failures)
	}
	if got, err := os.ReadFile(foreign); err != nil || string(got) != "another process's file\n" {
		t.Errorf("what another process wrote at bad.bin during the restore: %q, %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(restoredAt(dst, src), "good.bin")); err != nil || !bytes.Equal(got, fixture.Random(12, 100<<10)) {
		t.Errorf("good.bin not restored: %v", err)
	}
}
