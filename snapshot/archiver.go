package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/internal/cdc"
	"golang.org/x/sync/errgroup"
)

// BackupOptions configure one backup.
type BackupOptions struct {
	Paths []string // absolute or relative; made absolute and cleaned
	// Stream, instead of Paths, backs up one file whose content is read
	// from a stream (standard input, a command's output).
	Stream   *Stream
	Host     string
	Username string
	Tags     []string
	Excludes []string // see Excluder
	// Time dates the snapshot; zero means the backup's start. A backup
	// of a filesystem snapshot (LVM, ZFS, a cloud volume's) gives the
	// moment that was taken: the data is as of then, and files changed
	// within racyMargin before it are read again by the next backup,
	// as files changed during a live backup are. A time after the
	// backup's start is refused.
	Time time.Time
	// Changing names files expected to change while they are read
	// (logs being written to), in Excluder's syntax; a pattern matching
	// a directory covers what it holds. Such a file is saved as read, as
	// any file that changes is, but without a warning: the backup is not
	// partial for it. Summary.FilesChangedWhileRead counts them all.
	Changing []string
	// OneFileSystem keeps the backup on the filesystems of its paths: a
	// directory below them on another one (a mount point: /proc, /sys,
	// a mounted share) is saved, with its own metadata, but empty.
	OneFileSystem bool
	// ExcludeIfPresent names marker files: a directory that holds one
	// is saved with its markers and nothing else. "NAME:HEADER" counts
	// only a regular file that begins with HEADER (CacheDirTag).
	ExcludeIfPresent []string
	// ExcludeLargerThan, if positive, leaves out regular files larger
	// than this many bytes.
	ExcludeLargerThan int64
	// DryRun walks the paths as a backup would, with every exclude,
	// and counts what it would read (files new or changed since the
	// files cache's backup) and leave unread, without reading a file or
	// writing to the repository or the files cache: Result.ID is zero,
	// the manifest not saved. Not for a Stream.
	DryRun     bool
	FilesCache *FilesCache
	// ReadAll reads every file, trusting no entry of FilesCache, and
	// records what it reads there for the next backup. It is for
	// filesystems whose change time does not change with the content
	// (FAT, exFAT and sshfs keep it equal to the modification time,
	// which can be set back), and for a files cache in doubt. A file
	// whose content differs from the one recorded under the same stat
	// counts as changed.
	ReadAll bool
	Readers int // files read and chunked in parallel; 0 = DefaultWorkers()
	Sealers int // blobs compressed and sealed in parallel; 0 = DefaultWorkers()
	// Walkers is how many directories are listed and stat'ed at once;
	// 0 = DefaultWalkers(), 1 = one at a time.
	Walkers        int
	Writer         chunkstore.WriterOptions
	Now            func() time.Time
	Logger         *slog.Logger
	Progress       *Progress
	ProgramVersion string
	// CommitDeadline, if set, is asked just before the manifest is
	// saved. An error aborts the backup without a snapshot; a non-zero
	// time bounds the manifest upload. A leased job uses it so that a
	// backup whose lease is gone (or about to go) never commits.
	CommitDeadline func() (time.Time, error)
	// Sessions paces the backup's session (see chunkstore.Session);
	// zero means chunkstore.DefaultSessionTiming.
	Sessions chunkstore.SessionTiming
}

// Stream is a file a backup reads from a stream rather than from the
// filesystem: a database dump piped in, say. The snapshot holds it as
// the one file /Name. Its size is not known in advance, so it is always
// read through the chunker; any error from Reader (a command that failed,
// a broken pipe) fails the backup without a snapshot, since a stream cut
// short looks like a shorter one.
type Stream struct {
	Name    string      // the file's name in the snapshot: one path element (ValidName)
	Reader  io.Reader   // read to EOF
	Mode    fs.FileMode // permission bits; 0 means 0600
	ModTime time.Time   // zero means the backup's start
	// Abort, if set, is called from another goroutine when the backup
	// stops before Reader's end (an error, ctx cancelled). It must make a
	// Read blocked on a stalled stream return (close a pipe, end a
	// command): until that Read returns, Backup cannot.
	Abort func()
}

// DefaultWalkers is how many directories a backup lists and stats at
// once unless told otherwise: one per core as for readers and sealers
// (DefaultWorkers), at least 2. A walk over many small files waits on the
// kernel (lstat, listxattr, reading directories, the inode tables of a
// cold cache) rather than on the CPU. On 2 cores, the no-change backup of
// a million files of 0-2 KiB took 16.7 s walking one directory at a time,
// 11.3 s two and 9.7 s four, with a peak RSS of 182, 193 and 231 MiB
// (docs/benchmarks.md, "Many small files"). Trees do not depend on the
// order: each lists its entries sorted by name.
func DefaultWalkers() int { return max(2, DefaultWorkers()) }

// MaxDefaultWorkers caps the default number of readers and of sealers.
// Each holds a chunk buffer that grows to the maximum chunk size (8 MiB),
// and a sealer its compressed payload too, so a backup's live heap grows
// by about 40 MiB per reader and sealer pair (135 MiB with 2, 380 MiB with
// 8; docs/operations.md). Uncapped, a backup on a 64-core database host
// would hold well over a GiB by default (with GOMAXPROCS=64 on the bench
// dataset: a live heap of 1.4 GiB and a peak RSS of 768-774 MB; capped,
// 272-340 MB). Eight sealers seal about 2 GB/s of new compressible data
// (per core: zstd's fastest level on text about 290 MB/s, keyed BLAKE3
// 3.6 GB/s, AES-GCM 5.5 GB/s, so about 250 MB/s), more than most links to
// object storage carry, and data already stored never reaches a sealer.
// BackupOptions.Readers and .Sealers (the CLI's and the agent's
// --parallelism) go higher.
const MaxDefaultWorkers = 8

// DefaultWorkers is the number of readers and of sealers a backup runs
// when BackupOptions leaves them at zero: one per Go processor, at most
// MaxDefaultWorkers.
func DefaultWorkers() int { return defaultWorkers(runtime.GOMAXPROCS(0)) }

func defaultWorkers(procs int) int { return max(1, min(procs, MaxDefaultWorkers)) }

// Progress is updated while a backup runs; read it from any goroutine.
type Progress struct {
	Files          atomic.Int64 // files finished
	Dirs           atomic.Int64
	BytesProcessed atomic.Int64 // size of finished files, read or not
	BytesRead      atomic.Int64 // bytes read from disk
	BytesAdded     atomic.Int64 // sealed bytes added to packs
	Errors         atomic.Int64
}

