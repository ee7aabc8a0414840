package restore

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
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
		td := testTarget(t, dir)
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
	}
}

// TestLinkUnnamedOtherThread: a process without CAP_DAC_READ_SEARCH may
// link a file in by its descriptor (AT_EMPTY_PATH, Linux 6.10 on) only
// with the very credentials that opened it, compared by identity. Threads
// whose credentials were set one by one (Go's syscall.Setresuid does so
// on every thread) each hold their own, so a file created on one thread
// and linked on another is refused with ENOENT even though the first
// link worked. The link then goes through /proc instead of failing the
// file. (Seen once in CI as a file missing after TestStrayXAttrsAsUser's
// restore as uid 65534.)
func TestLinkUnnamedOtherThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as another user")
	}
	dir := userTarget(t, nobody)
	td := testTarget(t, dir)
	// onThread runs fn on an OS thread of its own, kept apart from the
	// thread that runs the next call.
	onThread := func(fn func()) {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			fn()
			close(done)
		}()
		<-done
	}
	asUser(t, nobody, func() {
		td.linkMode.Store(linkEmptyPath) // as if an earlier link had worked that way
		var f *os.File
		var err error
		onThread(func() {
			if f, err = td.createUnnamed("name", 0o600); err == nil {
				_, err = f.WriteAt([]byte("content"), 0)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		onThread(func() { err = td.linkUnnamed(f, "name") })
		if err != nil {
			t.Fatalf("link a file created on another thread: %v", err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "name")); err != nil || string(b) != "content" {
			t.Errorf("linked file holds %q, %v", b, err)
		}
	})
}
