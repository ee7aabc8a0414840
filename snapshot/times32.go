package snapshot

import (
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stat32 says this platform's stat holds 32-bit seconds (386, arm): a
// time past January 2038 comes back wrapped around, 2100 as 1963.
var stat32 = unsafe.Sizeof(syscall.Timespec{}.Sec) == 4

// times64 sets n's times from statx, which holds 64-bit seconds
// everywhere, where stat32: without it a file dated after 2038 would be
// saved with a wrong time and no word. follow is whether the stat that
// made n followed a final symlink. Elsewhere it does nothing.
func (a *archiver) times64(path string, n *Node, follow bool) {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if follow {
		flags = 0
	}
	a.times64At(unix.AT_FDCWD, path, flags, path, n)
}

// times64FD is times64 for the open file f, found at path.
func (a *archiver) times64FD(f *os.File, path string, n *Node) {
	a.times64At(int(f.Fd()), "", unix.AT_EMPTY_PATH, path, n)
}

func (a *archiver) times64At(dirfd int, name string, flags int, path string, n *Node) {
	if !stat32 {
		return
	}
	var sx unix.Statx_t
	if err := unix.Statx(dirfd, name, flags|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_ATIME|unix.STATX_MTIME|unix.STATX_CTIME, &sx); err != nil {
		a.warnAs("times may be wrong", path, fmt.Errorf("times read with a 32-bit stat (statx: %w): any after January 2038 are saved wrong", err))
		return
	}
	at := func(t unix.StatxTimestamp) time.Time { return time.Unix(t.Sec, int64(t.Nsec)) }
	n.ModTime, n.ChangeTime = at(sx.Mtime), at(sx.Ctime)
	if !n.AccessTime.IsZero() {
		n.AccessTime = at(sx.Atime)
	}
}
