package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/lifeboat-backup/lifeboat/internal/sysinfo"
	"github.com/lifeboat-backup/lifeboat/snapshot"
	"golang.org/x/sys/unix"
)

// targetDir performs every filesystem operation of a restore relative to
// directory file descriptors opened one component at a time with
// O_NOFOLLOW, so no symlink — planted before the restore or restored by
// it — can redirect a write outside the target. It is the same guarantee
// os.Root gives, with fewer system calls: each directory is opened once
// and files are created, written and given their metadata through one
// descriptor.
type targetDir struct {
	root  *os.Root     // for the rare recursive removal
	use   sync.RWMutex // held for reading while a cached descriptor is in use
	mu    sync.Mutex
	dirs  map[string]int // relative dir path → open fd ("" is the target)
	fresh bool           // the target was empty: no file can already be identical
	uid   int
	gid   int
	umask uint32
	// plainOwner: files created here get the process's uid and gid (the
	// target is not setgid, its group is the process's, and every
	// directory below it is created by this restore without setgid until
	// the end), so a node owned by exactly those needs no chown.
	plainOwner bool
	noXAttrs   bool // Options.NoXAttrs
	// aclsPossible: entries may hold ACLs the snapshot's lack — the
	// target was not empty, or it has a default ACL all below inherit.
	aclsPossible bool
	// keepDir, if set, refuses the removal of directory p
	// (target-relative) that clear would make: one holding a mounted
	// file system or a protected path (restorer.keepDir).
	keepDir func(p string) error
	// removeFull: clear removes a directory with all it holds
	// (Options.Delete); otherwise only an empty one.
	removeFull bool
	// How files are created without a name (createUnnamed) and linked
	// in (linkUnnamed): linkMode, 0 until the first link succeeds;
	// noUnnamed once the filesystem or the kernel has refused either.
	linkMode  atomic.Int32
	noUnnamed atomic.Bool
}

var maxCachedDirs = 4096 // a variable so tests can force eviction

func newTargetDir(root *os.Root, dir string) (*targetDir, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open restore target %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("read restore target %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat restore target %s: %w", dir, err)
	}
	mask := unix.Umask(0)
	unix.Umask(mask)
	fresh := len(ents) == 0
	return &targetDir{
		root: root, dirs: map[string]int{"": fd}, fresh: fresh,
		uid: os.Geteuid(), gid: os.Getegid(), umask: uint32(mask),
		// A new entry takes its directory's group where that is setgid,
		// or on a filesystem mounted with grpid (bsdgroups) whatever its
		// mode: only where that is the process's group too is it the
		// process's owner and group.
		plainOwner:   fresh && st.Mode&unix.S_ISGID == 0 && st.Gid == uint32(os.Getegid()),
		aclsPossible: !fresh || hasDefaultACL(fd),
	}, nil
}

func (t *targetDir) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, fd := range t.dirs {
		unix.Close(fd)
		delete(t.dirs, p)
	}
}

// split returns the directory and the last element of p, a clean
// relative path as the planning walk builds them ("" for the target
// itself). It runs several times for every restored file, so it slices
// p rather than cleaning it (path.Clean showed up in restore profiles).
func split(p string) (dir, base string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// Directory descriptors are cached and shared by the restore workers.
// A worker holds t.use for reading from the moment it looks a descriptor
// up until its system call returns (withDir); closing descriptors —
// eviction when the cache is full, forgetting a removed directory — takes
// t.use for writing, so a descriptor is never closed (and its number
// reused for another directory) while a call still uses it.

// dirFD returns a descriptor for directory p, opening each component
// without following symlinks. The caller must hold t.use for reading.
func (t *targetDir) dirFD(p string) (int, error) {
	t.mu.Lock()
	fd, ok := t.dirs[p]
	t.mu.Unlock()
	if ok {
		return fd, nil
	}
	parent, base := split(p)
	pfd, err := t.dirFD(parent)
	if err != nil {
		return -1, err
	}
	fd, err = unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open directory", Path: p, Err: err}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.dirs[p]; ok {
		unix.Close(fd)
		return old, nil
	}
	t.dirs[p] = fd
	return fd, nil
}