// Warning reports an entry that could not be backed up.
type Warning struct {
	Path string
	Err  error
}

func (w Warning) Error() string { return fmt.Sprintf("%s: %v", w.Path, w.Err) }

// Result is a finished backup.
type Result struct {
	ID       chunkstore.ID
	Manifest Manifest
	Warnings []Warning // non-empty: the snapshot is partial
	Adopted  int       // packs from interrupted backups that were reused
	// ExpectedChanges counts the files that changed while they were read
	// as BackupOptions.Changing said they would (no warning).
	ExpectedChanges uint64
}

type archiver struct {
	// asOf is when the data backed up was as it is read: the backup's
	// start, or BackupOptions.Time (a filesystem snapshot's).
	asOf time.Time
	// procFD says /proc/self/fd can be used: the calls that take a path
	// (llistxattr) reach an entry through its directory's descriptor
	// there (fdPath), not by its path again.
	procFD     bool
	repo       *chunkstore.Repository
	w          *chunkstore.Writer
	opts       BackupOptions
	log        *slog.Logger
	excl       *Excluder
	changing   *Excluder       // Changing
	markers    markers         // ExcludeIfPresent
	devs       map[uint64]bool // the backup paths' devices, with OneFileSystem; nil without
	way        map[string]bool // directories above the backup paths: not matched by Changing (expectedChange)
	cfg        chunkstore.Config
	files      chan *fileJob
	blobs      chan chunkJob
	bufs       chan *[]byte
	prog       *Progress
	ids        *idNames
	fsids      fsIDs       // the filesystem identity of each device number met
	streamRead atomic.Bool // the stream was read to its end
	// walkers holds a token for each directory being walked in a
	// goroutine of its own (walkDir); walking counts those goroutines
	// until their listing is done, all its files handed to the readers.
	// The goroutine that starts the walk mostly waits for them.
	walkers                                                   chan struct{}
	walking                                                   sync.WaitGroup
	warnMu                                                    sync.Mutex
	warnings                                                  []Warning
	newFiles, changed, unmodified, dirs, bytesProc, bytesRead atomic.Uint64
	changedWhileRead, expectedChanges                         atomic.Uint64
}

type fileJob struct {
	path string
	// dir and name are the file's directory, opened by the walk, and its
	// name there: it is opened from there (readFile). dir is nil for a
	// backup path itself, opened by path. The job holds a reference to
	// dir until the file is opened.
	dir     *dirFD
	name    string
	stream  io.Reader // read instead of the file at path (Stream)
	node    *Node
	st      FileStat
	done    chan struct{}
	err     error
	changed bool            // the files cache held the path with another stat
	same    bool            // it held the same stat, but its chunks are gone (or ReadAll)
	cached  []chunkstore.ID // the content it held, when same (compared with ReadAll)
	record  bool            // read from a file: recorded in the files cache with st
	// The identity of the file's filesystem could not be read: it is
	// recorded in the files cache as one that may change unseen.
	fsUnknown bool
}

type chunkJob struct {
	id  chunkstore.ID
	buf *[]byte
	n   int
}

type dirDone struct {
	id  chunkstore.ID
	err error
	// gone says the directory was removed after its parent was listed:
	// it is left out, as a removed file is. Never for a backup path.
	gone bool
}

