package snapshot

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stat32 says this platform's stat holds 32-bit seconds (386, arm): a
// time past January 2038 comes back wrapped around, 2100 as 1963.
const stat32 = unsafe.Sizeof(syscall.Timespec{}.Sec) == 4

// times64 sets n's times from statx, which holds 64-bit seconds
// everywhere, where stat32 and one of them is before 1970: a time from
// 2038 to 2106 wraps around to a negative count of seconds there, which
// would otherwise be saved as it is, without a word (a file of 2100 as
// one of 1963). follow is whether the stat that made n followed a final
// symlink; at is the path the entry is reached by (path, or a deep
// entry's short path). Elsewhere, and for entries of other times, it
// does nothing.
func (a *archiver) times64(at, path string, n *Node, follow bool) {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if follow {
		flags = 0
	}
	a.times64At(unix.AT_FDCWD, at, flags, path, n)
}

// times64FD is times64 for the open file f, found at path.
func (a *archiver) times64FD(f *os.File, path string, n *Node) {
	a.times64At(int(f.Fd()), "", unix.AT_EMPTY_PATH, path, n)
}

func (a *archiver) times64At(dirfd int, name string, flags int, path string, n *Node) {
	if !stat32 || n.ModTime.Unix() >= 0 && n.ChangeTime.Unix() >= 0 && (n.AccessTime.IsZero() || n.AccessTime.Unix() >= 0) {
		return
	}
	var sx unix.Statx_t
	err := unix.Statx(dirfd, name, flags|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_ATIME|unix.STATX_MTIME|unix.STATX_CTIME|unix.STATX_INO, &sx)
	if err == nil && sx.Ino != n.Inode && n.Inode != 0 {
		err = errors.New("it was replaced meanwhile")
	}
	if err != nil {
		a.warnAs("times may be wrong", path, fmt.Errorf("saved with times read by a 32-bit stat, which may be wrong (before 1970, or wrapped around from after 2038): statx: %w", err))
		return
	}
	at := func(t unix.StatxTimestamp) time.Time { return time.Unix(t.Sec, int64(t.Nsec)) }
	n.ModTime, n.ChangeTime = at(sx.Mtime), at(sx.Ctime)
	if !n.AccessTime.IsZero() {
		n.AccessTime = at(sx.Atime)
	}
}