// withDir runs fn with a descriptor of directory dir that stays open
// until fn returns.
func (t *targetDir) withDir(dir string, fn func(dfd int) error) error {
	t.use.RLock()
	dfd, err := t.dirFD(dir)
	if err == nil {
		err = fn(dfd)
	}
	t.use.RUnlock()
	t.evict()
	return err
}

// evict closes cached descriptors once there are too many, keeping the
// number of open files bounded on trees with very many directories.
func (t *targetDir) evict() {
	t.mu.Lock()
	full := len(t.dirs) > maxCachedDirs
	t.mu.Unlock()
	if !full {
		return
	}
	t.use.Lock()
	defer t.use.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range t.dirs {
		if k != "" {
			unix.Close(v)
			delete(t.dirs, k)
		}
	}
}

// readOnly reports whether the target directory's own file system is
// (now) mounted read-only, as against one mounted below it.
func (t *targetDir) readOnly() bool {
	t.mu.Lock()
	fd := t.dirs[""] // never evicted; closed only by close
	t.mu.Unlock()
	var s unix.Statfs_t
	return unix.Fstatfs(fd, &s) == nil && s.Flags&unix.ST_RDONLY != 0
}

// lstat stats p without following a final symlink.
func (t *targetDir) lstat(p string) (unix.Stat_t, error) {
	var st unix.Stat_t
	dir, base := split(p)
	err := t.withDir(dir, func(dfd int) error { return unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) })
	return st, err
}

// clear removes whatever sits at p (a planted symlink, a file where a
// directory goes, or a directory where a file goes); a directory only if
// it is empty, unless removeFull.
func (t *targetDir) clear(p string) error { return t.remove(p, t.removeFull) }

// clearAll is clear for what Options.Delete removes whatever it holds:
// a directory goes with all it holds. (The restore's own temporary files
// go by clearTmp, which never removes a directory.)
func (t *targetDir) clearAll(p string) error { return t.remove(p, true) }

// clearTmp removes the file the restore wrote under temporary name p
// and did not put in place. A directory there is not the restore's (one
// it exchanged out is back at its path, or its file placed, by then):
// another process's, or one an earlier process of the same PID left
// there while another restore held the target (removeLeftovers). It is
// left, with all it holds.
func (t *targetDir) clearTmp(p string) error {
	dir, base := split(p)
	err := t.withDir(dir, func(dfd int) error { return unix.Unlinkat(dfd, base, 0) })
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

func (t *targetDir) remove(p string, full bool) error {
	st, err := t.lstat(p)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	dir, base := split(p)
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if t.keepDir != nil {
			if err := t.keepDir(p); err != nil {
				return err
			}
		}
		t.forget(p)
		if full {
			return t.root.RemoveAll(p)
		}
		// Only one the restore found empty (dirConflicts) is replaced
		// without Delete; entries added since are the user's.
		err := t.withDir(dir, func(dfd int) error { return unix.Unlinkat(dfd, base, unix.AT_REMOVEDIR) })
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			return gainedEntries(err)
		}
		return err
	}
	return t.withDir(dir, func(dfd int) error { return unix.Unlinkat(dfd, base, 0) })
}

// forget closes cached descriptors for p and everything below it.
func (t *targetDir) forget(p string) {
	t.use.Lock()
	defer t.use.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, fd := range t.dirs {
		if k == p || (len(k) > len(p) && k[:len(p)] == p && k[len(p)] == '/') {
			unix.Close(fd)
			delete(t.dirs, k)
		}
	}
}