// Backup reads the paths, stores new content and trees, and commits a
// snapshot manifest. Unreadable entries are skipped and returned as
// warnings; any storage error aborts the backup without a manifest.
//
// The pipeline: one walker goroutine stats entries in name order and
// hands files whose stat data changed to Readers, which chunk them and
// hash each chunk; chunks not already in the index are reserved and
// passed to Sealers, which compress and seal them into packs that the
// repository Writer uploads in the background. Each directory waits for
// its children in its own goroutine and then stores its tree, so
// directories complete bottom-up while the walk goes on.
func Backup(ctx context.Context, repo *chunkstore.Repository, opts BackupOptions) (*Result, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Logger = orDiscard(opts.Logger)
	if opts.Readers <= 0 {
		opts.Readers = DefaultWorkers()
	}
	if opts.Sealers <= 0 {
		opts.Sealers = DefaultWorkers()
	}
	if opts.Walkers <= 0 {
		opts.Walkers = DefaultWalkers()
	}
	if opts.Progress == nil {
		opts.Progress = &Progress{}
	}
	if opts.FilesCache == nil {
		opts.FilesCache = NewFilesCacheDiscarding(repo.Config().ID)
	}
	var paths []string
	switch {
	case opts.Stream != nil && len(opts.Paths) > 0:
		return nil, errors.New("backup: paths and a stream cannot be backed up together")
	case opts.Stream != nil:
		if !ValidName(opts.Stream.Name) {
			return nil, fmt.Errorf("backup: %q cannot name the stream's file: give one file name, without '/' (not empty, '.' or '..')", opts.Stream.Name)
		}
		paths = []string{"/" + opts.Stream.Name}
	case len(opts.Paths) == 0:
		return nil, errors.New("backup: no paths given")
	default:
		var err error
		if paths, err = cleanPaths(opts.Paths); err != nil {
			return nil, err
		}
	}
	cfg := repo.Config()
	var err error
	chunkers := make([]*cdc.Chunker, opts.Readers)
	for i := range chunkers {
		if chunkers[i], err = cdc.New(repo.Secrets().Polynomial, cfg.ChunkMin, cfg.ChunkMax, cfg.ChunkAvgBits); err != nil {
			return nil, fmt.Errorf("repository %s: %w", repo.Store().Location(), err)
		}
	}
	start := opts.Now()
	asOf := start
	if !opts.Time.IsZero() {
		if opts.Time.After(start) {
			return nil, fmt.Errorf("backup: snapshot time %s is later than now (%s): a snapshot cannot hold data from the future", opts.Time.Format(time.RFC3339), start.Format(time.RFC3339))
		}
		asOf = opts.Time
	}
	a, err := newArchiver(repo, opts, paths, asOf)
	if err != nil {
		return nil, err
	}
	if opts.DryRun {
		if opts.Stream != nil {
			return nil, errors.New("backup: a dry run of a stream reads nothing: there is nothing to show")
		}
		return a.dryRun(ctx, paths, start)
	}
	opts.Sessions = opts.Sessions.OrDefault()
	sess, adopted, err := beginWrite(ctx, repo, chunkstore.SessionInfo{
		Host: opts.Host, PID: os.Getpid(), Started: start, Program: opts.ProgramVersion,
	}, opts.Sessions, opts.Logger)
	if err != nil {
		return nil, err
	}
	defer sess.end(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wopts := opts.Writer
	wopts.RecheckedAtCommit = true // writeSession.commit
	wopts.IndexBy = sess.indexBy(ctx)
	w, err := repo.NewWriter(ctx, wopts)
	if err != nil {
		return nil, err
	}
	// One chunk buffer per reader and per sealer, and one spare so a
	// reader can start the next chunk while both sealers are busy. Each
	// buffer can grow to the maximum chunk size (8 MiB), so this is the
	// largest share of a backup's memory after the pack buffers.
	nbufs := opts.Readers + opts.Sealers + 1
	a.w = w
	a.files, a.blobs, a.bufs = make(chan *fileJob, 64), make(chan chunkJob, opts.Sealers), make(chan *[]byte, nbufs)
	for i := 0; i < nbufs; i++ {
		a.bufs <- new([]byte)
	}
	g, gctx := errgroup.WithContext(ctx)
	var readers sync.WaitGroup
	for _, ch := range chunkers {
		readers.Add(1)
		g.Go(func() error { defer readers.Done(); return a.reader(gctx, ch) })
	}
	for i := 0; i < opts.Sealers; i++ {
		g.Go(func() error { return a.sealer(gctx) })
	}
	if s := opts.Stream; s != nil && s.Abort != nil {
		stop := context.AfterFunc(gctx, func() {
			if !a.streamRead.Load() {
				s.Abort()
			}
		})
		defer stop()
	}
	var rootID chunkstore.ID
	g.Go(func() error {
		defer close(a.blobs)
		defer readers.Wait()
		defer close(a.files)
		defer a.walking.Wait() // before the close: they send files
		var ch <-chan dirDone
		if opts.Stream != nil {
			ch = a.saveStream(gctx, start)
		} else {
			ch = a.saveVirtual(gctx, buildVirtual(paths))
		}
		select {
		case res := <-ch:
			rootID = res.id
			return res.err
		case <-gctx.Done():
			return gctx.Err()
		}
	})
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := w.Flush(ctx); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	ws := w.Stats()
	m := Manifest{
		Time: asOf, Host: opts.Host, Username: opts.Username, Paths: paths, Tags: opts.Tags,
		Tree: rootID, ProgramVersion: opts.ProgramVersion,
	}
	m.Summary = a.summary(start)
	m.Summary.BytesAdded, m.Summary.BlobsAdded = uint64(ws.StoredAdded), uint64(ws.BlobsAdded)
	id, err := sess.commit(ctx, repo, m, opts.CommitDeadline)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return &Result{ID: id, Manifest: m, Warnings: a.sortedWarnings(), Adopted: adopted, ExpectedChanges: a.expectedChanges.Load()}, nil
}

// sortedWarnings returns the warnings, by path, once the walk is over.
func (a *archiver) sortedWarnings() []Warning {
	a.warnMu.Lock()
	defer a.warnMu.Unlock()
	sort.Slice(a.warnings, func(i, j int) bool { return a.warnings[i].Path < a.warnings[j].Path })
	return a.warnings
}

// newArchiver makes the archiver of a backup of paths (cleaned), or of
// its dry run, with what the walk needs: the excludes and markers
// checked, the devices of OneFileSystem. Backup adds the writer and the
// channels of the readers and sealers.
func newArchiver(repo *chunkstore.Repository, opts BackupOptions, paths []string, asOf time.Time) (*archiver, error) {
	excl, err := NewExcluder(opts.Excludes)
	if err != nil {
		return nil, err
	}
	changing, err := NewExcluder(opts.Changing)
	if err != nil {
		return nil, fmt.Errorf("changing files: %w", err)
	}
	marks, err := parseMarkers(opts.ExcludeIfPresent)
	if err != nil {
		return nil, err
	}
	a := &archiver{
		asOf: asOf, repo: repo, opts: opts, log: opts.Logger, excl: excl, changing: changing, markers: marks,
		way: map[string]bool{}, cfg: repo.Config(), prog: opts.Progress, ids: newIDNames(),
		walkers: make(chan struct{}, opts.Walkers), procFD: procFDWorks(),
	}
	if opts.OneFileSystem && opts.Stream == nil {
		a.devs = backupDevices(opts.Paths) // as given: one inside another counts too
	}
	for _, p := range paths {
		for d := filepath.Dir(filepath.Clean(p)); ; d = filepath.Dir(d) {
			a.way[d] = true
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	for _, p := range paths {
		delete(a.way, filepath.Clean(p)) // a backup path above another is one still
	}
	return a, nil
}

// summary is what the walk and the readers counted, for a manifest
// begun at start (the writer's counts are Backup's to add).
func (a *archiver) summary(start time.Time) Summary {
	return Summary{
		Start: start, End: a.opts.Now(),
		FilesNew: a.newFiles.Load(), FilesChanged: a.changed.Load(), FilesUnmodified: a.unmodified.Load(),
		Dirs: a.dirs.Load(), BytesProcessed: a.bytesProc.Load(), BytesRead: a.bytesRead.Load(),
		Errors: uint64(len(a.warnings)), FilesChangedWhileRead: a.changedWhileRead.Load(),
	}
}

// cleanPaths makes the backup paths absolute and drops those inside
// another. A path given with a trailing slash that names a symlink to a
// directory is the directory (as "dir/" is for the shell and rsync): it
// is backed up under its real path.
func cleanPaths(in []string) ([]string, error) {
	var out []string
	for _, p := range in {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("backup path %q: %w", p, err)
		}
		if longPath(abs) {
			return nil, fmt.Errorf("backup path %s is %d bytes long, more than the kernel takes (PATH_MAX, %d bytes): back up a directory above it, whose tree is saved however deep: %w", abs, len(abs), pathMax, syscall.ENAMETOOLONG)
		}
		fi, err := os.Lstat(abs)
		if err != nil {
			return nil, fmt.Errorf("backup path %s: %w", abs, errors.Unwrap(err))
		}
		if fi.Mode()&fs.ModeSymlink != 0 && strings.HasSuffix(p, "/") {
			real, err := filepath.EvalSymlinks(abs)
			if err != nil {
				return nil, fmt.Errorf("backup path %s: %w", p, err)
			}
			if st, err := os.Stat(real); err != nil || !st.IsDir() {
				return nil, fmt.Errorf("backup path %s: the trailing slash asks for a directory, but %s is not one", p, real)
			}
			abs = real
		}
		out = append(out, abs)
	}
	sort.Strings(out)
	// Drop paths inside another backed-up path. Inside a symlink, the
	// path leads elsewhere, and the snapshot would hold the symlink
	// alone: refused.
	// (Against every directory above it that was kept, not the last
	// path kept: "data-old" sorts between "data" and "data/app". Not
	// against every path kept: a --files-from list of 100,000 files
	// then took minutes.)
	var kept []string
	isKept := map[string]bool{}
next:
	for _, p := range out {
		if isKept[p] {
			continue
		}
		for k := p; k != "/"; {
			k = filepath.Dir(k)
			if isKept[k] {
				if fi, err := os.Lstat(k); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
					return nil, fmt.Errorf("backup path %s lies below %s, which is a symlink: the snapshot would hold the symlink alone; give %s's real path (or %s/ for all of it) instead", p, k, p, k)
				}
				continue next
			}
		}
		kept = append(kept, p)
		isKept[p] = true
	}
	return kept, nil
}

func (a *archiver) warn(path string, err error) { a.warnAs("skipped unreadable entry", path, err) }

// warnAs records a warning about path, logged as msg.
func (a *archiver) warnAs(msg, path string, err error) {
	a.prog.Errors.Add(1)
	a.log.Warn(msg, "path", path, "err", err)
	a.warnMu.Lock()
	a.warnings = append(a.warnings, Warning{Path: path, Err: err})
	a.warnMu.Unlock()
}

// readXAttrs records the extended attributes of the entry at path in n,
// read relative to dir, the directory it was listed in, where the kernel
// can (readXAttrsAt); otherwise through at (path, or a short path
// through dir: fdPath), after mayHaveXAttrs has spared the entries
// without any (most) that slower path through /proc. One that
// cannot be read is a warning (the backup is partial: the entry is saved
// without them).
func (a *archiver) readXAttrs(dir *dirFD, name, at, path string, n *Node) {
	var xs []XAttr
	err := errNoXattrat
	if dir != nil {
		xs, err = readXAttrsAt(dir, name)
	}
	if errors.Is(err, errNoXattrat) {
		if dir != nil && !mayHaveXAttrs(path) {
			return
		}
		xs, err = readXAttrs(at)
	}
	if err != nil {
		a.warnAs("saved without its extended attributes", path, fmt.Errorf("saved without its extended attributes: %w", err))
		return
	}
	n.XAttrs = xs
}

// vnode is a path component on the way to a backed-up path.
type vnode struct {
	path     string
	target   bool
	children map[string]*vnode
}

func buildVirtual(paths []string) *vnode {
	root := &vnode{path: "/", children: map[string]*vnode{}}
	for _, p := range paths {
		cur := root
		for _, el := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
			if el == "" {
				continue
			}
			next, ok := cur.children[el]
			if !ok {
				next = &vnode{path: filepath.Join(cur.path, el), children: map[string]*vnode{}}
				cur.children[el] = next
			}
			cur = next
		}
		cur.target = true
	}
	return root
}

