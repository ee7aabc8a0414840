package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
	"golang.org/x/sync/errgroup"
)

// Options configure a restore.
type Options struct {
	Target  string   // directory to restore into; created if missing
	Include []string // restore only paths matching these patterns (snapshot-relative, filepath.Match; a match on a directory includes everything below it)
	Packs   int      // pack ranges downloaded in parallel; 0 = 8
	Logger  *slog.Logger
	// Progress, if set, is updated as the restore runs.
	Progress *Progress
}

// Progress counts restored entries; TotalFiles/TotalBytes are known once planning finishes.
type Progress struct {
	TotalFiles, TotalBytes atomic.Int64
	Files, Bytes           atomic.Int64 // restored (or found already identical)
}

// Failure names a path that could not be restored and why.
type Failure struct {
	Path string // snapshot-relative path
	Err  error
}

func (f Failure) Error() string { return fmt.Sprintf("%s: %v", f.Path, f.Err) }

// Result summarises a restore.
type Result struct {
	Files, Dirs, Symlinks, Other int64
	Bytes                        int64 // file bytes in the restored tree
	BytesWritten                 int64 // bytes actually written (skipped identical files excluded)
	FilesSkipped                 int64 // already identical in the target
	Failures                     []Failure
}

type restorer struct {
	repo *chunkstore.Repository
	root *os.Root
	opts Options
	log  *slog.Logger
	prog *Progress
	uid  int

	mu       sync.Mutex
	failures []Failure
	written  atomic.Int64
	open     sync.Map // *fileState → *os.File
	openMu   sync.Mutex
}

// Restore writes snapshot snap into opts.Target. Every blob is
// authenticated and its keyed ID recomputed before a byte of it is
// written; a file whose data cannot be read or verified is reported as a
// Failure and removed, and everything else is still restored. The error
// is non-nil only when the restore could not run at all (no identity,
// unusable target, full disk, cancelled).
func Restore(ctx context.Context, repo *chunkstore.Repository, snap *snapshot.Snapshot, opts Options) (*Result, error) {
	if !repo.CanRead() {
		return nil, chunkstore.ErrNoIdentity
	}
	if opts.Packs <= 0 {
		opts.Packs = 8
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Progress == nil {
		opts.Progress = &Progress{}
	}
	in, err := newIncluder(opts.Include)
	if err != nil {
		return nil, err
	}
	root, err := openTarget(opts.Target)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if repo.Index().Len() == 0 {
		if err := repo.LoadIndex(ctx); err != nil {
			return nil, err
		}
	}
	r := &restorer{repo: repo, root: root, opts: opts, log: opts.Logger, prog: opts.Progress, uid: os.Geteuid()}

	var pl plan
	planFailures, err := pl.build(ctx, repo, snap.Tree, in)
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", snap.ID.Short(), err)
	}
	r.failures = append(r.failures, planFailures...)
	r.prog.TotalFiles.Store(int64(len(pl.files) + len(pl.links)))
	r.prog.TotalBytes.Store(pl.bytes)

	for _, d := range pl.dirs {
		if err := r.mkdir(d.path); err != nil {
			return nil, err
		}
	}
	if err := r.findIdentical(ctx, pl.files); err != nil {
		return nil, err
	}
	if err := r.createFiles(pl.files); err != nil {
		return nil, err
	}
	jobs := pl.packJobs()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Packs)
	for _, j := range jobs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return r.fetch(gctx, j) })
	}
	if err := g.Wait(); err != nil {
		r.closeAll()
		return nil, err
	}
	res := &Result{}
	for _, f := range pl.files {
		if f.failed != nil {
			r.fail(f.path, f.failed)
			_ = root.Remove(f.path)
			continue
		}
		res.Files++
		res.Bytes += f.size
		if f.skip {
			res.FilesSkipped++
		}
	}
	for _, f := range pl.links {
		if f.linkTo.failed != nil {
			r.fail(f.path, fmt.Errorf("hard link to %s, which failed", f.linkTo.path))
			continue
		}
		if err := r.replace(f.path); err != nil {
			r.fail(f.path, err)
			continue
		}
		if err := root.Link(f.linkTo.path, f.path); err != nil {
			r.fail(f.path, fmt.Errorf("hard link: %w", err))
			continue
		}
		res.Files++
		r.prog.Files.Add(1)
	}
	for _, o := range pl.others {
		if err := r.other(o); err != nil {
			r.fail(o.path, err)
			continue
		}
		if o.node.Type == snapshot.TypeSymlink {
			res.Symlinks++
		} else {
			res.Other++
		}
	}
	// Directory metadata last and deepest first, so creating entries
	// does not disturb it.
	sort.SliceStable(pl.dirs, func(i, j int) bool {
		return strings.Count(pl.dirs[i].path, "/") > strings.Count(pl.dirs[j].path, "/")
	})
	for _, d := range pl.dirs {
		if d.node != nil {
			r.setMeta(d.path, d.node)
		}
		res.Dirs++
	}
	res.BytesWritten = r.written.Load()
	sort.Slice(r.failures, func(i, j int) bool { return r.failures[i].Path < r.failures[j].Path })
	res.Failures = r.failures
	return res, nil
}