// mkdir creates directory p; held reports that the target held one
// there already, which is kept. Anything else there is replaced, unless
// keep (if set) says to leave it: then mkdir fails with a
// *keptInTheWayError.
func (t *targetDir) mkdir(p string, keep func(unix.Stat_t) bool) (held bool, err error) {
	dir, base := split(p)
	err = t.withDir(dir, func(dfd int) error {
		err := unix.Mkdirat(dfd, base, 0o700)
		if errors.Is(err, unix.EEXIST) {
			var st unix.Stat_t
			if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				// A directory an earlier restore made read-only (0555,
				// as the snapshot has it) would refuse this one's files
				// to a user other than root: its owner may write into it
				// until its metadata is set again, at the end.
				// Best effort: where it fails (an immutable directory),
				// its files fail on their own, each named, and those
				// already identical need no write.
				if uid := os.Geteuid(); uid != 0 && st.Uid == uint32(uid) && st.Mode&0o300 != 0o300 {
					_ = unix.Fchmodat(dfd, base, st.Mode&0o7777|0o300, 0)
				}
				held = true
				return nil
			}
			if keep != nil && keep(st) {
				return &keptInTheWayError{mode: st.Mode}
			}
			if err := unix.Unlinkat(dfd, base, 0); err != nil {
				return err
			}
			err = unix.Mkdirat(dfd, base, 0o700)
		}
		return err
	})
	return held, err
}

// keptInTheWayError: the target holds something other than a directory
// where the snapshot has one, and Options.Overwrite leaves it.
type keptInTheWayError struct{ mode uint32 }

func (e *keptInTheWayError) Error() string {
	return fmt.Sprintf("the target holds %s here, where the snapshot has a directory", describeType(e.mode))
}

// describeType names the type of an entry of mode st_mode, with an
// article ("a file").
func describeType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return "a device node"
}

// dirMaker creates directories on a goroutine of its own, in the order
// they are added (parents first), so that a restore's directories are
// made while the walk of the snapshot goes on rather than after it: the
// 1,932 of the bench dataset took 56–72 ms on one core. It marks those
// the target held already (entry.held); until wait returns, nothing else
// may read or write that field of an added entry.
//
// A directory that cannot be created (a parent it may not write to, a
// read-only mount below the target, an entry in its place that keep
// leaves) is noted in blocked, with why, and the directories below it
// are not tried (noted with a nil error): the restore then leaves out
// all it holds, and restores the rest (restorer.leaveOutBlocked). Only a
// target that takes no more (full, out of inodes) ends the restore.
type dirMaker struct {
	dirs    chan *entry
	done    chan struct{}
	err     error // a failure that ends the restore; later directories are not tried
	blocked map[string]error
}

// makeDirs starts a dirMaker; keep (if set) says which entries other
// than directories at a directory's path are left (Options.Overwrite).
func (t *targetDir) makeDirs(keep func(unix.Stat_t, *snapshot.Node) bool) *dirMaker {
	m := &dirMaker{dirs: make(chan *entry, 256), done: make(chan struct{}), blocked: map[string]error{}}
	go func() {
		defer close(m.done)
		for e := range m.dirs {
			if m.err != nil {
				continue
			}
			if parent, _ := split(e.path); parent != "" {
				if _, ok := m.blocked[parent]; ok {
					m.blocked[e.path] = nil
					continue
				}
			}
			var keepHere func(unix.Stat_t) bool
			if keep != nil {
				keepHere = func(st unix.Stat_t) bool { return keep(st, e.node) }
			}
			held, err := t.mkdir(e.path, keepHere)
			switch {
			case err == nil:
				e.held = held
			case errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT):
				m.err = targetError(e.path, fmt.Errorf("create directory: %w", err))
			default:
				m.blocked[e.path] = err
			}
		}
	}()
	return m
}

func (m *dirMaker) add(e *entry) { m.dirs <- e }

// wait returns once every added directory exists, or with the first
// error. After it no more may be added; calling it again is harmless.
func (m *dirMaker) wait() error {
	select {
	case <-m.done:
	default:
		close(m.dirs)
		<-m.done
	}
	return m.err
}