// saveVirtual stores the trees for the ancestors of the backed-up paths.
func (a *archiver) saveVirtual(ctx context.Context, v *vnode) <-chan dirDone {
	if v.target {
		// "/" itself was given.
		return a.walkDir(ctx, nil, v.path, "", true)
	}
	names := make([]string, 0, len(v.children))
	for n := range v.children {
		names = append(names, n)
	}
	sort.Strings(names)
	a.opts.FilesCache.Enter(v.path)
	defer a.opts.FilesCache.Leave(v.path)
	var items []pendingNode
	for _, name := range names {
		c := v.children[name]
		if c.target {
			fi, err := os.Lstat(c.path)
			if err != nil {
				a.warn(c.path, err)
				continue
			}
			if a.excl.Excluded(c.path, fi.IsDir()) {
				a.warnAs("backup path excluded", c.path, errors.New("an --exclude pattern matches this backup path itself, so nothing of it was saved"))
				continue
			}
			if it, ok := a.statted(ctx, nil, c.path, c.path, name, fi, true); ok {
				items = append(items, it)
			}
			continue
		}
		// A directory on the way to a backed-up path, as the path
		// reaches it: through a symlink (/home -> /data/home), the
		// directory's metadata, not the symlink's.
		fi, err := os.Stat(c.path)
		if err != nil {
			a.warn(c.path, err)
			continue
		}
		node := a.nodeFromInfo(name, fi)
		a.times64(c.path, c.path, node, true)
		a.clampTimes(c.path, node)
		a.readXAttrs(nil, name, c.path, c.path, node)
		items = append(items, pendingNode{node: node, dir: a.saveVirtual(ctx, c)})
	}
	return a.finishDir(ctx, v.path, items, make(chan dirDone, 1))
}