func openTarget(dir string) (*os.Root, error) {
	if dir == "" {
		return nil, errors.New("restore: no target directory given (--target)")
	}
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("restore target %s exists and is not a directory; choose an empty or new directory", dir)
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create restore target: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("restore target: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open restore target: %w", err)
	}
	// Probe writability now rather than failing on every file.
	probe := ".lifeboat-write-test"
	f, err := root.OpenFile(probe, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		root.Close()
		return nil, fmt.Errorf("restore target %s is not writable: %w", dir, err)
	}
	if f != nil {
		f.Close()
	}
	_ = root.Remove(probe)
	return root, nil
}

func (r *restorer) fail(p string, err error) {
	r.mu.Lock()
	r.failures = append(r.failures, Failure{Path: p, Err: err})
	r.mu.Unlock()
	r.log.Warn("restore failed for path", "path", p, "err", err)
}

// fatal reports errors that end the restore: the target filesystem
// cannot take more data.
func fatal(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS)
}

func targetError(p string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("restore target is full while writing %s: free space or restore elsewhere (already restored files are kept; rerun to resume): %w", p, err)
	}
	return fmt.Errorf("write %s: %w", p, err)
}

// replace removes whatever non-directory sits at p, so nothing planted
// there (a symlink especially) is followed.
func (r *restorer) replace(p string) error {
	fi, err := r.root.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return r.root.RemoveAll(p)
	}
	return r.root.Remove(p)
}

func (r *restorer) mkdir(p string) error {
	fi, err := r.root.Lstat(p)
	if err == nil && fi.IsDir() {
		return nil
	}
	if err == nil {
		if err := r.root.Remove(p); err != nil {
			return fmt.Errorf("replace %s with a directory: %w", p, err)
		}
	}
	if err := r.root.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create directory %s: %w", p, err)
	}
	return nil
}

// findIdentical marks files whose target copy already has the snapshot's
// content, by recomputing the keyed ID of each chunk in place.
func (r *restorer) findIdentical(ctx context.Context, files []*fileState) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, f := range files {
		fi, err := r.root.Lstat(f.path)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != f.size {
			continue
		}
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			if r.sameContent(f) {
				f.skip = true
			}
			return nil
		})
	}
	return g.Wait()
}

