package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// tmpPrefix starts the name of every file that is still being written.
// List never reports such files and Put refuses object names that would
// look like one.
const tmpPrefix = ".tmp-"

// Store is a chunkstore.Store in a directory of the local filesystem.
type Store struct {
	dir string // absolute, cleaned
	// The modes of the files and directories Put creates: private,
	// unless the root directory shares itself with its group (shareModes).
	fileMode, dirMode os.FileMode
	// dirSynced, if set (by tests), is called with each directory the
	// store fsyncs.
	dirSynced func(dir string)
	// beforeCreate, if set (by tests), is called between Put making the
	// object's directory and creating its temporary file there.
	beforeCreate func(dir string)
}

// shareModes gives the files and directories of a repository whose
// root directory is setgid (shared with its group on purpose, as
// `install -d -g G -m 2750` makes it) the group access the root has:
// with 2750 files are 0640 and directories 2750, with 2770 files 0660
// and directories 2770. Any other root keeps everything private (0600,
// 0700): a root that is merely group-readable (mkdir under umask 022)
// does not share.
func shareModes(root os.FileMode) (file, dir os.FileMode) {
	if root&os.ModeSetgid == 0 {
		return 0o600, 0o700
	}
	group := root.Perm() & 0o070
	return 0o600 | group&0o060, 0o700 | group | os.ModeSetgid
}

var _ chunkstore.Store = (*Store)(nil)

// Open opens the store rooted at dir, which must be an absolute path. When
// dir does not exist, Open creates it (mode 0700, with its parents) if
// create is true, and otherwise returns an error wrapping
// chunkstore.ErrBucketNotFound.
func Open(dir string, create bool) (*Store, error) {
	if !filepath.IsAbs(dir) {
		return nil, chunkstore.Permanent(fmt.Errorf("open local store %q: path must be absolute", dir))
	}
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	s := &Store{dir: dir, fileMode: 0o600, dirMode: 0o700}
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, classify(fmt.Errorf("create repository directory %s: %w", dir, err))
		}
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open local store %s: directory does not exist (run `lifeboat init` to create a repository there): %w",
			dir, chunkstore.ErrBucketNotFound)
	case err != nil:
		return nil, classify(fmt.Errorf("open local store %s: %w", dir, err))
	case !fi.IsDir():
		return nil, chunkstore.Permanent(fmt.Errorf("open local store %s: not a directory", dir))
	default:
		s.fileMode, s.dirMode = shareModes(fi.Mode())
	}
	return s, nil
}

// Location implements chunkstore.Store: the absolute directory.
func (s *Store) Location() string { return s.dir }

func (s *Store) path(name string) string {
	return filepath.Join(s.dir, filepath.FromSlash(name))
}

// Put implements chunkstore.Store.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	if err := check(ctx, name); err != nil {
		return err
	}
	if strings.HasPrefix(path.Base(name), tmpPrefix) {
		return chunkstore.Permanent(fmt.Errorf("put %s: names starting with %q are reserved for temporary files", name, tmpPrefix))
	}
	final := s.path(name)
	parent := filepath.Dir(final)
	f, made, err := s.createTemp(parent)
	if err != nil {
		return err
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if s.fileMode != 0o600 { // CreateTemp's
		if err := f.Chmod(s.fileMode); err != nil {
			return classify(fmt.Errorf("chmod %s: %w", tmp, err))
		}
	}
	if _, err := f.Write(data); err != nil {
		return classify(fmt.Errorf("write %s: %w", tmp, bare(err)))
	}
	if err := f.Sync(); err != nil {
		return classify(fmt.Errorf("write %s: fsync: %w", tmp, bare(err)))
	}
	if err := f.Close(); err != nil {
		return classify(fmt.Errorf("write %s: close: %w", tmp, bare(err)))
	}
	if err := os.Rename(tmp, final); err != nil {
		return classify(fmt.Errorf("write %s: rename: %w", final, err))
	}
	committed = true
	if err := s.syncObjectDir(parent); err != nil {
		return classify(fmt.Errorf("write %s: %w", final, err))
	}
	if !made && strings.Contains(path.Dir(name), "/") {
		// parent (data/ab, sessions/<session>) was there already, but
		// it comes and goes (removeEmptyDir): the writer that made it
		// may not have fsynced its entry yet, and a crash would then
		// take this object with it.
		if err := s.syncObjectDir(filepath.Dir(parent)); err != nil {
			return classify(fmt.Errorf("write %s: %w", final, err))
		}
	}
	return nil
}