// saveStream stores the root tree of a stream's backup: the one file
// opts.Stream, owned by this process's user.
func (a *archiver) saveStream(ctx context.Context, start time.Time) <-chan dirDone {
	s := a.opts.Stream
	mode := s.Mode.Perm()
	if mode == 0 {
		mode = 0o600
	}
	mtime := s.ModTime
	if mtime.IsZero() {
		mtime = start
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	node := &Node{Name: s.Name, Type: TypeFile, Mode: mode, UID: uid, GID: gid,
		User: a.ids.user(uid), Group: a.ids.group(gid), ModTime: mtime, AccessTime: mtime, ChangeTime: mtime}
	job := &fileJob{path: "/" + s.Name, node: node, stream: s.Reader, done: make(chan struct{})}
	select {
	case a.files <- job:
	case <-ctx.Done():
		out := make(chan dirDone, 1)
		out <- dirDone{err: ctx.Err()}
		return out
	}
	return a.finishDir(ctx, "/", []pendingNode{{node: node, file: job}}, make(chan dirDone, 1))
}

type pendingNode struct {
	node *Node
	file *fileJob
	dir  <-chan dirDone
	// An unchanged file, recorded in the files cache with st once its
	// directory is done.
	unchanged bool
	st        FileStat
}

// entry stats the entry name of dir, at path, that the walk listed, and
// starts whatever work it needs. An entry removed since its directory
// was listed is left out, as if the listing had come a moment later.
func (a *archiver) entry(ctx context.Context, dir *dirFD, path, name string) (pendingNode, bool) {
	fi, err := lstatAt(dir, name, path)
	if errors.Is(err, fs.ErrNotExist) {
		a.log.Debug("removed since its directory was listed", "path", path)
		return pendingNode{}, false
	}
	if err != nil {
		a.warn(path, err)
		return pendingNode{}, false
	}
	at := path
	switch {
	case a.procFD:
		at = fdPath(dir.fd, name)
	case longPath(path) && noListxattrat.Load():
		// It is stat'ed and opened through dir, but without
		// listxattrat its extended attributes are read by a path,
		// which the kernel would refuse as too long.
		a.warn(path, fmt.Errorf("the extended attributes of entries deeper than PATH_MAX (%d bytes) are read through /proc/self/fd on kernels before 6.13, and it cannot be used here: mount /proc", pathMax))
		return pendingNode{}, false
	}
	return a.statted(ctx, dir, path, at, name, fi, false)
}

// statted starts the work entry fi (path's lstat) needs. dir is the
// directory the walk listed it in (nil for a backup path itself), name
// its name there. at is path, or a path to the same entry through dir
// (fdPath), for the calls that take a path. top says that path is a
// backup path, found by the goroutine that starts the walk rather than
// by a walker (see walkDir).
func (a *archiver) statted(ctx context.Context, dir *dirFD, path, at, name string, fi fs.FileInfo, top bool) (pendingNode, bool) {
	node := a.nodeFromInfo(name, fi)
	a.times64(at, path, node, false)
	a.clampTimes(path, node)
	a.readXAttrs(dir, name, at, path, node)
	switch {
	case fi.Mode().IsRegular():
		if a.opts.ExcludeLargerThan > 0 && fi.Size() > a.opts.ExcludeLargerThan {
			if top {
				a.warnAs("backup path excluded", path, fmt.Errorf("it holds %d bytes, more than the %d that exclude-larger-than allows, so it was not saved", fi.Size(), a.opts.ExcludeLargerThan))
			} else {
				a.log.Info("left out: larger than exclude-larger-than", "path", path, "size", fi.Size())
			}
			return pendingNode{}, false
		}
		node.Type = TypeFile
		st := statOf(fi)
		var fsid uint64
		var fsErr error
		if dir != nil {
			fsid, fsErr = a.fsids.ofAt(st.Dev, dir.fd, name)
		} else {
			fsid, fsErr = a.fsids.ofPath(st.Dev, at)
		}
		if fsErr != nil {
			a.log.Debug("read again: its filesystem is not known", "path", path, "err", fsErr)
		}
		st.FSID = fsid
		var content []chunkstore.ID
		var same bool
		if fsErr == nil {
			content, same = a.opts.FilesCache.Lookup(path, st)
		}
		if a.opts.DryRun {
			return a.wouldRead(path, node, st, content, same, fi.Size()), true
		}
		if same && !a.opts.ReadAll && a.allStored(content) {
			node.Content = content
			a.unmodified.Add(1)
			a.bytesProc.Add(uint64(fi.Size()))
			a.prog.Files.Add(1)
			a.prog.BytesProcessed.Add(fi.Size())
			return pendingNode{node: node, unchanged: true, st: st}, true
		}
		known := a.opts.FilesCache.Has(path)
		job := &fileJob{path: path, name: name, node: node, st: st, done: make(chan struct{}), changed: known && !same, same: same, cached: content, fsUnknown: fsErr != nil}
		if dir != nil {
			job.dir = dir.hold()
		}
		select {
		case a.files <- job:
		case <-ctx.Done():
			job.releaseDir()
			return pendingNode{}, false
		}
		return pendingNode{node: node, file: job}, true
	case fi.IsDir():
		if !top && a.otherFileSystem(statOf(fi)) {
			a.log.Info("not entered: on another filesystem (one-file-system)", "path", path)
			return pendingNode{node: node, dir: a.finishDir(ctx, path, nil, make(chan dirDone, 1))}, true
		}
		return pendingNode{node: node, dir: a.walkDir(ctx, dir, path, name, top)}, true
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := readlinkAt(dir, name, path)
		if err != nil {
			a.warn(path, err)
			return pendingNode{}, false
		}
		node.Type, node.LinkTarget = TypeSymlink, target
	case fi.Mode()&fs.ModeNamedPipe != 0:
		node.Type = TypeFIFO
	case fi.Mode()&fs.ModeDevice != 0:
		node.Type = TypeDev
		if fi.Mode()&fs.ModeCharDevice != 0 {
			node.Type = TypeCharDev
		}
	case fi.Mode()&fs.ModeSocket != 0:
		// A socket is made by the program listening on it, and no
		// restore could bring that back: left out, as nothing is lost.
		a.log.Debug("socket left out", "path", path)
		return pendingNode{}, false
	default:
		a.warn(path, fmt.Errorf("unsupported file type %s; skipped", fi.Mode().Type()))
		return pendingNode{}, false
	}
	return pendingNode{node: node}, true
}

func (a *archiver) allStored(ids []chunkstore.ID) bool {
	idx := a.repo.Index()
	for _, id := range ids {
		if !idx.Has(id) {
			return false
		}
	}
	return true
}

// walkDir walks the directory at path: in a goroutine of its own while
// fewer than Walkers directories are being walked, otherwise in this one.
// The returned channel yields its tree ID. A walker that walks a
// subdirectory in its own goroutine keeps its token meanwhile, so at most
// Walkers are listed at once. The goroutine that starts the walk holds no
// token: for a backup path (top) it waits for one instead, since walking
// the path itself would make one more. The directory is opened as name
// in parent, the directory it was listed in, or by path for a backup
// path (parent nil).
func (a *archiver) walkDir(ctx context.Context, parent *dirFD, path, name string, top bool) <-chan dirDone {
	out := make(chan dirDone, 1)
	if parent != nil {
		parent.hold() // until saveDir has opened the directory
	}
	if top {
		select {
		case a.walkers <- struct{}{}:
		case <-ctx.Done():
			if parent != nil {
				parent.release()
			}
			out <- dirDone{err: ctx.Err()}
			return out
		}
	} else {
		select {
		case a.walkers <- struct{}{}:
		default:
			return a.saveDir(ctx, parent, path, name, top, true, out)
		}
	}
	a.walking.Add(1)
	go func() {
		defer a.walking.Done()
		a.saveDir(ctx, parent, path, name, top, false, out)
		<-a.walkers // listed: the rest is finishDir's
	}()
	return out
}

// saveDir walks one directory, name in parent (or path, for a backup
// path: parent nil), and lets go of parent once it is open; out yields
// its tree ID. The directory is read through the descriptor it was
// opened as, and its entries are stat'ed and opened relative to it:
// renamed or swapped for a symlink meanwhile, the directory whose
// entries are saved is still the one opened. A directory below a backup
// path (not top) removed since its parent was listed, before it is
// opened, yields gone: it is left out without a warning, as a file
// removed since the listing is. One swapped for a symlink or a file
// since is not followed: a warning says it was replaced. inline says
// parent's listing waits for this call (the same goroutine): parent may
// then be parked meanwhile (dirFD.park).
func (a *archiver) saveDir(ctx context.Context, parent *dirFD, path, name string, top, inline bool, out chan dirDone) <-chan dirDone {
	if walkHook != nil {
		walkHook(path, true)
	}
	a.opts.FilesCache.Enter(path)
	defer a.opts.FilesCache.Leave(path)
	var ents []os.DirEntry
	var dir *dirFD
	var err error
	parked := false
	if parent != nil {
		dir, err = openDirAt(parent, name, path)
		parked = err == nil && inline && parent.park()
		parent.release()
		err = replacedAt(err, "its entries were not saved")
	} else {
		dir, err = a.openTopDir(path)
	}
	if err == nil {
		defer dir.release()
		if parked {
			defer parent.unpark(dir, filepath.Dir(path)) // before dir's release
		}
		ents, err = dir.f.ReadDir(-1)
		slices.SortFunc(ents, func(x, y os.DirEntry) int { return strings.Compare(x.Name(), y.Name()) })
		if a.markers != nil {
			if kept := a.marked(dir, path, ents); kept != nil {
				ents = kept
			}
		}
	}
	if err != nil && !top && errors.Is(err, fs.ErrNotExist) {
		a.log.Debug("removed since its directory was listed", "path", path)
		if walkHook != nil {
			walkHook(path, false)
		}
		out <- dirDone{gone: true}
		return out
	}
	if err != nil {
		a.warn(path, err)
	}
	items := make([]pendingNode, 0, len(ents))
	for _, e := range ents {
		if ctx.Err() != nil {
			break
		}
		if dir.err != nil {
			a.warn(path, dir.err)
			break
		}
		p := filepath.Join(path, e.Name())
		// Excluded before it is even stat'ed: an entry that cannot be
		// (a FUSE mount of another user's) is excluded, not a warning.
		if a.excl.Excluded(p, e.IsDir()) {
			continue
		}
		if it, ok := a.entry(ctx, dir, p, e.Name()); ok {
			items = append(items, it)
		}
	}
	if walkHook != nil {
		walkHook(path, false)
	}
	return a.finishDir(ctx, path, items, out)
}

// finishDir waits for the children in a goroutine, then stores the tree;
// out, which must have room for one, yields its ID.
func (a *archiver) finishDir(ctx context.Context, path string, items []pendingNode, out chan dirDone) <-chan dirDone {
	if a.opts.DryRun {
		go a.finishDryDir(ctx, items, out)
		return out
	}
	go func() {
		tree := &Tree{Nodes: make([]Node, 0, len(items))}
		var cached []Recorded
		for _, it := range items {
			switch {
			case it.unchanged:
				cached = append(cached, Recorded{Name: it.node.Name, Stat: it.st, Content: it.node.Content})
			case it.file != nil:
				select {
				case <-it.file.done:
				case <-ctx.Done():
					out <- dirDone{err: ctx.Err()}
					return
				}
				if it.file.err != nil {
					continue // reported by the reader
				}
				if it.file.record {
					cached = append(cached, Recorded{Name: it.node.Name, Stat: it.file.st, Content: it.node.Content})
				}
			case it.dir != nil:
				var res dirDone
				select {
				case res = <-it.dir:
				case <-ctx.Done():
					out <- dirDone{err: ctx.Err()}
					return
				}
				if res.err != nil {
					out <- res
					return
				}
				if res.gone {
					continue
				}
				id := res.id
				it.node.Subtree = &id
			}
			tree.Nodes = append(tree.Nodes, *it.node)
		}
		b, err := tree.Encode()
		if err != nil {
			out <- dirDone{err: fmt.Errorf("encode tree %s: %w", path, err)}
			return
		}
		id, _, err := a.w.SaveBlob(ctx, chunkstore.TreeBlob, b)
		if err != nil {
			out <- dirDone{err: fmt.Errorf("store the tree of %s: %w", path, err)}
			return
		}
		a.opts.FilesCache.RecordDir(path, cached)
		a.dirs.Add(1)
		a.prog.Dirs.Add(1)
		out <- dirDone{id: id}
	}()
	return out
}

// reader chunks files.
func (a *archiver) reader(ctx context.Context, ch *cdc.Chunker) error {
	for job := range a.files {
		if ctx.Err() != nil {
			job.releaseDir()
			job.err = ctx.Err()
			close(job.done)
			continue
		}
		err := a.readFile(ctx, ch, job)
		if err != nil && job.stream != nil {
			// The stream is the whole backup: no partial snapshot.
			job.err = err
			close(job.done)
			return fmt.Errorf("%s: %w", job.path, err)
		}
		switch {
		case err == nil, ctx.Err() != nil:
		case errors.Is(err, fs.ErrNotExist):
			a.log.Debug("removed since it was listed", "path", job.path)
		default:
			a.warn(job.path, err)
		}
		job.err = err
		close(job.done)
	}
	return nil
}

func (a *archiver) readFile(ctx context.Context, ch *cdc.Chunker, job *fileJob) error {
	var f *os.File
	var src io.Reader
	if job.stream != nil {
		src = job.stream
	} else {
		if beforeOpen != nil {
			beforeOpen(job.path)
		}
		var err error
		var beneath bool
		if f, beneath, err = a.openListed(job); err != nil {
			return err
		}
		defer f.Close()
		if err := a.sameFile(f, job, beneath); err != nil {
			return err
		}
		if afterOpen != nil {
			afterOpen(job.path)
		}
		src = f
	}
	// A file no larger than the minimum chunk is always exactly one
	// chunk, so small files (most files by count) skip the chunker and
	// its extra copy: they are read straight into the chunk buffer. A
	// stream's size is unknown: it always goes through the chunker.
	small := f != nil && job.st.Size <= int64(a.cfg.ChunkMin) // job.st as opened (sameFile)
	if !small {
		ch.Reset(src)
	}
	smallDone := false
	next := func(buf []byte) ([]byte, error) {
		if !small {
			return ch.Next(buf)
		}
		if smallDone {
			return nil, io.EOF
		}
		smallDone = true
		limit := int(a.cfg.ChunkMin) + 1
		if cap(buf) < limit {
			buf = make([]byte, 0, limit)
		}
		n, err := io.ReadFull(f, buf[:limit])
		switch {
		case err == io.EOF:
			return nil, io.EOF // empty file
		case err == io.ErrUnexpectedEOF:
			return buf[:n], nil
		case err != nil:
			return nil, err
		}
		// The file grew past the minimum chunk since it was stat'ed:
		// start over with the chunker.
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		small = false
		ch.Reset(f)
		return ch.Next(buf[:0])
	}
	var content []chunkstore.ID
	var size int64
	idx := a.repo.Index()
	for {
		var buf *[]byte
		select {
		case buf = <-a.bufs:
		case <-ctx.Done():
			return ctx.Err()
		}
		switch {
		case !small && cap(*buf) < int(a.cfg.ChunkMax):
			// The chunker reads into the buffer and needs room for the
			// largest chunk (it would make a buffer of its own
			// otherwise); the grown buffer is kept for the next chunk.
			*buf = make([]byte, 0, a.cfg.ChunkMax)
		case *buf == nil:
			// Small files need at most the minimum chunk plus one
			// byte (see next).
			*buf = make([]byte, 0, a.cfg.ChunkMin+1)
		}
		data, err := next((*buf)[:0])
		if err == io.EOF {
			a.bufs <- buf
			if job.stream != nil {
				a.streamRead.Store(true)
			}
			break
		}
		if err != nil {
			a.bufs <- buf
			return fmt.Errorf("read: %w", err)
		}
		*buf = data[:0] // keep the grown buffer
		id := a.repo.BlobID(data)
		content = append(content, id)
		size += int64(len(data))
		a.prog.BytesRead.Add(int64(len(data)))
		if !idx.Reserve(id) {
			a.bufs <- buf
			continue
		}
		select {
		case a.blobs <- chunkJob{id: id, buf: buf, n: len(data)}:
		case <-ctx.Done():
			idx.Unreserve(id)
			return ctx.Err()
		}
	}
	job.node.Content = content
	job.node.Size = uint64(size)
	if f != nil {
		if err := a.unchangedWhileRead(f, job, size); err != nil {
			// What was read is kept (it may mix the old content and the
			// new), and the next backup reads it again. Unless the file
			// was expected to change, the snapshot says it is not whole.
			job.st.CTime = -1
			changed := errors.Is(err, errChangedWhileRead)
			if changed {
				a.changedWhileRead.Add(1)
			}
			if changed && a.expectedChange(job.path) {
				a.expectedChanges.Add(1)
				a.log.Info("changed while it was read, as expected (Changing)", "path", job.path, "err", err)
			} else {
				a.warnAs("changed while it was read", job.path, err)
			}
		}
		if job.fsUnknown {
			job.st.CTime = -1 // matches no stat: read again next time
		}
		job.record = true // in the files cache, with job.st, once its directory is done
	}
	switch {
	case job.same && (!a.opts.ReadAll || slices.Equal(content, job.cached)):
		a.unmodified.Add(1)
	case job.same:
		// ReadAll found another content under the recorded stat.
		a.changed.Add(1)
	case job.changed:
		a.changed.Add(1)
	default:
		a.newFiles.Add(1)
	}
	a.bytesProc.Add(uint64(size))
	a.bytesRead.Add(uint64(size))
	a.prog.Files.Add(1)
	a.prog.BytesProcessed.Add(size)
	return nil
}

// sealer compresses, seals and stores reserved chunks.
func (a *archiver) sealer(ctx context.Context) error {
	for j := range a.blobs {
		if ctx.Err() != nil {
			a.repo.Index().Unreserve(j.id)
			a.bufs <- j.buf
			continue
		}
		n, err := a.w.SaveReserved(ctx, chunkstore.DataBlob, j.id, (*j.buf)[:j.n])
		a.bufs <- j.buf
		if err != nil {
			return err
		}
		a.prog.BytesAdded.Add(int64(n))
	}
	return nil
}

// openListed opens a file the walk listed, to read it, without blocking
// on a FIFO in its place (sameFile refuses that), and without following
// a symlink in its place. Below a backup path it is opened from the
// directory the walk listed it in (beneath): a directory swapped for a
// symlink since cannot lead the read out of the backup paths, so a file
// that was replaced (saved by renaming a new one over it) is still the
// file at that path, and is read. A backup path itself is opened by
// path.
func (a *archiver) openListed(job *fileJob) (f *os.File, beneath bool, err error) {
	flags := os.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC | syscall.O_NOATIME
	open := func(flags int) (*os.File, error) { return os.OpenFile(job.path, flags, 0) }
	if job.dir != nil {
		defer job.releaseDir()
		open = func(flags int) (*os.File, error) { return openFileAt(job.dir, job.name, job.path, flags) }
		beneath = true
	}
	for {
		f, err = open(flags)
		switch {
		case err == nil:
			return f, beneath, nil
		case errors.Is(err, syscall.EPERM) && flags&syscall.O_NOATIME != 0:
			flags &^= syscall.O_NOATIME // not the file's owner
		case errors.Is(err, syscall.EAGAIN) && flags&syscall.O_NONBLOCK != 0:
			flags &^= syscall.O_NONBLOCK // a lease to be broken: wait for it
		case errors.Is(err, syscall.ELOOP):
			return nil, false, fmt.Errorf("%w (a symlink now); skipped, the next backup saves what is there then", errReplaced)
		default:
			return nil, false, err
		}
	}
}

// openTopDir opens a backup path that is a directory, to list it, by
// path but not through a symlink in its place.
func (a *archiver) openTopDir(path string) (*dirFD, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, replacedAt(err, "its entries were not saved")
	}
	return newDirFD(f), nil
}

