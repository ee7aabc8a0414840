package restore

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Helpers for tests that act as a user other than root, shared by the
// package's own tests and, through export_test.go, its external ones.

// asUser runs fn with the process's effective user and group IDs set to
// id (the saved ones stay root's, to switch back). It needs root.
func asUser(t *testing.T, id int, fn func()) {
	t.Helper()
	if err := syscall.Setresgid(-1, id, -1); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setresuid(-1, id, -1); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := syscall.Setresuid(-1, 0, -1); err != nil {
			panic(err)
		}
		if err := syscall.Setresgid(-1, 0, -1); err != nil {
			panic(err)
		}
	}()
	fn()
}

// nobody is the user tests act as (asUser) to restore as a user other
// than root.
const nobody = 65534

// userTarget returns a new restore target owned by user and group id,
// in directories anyone may enter.
func userTarget(t *testing.T, id int) string {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(base, "t")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dst, id, id); err != nil {
		t.Fatal(err)
	}
	return dst
}

// testTarget opens dir as a restore target, closed when the test ends.
func testTarget(t *testing.T, dir string) *targetDir {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	td, err := newTargetDir(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(td.close)
	return td
}