// createTemp makes directory dir (and its parents) and a temporary file
// in it. A Delete of the last object in dir removes dir (removeEmptyDir)
// and may do so between the two steps: the file is then created after
// making dir again. Once the file is there, dir is not empty, and stays
// until the file is renamed into the object, so that is race-free.
// made reports whether mkdirs made dir (and so fsynced its entry in
// its parent) for the file.
func (s *Store) createTemp(dir string) (f *os.File, made bool, err error) {
	for attempt := 1; ; attempt++ {
		made, err := s.mkdirs(dir)
		if err != nil {
			return nil, false, err
		}
		if s.beforeCreate != nil {
			s.beforeCreate(dir)
		}
		f, err := os.CreateTemp(dir, tmpPrefix+"*")
		if err == nil {
			return f, made, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 5 {
			return nil, false, classify(fmt.Errorf("create temporary file in %s: %w", dir, err))
		}
	}
}

// bare is the cause of a file operation's error, without the
// *fs.PathError that names the file again (Put names it already).
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// mkdirs creates dir and its missing parents below the store root, and
// fsyncs the parent of each directory it created, so that a completed Put
// survives a crash together with the directories leading to it. made
// reports whether dir was missing (another writer may have made it
// meanwhile; its entry is fsynced all the same). When dir exists
// already, nothing is fsynced: the writer that made it may not have done
// so yet.
func (s *Store) mkdirs(dir string) (made bool, err error) {
	if _, err := os.Stat(dir); err == nil {
		return false, nil
	}
	var missing []string
	for d := dir; d != s.dir && len(d) > len(s.dir); d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	if s.dirMode == 0o700 {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, classify(fmt.Errorf("create directory %s: %w", dir, err))
		}
	} else {
		for i := len(missing) - 1; i >= 0; i-- { // parents first
			if err := s.mkdirShared(missing[i]); err != nil {
				return false, classify(fmt.Errorf("create directory %s: %w", missing[i], err))
			}
		}
	}
	for _, d := range missing {
		if err := s.syncDir(filepath.Dir(d)); err != nil {
			return false, classify(fmt.Errorf("create directory %s: %w", d, err))
		}
	}
	return len(missing) > 0, nil // none: another writer made dir since
}

// mkdirShared creates directory d of a shared repository with the
// store's directory mode. It is made under a temporary name, given its
// mode and only then renamed into place, so that another writer never
// finds it private to its creator (the umask's mode); when another
// writer has made d meanwhile, that one stays.
func (s *Store) mkdirShared(d string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(d), tmpPrefix+"*")
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, s.dirMode); err != nil {
		os.Remove(tmp)
		return err
	}
	if fi, err := os.Stat(tmp); err == nil && fi.Mode()&os.ModeSetgid == 0 {
		os.Remove(tmp)
		return errNotInGroup{s.dir}
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, d, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// No RENAME_NOREPLACE here (NFS, say): rename replaces only an
		// empty directory, which another writer has not used yet.
		err = os.Rename(tmp, d)
	}
	if err != nil {
		os.Remove(tmp)
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return nil
		}
	}
	return err
}

