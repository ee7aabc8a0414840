package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/internal/sysinfo"
)

// pathMax is PATH_MAX: the kernel refuses a path of this many bytes or
// more (its terminating NUL counts) with ENAMETOOLONG. Each name is at
// most 255 bytes, but deep nesting makes longer paths, which the walk
// must still back up.
const pathMax = 4096

// longPath reports whether the kernel would refuse path as too long.
func longPath(path string) bool { return len(path) >= pathMax }

// deepEntry is an entry whose absolute path is too long for the kernel,
// reached through a descriptor of its directory: at is a short path that
// leads to the same entry (/proc/self/fd/N/name), for the calls that take
// a path (lstat, readlink, listxattr); dfd and name are for the *at ones.
type deepEntry struct {
	dfd  int
	name string
	at   string
}

func (d *deepEntry) close() { unix.Close(d.dfd) }

// openDeep opens the directory of path, an entry below a backup path
// whose absolute path is too long for the kernel (longPath). The longest
// ancestor short enough is opened by path, and every directory below it
// one component at a time without following a symlink (O_NOFOLLOW): the
// walk descends into directories only, so a symlink found on the way is
// one swapped in since the listing, and it is not followed. Below a
// backup path that is a directory, that ancestor is opened from the
// backup path with no symlink followed either (openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), as openListed does. The caller
// closes the result.
func (a *archiver) openDeep(path string) (*deepEntry, error) {
	dir, name := filepath.Dir(path), filepath.Base(path)
	start := dir
	for longPath(start) {
		start = filepath.Dir(start)
	}
	fd, err := a.openDeepStart(start)
	if err != nil {
		return nil, fmt.Errorf("open %s, the deepest directory above it short enough for the kernel's path limit (%d bytes): %w", start, pathMax, err)
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(dir, start), "/")
	walked := start
	for _, el := range strings.Split(rest, "/") {
		if el == "" {
			continue
		}
		walked += "/" + el
		next, err := unix.Openat(fd, el, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("%w (a directory on the way to it is a symlink or not a directory now); skipped, the next backup saves what is there then", errReplaced)
		}
		if err != nil {
			return nil, fmt.Errorf("open directory …/%s on the way to it: %w", el, err)
		}
		fd = next
	}
	// Without /proc, lstat through the short path would fail as if the
	// entry had been removed, and it would be left out without a word.
	var st unix.Stat_t
	if err := unix.Stat(fdPath(fd, ""), &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("entries deeper than PATH_MAX (%d bytes) are reached through /proc/self/fd, which failed (%v): mount /proc", pathMax, err)
	}
	return &deepEntry{dfd: fd, name: name, at: fdPath(fd, name)}, nil
}

// fdPath is sysinfo.FDPath; a variable so tests can take /proc away.
var fdPath = sysinfo.FDPath

// openDeepStart opens dir, an ancestor of a long path short enough for
// the kernel, with O_PATH: from the backup path it lies in (or is) when
// that is an open directory and openat2 is there, without following any
// symlink below it; otherwise by path.
func (a *archiver) openDeepStart(dir string) (int, error) {
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC
	if _, ok := a.roots[dir]; !ok {
		if root, rel := a.rootOf(dir); root != nil && !noOpenat2.Load() {
			how := unix.OpenHow{Flags: flags, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH}
			fd, err := unix.Openat2(int(root.Fd()), rel, &how)
			if !errors.Is(err, unix.ENOSYS) {
				if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR) {
					return -1, fmt.Errorf("%w (a directory on the way to it is a symlink or not a directory now)", errReplaced)
				}
				return fd, err
			}
			noOpenat2.Store(true)
		}
	}
	return unix.Open(dir, flags|unix.O_NOFOLLOW, 0)
}

// realPath puts path back into err where a call made through at, a deep
// entry's short path (deepEntry.at), named that instead.
func realPath(err error, at, path string) error {
	var pe *fs.PathError
	if at != path && errors.As(err, &pe) && pe.Path == at {
		pe.Path = path
	}
	return err
}