// beforeOpen and afterOpen, if set (by tests), run with a file's path
// just before a backup opens it to read it, and once it has been opened.
var beforeOpen, afterOpen func(path string)

// walkHook, if set (by tests), runs with a directory's path as a backup
// begins to list it (enter) and once its entries are all listed and
// stat'ed, before it waits for them to be stored.
var walkHook func(path string, enter bool)

// errReplaced marks a file that was replaced between the listing and
// the read.
var errReplaced = errors.New("replaced since it was listed")

// sameFile checks that f, opened by openListed, is a regular file (a
// FIFO swapped in is not read) and, unless it was opened from the
// directory it was listed in (beneath), the very file the walk found
// there (job.st): a backup path is opened by path, which may lead
// elsewhere by now. A file changed or replaced in between is read as it now
// is: its stat and metadata become the ones recorded.
func (a *archiver) sameFile(f *os.File, job *fileJob, beneath bool) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	replaced := st.Ino != job.st.Inode || uint64(st.Dev) != job.st.Dev
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || replaced && !beneath {
		return fmt.Errorf("%w (another file or not a regular file now); skipped, the next backup saves what is there then", errReplaced)
	}
	now := fileStat(&st)
	now.FSID = job.st.FSID
	if now.Dev != job.st.Dev {
		id, err := a.fsids.ofFile(now.Dev, f)
		if err != nil {
			a.log.Debug("read again next time: its filesystem is not known", "path", job.path, "err", err)
			job.fsUnknown = true
		}
		now.FSID = id
	}
	if now != job.st {
		job.st = now
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		// The extended attributes are read again from the open file:
		// those read at the listing may be a replaced file's (an ACL or
		// a file capability it had), and read by path again they could
		// be yet another's.
		n := a.nodeFromInfo(job.node.Name, fi)
		n.Type = TypeFile
		if xs, err := readXAttrsFD(int(f.Fd())); err != nil {
			a.warnAs("saved without its extended attributes", job.path, fmt.Errorf("saved without its extended attributes: %w", err))
		} else {
			n.XAttrs = xs
		}
		a.times64FD(f, job.path, n)
		a.clampTimes(job.path, n)
		*job.node = *n
	}
	return nil
}