func (r *restorer) sameContent(f *fileState) bool {
	fh, err := r.root.OpenFile(f.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer fh.Close()
	var buf []byte
	for _, c := range f.chunks {
		if int64(cap(buf)) < c.length {
			buf = make([]byte, c.length)
		}
		b := buf[:c.length]
		if _, err := io.ReadFull(fh, b); err != nil {
			return false
		}
		if r.repo.BlobID(b) != c.id {
			return false
		}
	}
	return true
}

// createFiles creates every file to be written at its final size (holes
// stay sparse), and finishes empty and identical files at once.
func (r *restorer) createFiles(files []*fileState) error {
	for _, f := range files {
		if f.skip {
			r.setMeta(f.path, f.node)
			r.prog.Files.Add(1)
			r.prog.Bytes.Add(f.size)
			continue
		}
		if err := r.replace(f.path); err != nil {
			return targetError(f.path, err)
		}
		fh, err := r.root.OpenFile(f.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return targetError(f.path, err)
		}
		if f.size > 0 {
			if err := fh.Truncate(f.size); err != nil {
				fh.Close()
				return targetError(f.path, err)
			}
		}
		if err := fh.Close(); err != nil {
			return targetError(f.path, err)
		}
		if len(f.chunks) == 0 {
			r.setMeta(f.path, f.node)
			r.prog.Files.Add(1)
		}
	}
	return nil
}

// fetch downloads one pack range, verifies each blob and writes it to
// every file position that needs it.
func (r *restorer) fetch(ctx context.Context, j *packJob) error {
	key, err := r.repo.PackKey(j.pack)
	if err != nil {
		r.failBlobs(j.blobs, err)
		return nil
	}
	name := chunkstore.PackName(j.pack.ID)
	data, err := r.repo.Store().Get(ctx, name, j.start, j.end-j.start)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(j.blobs) == 1 {
			r.failBlobs(j.blobs, fmt.Errorf("read %s: %w", name, err))
			return nil
		}
		// Retry blob by blob so only the damaged ones fail.
		for _, bj := range j.blobs {
			single := &packJob{pack: j.pack, start: int64(bj.blob.Offset), end: int64(bj.blob.Offset) + int64(bj.blob.Length), blobs: []blobJob{bj}}
			if err := r.fetch(ctx, single); err != nil {
				return err
			}
		}
		return nil
	}
	var plain []byte
	for _, bj := range j.blobs {
		off := int64(bj.blob.Offset) - j.start
		sealed := data[off : off+int64(bj.blob.Length)]
		plain, err = r.repo.OpenBlob(key, bj.blob, sealed, plain)
		if err != nil {
			r.failBlobs([]blobJob{bj}, fmt.Errorf("%s: %w", name, err))
			plain = nil
			continue
		}
		zero := isZero(plain)
		for _, t := range bj.targets {
			if err := r.writeAt(t, plain, zero); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *restorer) failBlobs(blobs []blobJob, err error) {
	for _, bj := range blobs {
		for _, t := range bj.targets {
			r.mu.Lock()
			if t.file.failed == nil {
				t.file.failed = err
			}
			r.mu.Unlock()
			r.blobDone(t.file)
		}
	}
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	return len(bytes.TrimLeft(b, "\x00")) == 0
}

func (r *restorer) writeAt(t target, plain []byte, zero bool) error {
	f := t.file
	if !zero { // the file was created at full size: zeros are already there, as a hole
		fh, err := r.handle(f)
		if err != nil {
			return err
		}
		if _, err := fh.WriteAt(plain, t.offset); err != nil {
			if fatal(err) {
				return targetError(f.path, err)
			}
			r.mu.Lock()
			f.failed = err
			r.mu.Unlock()
		} else {
			r.written.Add(int64(len(plain)))
		}
	}
	r.prog.Bytes.Add(int64(len(plain)))
	r.blobDone(f)
	return nil
}

func (r *restorer) handle(f *fileState) (*os.File, error) {
	if v, ok := r.open.Load(f); ok {
		return v.(*os.File), nil
	}
	r.openMu.Lock()
	defer r.openMu.Unlock()
	if v, ok := r.open.Load(f); ok {
		return v.(*os.File), nil
	}
	fh, err := r.root.OpenFile(f.path, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, targetError(f.path, err)
	}
	r.open.Store(f, fh)
	return fh, nil
}

// blobDone counts down a file's pending blobs and finishes the file
// after the last one.
func (r *restorer) blobDone(f *fileState) {
	if atomic.AddInt64(&f.pending, -1) != 0 {
		return
	}
	if v, ok := r.open.LoadAndDelete(f); ok {
		if err := v.(*os.File).Close(); err != nil && f.failed == nil {
			f.failed = err
		}
	}
	if f.failed == nil {
		r.setMeta(f.path, f.node)
		r.prog.Files.Add(1)
	}
}

func (r *restorer) closeAll() {
	r.open.Range(func(k, v any) bool {
		v.(*os.File).Close()
		r.open.Delete(k)
		return true
	})
}

// other creates symlinks, FIFOs and device nodes.
func (r *restorer) other(e *entry) error {
	if err := r.replace(e.path); err != nil {
		return err
	}
	n := e.node
	switch n.Type {
	case snapshot.TypeSymlink:
		// The link is created, never followed: its target may point anywhere.
		if err := r.root.Symlink(n.LinkTarget, e.path); err != nil {
			return err
		}
		if r.uid == 0 {
			_ = r.root.Lchown(e.path, int(n.UID), int(n.GID))
		}
		return nil
	case snapshot.TypeFIFO, snapshot.TypeDev, snapshot.TypeCharDev:
		return r.mknod(e)
	}
	return fmt.Errorf("unsupported node type %q", n.Type)
}

func (r *restorer) setMeta(p string, n *snapshot.Node) {
	if r.uid == 0 {
		if err := r.root.Lchown(p, int(n.UID), int(n.GID)); err != nil {
			r.log.Debug("chown failed", "path", p, "err", err)
		}
	}
	if err := r.root.Chmod(p, n.Mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		r.log.Debug("chmod failed", "path", p, "err", err)
	}
	atime := n.AccessTime
	if atime.IsZero() {
		atime = n.ModTime
	}
	if err := r.root.Chtimes(p, atime, n.ModTime); err != nil {
		r.log.Debug("chtimes failed", "path", p, "err", err)
	}
}
