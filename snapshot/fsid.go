package snapshot

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// fsIDs is a backup's record of the filesystem identity (statfs's
// f_fsid) of each device number it met, so that a backup asks each
// filesystem once, not each file. Device numbers are not identities: a
// loop device reused for another image, or a USB stick swapped for
// another at one mount point, gives a second filesystem the first one's
// number, and its files may have the same inode numbers too. ext4 and
// btrfs derive f_fsid from the filesystem's UUID, which tells them
// apart. FAT, exFAT and XFS derive it from the device number (it then
// adds nothing, at no cost); NFS and FUSE leave it 0. It is asked anew
// by each backup: what a device number stands for changes between two
// backups when media are swapped. Within one backup it is taken to stay
// the same: a swap while the backup walks the mount point (an
// automounter's, say) could make the files of the second medium look
// like the first one's, as without identities.
type fsIDs struct {
	mu  sync.Mutex
	ids map[uint64]uint64 // by device number
}

// readFSID returns the identity of the filesystem holding fd, and the
// device number fd is on (which tells which device the identity is of,
// should the path have been replaced since its lstat). A variable for
// tests.
var readFSID = func(fd int) (fsid, dev uint64, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, err
	}
	var sf unix.Statfs_t
	if err := unix.Fstatfs(fd, &sf); err != nil {
		return 0, 0, err
	}
	return uint64(uint32(sf.Fsid.Val[0])) | uint64(uint32(sf.Fsid.Val[1]))<<32, st.Dev, nil
}

// ofPath returns the identity of the filesystem of device dev, which the
// lstat of path returned, reading it through path (opened O_PATH, which
// neither follows a symlink nor needs read permission) the first time
// dev is met.
func (c *fsIDs) ofPath(dev uint64, path string) (uint64, error) {
	return c.ofAt(dev, unix.AT_FDCWD, path)
}

// ofAt is ofPath for the entry name of the directory open as dirfd: no
// path to it is needed, however deep it lies.
func (c *fsIDs) ofAt(dev uint64, dirfd int, name string) (uint64, error) {
	if id, ok := c.known(dev); ok {
		return id, nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("filesystem identity: %w", err)
	}
	defer unix.Close(fd)
	return c.read(dev, fd)
}

// ofFile is ofPath for a file already open.
func (c *fsIDs) ofFile(dev uint64, f *os.File) (uint64, error) {
	if id, ok := c.known(dev); ok {
		return id, nil
	}
	return c.read(dev, int(f.Fd()))
}

func (c *fsIDs) known(dev uint64) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.ids[dev]
	return id, ok
}

func (c *fsIDs) read(dev uint64, fd int) (uint64, error) {
	id, got, err := readFSID(fd)
	if err != nil {
		return 0, fmt.Errorf("filesystem identity: %w", err)
	}
	if got != dev {
		return 0, fmt.Errorf("filesystem identity: replaced by a file of another device since it was listed")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[uint64]uint64{}
	}
	c.ids[dev] = id
	return id, nil
}