// syncDir fsyncs directory dir, so that the entries created, renamed or
// removed in it survive a crash.
func (s *Store) syncDir(dir string) error {
	if s.dirSynced != nil {
		s.dirSynced(dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// syncObjectDir fsyncs dir, the directory of an object just renamed or
// unlinked. A concurrent Delete may have emptied and removed it since
// (removeEmptyDir): its parent is fsynced then, which makes that removal,
// and so the change in dir, durable.
func (s *Store) syncObjectDir(dir string) error {
	err := s.syncDir(dir)
	if errors.Is(err, fs.ErrNotExist) && dir != s.dir {
		return s.syncDir(filepath.Dir(dir))
	}
	return err
}

// Get implements chunkstore.Reader.
func (s *Store) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	return s.GetBuffer(ctx, name, offset, length, nil)
}

// GetBuffer implements chunkstore.BufferGetter: Get, reading into buf
// when it is large enough.
func (s *Store) GetBuffer(ctx context.Context, name string, offset, length int64, buf []byte) ([]byte, error) {
	f, p, length, err := s.openRange(ctx, name, offset, length)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf = chunkstore.SizedBuffer(buf, length)
	n, err := f.ReadAt(buf, offset)
	if n == len(buf) {
		return buf, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return nil, classify(fmt.Errorf("read %s: got %d of %d bytes at offset %d: %w", p, n, length, offset, err))
}

// openRange opens name for reading [offset, offset+length) (to the end
// when length < 0) and checks that the range lies inside the object. It
// returns the file, its path for messages, and the range's length.
func (s *Store) openRange(ctx context.Context, name string, offset, length int64) (*os.File, string, int64, error) {
	if err := check(ctx, name); err != nil {
		return nil, "", 0, err
	}
	p := s.path(name)
	f, err := os.Open(p)
	if err != nil {
		return nil, "", 0, s.readErr("read", p, err)
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		err = classify(fmt.Errorf("read %s: %w", p, err))
	case fi.IsDir():
		err = fmt.Errorf("read %s: is a directory: %w", p, chunkstore.ErrNotFound)
	default:
		size := fi.Size()
		if length < 0 {
			length = size - offset
		}
		if offset < 0 || length < 0 || offset > size || length > size-offset {
			err = chunkstore.Permanent(fmt.Errorf("read %s: range [%d, +%d) outside object of %d bytes: %w", p, offset, length, size, chunkstore.ErrOutOfRange))
		}
	}
	if err != nil {
		f.Close()
		return nil, "", 0, err
	}
	return f, p, length, nil
}

// OpenRange implements chunkstore.RangeOpener.
func (s *Store) OpenRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if length <= 0 {
		return nil, chunkstore.Permanent(fmt.Errorf("read %s: invalid range [%d, +%d)", name, offset, length))
	}
	f, p, length, err := s.openRange(ctx, name, offset, length)
	if err != nil {
		return nil, err
	}
	return &fileRange{f: f, p: p, off: offset, left: length}, nil
}

// fileRange streams a range of an open file.
type fileRange struct {
	f         *os.File
	p         string
	off, left int64
}

func (r *fileRange) Read(b []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > r.left {
		b = b[:r.left]
	}
	n, err := r.f.ReadAt(b, r.off)
	r.off += int64(n)
	r.left -= int64(n)
	switch {
	case r.left == 0 || (err == nil && n > 0):
		return n, nil
	case err == nil || err == io.EOF: // the file is shorter than it was
		err = io.ErrUnexpectedEOF
	}
	return n, classify(fmt.Errorf("read %s: at offset %d, %d bytes short: %w", r.p, r.off, r.left, err))
}

func (r *fileRange) Close() error { return r.f.Close() }

// Stat implements chunkstore.Reader.
func (s *Store) Stat(ctx context.Context, name string) (chunkstore.ObjectInfo, error) {
	if err := check(ctx, name); err != nil {
		return chunkstore.ObjectInfo{}, err
	}
	p := s.path(name)
	fi, err := os.Stat(p)
	if err != nil {
		return chunkstore.ObjectInfo{}, s.readErr("stat", p, err)
	}
	if !fi.Mode().IsRegular() {
		return chunkstore.ObjectInfo{}, fmt.Errorf("stat %s: not a regular file: %w", p, chunkstore.ErrNotFound)
	}
	return chunkstore.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements chunkstore.Reader. It walks only the deepest directory
// named by prefix; a missing directory is an empty listing, but a missing
// store root is an error. Symlinked directories are followed (the root,
// or data/ moved to a larger disk): skipping them would list a
// repository whose objects Stat and Get find as empty.
func (s *Store) List(ctx context.Context, prefix string, fn func(chunkstore.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	start, startName := s.dir, ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start, startName = s.path(prefix[:i]), prefix[:i]
	}
	fi, err := os.Stat(start)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(s.dir); err != nil {
			return s.readErr("list", s.dir, err)
		}
		// Missing, unless a symlink on the way leads nowhere (data/ on
		// a disk that is not mounted): that is no empty listing.
		for p := start; p != s.dir && len(p) > len(s.dir); p = filepath.Dir(p) {
			if li, lerr := os.Lstat(p); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
				return classify(fmt.Errorf("list %s in %s: %s is a symlink to nothing: put back what it pointed to (mount its disk), or remove it", prefix, s.dir, p))
			}
		}
		return nil
	}
	if err == nil && !fi.IsDir() {
		return nil // an object, not a directory of them: nothing below it
	}
	var fnErr error
	err = s.walk(ctx, start, startName, prefix, 0, nil, func(oi chunkstore.ObjectInfo) error {
		if err := fn(oi); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	if fnErr != nil && errors.Is(err, fnErr) {
		return fnErr
	}
	if err != nil {
		return classify(fmt.Errorf("list %s in %s: %w", prefix, s.dir, err))
	}
	return nil
}

// maxWalkDepth bounds List's descent: the layout is a few levels deep,
// and a symlink pointing at a directory above it would loop.
const maxWalkDepth = 16

// symlinkLoop returns an error if link, a symlink in dir to a directory,
// leads to dir or a directory above it, which walking it would list
// again and again.
func symlinkLoop(dir, link string) error {
	to, err := filepath.EvalSymlinks(link)
	if err != nil {
		return err
	}
	at, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	if at == to || strings.HasPrefix(at, strings.TrimSuffix(to, "/")+"/") {
		return fmt.Errorf("%s is a symlink to %s, which holds it: a loop; remove it", link, to)
	}
	return nil
}

// walk lists directory dir, named name ("" for the root), calling fn
// with the regular files below it whose names start with prefix, in
// lexical order, and descending only into directories that may hold
// such names. temp, if set, gets the temporary files and directories of
// unfinished Puts (which are never listed); a nil fn skips the objects
// (SweepTemp: no stat per object).
func (s *Store) walk(ctx context.Context, dir, name, prefix string, depth int, temp func(p string, e fs.DirEntry) error, fn func(chunkstore.ObjectInfo) error) error {
	if depth > maxWalkDepth {
		return fmt.Errorf("%s: more than %d directories deep (a symlink loop?)", dir, maxWalkDepth)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if depth > 0 && errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walking
		}
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if temp != nil {
				if err := temp(p, e); err != nil {
					return err
				}
			}
			continue
		}
		child := e.Name()
		if name != "" {
			child = name + "/" + e.Name()
		}
		var fi fs.FileInfo
		typ := e.Type()
		if typ&fs.ModeSymlink != 0 {
			if fi, err = os.Stat(p); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					if _, lerr := os.Lstat(p); errors.Is(lerr, fs.ErrNotExist) {
						continue // removed while walking
					}
					return fmt.Errorf("%s is a symlink to nothing: put back what it pointed to, or remove it", p)
				}
				return err
			}
			typ = fi.Mode().Type()
			if typ.IsDir() {
				if err := symlinkLoop(dir, p); err != nil {
					return err
				}
			}
		}
		switch {
		case typ.IsDir():
			if !strings.HasPrefix(child+"/", prefix) && !strings.HasPrefix(prefix, child+"/") {
				continue
			}
			if err := s.walk(ctx, p, child, prefix, depth+1, temp, fn); err != nil {
				return err
			}
		case fn != nil && typ.IsRegular() && strings.HasPrefix(child, prefix):
			if fi == nil {
				if fi, err = e.Info(); errors.Is(err, fs.ErrNotExist) {
					continue // deleted while walking
				} else if err != nil {
					return err
				}
			}
			if err := fn(chunkstore.ObjectInfo{Name: child, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// SweepTemp implements chunkstore.TempSweeper: it removes the temporary
// files (and directories) of Puts that never finished, a writer having
// been killed mid-write, that were last modified before before.
func (s *Store) SweepTemp(ctx context.Context, before time.Time, dryRun bool) (files int, bytes int64, err error) {
	err = s.walk(ctx, s.dir, "", "", 0, func(p string, e fs.DirEntry) error {
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // renamed into place meanwhile
		}
		if err != nil {
			return err
		}
		if !fi.ModTime().Before(before) || !(fi.Mode().IsRegular() || fi.IsDir()) {
			return nil
		}
		if fi.IsDir() {
			// Removed only when empty: mkdirShared's are, and anything
			// else in one is not ours to remove.
			if ents, err := os.ReadDir(p); err != nil || len(ents) > 0 {
				return nil
			}
		}
		if !dryRun {
			if err := os.Remove(p); err != nil {
				if errors.Is(err, fs.ErrNotExist) || (fi.IsDir() && errors.Is(err, unix.ENOTEMPTY)) {
					return nil
				}
				return fmt.Errorf("remove the temporary file %s: %w", p, err)
			}
		}
		files++
		if fi.Mode().IsRegular() {
			bytes += fi.Size()
		}
		return nil
	}, nil)
	if err != nil {
		return files, bytes, classify(fmt.Errorf("sweep temporary files in %s: %w", s.dir, err))
	}
	return files, bytes, nil
}

// Delete implements chunkstore.Store. It fsyncs the directory after the
// unlink, as Put does after its rename, so that a completed Delete
// survives a crash: prune orders its steps (rewrite the index, delete the
// old index files, then the packs, then the mark) and a power cut must
// not bring back an old index file naming packs deleted after it. The
// object's directory is removed when that leaves it empty (see
// removeEmptyDir).
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := check(ctx, name); err != nil {
		return err
	}
	p := s.path(name)
	err := os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return classify(fmt.Errorf("delete %s: %w", p, err))
	}
	if err := s.syncObjectDir(filepath.Dir(p)); err != nil {
		return classify(fmt.Errorf("delete %s: %w", p, err))
	}
	s.removeEmptyDir(name)
	return nil
}

// removeEmptyDir removes the directory of object name if it is empty and
// below a top-level one: data/ab once prune deleted its last pack, and
// above all sessions/<session>, one per backup ever run, which would
// otherwise pile up and be read by every listing of the sessions. rmdir
// removes only an empty directory (a concurrent Put's temporary file
// keeps it; createTemp makes it again if it went first) and never a
// symlink. It is tidying only: an error leaves the directory, and a
// crash may bring it back empty, which is harmless.
func (s *Store) removeEmptyDir(name string) {
	dir := path.Dir(name)
	if !strings.Contains(dir, "/") {
		return // index/, data/, sessions/ ... stay
	}
	_ = unix.Rmdir(s.path(dir))
}

// readErr maps an error from opening or stating p.
func (s *Store) readErr(op, p string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		if _, rootErr := os.Stat(s.dir); rootErr != nil {
			return fmt.Errorf("%s %s: repository directory %s is gone: %w", op, p, s.dir, chunkstore.ErrBucketNotFound)
		}
		return fmt.Errorf("%s %s: %w", op, p, chunkstore.ErrNotFound)
	}
	return classify(fmt.Errorf("%s %s: %w", op, p, err))
}