// expectedChange reports whether a Changing pattern matches the file at
// path or a directory above it, up to its backup path: as excludes,
// they do not match the directories above that ("**/tmp/" is not all of
// a backup of /tmp/app).
func (a *archiver) expectedChange(path string) bool {
	for p, isDir := path, false; ; p, isDir = filepath.Dir(p), true {
		if a.way[p] {
			return false
		}
		if a.changing.Excluded(p, isDir) {
			return true
		}
		if p == filepath.Dir(p) { // "/" or "."
			return false
		}
	}
}

// racyMargin is how long before the backup's start (or the time of the
// filesystem snapshot it reads, BackupOptions.Time) a file's change time
// still counts as "during the backup" for the files cache. A change made
// after the backup read a file keeps the stat recorded when it falls in
// the same timestamp tick: the margin must exceed the filesystem's
// timestamp granularity plus the lag of the clock the kernel stamps with.
// FAT (USB sticks, EFI system partitions) stamps to 2 s and keeps a
// file's change time equal to its modification time; ext3, HFS+ and ext4
// with 128-byte inodes stamp to 1 s; kernels before 6.13 stamp with a
// coarse clock that lags by up to a tick (a few milliseconds), and a
// file server's clock may be off by more. Three seconds cover FAT's 2 s
// with a second to spare for the tick and a well-synchronised server; a
// file changed within the margin is read again by the next backup rather
// than trusted. It costs re-reading the files changed in the last three
// seconds before a backup.
var racyMargin = 3 * time.Second

