package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirFD is a directory the walk opened to list it. Its entries are
// stat'ed, opened and their extended attributes read relative to it,
// not by path again (but see mayHaveXAttrs, on kernels before 6.13): a
// directory on the way renamed or swapped for a symlink since cannot
// lead the walk anywhere else, and the kernel does not resolve the
// whole path once more for each entry. The listing holds one reference;
// each subdirectory not yet opened and each file queued to be read holds
// one more, and the last to let go closes it.
type dirFD struct {
	f    *os.File
	fd   int // f's
	refs atomic.Int32
	// While parked, f is closed and dev and ino say which directory
	// unpark must find again; err is set if it did not.
	dev, ino uint64
	err      error
}

// openDirs counts the directories the walks hold open (dirFD), and
// maxOpenDirs is how many they may before a directory whose
// subdirectory is walked in the same goroutine lets go of its
// descriptor meanwhile (park). Each level of a deep tree holds its
// directory until its entries are done: unbounded, a tree deeper than
// the open-file limit (often 1024) would have its depths skipped as
// "too many open files", and starve the rest of the process of
// descriptors (the repository's files, the store's connections).
var (
	openDirs    atomic.Int64
	maxOpenDirs int64 = 256
)

func newDirFD(f *os.File) *dirFD {
	d := &dirFD{f: f, fd: int(f.Fd())}
	d.refs.Store(1)
	openDirs.Add(1)
	return d
}

func (d *dirFD) hold() *dirFD { d.refs.Add(1); return d }

func (d *dirFD) release() {
	if d.refs.Add(-1) == 0 && d.f != nil {
		d.f.Close()
		d.f = nil
		openDirs.Add(-1)
	}
}

// park closes d, whose subdirectory was just opened, while that
// subdirectory is walked, where the walk holds too many directories
// open (maxOpenDirs) and nothing but d's listing and that
// subdirectory's opening hold it (refs 2: no file of it waits to be
// opened). The listing's goroutine must be the caller, waiting on the
// subdirectory's walk: it is the only user of d until unpark.
func (d *dirFD) park() bool {
	if openDirs.Load() <= maxOpenDirs || d.refs.Load() != 2 {
		return false
	}
	var st unix.Stat_t
	if unix.Fstat(d.fd, &st) != nil {
		return false
	}
	d.dev, d.ino = uint64(st.Dev), st.Ino
	d.f.Close()
	d.f, d.fd = nil, -1
	openDirs.Add(-1)
	return true
}

// unpark opens d again as the parent of sub, the subdirectory it was
// parked for, still open: not by path, which may lead elsewhere by now.
// Where that is not the directory parked (sub was moved meanwhile, or
// itself lost: see err), it is opened by path, path, if that still
// leads to it. Where neither does, d.err says so, and the rest of d's
// entries are not saved.
func (d *dirFD) unpark(sub *dirFD, path string) {
	try := func(dirfd int, name string) bool {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || uint64(st.Dev) != d.dev || st.Ino != d.ino {
			unix.Close(fd)
			return false
		}
		d.f, d.fd = os.NewFile(uintptr(fd), path), fd
		openDirs.Add(1)
		return true
	}
	if sub.f != nil && try(sub.fd, "..") || !longPath(path) && try(unix.AT_FDCWD, path) {
		return
	}
	d.err = fmt.Errorf("%w (a subdirectory of it was moved elsewhere while it was walked, and its path leads to another directory now); its remaining entries were not saved, the next backup saves what is there then", errReplaced)
}

// releaseDir lets go of the job's directory, once.
func (j *fileJob) releaseDir() {
	if j.dir != nil {
		j.dir.release()
		j.dir = nil
	}
}

// openDirAt opens the directory name in dir, to list it, without
// following a symlink. path, its full path, names it in errors.
func openDirAt(dir *dirFD, name, path string) (*dirFD, error) {
	fd, err := unix.Openat(dir.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "openat", Path: path, Err: err}
	}
	return newDirFD(os.NewFile(uintptr(fd), path)), nil
}