// classify marks errors that retrying cannot fix as permanent and adds a
// hint for the common ones.
// errNotInGroup is mkdirShared's error for a writer that is not in the
// group of a shared repository.
type errNotInGroup struct{ root string }

func (e errNotInGroup) Error() string {
	return fmt.Sprintf("the repository directory %s is setgid (shared with its group), but this user is not in its group, so the directories it makes would lose the setgid bit and what it writes would not be the group's: add the user to the group, or write as a user who is in it", e.root)
}

func classify(err error) error {
	switch {
	case errors.As(err, new(errNotInGroup)):
		return chunkstore.Permanent(err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return chunkstore.Permanent(fmt.Errorf("%w (the filesystem holding the repository is full: free space or prune)", err))
	case errors.Is(err, syscall.EROFS):
		// Not fs.ErrPermission's hint: no permission fixes a read-only mount.
		return chunkstore.Permanent(fmt.Errorf("%w (the filesystem holding the repository is mounted read-only: remount it read-write)", err))
	case errors.Is(err, fs.ErrPermission):
		return chunkstore.Permanent(fmt.Errorf("%w (check the permissions of the repository directory)", err))
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENAMETOOLONG):
		return chunkstore.Permanent(err)
	}
	return err
}

func check(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return chunkstore.CheckName(name)
}
