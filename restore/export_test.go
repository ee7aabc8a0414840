package restore

import (
	"io/fs"
	"os"
	"syscall"
	"testing"
)

// WalkTolerant exposes the planning walk to the external tests.
var WalkTolerant = walkTolerant

// RefuseDirectIO makes every O_DIRECT open (atOpen) or every direct
// write fail with errno, until the test ends: EINVAL as on a filesystem
// without direct I/O, or another error.
func RefuseDirectIO(t testing.TB, atOpen bool, errno syscall.Errno) {
	open, write := openDirect, writeDirect
	t.Cleanup(func() { openDirect, writeDirect = open, write })
	if atOpen {
		openDirect = func(*targetDir, string) (*os.File, error) { return nil, &fs.PathError{Op: "open", Err: errno} }
	} else {
		writeDirect = func(*os.File, []byte, int64) (int, error) { return 0, &fs.PathError{Op: "write", Err: errno} }
	}
}

// DirectSupported reports whether dir's filesystem accepts O_DIRECT.
func DirectSupported(t *testing.T, dir string) bool { return directSupported(t, dir) }

// MaxHeld is the most bytes one request of the fallback path may ask for.
const MaxHeld = maxHeld