// create makes a new file at p. Whatever was there is removed first
// rather than opened: truncating a planted hard link would write to a
// file outside the target. The final component is never followed.
func (t *targetDir) create(p string, perm uint32) (*os.File, error) {
	fh, err := t.createNew(p, perm)
	if errors.Is(err, unix.EEXIST) {
		if cerr := t.clear(p); cerr != nil {
			return nil, cerr
		}
		fh, err = t.createNew(p, perm)
	}
	return fh, err
}

// createNew makes a new file at p, failing with EEXIST where the target
// holds anything there.
func (t *targetDir) createNew(p string, perm uint32) (*os.File, error) {
	dir, base := split(p)
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd := -1
	err := t.withDir(dir, func(dfd int) (err error) {
		fd, err = unix.Openat(dfd, base, flags, perm)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "create", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// openFile opens an existing file with flags, never following symlinks.
func (t *targetDir) openFile(p string, flags int) (*os.File, error) {
	dir, base := split(p)
	fd := -1
	err := t.withDir(dir, func(dfd int) (err error) {
		fd, err = unix.Openat(dfd, base, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// openWrite opens an existing regular file for writing without following symlinks.
func (t *targetDir) openWrite(p string) (*os.File, error) { return t.openFile(p, unix.O_WRONLY) }

func (t *targetDir) symlink(target, p string) error {
	dir, base := split(p)
	return t.withDir(dir, func(dfd int) error { return unix.Symlinkat(target, dfd, base) })
}

func (t *targetDir) link(oldp, newp string) error {
	od, ob := split(oldp)
	nd, nb := split(newp)
	t.use.RLock()
	defer func() {
		t.use.RUnlock()
		t.evict()
	}()
	ofd, err := t.dirFD(od)
	if err != nil {
		return err
	}
	nfd, err := t.dirFD(nd)
	if err != nil {
		return err
	}
	return unix.Linkat(ofd, ob, nfd, nb, 0)
}

func (t *targetDir) mknod(p string, mode uint32, dev int) error {
	dir, base := split(p)
	return t.withDir(dir, func(dfd int) error { return unix.Mknodat(dfd, base, mode, dev) })
}

// setTimes sets n's access and modification times on the entry at base
// in dfd (see utimesAt).
func setTimes(dfd int, base string, n *snapshot.Node, flags int) error {
	ts, err := timespecs(n)
	if err != nil {
		return err
	}
	return utimesAt(dfd, base, n.Name, ts, flags)
}

// timespecs is n's access and modification times for utimensat, from
// seconds and nanoseconds, since UnixNano overflows outside the years 1678
// to 2262, which snapshots hold. Where time_t has 32 bits, times past 2038
// cannot be set: an error, never a wrong time.
func timespecs(n *snapshot.Node) ([]unix.Timespec, error) {
	atime := n.AccessTime
	if atime.IsZero() {
		atime = n.ModTime
	}
	a, aerr := unix.TimeToTimespec(atime)
	m, merr := unix.TimeToTimespec(n.ModTime)
	if aerr != nil || merr != nil {
		return nil, fmt.Errorf("times %s and %s are beyond what this platform's time_t holds", atime.Format(time.RFC3339), n.ModTime.Format(time.RFC3339))
	}
	return []unix.Timespec{a, m}, nil
}

// createPerm is the mode to create a file with: its final permission
// bits when nothing else needs setting later (no setuid, setgid or sticky
// bit, no extended attribute: setting a user.* one needs write
// permission), so setMetaFD can skip the chmod; otherwise owner-only.
func createPerm(n *snapshot.Node) uint32 {
	if n.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 || len(n.XAttrs) > 0 {
		return 0o600
	}
	return uint32(n.Mode.Perm())
}

// errNoUnnamed: the target's filesystem (or the kernel, or a missing
// /proc for a restore without CAP_DAC_READ_SEARCH) cannot create a file
// without a name and link it in; the restore then writes files under
// temporary names.
var errNoUnnamed = errors.New("files without a name are not supported here")

// createUnnamed creates a file with no name in p's directory
// (O_TMPFILE), for linkUnnamed to give it the name p once written: a
// restore killed before leaves nothing behind, and the kernel does the
// work of a temporary name and a rename in one link. It returns
// errNoUnnamed where the filesystem cannot.
func (t *targetDir) createUnnamed(p string, perm uint32) (*os.File, error) {
	if t.noUnnamed.Load() {
		return nil, errNoUnnamed
	}
	dir, _ := split(p)
	fd := -1
	err := t.withDir(dir, func(dfd int) (err error) {
		fd, err = openUnnamed(dfd, perm)
		return err
	})
	// Kernels before 3.11 take O_TMPFILE for O_DIRECTORY (EISDIR);
	// filesystems without it refuse with EOPNOTSUPP.
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		t.noUnnamed.Store(true)
		return nil, errNoUnnamed
	}
	if err != nil {
		return nil, &fs.PathError{Op: "create", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// openUnnamed opens a new file without a name in directory dfd; tests
// replace it to play a filesystem without O_TMPFILE.
var openUnnamed = func(dfd int, perm uint32) (int, error) {
	return unix.Openat(dfd, ".", unix.O_WRONLY|unix.O_TMPFILE|unix.O_CLOEXEC, perm)
}

const (
	linkEmptyPath = 1 // linkat(fd, "", AT_EMPTY_PATH): older kernels allow it only with CAP_DAC_READ_SEARCH
	linkProc      = 2 // linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW): needs /proc
)

// linkUnnamed gives f, made by createUnnamed, the name p. Nothing may
// be at p: that is unix.EEXIST. It returns errNoUnnamed where neither way
// of linking works.
func (t *targetDir) linkUnnamed(f *os.File, p string) error {
	dir, base := split(p)
	fd := int(f.Fd())
	link := func(mode int32) error {
		return t.withDir(dir, func(dfd int) error {
			if mode == linkEmptyPath {
				return unix.Linkat(fd, "", dfd, base, unix.AT_EMPTY_PATH)
			}
			return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dfd, base, unix.AT_SYMLINK_FOLLOW)
		})
	}
	if mode := t.linkMode.Load(); mode != 0 {
		err := link(mode)
		if mode == linkEmptyPath && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM)) {
			// Without CAP_DAC_READ_SEARCH the kernel (6.10 on) links
			// by descriptor only for the credentials that opened the
			// file, compared by identity, not value: threads whose
			// credentials were changed one by one (Go's setresuid does
			// so on every thread) each hold their own, and a file made
			// on one is refused on another. /proc does not ask.
			err = link(linkProc)
		}
		return linkError(p, err)
	}
	// The first link finds out which way works. Where the kernel wants
	// the capability and the process lacks it, AT_EMPTY_PATH fails with
	// ENOENT (EPERM on some).
	err := link(linkEmptyPath)
	if err == nil {
		t.linkMode.Store(linkEmptyPath)
		return nil
	}
	if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EPERM) {
		return linkError(p, err)
	}
	if err = link(linkProc); err == nil {
		t.linkMode.Store(linkProc)
		return nil
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		t.noUnnamed.Store(true)
		return errNoUnnamed
	}
	return linkError(p, err)
}

// linkError names the path a file could not be linked in at.
func linkError(p string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: "link in place", Path: p, Err: err}
}

// setMetaFD applies owner and mode through an open descriptor of p,
// created with perm, and times by name relative to p's directory, or,
// with p "" (a file createUnnamed made), through the descriptor. Owner
// first: chown clears setuid/setgid bits. Calls that would change nothing
// are skipped: on a large restore they are a third of the system calls.
func (t *targetDir) setMetaFD(f *os.File, p string, n *snapshot.Node, perm uint32) error {
	fd := int(f.Fd())
	var errs []error
	if t.needsChown(n) {
		errs = append(errs, named("chown", unix.Fchown(fd, int(n.UID), int(n.GID))))
	}
	// After the owner: chown clears security.capability.
	removed := false
	if xs, stale := t.xattrs(n), t.staleACLs(n); len(xs) > 0 || len(stale) > 0 {
		var err error
		removed, err = fdOps(fd).apply(xs, stale)
		errs = append(errs, err)
	}
	mode := n.UnixPerm()
	if mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		var err error
		mode, err = ownedPerm(n, func(st *unix.Stat_t) error { return unix.Fstat(fd, st) })
		errs = append(errs, err)
	}
	// The umask made the mode from perm, unless a default ACL did (the
	// kernel then ignores the umask), which, with NoXAttrs, stays.
	if removed || mode != perm&^t.umask || (t.noXAttrs && t.aclsPossible) {
		errs = append(errs, named("chmod", unix.Fchmod(fd, mode)))
	}
	if p == "" {
		errs = append(errs, named("set times", setTimes(fd, "", n, 0)))
		return joinMeta(errs...)
	}
	dir, base := split(p)
	errs = append(errs, t.withDir(dir, func(dfd int) error {
		return named("set times", setTimes(dfd, base, n, unix.AT_SYMLINK_NOFOLLOW))
	}))
	return joinMeta(errs...)
}

// named says which call of an entry's metadata failed ("chmod: operation
// not permitted"); nil stays nil.
func named(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

// metaErrors are the failures of one entry's metadata calls, each named
// (named): they print on one line, separated by semicolons, where
// errors.Join's lines would leave the second and later ones on lines of
// their own, below the warning that names the entry.
type metaErrors []error

func (e metaErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e metaErrors) Unwrap() []error { return e }

// joinMeta joins errs, leaving out nils, into metaErrors (nil for none,
// the error itself for one), flattening those it is given.
func joinMeta(errs ...error) error {
	var out metaErrors
	for _, err := range errs {
		switch e := err.(type) {
		case nil:
		case metaErrors:
			out = append(out, e...)
		default:
			out = append(out, err)
		}
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return out
}

// utimesAt sets the times of the entry at base in dfd, which is the
// snapshot's entry name (perhaps under a temporary name), or with base
// "" of the file dfd itself. Tests replace it to play a filesystem that
// refuses some.
var utimesAt = func(dfd int, base, name string, ts []unix.Timespec, flags int) error {
	if base == "" {
		return futimens(dfd, ts)
	}
	return unix.UtimesNanoAt(dfd, base, ts, flags)
}

// futimens sets the access and modification times of the open file fd:
// utimensat(fd, NULL, ts, 0), which x/sys/unix does not offer (its
// Futimes goes through /proc and microseconds).
func futimens(fd int, ts []unix.Timespec) error {
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// syncfs writes back the target filesystem's dirty data and reports a
// write-back error the kernel saw since the target was opened.
func (t *targetDir) syncfs() error {
	return t.withDir("", syncFS)
}

// syncFS is syncfs(2); tests replace it to play a failing disk.
var syncFS = unix.Syncfs

// needsChown reports whether an entry this restore created must be given
// n's owner: only root can, and a new entry already has the process's
// owner when the target was plain (plainOwner).
func (t *targetDir) needsChown(n *snapshot.Node) bool {
	return t.uid == 0 && !(t.plainOwner && int(n.UID) == t.uid && int(n.GID) == t.gid)
}

// setDirMeta applies a directory's metadata. Owner and mode are set
// through the directory's own descriptor (the one files were created
// through, usually still cached; opened without following symlinks),
// which spares the lookup, open and close setMetaAt needs; times are set
// by name, as for files.
//
// held says the target held the directory before the restore (entry.held):
// only then are the user.* attributes it has and the snapshot lacks
// listed and removed (strays). One this restore created has none.
func (t *targetDir) setDirMeta(p string, n *snapshot.Node, held bool) error {
	var errs []error
	errs = append(errs, t.withDir(p, func(fd int) error {
		var errs []error
		if t.needsChown(n) {
			errs = append(errs, named("chown", unix.Fchown(fd, int(n.UID), int(n.GID))))
		}
		prune := held && t.pruneXAttrs()
		if xs, stale := t.xattrs(n), t.staleACLs(n); len(xs) > 0 || len(stale) > 0 || prune {
			ops := fdOps(fd)
			var strays []string
			if prune {
				if onDirStrays != nil {
					onDirStrays(p)
				}
				var err error
				strays, err = ops.strays(xs)
				errs = append(errs, err)
				stale = slices.Concat(stale, strays)
			}
			if (len(xs) > 0 || len(strays) > 0) && t.uid != 0 {
				// Setting and removing user.* attributes needs write
				// permission.
				errs = append(errs, named("chmod", unix.Fchmod(fd, n.UnixPerm()|0o200)))
			}
			_, err := ops.apply(xs, stale)
			errs = append(errs, err)
		}
		return joinMeta(append(errs, named("chmod", unix.Fchmod(fd, n.UnixPerm())))...)
	}))
	dir, base := split(p)
	errs = append(errs, t.withDir(dir, func(dfd int) error {
		return named("set times", setTimes(dfd, base, n, unix.AT_SYMLINK_NOFOLLOW))
	}))
	return joinMeta(errs...)
}

// onDirStrays, if set, is called with each directory whose attributes
// setDirMeta lists for strays; tests set it.
var onDirStrays func(p string)

// setMetaAt applies metadata by name relative to the parent directory,
// never following a final symlink: the mode is set through a descriptor
// opened with O_NOFOLLOW (directories, regular files), or, for the rest,
// only after checking the entry is not a symlink (a symlink's own mode
// cannot be set).
//
// held says the entry is one the target held before the restore (a file
// already identical), whose user.* attributes the snapshot lacks are
// removed (strays).
func (t *targetDir) setMetaAt(p string, n *snapshot.Node, held bool) error {
	dir, base := split(p)
	return t.withDir(dir, func(dfd int) error {
		var errs []error
		if t.uid == 0 {
			errs = append(errs, named("chown", unix.Fchownat(dfd, base, int(n.UID), int(n.GID), unix.AT_SYMLINK_NOFOLLOW)))
		}
		errs = append(errs, t.xattrsAt(dfd, base, n, held))
		if n.Type != snapshot.TypeSymlink {
			mode := n.UnixPerm()
			if n.Type == snapshot.TypeFile && mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
				var err error
				mode, err = ownedPerm(n, func(st *unix.Stat_t) error {
					return unix.Fstatat(dfd, base, st, unix.AT_SYMLINK_NOFOLLOW)
				})
				errs = append(errs, err)
			}
			errs = append(errs, named("chmod", chmodNoFollow(dfd, base, mode)))
		}
		errs = append(errs, named("set times", setTimes(dfd, base, n, unix.AT_SYMLINK_NOFOLLOW)))
		return joinMeta(errs...)
	})
}

// xattrsAt sets n's extended attributes on dfd/base and removes the ACLs
// it lacks, never following a symlink planted there: directories and
// regular files through a descriptor opened with O_NOFOLLOW (made
// writable first for a user other than root, who needs that for user.*
// attributes; setMetaAt's chmod then sets the mode), the rest by name
// (procOps).
func (t *targetDir) xattrsAt(dfd int, base string, n *snapshot.Node, held bool) error {
	xs, stale := t.xattrs(n), t.staleACLs(n)
	prune := held && t.pruneXAttrs() && n.Type == snapshot.TypeFile
	if len(xs) == 0 && len(stale) == 0 && !prune {
		return nil
	}
	writable := false
	// makeWritable lets a user other than root set and remove user.*
	// attributes, which needs write permission; setMetaAt's chmod then
	// sets the mode.
	makeWritable := func(chmod func(mode uint32) error) error {
		if writable || t.uid == 0 {
			return nil
		}
		writable = true
		return chmod(n.UnixPerm()&^(unix.S_ISUID|unix.S_ISGID) | 0o600)
	}
	byName := func(mode uint32) error { return chmodNoFollow(dfd, base, mode) }
	apply := func(ops xattrOps, chmod func(mode uint32) error) error {
		var errs []error
		if prune {
			strays, err := ops.strays(xs)
			errs = append(errs, err)
			if len(strays) > 0 {
				errs = append(errs, makeWritable(chmod))
			}
			stale = slices.Concat(stale, strays)
		}
		_, err := ops.apply(xs, stale)
		return joinMeta(append(errs, err)...)
	}
	if n.Type == snapshot.TypeFile || n.Type == snapshot.TypeDir {
		if len(xs) > 0 {
			if err := makeWritable(byName); err != nil {
				return err
			}
		}
		fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			defer unix.Close(fd)
			return apply(fdOps(fd), func(mode uint32) error { return unix.Fchmod(fd, mode) })
		}
		if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.EACCES) {
			return err
		}
	}
	return apply(procOps(dfd, base), byName)
}

// ownedPerm is the mode of file n, with its setuid and setgid bits,
// for the file stat describes: without the setuid bit unless the file
// has n's owner, without the setgid bit unless it has n's group. A file
// the restore could not give its owner (a user other than root restores
// it; a chown root was refused, in a user namespace say) must not run as
// whoever it belongs to instead: a setuid program of some user would
// become one of the restoring user, or of root. A bit left out is
// reported.
func ownedPerm(n *snapshot.Node, stat func(*unix.Stat_t) error) (uint32, error) {
	mode := n.UnixPerm()
	var st unix.Stat_t
	if err := stat(&st); err != nil {
		return mode &^ (unix.S_ISUID | unix.S_ISGID), fmt.Errorf("setuid and setgid bits not set: %w", err)
	}
	var errs []error
	if mode&unix.S_ISUID != 0 && st.Uid != n.UID {
		mode &^= unix.S_ISUID
		errs = append(errs, fmt.Errorf("setuid bit not set: the file is owned by uid %d, not the snapshot's %d", st.Uid, n.UID))
	}
	if mode&unix.S_ISGID != 0 && st.Gid != n.GID {
		mode &^= unix.S_ISGID
		errs = append(errs, fmt.Errorf("setgid bit not set: the file's group is gid %d, not the snapshot's %d", st.Gid, n.GID))
	}
	return mode, joinMeta(errs...)
}

// chmodNoFollow sets the mode of dfd/base without following a symlink
// planted there: directories and regular files through a descriptor
// opened with O_NOFOLLOW; device nodes and FIFOs (which must not be
// opened for I/O: a device's open can have effects) through an O_PATH
// descriptor.
func chmodNoFollow(dfd int, base string, mode uint32) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return fmt.Errorf("%s is a symlink; mode not set", base)
	case unix.S_IFDIR, unix.S_IFREG:
		fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = unix.Fchmod(fd, mode)
		unix.Close(fd)
		return err
	}
	// A device or FIFO, which must not be opened for reading or writing:
	// held by an O_PATH descriptor, checked to be one still (not a
	// symlink swapped in since the Fstatat), and changed through its
	// /proc/self/fd entry, which names that very inode. fchmodat would
	// follow a symlink put there in between.
	fd, err := unix.Openat(dfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFLNK || t == unix.S_IFDIR || t == unix.S_IFREG {
		return fmt.Errorf("%s was replaced while its mode was being set; mode not set", base)
	}
	return sysinfo.ExplainFDPath(unix.Chmod(sysinfo.FDPath(fd, ""), mode), "sets the modes of devices and FIFOs")
}