// errChangedWhileRead marks unchangedWhileRead's finding that the file
// changed, as opposed to a failure to stat it.
var errChangedWhileRead = errors.New("changed while it was read")

// unchangedWhileRead returns an error if the file of job, read through f
// (size bytes), changed while it was read: its size, modification or
// change time are not what they were when it was opened.
func (a *archiver) unchangedWhileRead(f *os.File, job *fileJob, size int64) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("saved as read, but whether it changed meanwhile is unknown: fstat: %w", err)
	}
	now := fileStat(&st)
	// A file removed while it was read (its last name unlinked: the
	// change time moves, nothing else) holds what it held: saved as
	// read, without a warning.
	removed := st.Nlink == 0 && now.CTime != job.st.CTime
	if size != job.st.Size || now.Size != job.st.Size || now.ModTime != job.st.ModTime || now.CTime != job.st.CTime && !removed {
		return fmt.Errorf("%w (%d bytes when opened, %d read, %d now): saved as read, which may mix its old and new content; back it up again once it is settled", errChangedWhileRead, job.st.Size, size, now.Size)
	}
	if now.CTime >= a.asOf.Add(-racyMargin).UnixNano() {
		// Changed since the backup began (or its filesystem snapshot
		// was taken), or just before: it may change
		// again within the same timestamp tick (coarse on NFS and on
		// kernels before 6.13) without its stat showing it, and the
		// files cache would then skip the new content for good. Read it
		// again next time.
		job.st.CTime = -1
	}
	return nil
}

func statOf(fi fs.FileInfo) FileStat {
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileStat(s)
	}
	return FileStat{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
}

func fileStat(s *syscall.Stat_t) FileStat {
	return FileStat{Size: s.Size, ModTime: s.Mtim.Nano(), CTime: s.Ctim.Nano(), Inode: s.Ino, Dev: uint64(s.Dev)}
}

func (a *archiver) nodeFromInfo(name string, fi fs.FileInfo) *Node {
	n := &Node{Name: name, Type: TypeDir, ModTime: fi.ModTime(), Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
	if fi.Mode().IsRegular() {
		n.Size = uint64(fi.Size())
	}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		n.UID, n.GID = s.Uid, s.Gid
		n.User, n.Group = a.ids.user(s.Uid), a.ids.group(s.Gid)
		if !fi.IsDir() {
			// A directory's atime moves whenever a backup lists it;
			// recording it would make every backup store new trees.
			n.AccessTime = time.Unix(s.Atim.Unix())
		}
		n.ChangeTime = time.Unix(s.Ctim.Unix())
		n.Inode, n.DeviceID, n.Links = s.Ino, uint64(s.Dev), uint64(s.Nlink)
		n.Device = uint64(s.Rdev)
		if !fi.Mode().IsRegular() || n.Links < 2 {
			n.Links = 0 // only hardlinked files need the count
		}
		if fi.Mode()&fs.ModeDevice == 0 {
			n.Device = 0
		}
	}
	return n
}

// Tree encoding holds times of the years 0 to 9999 (RFC 3339).
var (
	minTime = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// clampTimes brings n's times that no tree can hold (a file dated in
// the year 12,000 on a filesystem that allows it) to the nearest it can,
// with a warning: one such file must not fail every backup.
func (a *archiver) clampTimes(path string, n *Node) {
	clamped := false
	for _, t := range []*time.Time{&n.ModTime, &n.AccessTime, &n.ChangeTime} {
		switch {
		case t.IsZero():
		case t.Before(minTime):
			*t, clamped = minTime, true
		case t.After(maxTime):
			*t, clamped = maxTime, true
		}
	}
	if clamped {
		a.warnAs("time out of range", path, fmt.Errorf("a time of it lies outside the years 0 to 9999, which snapshots can hold: saved as %s or %s; set it right (touch) and back it up again", minTime.Format("2006-01-02"), maxTime.Format("2006-01-02")))
	}
}

// idNames caches uid/gid → name lookups.
type idNames struct {
	mu     sync.Mutex
	users  map[uint32]string
	groups map[uint32]string
}

func newIDNames() *idNames {
	return &idNames{users: map[uint32]string{}, groups: map[uint32]string{}}
}

func (c *idNames) user(uid uint32) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.users[uid]; ok {
		return n
	}
	name := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	c.users[uid] = name
	return name
}

func (c *idNames) group(gid uint32) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.groups[gid]; ok {
		return n
	}
	name := ""
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		name = g.Name
	}
	c.groups[gid] = name
	return name
}
