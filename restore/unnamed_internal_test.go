package restore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLinkUnnamed: a file created without a name gets its name by either
// way of linking, the first link remembers the way that worked, a taken
// name is EEXIST (the caller then renames over it), and a file closed
// unlinked leaves nothing in its directory.
func TestLinkUnnamed(t *testing.T) {
	for _, mode := range []int32{linkEmptyPath, linkProc} {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		td, err := newTargetDir(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		newFile := func() *os.File {
			t.Helper()
			f, err := td.createUnnamed("d/name", 0o640)
			if err != nil {
				t.Fatalf("mode %d: createUnnamed: %v", mode, err)
			}
			if _, err := f.WriteAt([]byte("content"), 0); err != nil {
				t.Fatal(err)
			}
			return f
		}
		if mode == linkProc {
			td.linkMode.Store(linkProc)
		}
		f := newFile()
		if err := td.linkUnnamed(f, "d/name"); err != nil {
			t.Fatalf("mode %d: link: %v", mode, err)
		}
		if got := td.linkMode.Load(); got != mode {
			t.Errorf("link mode %d after the first link, want %d", got, mode)
		}
		f.Close()
		if b, err := os.ReadFile(filepath.Join(dir, "d/name")); err != nil || string(b) != "content" {
			t.Errorf("mode %d: linked file holds %q, %v", mode, b, err)
		}
		if fi, err := os.Stat(filepath.Join(dir, "d/name")); err != nil || uint32(fi.Mode().Perm()) != 0o640&^td.umask {
			t.Errorf("mode %d: linked file: %v, %v", mode, fi.Mode(), err)
		}

		g := newFile()
		if err := td.linkUnnamed(g, "d/name"); !errors.Is(err, unix.EEXIST) {
			t.Errorf("mode %d: link over a taken name: %v, want EEXIST", mode, err)
		}
		g.Close() // never linked: gone
		entries, err := os.ReadDir(filepath.Join(dir, "d"))
		if err != nil || len(entries) != 1 {
			t.Errorf("mode %d: directory holds %v (%v), want only name", mode, entries, err)
		}
		td.close()
		root.Close()
	}
}