// readlinkAt is os.Readlink of the entry name in dir, or of path where
// dir is nil (a backup path).
func readlinkAt(dir *dirFD, name, path string) (string, error) {
	if dir == nil {
		return os.Readlink(path)
	}
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dir.fd, name, buf)
		if err != nil {
			return "", &fs.PathError{Op: "readlinkat", Path: path, Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// noListxattrat is set once the kernel turned listxattrat down (before
// Linux 6.13, or a seccomp filter that does not know it).
var noListxattrat atomic.Bool

// errNoXattrat says listxattrat is not there (noListxattrat).
var errNoXattrat = errors.New("listxattrat is not available")

// readXAttrsAt is readXAttrs of the entry name in dir, with listxattrat
// and getxattrat (Linux 6.13), which take the entry relative to dir:
// as fast as by path, and never another entry's. Where the kernel turns
// them down it returns errNoXattrat.
func readXAttrsAt(dir *dirFD, name string) ([]XAttr, error) {
	if noListxattrat.Load() {
		return nil, errNoXattrat
	}
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return nil, err
	}
	first := true
	list := func(buf []byte) (int, error) {
		n, _, errno := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dir.fd), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW, uintptr(bufPtr(buf)), uintptr(len(buf)), 0)
		if first && (errno == unix.ENOSYS || errno == unix.EPERM) {
			noListxattrat.Store(true)
			return 0, errNoXattrat
		}
		first = false
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
	get := func(attr string, buf []byte) (int, error) {
		a, err := unix.BytePtrFromString(attr)
		if err != nil {
			return 0, err
		}
		// struct xattr_args: where the value goes, its size, and flags.
		args := struct {
			value uint64
			size  uint32
			flags uint32
		}{uint64(uintptr(bufPtr(buf))), uint32(len(buf)), 0}
		n, _, errno := unix.Syscall6(unix.SYS_GETXATTRAT, uintptr(dir.fd), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
		runtime.KeepAlive(buf)
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
	xs, err := xattrsOf(list, get)
	if errors.Is(err, errNoXattrat) {
		return nil, errNoXattrat
	}
	return xs, err
}

// bufPtr is where buf starts, nil for an empty one (a size query).
func bufPtr(buf []byte) unsafe.Pointer {
	if len(buf) == 0 {
		return nil
	}
	return unsafe.Pointer(&buf[0])
}

// mayHaveXAttrs reports whether the entry at path may have extended
// attributes, asking only for the size of their name list, by path:
// where the kernel lacks listxattrat (readXAttrsAt), most entries have
// none, and this spares them readXAttrs through /proc/self/fd, which
// costs about twice a lookup by path. What it finds is never saved, it
// only decides whether the attributes are read through the directory
// (so a directory swapped for a symlink just then can have an entry
// saved without its attributes, never with another's). An error says
// yes, for readXAttrs to report it.
func mayHaveXAttrs(path string) bool {
	if longPath(path) {
		return true
	}
	n, err := unix.Llistxattr(path, nil)
	return n > 0 || err != nil && ignoreUnsupported(err) != nil
}

// procFDWorks reports whether /proc/self/fd can be used (fdPath): where
// /proc is not mounted it cannot.
func procFDWorks() bool {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	return unix.Stat(fdPath(fd, ""), &st) == nil
}

// lstatAt is os.Lstat of the entry name in dir; path names it in errors.
func lstatAt(dir *dirFD, name, path string) (fs.FileInfo, error) {
	fi := &statInfo{name: name}
	if err := unix.Fstatat(dir.fd, name, &fi.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	return fi, nil
}

// statInfo is an fs.FileInfo made from an fstatat, as os.Lstat makes
// one; Sys gives its *syscall.Stat_t, as os.Lstat's does.
type statInfo struct {
	name string
	st   unix.Stat_t
}

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.st.Size }
func (s *statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }
func (s *statInfo) IsDir() bool        { return s.Mode().IsDir() }

// Sys returns the stat as the syscall package's type, as os.Lstat's
// does, which the rest of the walk reads (statOf, nodeFromInfo): both
// types are the kernel's struct stat (sameStatSize).
func (s *statInfo) Sys() any { return (*syscall.Stat_t)(unsafe.Pointer(&s.st)) }

// sameStatSize fails to compile where the two stat types differ in size.
var _ = [1]struct{}{}[unsafe.Sizeof(unix.Stat_t{})-unsafe.Sizeof(syscall.Stat_t{})]

func (s *statInfo) Mode() fs.FileMode {
	m := fs.FileMode(s.st.Mode & 0o777)
	switch s.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFREG:
	default:
		m |= fs.ModeIrregular
	}
	if s.st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if s.st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if s.st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// openFileAt opens the file name in dir to read it, with flags, never
// following a symlink in its place.
func openFileAt(dir *dirFD, name, path string, flags int) (*os.File, error) {
	fd, err := unix.Openat(dir.fd, name, flags|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "openat", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// replacedAt turns an error from opening an entry relative to its
// directory into errReplaced when a symlink or a non-directory is found
// where the listing saw a directory (ELOOP, ENOTDIR).
func replacedAt(err error, what string) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("%w (a symlink or not a directory now); %s, the next backup saves what is there then", errReplaced, what)
	}
	return err
}
