package restore

import (
	"io/fs"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// RefuseTimes makes setting the times of every entry named name fail
// with EPERM until the test ends, as a filesystem that refuses them would
// (and of every temporary file: see below).
func RefuseTimes(t testing.TB, name string) {
	orig := utimesAt
	t.Cleanup(func() { utimesAt = orig })
	utimesAt = func(dfd int, base, entry string, ts []unix.Timespec, flags int) error {
		// A file gets its times under its temporary name, before it is
		// put in place: refused by the name of the snapshot's entry.
		if entry == name {
			return syscall.EPERM
		}
		return orig(dfd, base, entry, ts, flags)
	}
}

// FailSync makes the final flush of a restore with Options.Sync fail
// with errno until the test ends.
func FailSync(t testing.TB, errno syscall.Errno) {
	orig := syncFS
	t.Cleanup(func() { syncFS = orig })
	syncFS = func(int) error { return errno }
}

// DirectSupported reports whether dir's filesystem accepts O_DIRECT.
func DirectSupported(t *testing.T, dir string) bool { return directSupported(t, dir) }

// MaxHeld is the most bytes one request of the fallback path may ask for.
const MaxHeld = maxHeld

// BeforeFetch runs fn with the target directory once a restore has
// created its files of several chunks, before any download, until the
// test ends.
func BeforeFetch(t testing.TB, fn func(target string)) {
	beforeFetch = fn
	t.Cleanup(func() { beforeFetch = nil })
}

// BeforeVerify runs fn with the target directory just before a restore
// with Options.Verify reads its files back, until the test ends.
func BeforeVerify(t testing.TB, fn func(target string)) {
	beforeVerify = fn
	t.Cleanup(func() { beforeVerify = nil })
}

// BeforeReplaceDir runs fn with the temporary name (relative to the
// target) of a file about to take the place of a directory, just before
// it does, until the test ends.
func BeforeReplaceDir(t testing.TB, fn func(tmp string)) {
	beforeReplaceDir = fn
	t.Cleanup(func() { beforeReplaceDir = nil })
}

// RefuseExchange makes every RENAME_EXCHANGE fail with EINVAL, as on a
// filesystem without it, until the test ends.
func RefuseExchange(t testing.TB) {
	orig := exchangeAt
	t.Cleanup(func() { exchangeAt = orig })
	exchangeAt = func(int, string, string) error { return syscall.EINVAL }
}

// BeforeLink runs fn with the path (relative to the target) of a file of
// one chunk about to be linked in, written without a name, until the
// test ends.
func BeforeLink(t testing.TB, fn func(p string)) {
	beforeLink = fn
	t.Cleanup(func() { beforeLink = nil })
}

// RefuseUnnamed makes creating a file without a name fail as on a
// filesystem without O_TMPFILE, until the test ends.
func RefuseUnnamed(t testing.TB) {
	orig := openUnnamed
	t.Cleanup(func() { openUnnamed = orig })
	openUnnamed = func(int, uint32) (int, error) { return -1, syscall.EOPNOTSUPP }
}

// DirsListedForStrays records, until the test ends, each directory
// (relative to the target) whose extended attributes a restore lists to
// find the user.* ones the snapshot lacks; the returned function gives
// those recorded so far, sorted.
func DirsListedForStrays(t testing.TB) func() []string {
	var mu sync.Mutex
	var listed []string
	onDirStrays = func(p string) {
		mu.Lock()
		defer mu.Unlock()
		listed = append(listed, p)
	}
	t.Cleanup(func() { onDirStrays = nil })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Sorted(slices.Values(listed))
	}
}

// Acting as another user (users_internal_test.go).
var (
	AsUser     = asUser
	UserTarget = userTarget
)

const Nobody = nobody

// SlowDirectWrites makes each direct write take at least d longer, as on
// a slow disk, until the test ends, and returns a function that tells
// the most direct writes seen under way at once.
func SlowDirectWrites(t testing.TB, d time.Duration) (most func() int64) {
	orig := writeDirect
	t.Cleanup(func() { writeDirect = orig })
	var now, peak atomic.Int64
	writeDirect = func(f *os.File, b []byte, off int64) (int, error) {
		n := now.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		defer now.Add(-1)
		time.Sleep(d)
		return orig(f, b, off)
	}
	return peak.Load
}

// DirectSlots is how many direct writes a restore with Options.Packs
// packs lets be under way at once.
func DirectSlots(packs int) int { return directSlots(packs) }
