package restore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Options configure a restore.
type Options struct {
	Target  string   // directory to restore into; created if missing
	Include []string // restore only paths matching these patterns (snapshot-relative, snapshot.Pattern: filepath.Match with "**"; a match on a directory includes everything below it)
	// Exclude leaves out the paths these patterns match, and everything
	// below them, with backup's --exclude syntax (snapshot.Excluder): a
	// pattern without a slash matches any element of a path ("*.log"),
	// one with a slash the whole path as it was backed up
	// ("/home/*/.cache"). It applies after Include.
	Exclude []string
	Packs   int // pack ranges downloaded in parallel; 0 = 8
	// WriteBehind bounds the restored data left in the page cache: once
	// more than half of it waits for write-back the oldest is handed to
	// the kernel for it, and once more than all of it is cached the
	// oldest is waited for and dropped (see writeBehind); a write-back
	// error met then fails the files it hit (Result.Failures, with the
	// device's error). 0 = DefaultWriteBehind(); < 0 = off, everything
	// stays cached until the kernel writes it back.
	WriteBehind int64
	// DirectIO writes the aligned bulk of files of 1 MiB and more with
	// O_DIRECT where the target's filesystem supports it (see directIO),
	// bypassing the page cache. Each such write waits for the disk, so
	// no more than a quarter of the Packs fetchers write direct at once
	// (directSlots): a chunk that finds them all busy goes through the
	// page cache.
	DirectIO bool
	// Sync flushes the target's filesystem (syncfs) before Restore
	// returns, so that the restored data is on disk, and fails the
	// restore if the kernel reports a write-back error. Without it, the
	// write-back of the data still in the window when the restore ends
	// happens afterwards, and an error in it (EIO) is not reported, as
	// with cp or restic.
	Sync bool
	// DryRun plans the restore and compares it with what the target
	// holds, and writes nothing: Result says what a restore would
	// write, download, keep, replace and (with Delete) remove. The
	// target need not exist.
	DryRun bool
	// Overwrite decides what happens to an entry the target already
	// holds at a path the snapshot restores: OverwriteIfChanged (the
	// default, ""), OverwriteNever or OverwriteIfNewer.
	Overwrite Overwrite
	// Delete removes what the target holds and the snapshot does not,
	// once everything is restored: at or below the paths the snapshot
	// backed up (snapshot.Snapshot.Paths; not beside them in the
	// directories above them) and within what Include and Exclude
	// select, so that part of the target ends up holding exactly the
	// snapshot. Nothing below a directory whose listing could not be
	// read is removed.
	Delete bool
	// Protect names paths Delete never removes, nor anything in them or
	// any directory above them: the repository when it is a local
	// directory, the identity and key files, the cache. Directories
	// holding a mounted file system are never removed either. What is
	// spared so is listed in Result.Spared.
	Protect []string
	// Verify reads every restored file back once the restore has
	// written it and recomputes the keyed ID of each of its chunks. A
	// file that does not match fails like any other (removed, listed in
	// Result.Failures). Recently written data is read from the page
	// cache: this proves what the kernel was given, not the disk.
	Verify bool
	// NoXAttrs leaves the entries' extended attributes (and so ACLs and
	// file capabilities) unset.
	NoXAttrs bool
	// OnMetadataError, if set, is called with the path of every entry
	// whose data was restored but whose metadata (owner, mode, times,
	// extended attributes) could not all be set; Result keeps only a
	// count and the first few. Calls do not overlap.
	OnMetadataError func(path string, err error)
	Logger          *slog.Logger
	// Progress, if set, is updated as the restore runs.
	Progress *Progress
}

// Overwrite is what a restore does with an entry the target already
// holds at a path the snapshot restores (a file, a symlink, a device; a
// directory the target holds where the snapshot has one stays and gets
// the snapshot's metadata). It also decides whether an entry other than
// a directory where the snapshot has one is replaced; a directory with
// entries where the snapshot has something else is replaced only with
// Options.Delete, whatever the mode (conflicts.go).
type Overwrite string

const (
	// OverwriteIfChanged replaces it unless it is a file with the
	// snapshot's content, whose metadata is then set as the snapshot's.
	OverwriteIfChanged Overwrite = "if-changed"
	// OverwriteNever leaves it as it is, content and metadata: only
	// what is missing is restored.
	OverwriteNever Overwrite = "never"
	// OverwriteIfNewer replaces it (as OverwriteIfChanged) only if the
	// snapshot's modification time is later than its.
	OverwriteIfNewer Overwrite = "if-newer"
)

// ParseOverwrite checks an Overwrite mode's name; "" is the default.
func ParseOverwrite(s string) (Overwrite, error) {
	switch o := Overwrite(s); o {
	case "", OverwriteIfChanged:
		return OverwriteIfChanged, nil
	case OverwriteNever, OverwriteIfNewer:
		return o, nil
	}
	return "", fmt.Errorf("unknown overwrite mode %q: use if-changed, if-newer or never", s)
}

// keeps reports whether o leaves the entry st at a path where the
// snapshot has n as it is.
func (o Overwrite) keeps(st unix.Stat_t, n *snapshot.Node) bool {
	switch o {
	case OverwriteNever:
		return true
	case OverwriteIfNewer:
		return !n.ModTime.After(time.Unix(st.Mtim.Unix()))
	}
	return false
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
	// Removal marks a failure to remove what the target held at Path
	// and the snapshot does not hold (Options.Delete's extras, a
	// directory a file replaced), or to examine it for Options.Delete.
	// Path is then the target's entry, which may not be in the snapshot.
	Removal bool
}

func (f Failure) Error() string { return fmt.Sprintf("%s: %v", f.Path, f.Err) }

// Change is an entry of the target that a restore replaces or removes.
type Change struct {
	Path   string // snapshot-relative
	Action string // ActionReplace or ActionDelete
	Dir    bool   // the entry in the target is a directory (removed with all it holds)
}

// The actions of a Change.
const (
	ActionReplace = "replace" // the target holds something else at the path: it is overwritten
	ActionDelete  = "delete"  // the snapshot holds nothing at the path (Options.Delete)
)

// Result summarises a restore.
type Result struct {
	Files, Dirs, Symlinks, Other int64
	Bytes                        int64 // file bytes in the restored tree
	BytesWritten                 int64 // bytes actually written (skipped identical files excluded)
	BytesDirect                  int64 // of BytesWritten, written with direct I/O
	FilesSkipped                 int64 // already identical in the target
	Kept                         int64 // entries the target held, left as they were (Options.Overwrite; not in Files, Symlinks or Other)
	BytesDownloaded              int64 // pack bytes read: the ranges planned (in a dry run, to be read)
	FilesVerified                int64 // read back and found intact (Options.Verify; identical files count)
	Replaced                     int64 // in a dry run, entries of the target that would be replaced
	Deleted                      int64 // entries removed (Options.Delete; in a dry run, to be removed)
	Leftovers                    int64 // temporary files and directories of killed restores, removed (in a dry run, to be removed)
	// LeftoversKept lists such leftovers that were not removed, and why
	// (a mount point, an error).
	LeftoversKept []Failure
	// Spared lists what Delete left although the snapshot lacks it,
	// and why (a mount point, a protected path), sorted by path.
	Spared []Failure
	// Changes lists what the restore removed (Options.Delete) and, in a
	// dry run, every entry it would replace or remove, sorted by path.
	Changes  []Change
	Failures []Failure
	// MetadataErrors counts entries whose data was restored but whose
	// owner, mode, times or extended attributes could not all be set (an unprivileged user
	// cannot chown; some filesystems refuse modes or times).
	// MetadataSamples holds the first few of them, sorted by path.
	MetadataErrors  int64
	MetadataSamples []Failure
	// UnmatchedIncludes lists the Include patterns that selected nothing
	// in the snapshot (a typo, most likely: the restore then restored
	// less than was asked for). With Delete they are refused instead.
	UnmatchedIncludes []string
	// ExcludedIncludes lists those of UnmatchedIncludes that did match
	// paths of the snapshot, all of which an Exclude pattern left out.
	ExcludedIncludes []string
	// ExcludedPaths lists the backed-up paths an Exclude pattern left
	// out whole ("--exclude data" where /srv/data was backed up), so
	// nothing of them was restored.
	ExcludedPaths []string
	// BlobsFromCopies counts blobs whose first copy could not be read or
	// did not verify, restored from another copy the index lists (in
	// another pack). DamagedPacks names the packs that failed them by
	// being damaged or missing (not a read that failed otherwise),
	// sorted: the repository needs 'lifeboat check --read-data' and
	// 'lifeboat repair packs'.
	BlobsFromCopies int64
	DamagedPacks    []string
}

// mountInfo lists the mount points Options.Delete must not cross.
var mountInfo = "/proc/self/mountinfo"

// beforeFetch, if set (by tests), runs with the target directory once
// a restore has created its files of several chunks, before it
// downloads any data.
var beforeFetch func(target string)

// beforeVerify, if set (by tests), runs just before a restore with
// Options.Verify reads its files back.
var beforeVerify func(target string)

// maxMetadataSamples bounds Result.MetadataSamples: one failing
// filesystem can fail every entry, and the count says how many.
const maxMetadataSamples = 10

type restorer struct {
	repo *chunkstore.Repository
	t    *targetDir
	opts Options
	log  *slog.Logger
	prog *Progress

	mu          sync.Mutex
	failures    []Failure
	changes     []Change // Options.Delete's removals; a dry run's replacements too
	metaErrors  int64
	metaSamples []Failure
	written     atomic.Int64
	open        handles         // of files of several chunks
	bufs        chan *fetchBufs // reused download and plaintext buffers
	wb          *writeBehind
	dio         *directIO
	tmps        atomic.Uint32   // temporary names handed out (nextTmp)
	tmpsTaken   map[uint32]bool // numbers nextTmp skips (plan.tmpsTaken, keepLeftover); read-only once leftovers are swept
	guard       *deleteGuard    // what Options.Delete must leave
	guardOnce   sync.Once       // dirGuard
	guardErr    error
	spared      []Failure // what it left, and why
	// leftoversKept: what killed restores left that removeLeftovers could not remove, and why.
	leftoversKept    []Failure
	unmatched        []string // Include patterns that selected nothing
	excludedIncludes []string // those of them whose every match was excluded
	excludedPaths    []string // backed-up paths excluded whole

	// Blobs whose pack failed them, to be tried again from another copy
	// once the downloads are done (failBlobs, copyJobs).
	failedCopies []failedCopy
	tried        map[chunkstore.ID]*blobTries // blob → what its copies gave; between rounds only
	damaged      map[string]bool              // packs that failed a blob another copy delivered
	fromCopies   int64
	// moved are the packs the index named only once it was read again
	// because a pack was not found (reloadIndex): a prune's new packs,
	// holding what it repacked out of the ones it deleted.
	moved map[chunkstore.ID]bool
}

// failedCopy is a blob a pack failed: unreadable, missing, or not
// verifying.
type failedCopy struct {
	bj   blobJob
	pack chunkstore.ID
	err  error
}

// blobTries is what a blob's copies gave so far.
type blobTries struct {
	packs map[chunkstore.ID]error // tried, and why each failed
	first error                   // the first copy's failure, which the files report
}

// fetchBufs are one download worker's buffers: data holds the sealed
// blob being streamed (or, on the fallback path, a whole pack range);
// blobs stored raw are decrypted in place and written from it. plain
// holds one decompressed blob, or one placed for direct I/O. Reusing
// them keeps a restore from allocating — page faulting and zeroing — a
// fresh buffer for each of its hundreds of MiB of blobs.
type fetchBufs struct{ data, plain []byte }

// Restore writes snapshot snap into opts.Target. Every blob is
// authenticated and its keyed ID recomputed before a byte of it is
// written; a blob whose pack fails it is read from another copy the
// index lists, if any (Result.BlobsFromCopies), and a file whose data
// cannot be read or verified from any copy is reported as a Failure and
// removed, and everything else is still restored. The error
// is non-nil only when the restore could not run at all (no identity,
// unusable target, full disk, cancelled).
func Restore(ctx context.Context, repo *chunkstore.Repository, snap *snapshot.Snapshot, opts Options) (*Result, error) {
	if !repo.CanRead() {
		return nil, chunkstore.ErrNoIdentity
	}
	if opts.Packs <= 0 {
		opts.Packs = 8
	}
	if opts.WriteBehind == 0 {
		opts.WriteBehind = DefaultWriteBehind()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	overwrite, err := ParseOverwrite(string(opts.Overwrite))
	if err != nil {
		return nil, err
	}
	opts.Overwrite = overwrite
	if opts.Progress == nil {
		opts.Progress = &Progress{}
	}
	in, err := newIncluder(opts.Include, opts.Exclude)
	if err != nil {
		return nil, err
	}
	in.wayTo(snap.Paths)
	if opts.Delete {
		// What a snapshot lacks is what --delete removes; these lack
		// entries the source did hold.
		if snap.Summary.Errors > 0 {
			return nil, fmt.Errorf("snapshot %s is partial (its backup could not read %d entries, which it does not hold, or holds as empty directories): --delete would remove them from the target; restore it without --delete, or with --delete from an earlier snapshot that is complete", snap.ID.Short(), snap.Summary.Errors)
		}
		if _, ok := snap.RepairOf(); ok {
			return nil, fmt.Errorf("snapshot %s is a repaired copy (files whose data was lost are left out of it, directories whose listing was lost are empty in it): --delete would remove them from the target; restore it without --delete, or with --delete from an earlier snapshot that is complete", snap.ID.Short())
		}
	}
	var guard *deleteGuard
	if opts.Delete {
		if guard, err = newDeleteGuard(opts.Target, opts.Protect, mountInfo); err != nil {
			return nil, err
		}
	}
	if opts.DryRun {
		return dryRun(ctx, repo, snap, opts, in, guard)
	}
	root, err := openTarget(opts.Target)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	t, err := newTargetDir(root, opts.Target)
	if err != nil {
		return nil, err
	}
	t.noXAttrs = opts.NoXAttrs
	defer t.close()
	lock := t.lock(opts.Logger.Debug)
	defer lock.release()
	if err := repo.EnsureIndex(ctx); err != nil {
		return nil, err
	}
	r := &restorer{repo: repo, t: t, opts: opts, log: opts.Logger, prog: opts.Progress, bufs: make(chan *fetchBufs, opts.Packs), wb: newWriteBehind(opts.WriteBehind, opts.Sync), dio: newDirectIO(opts.DirectIO, directSlots(opts.Packs), opts.Logger), guard: guard}
	t.keepDir = r.keepDir
	t.removeFull = opts.Delete

	start := time.Now()
	lowerGC := raisePlanGC()
	defer lowerGC()
	mk := t.makeDirs(opts.Overwrite.keepsInTheWay)
	defer mk.wait() // before t is closed
	onDir := mk.add
	var later []*entry
	if opts.Delete {
		// A --delete that checkDeleteScope refuses must leave the target
		// as it was: its directories are made once the plan passed.
		onDir = func(e *entry) { later = append(later, e) }
	}
	pl, planFailures, err := planSnapshot(ctx, repo, snap, in, onDir, r.log)
	if err != nil {
		return nil, err
	}
	// The listings are read: the tree packs kept for them (up to 128 MiB
	// for a snapshot of millions of files) are not needed again.
	repo.ReleaseTrees()
	if err := checkDeleteScope(opts, snap, in); err != nil {
		return nil, err
	}
	r.unmatched, r.excludedIncludes = in.unmatched()
	r.excludedPaths = in.excludedRoots()
	for _, e := range later {
		mk.add(e)
	}
	r.failures = append(r.failures, planFailures...)
	r.tmpsTaken = pl.tmpsTaken
	r.prog.TotalFiles.Store(int64(len(pl.files) + len(pl.links)))
	r.prog.TotalBytes.Store(pl.bytes)

	if err := mk.wait(); err != nil {
		return nil, err
	}
	// Nothing below a directory that could not be created is restored,
	// nor removed (Delete).
	planFailures = append(planFailures, r.leaveOutBlocked(pl, mk.blocked)...)
	var leftovers int64
	if !t.fresh {
		leftovers = r.removeLeftovers(pl, lock)
		r.dirConflicts(pl)
		// Reading files back allocates a buffer per file: not under the
		// raised target.
		lowerGC()
		if err := r.findIdentical(ctx, pl.files, pl.links); err != nil {
			return nil, err
		}
	}
	// Less what was left out since (leaveOutBlocked, dirConflicts).
	r.prog.TotalFiles.Store(int64(len(pl.files) + len(pl.links)))
	r.prog.TotalBytes.Store(pl.bytes)
	if err := r.createFiles(pl.files); err != nil {
		// A target out of inodes: the files created so far are only
		// temporary names, removed as when a download fails (a full
		// target kept them all, holding the inodes a rerun needs).
		r.closeAll()
		r.wb.drain()
		r.unplaced(pl.files)
		return nil, err
	}
	jobs := pl.packJobs()
	if opts.DirectIO { // without it, every range is of one kind
		jobs = interleave(jobs)
	}
	lowerGC()
	r.log.Debug("restore planned", "files", len(pl.files), "dirs", len(pl.dirs), "bytes", pl.bytes, "pack_ranges", len(jobs), "write_behind_window", opts.WriteBehind, "took", time.Since(start).Round(time.Millisecond))
	if beforeFetch != nil {
		beforeFetch(opts.Target)
	}
	fetchStart := time.Now()
	var arena *bufferArena
	if n := min(opts.Packs, len(jobs)); n > 0 {
		arena = newBufferArena(n)
		for _, b := range arena.buffers(n) {
			r.bufs <- b
		}
	}
	err = r.fetchWithCopies(ctx, &jobs)
	if err == nil {
		err = r.restoreHeirs(ctx, pl, &jobs)
	}
	// No fetch holds a buffer now: give them back before the files are
	// read back (Verify) or the restore returns.
	arena.release()
	for len(r.bufs) > 0 {
		<-r.bufs
	}
	if err != nil {
		r.closeAll()
	}
	// Close the files the window still holds; their last data is left
	// to the kernel's write-back (or to Sync, below).
	r.wb.drain()
	if err != nil {
		r.unplaced(pl.files)
		return nil, err
	}
	r.log.Debug("restore downloads done", "took", time.Since(fetchStart).Round(time.Millisecond), "direct_bytes", r.dio.written.Load())
	res := &Result{Leftovers: leftovers, BlobsFromCopies: r.fromCopies, DamagedPacks: slices.Sorted(maps.Keys(r.damaged))}
	for _, j := range jobs {
		res.BytesDownloaded += j.end - j.start
	}
	if opts.Verify {
		if beforeVerify != nil {
			beforeVerify(opts.Target)
		}
		verifyStart := time.Now()
		if res.FilesVerified, err = r.verify(ctx, pl.files); err != nil {
			return nil, err
		}
		r.log.Debug("restored files read back", "intact", res.FilesVerified, "took", time.Since(verifyStart).Round(time.Millisecond))
	}
	for _, f := range pl.files {
		if f.failed != nil {
			var aside *leftAsideError
			if f.tmp != 0 && !f.placed {
				if f.held && !errors.As(f.failed, &aside) && !errors.Is(f.failed, unix.ENOTEMPTY) { // gainedEntries says so already
					f.failed = fmt.Errorf("%w (what the target held there is left as it was)", f.failed)
				}
				r.fail(f.path, f.failed)
				_ = t.clearTmp(f.tmpPath())
				continue
			}
			r.fail(f.path, f.failed)
			if !f.unnamed || f.placed {
				_ = t.clear(f.path)
			}
			continue
		}
		res.count(f)
	}
	for _, f := range pl.links {
		if r.settledLink(f, res) {
			continue
		}
		if err := t.clear(f.path); err != nil {
			r.fail(f.path, fmt.Errorf("remove what the target holds there: %w", err))
			continue
		}
		if err := t.link(f.linkTo.path, f.path); err != nil {
			r.fail(f.path, r.entryError(fmt.Errorf("hard link: %w", err)))
			continue
		}
		res.Files++
		r.prog.Files.Add(1)
		if opts.Verify && !f.linkTo.keep {
			res.FilesVerified++ // the same file as its first name, read back above
		}
	}
	for _, o := range pl.others {
		if r.kept(o.path, o.node) {
			res.Kept++
			continue
		}
		if err := r.other(o); err != nil {
			r.fail(o.path, r.entryError(err))
			continue
		}
		if o.node.Type == snapshot.TypeSymlink {
			res.Symlinks++
		} else {
			res.Other++
		}
	}
	if opts.Delete && !t.fresh {
		deleteStart := time.Now()
		if err := r.deleteExtraneous(ctx, pl, snap.Paths, planFailures, in); err != nil {
			return nil, err
		}
		res.Deleted = int64(len(r.changes))
		r.log.Debug("removed what the snapshot does not hold", "entries", res.Deleted, "took", time.Since(deleteStart).Round(time.Millisecond))
	}
	metaStart := time.Now()
	r.dirMeta(pl.dirs)
	res.Dirs = int64(len(pl.dirs))
	r.log.Debug("restore directory metadata applied", "dirs", len(pl.dirs), "took", time.Since(metaStart).Round(time.Millisecond))
	if opts.Sync {
		syncStart := time.Now()
		if err := t.syncfs(); err != nil {
			if r.fatal(err) {
				return nil, targetError(opts.Target, err)
			}
			return nil, fmt.Errorf("flush the data restored into %s to disk (syncfs): %w: the kernel could not write all of it back, so some restored files may not be on disk; check the disk (dmesg) and restore into a new directory", opts.Target, err)
		}
		r.log.Debug("restore flushed to disk", "took", time.Since(syncStart).Round(time.Millisecond))
	}
	res.BytesWritten = r.written.Load()
	res.BytesDirect = r.dio.written.Load()
	r.report(res)
	return res, nil
}

// count adds f, a file the restore did not fail, to res: as kept, or as
// restored (and then perhaps found identical).
func (res *Result) count(f *fileState) {
	if f.keep {
		res.Kept++
		return
	}
	res.Files++
	res.Bytes += f.size
	if f.skip {
		res.FilesSkipped++
	}
}

// report puts what r collected into res, each list sorted by path.
func (r *restorer) report(res *Result) {
	byPath := func(fs []Failure) []Failure {
		sort.Slice(fs, func(i, j int) bool { return fs[i].Path < fs[j].Path })
		return fs
	}
	res.Failures, res.Spared, res.MetadataSamples = byPath(r.failures), byPath(r.spared), byPath(r.metaSamples)
	res.LeftoversKept = byPath(r.leftoversKept)
	res.MetadataErrors = r.metaErrors
	res.UnmatchedIncludes, res.ExcludedIncludes, res.ExcludedPaths = r.unmatched, r.excludedIncludes, r.excludedPaths
	sort.Slice(r.changes, func(i, j int) bool { return r.changes[i].Path < r.changes[j].Path })
	res.Changes = r.changes
}

// planSnapshot walks snap's trees into a plan of what in selects,
// calling onDir (if set) with each directory to create, parents first,
// while the walk goes on. Content no readable index lists is looked for
// in the packs no index lists, and the walk made again if they hold any.
func planSnapshot(ctx context.Context, repo *chunkstore.Repository, snap *snapshot.Snapshot, in *includer, onDir func(*entry), log *slog.Logger) (*plan, []Failure, error) {
	pl := &plan{onDir: onDir}
	if _, ok := repo.Index().Lookup(snap.Tree); !ok {
		if _, err := repo.IndexUnindexed(ctx); err != nil {
			log.Warn("could not scan unindexed packs", "err", err)
		}
	}
	failures, err := pl.build(ctx, repo, snap.Tree, in)
	if err == nil && needsUnindexed(failures) {
		// Some content is not in any readable index. Packs that no
		// index lists may still hold it: index them in memory (each
		// is verified) and plan again.
		if n, serr := repo.IndexUnindexed(ctx); serr != nil {
			log.Warn("could not scan unindexed packs", "err", serr)
		} else if n > 0 {
			log.Info("using packs no index lists", "packs", n)
			var handed map[string]*entry
			if onDir != nil {
				handed = make(map[string]*entry, len(pl.dirs))
				for _, d := range pl.dirs {
					handed[d.path] = d
				}
			}
			pl = &plan{onDir: onDir, handed: handed}
			failures, err = pl.build(ctx, repo, snap.Tree, in)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read snapshot %s: %w", snap.ID.Short(), err)
	}
	return pl, failures, nil
}

// checkDeleteScope refuses Options.Delete with an include pattern that
// selected nothing in the snapshot: the snapshot then holds nothing of
// what the pattern selects, and everything it selects in the target
// would go — more likely a mistyped pattern than the intent.
func checkDeleteScope(opts Options, snap *snapshot.Snapshot, in *includer) error {
	if !opts.Delete {
		return nil
	}
	none, excluded := in.unmatched()
	if len(none) == 0 {
		return nil
	}
	if slices.Contains(excluded, none[0]) {
		return fmt.Errorf("--include %q matches only paths of snapshot %s that an --exclude pattern leaves out, so --delete would remove everything else it matches in the target: drop the pattern or the --exclude, or restore without --delete", none[0], snap.ID.Short())
	}
	return fmt.Errorf("--include %q matches nothing in snapshot %s, so --delete would remove everything it matches in the target: check the pattern (patterns are snapshot-relative, like etc/nginx), or restore without --delete", none[0], snap.ID.Short())
}

func needsUnindexed(fs []Failure) bool {
	for _, f := range fs {
		if errors.Is(f.Err, errNotIndexed) {
			return true
		}
	}
	return false
}

func openTarget(dir string) (*os.Root, error) {
	exists, err := statTarget(dir)
	if err != nil {
		return nil, err
	}
	if !exists {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create restore target: %w", unwritableTarget(dir, err))
		}
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
		return nil, unwritableTarget(dir, err)
	}
	if f != nil {
		f.Close()
	}
	if f != nil { // never an entry of that name the target already held
		_ = root.Remove(probe)
	}
	return root, nil
}

// statTarget reports whether the restore target dir exists, and fails
// if it is not a directory.
func statTarget(dir string) (exists bool, err error) {
	if dir == "" {
		return false, errors.New("restore: no target directory given (--target)")
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, syscall.ENAMETOOLONG):
		return false, fmt.Errorf("restore target %s is %d bytes long, more than the kernel takes (PATH_MAX, 4096 bytes): choose a shorter target; the tree restored into it may be as deep as it is: %w", dir, len(dir), syscall.ENAMETOOLONG)
	case err == nil && !fi.IsDir():
		return false, fmt.Errorf("restore target %s exists and is not a directory; choose an empty or new directory", dir)
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("restore target: %w", err)
	}
	return true, nil
}

// unwritableTarget is the error for a target directory the restore
// cannot write into, with the way out.
func unwritableTarget(dir string, err error) error {
	fix := "run the restore as a user that may write there, or choose another --target"
	switch {
	case errors.Is(err, syscall.EROFS):
		fix = "it is on a read-only file system: remount it read-write, or choose another --target"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		fix = "its file system is full (of space or inodes) or the quota used up: free space, or choose another --target"
	}
	return fmt.Errorf("restore target %s is not writable: %w; %s", dir, err, fix)
}

func (r *restorer) fail(p string, err error) { r.record(Failure{Path: p, Err: err}) }

// failRemoval records that an entry the target held at p, which the
// snapshot does not hold, could not be removed (or for Options.Delete,
// examined).
func (r *restorer) failRemoval(p string, err error) {
	r.record(Failure{Path: p, Err: err, Removal: true})
}

func (r *restorer) record(f Failure) {
	r.mu.Lock()
	r.failures = append(r.failures, f)
	r.mu.Unlock()
	r.log.Warn("restore failed for path", "path", f.Path, "err", f.Err, "removal", f.Removal)
}

// meta records a failure to apply metadata. Such failures do not fail
// the restore (the data is there); they are counted, the first few kept
// for the report, and each logged at debug level.
func (r *restorer) meta(err error, p string) {
	if err == nil {
		return
	}
	r.log.Debug("could not restore all metadata", "path", p, "err", err)
	r.mu.Lock()
	r.metaErrors++
	if len(r.metaSamples) < maxMetadataSamples {
		r.metaSamples = append(r.metaSamples, Failure{Path: p, Err: err})
	}
	if r.opts.OnMetadataError != nil {
		r.opts.OnMetadataError(p, err)
	}
	r.mu.Unlock()
}

// settledLink reports whether hard link f needs nothing more: its first
// name failed (f fails too) or Options.Overwrite keeps what the target
// holds at f's path (counted in res).
func (r *restorer) settledLink(f *fileState, res *Result) bool {
	if f.linkTo.failed != nil {
		r.fail(f.path, fmt.Errorf("hard link to /%s, which failed", f.linkTo.path))
		return true
	}
	if r.kept(f.path, f.node()) {
		res.Kept++
		r.prog.Files.Add(1)
		return true
	}
	if f.linkTo.keep {
		// Its first name is what the target held there, kept by
		// Options.Overwrite: a link to it gets the snapshot's content
		// only if that is what it holds (and is a regular file).
		var buf []byte
		if err := r.checkContent(f.linkTo, nil, &buf, false); err != nil {
			r.fail(f.path, fmt.Errorf("not linked: it is a hard link to /%s in the snapshot, and what the target holds there, which --overwrite %s kept, is not the snapshot's file (%v); restore /%s too (--overwrite if-changed), or into another directory", f.linkTo.path, r.opts.Overwrite, err, f.linkTo.path))
			return true
		}
	}
	return false
}

// kept reports whether Options.Overwrite leaves the entry the target
// holds at p, where the snapshot has n, as it is.
func (r *restorer) kept(p string, n *snapshot.Node) bool {
	if r.opts.Overwrite == OverwriteIfChanged || r.t == nil || r.t.fresh { // r.t: nil in a dry run into a new directory
		return false
	}
	st, err := r.t.lstat(p)
	return err == nil && r.opts.Overwrite.keeps(st, n)
}

// fatal reports errors that end the restore: the target's file system
// cannot take more data (full, out of quota, or read-only). EROFS from a
// read-only file system mounted below the target is not: it fails only
// the entries on that file system (onReadOnlyMount), and the restore
// goes on with the rest. (Whose EROFS it is is asked only once one
// occurs.)
func (r *restorer) fatal(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	return errors.Is(err, syscall.EROFS) && (r.t == nil || r.t.readOnly())
}

// entryError is err, which fails one entry, with what to do where it
// is an EROFS of a read-only file system mounted inside the target.
func (r *restorer) entryError(err error) error {
	if !errors.Is(err, syscall.EROFS) || r.fatal(err) {
		return err
	}
	return fmt.Errorf("%w: it is on a read-only file system mounted inside the restore target; remount that read-write and run the restore again, or leave it out (--exclude), or restore into another directory", err)
}

// writeError is the error for an entry p that could not be written:
// one that ends the restore (targetError), or one of this entry alone.
func (r *restorer) writeError(p string, err error) error {
	if r.fatal(err) {
		return targetError(p, err)
	}
	return fmt.Errorf("write /%s: %w", p, err)
}

func targetError(p string, err error) error {
	// p is the snapshot's path, relative to the target: named as the
	// snapshot (and every other message) names it.
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("restore target is full while writing /%s: free space or restore elsewhere (files already restored are kept; rerun to resume): %w", p, err)
	}
	if errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("restore target is read-only while writing /%s: %w", p, err)
	}
	return fmt.Errorf("write /%s: %w", p, err)
}

// nextTmp returns the number of a new temporary name (fileState.tmpPath),
// one no entry of the snapshot is named (plan.takeTmp).
func (r *restorer) nextTmp() uint32 {
	for {
		if n := r.tmps.Add(1); !r.tmpsTaken[n] {
			return n
		}
	}
}

// findIdentical marks files whose target copy already has the snapshot's
// content, by recomputing the keyed ID of each chunk in place, and those
// Options.Overwrite leaves as they are.
func (r *restorer) findIdentical(ctx context.Context, files, links []*fileState) error {
	// The other names each hard-link group has in this restore.
	others := map[*fileState][]string{}
	for _, l := range links {
		others[l.linkTo] = append(others[l.linkTo], l.path)
	}
	bufs := make(readBufs, verifyWorkers)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(verifyWorkers)
	for _, f := range files {
		st, err := r.t.lstat(f.path)
		if err != nil {
			continue
		}
		if r.opts.Overwrite.keeps(st, f.node()) {
			f.keep = true
			continue
		}
		// Unless found identical, written under a temporary name and
		// put in place once complete (place).
		f.tmp, f.held = r.nextTmp(), true
		if st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Size != f.size {
			continue
		}
		// A file with more names than those of its group in this
		// restore that the target links to it (two files the snapshot
		// holds apart, or a link to a file outside the target) is
		// replaced, not taken as identical: setting this entry's mode,
		// owner and times would set the other names' too, and its group
		// would be linked to them.
		if st.Nlink > 1 && uint64(st.Nlink) > r.linkedNames(&st, others[f]) {
			continue
		}
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			if bufs.check(r, f, &st, false) == nil {
				f.skip = true
			}
			return nil
		})
	}
	return g.Wait()
}

// linkedNames counts the names the target file st has among its own
// path and names, the other paths of its hard-link group.
func (r *restorer) linkedNames(st *unix.Stat_t, names []string) uint64 {
	n := uint64(1)
	for _, p := range names {
		if o, err := r.t.lstat(p); err == nil && o.Dev == st.Dev && o.Ino == st.Ino {
			n++
		}
	}
	return n
}

// createFiles finishes identical and empty files, and creates every file
// of more than one chunk at its final size (holes stay sparse) so its
// chunks can be written in any order. Single-chunk files, most files by
// count, are created when their blob arrives.
func (r *restorer) createFiles(files []*fileState) error {
	// A file that cannot be created fails alone (an immutable entry in
	// its place, a directory there that is not removed, a directory it
	// may not write to), as one that cannot be written does; a target
	// that takes no more data ends the restore.
	failed := func(f *fileState, err error) error {
		if r.fatal(err) {
			return targetError(f.path, err)
		}
		r.setFailed(f, err)
		return nil
	}
	for _, f := range files {
		switch {
		case f.keep:
			r.prog.Files.Add(1)
			r.prog.Bytes.Add(f.size)
		case f.skip:
			r.meta(r.t.setMetaAt(f.path, f.node(), true), f.path)
			r.prog.Files.Add(1)
			r.prog.Bytes.Add(f.size)
		case len(f.chunks) == 0:
			n := f.node()
			perm := createPerm(n)
			fh, err := r.t.create(f.path, perm)
			if err != nil {
				if err := failed(f, err); err != nil {
					return err
				}
				continue
			}
			r.meta(r.t.setMetaFD(fh, f.path, n, perm), f.path)
			if err := fh.Close(); err != nil {
				if err := failed(f, err); err != nil {
					return err
				}
				continue
			}
			r.prog.Files.Add(1)
		case len(f.chunks) == 1:
			f.direct = r.dio.wants(f)
			// Not under its own name until complete, though written in
			// one go: a restore killed (or out of space) while writing
			// it must not leave it partly written there, where a rerun
			// with --overwrite never or if-newer would keep it. It is
			// created without a name and linked in when its blob
			// arrives (writeSingle), or under a temporary name it is
			// renamed from: where the target holds something at its
			// path (f.tmp is set already), for direct I/O (which
			// opens it again by name), and where the filesystem cannot.
			if f.direct && f.tmp == 0 {
				f.tmp = r.nextTmp()
			}
			// Until linked in, nothing at its path is the restore's:
			// should it fail, the cleanup must leave the path alone.
			f.unnamed = f.tmp == 0
		case len(f.chunks) > 1:
			f.direct = r.dio.wants(f)
			// Under a temporary name even where the target holds
			// nothing: interrupted, a file written for seconds must not
			// be left partly written under its own name, where a later
			// restore with --overwrite never would keep it.
			if f.tmp == 0 {
				f.tmp = r.nextTmp()
			}
			fh, err := r.createTmp(f, 0o600)
			if err == nil {
				if err = f.made(fh); err == nil {
					err = fh.Truncate(f.size)
				}
				if err != nil {
					fh.Close()
				} else {
					err = fh.Close()
				}
			}
			if err != nil {
				if err := failed(f, err); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// fetch downloads one pack range, verifies each blob and writes it to
// every file position that needs it. The range is streamed and each
// blob handled as soon as its bytes are in (stream); if the stream
// cannot be opened or breaks off, what is left of the range is read
// whole, with retries, and failing that blob by blob.
func (r *restorer) fetch(ctx context.Context, j *packJob) error {
	key, err := r.repo.PackKey(j.pack)
	if err != nil {
		r.failBlobs(j.pack, j.blobs, err)
		return nil
	}
	op := r.repo.Opener(key)
	name := chunkstore.PackName(j.pack.ID)
	var b *fetchBufs
	select {
	case b = <-r.bufs:
	default:
		b = &fetchBufs{data: make([]byte, 0, maxHeld)}
	}
	defer func() {
		select {
		case r.bufs <- b:
		default:
		}
	}()
	b.reserve(j)
	done, err := r.stream(ctx, j, op, name, b)
	if err != nil || done == len(j.blobs) {
		return err
	}
	return r.fetchWhole(ctx, j.pack, j.blobs[done:], op, name, b)
}

// reserve makes room in b.plain for the largest blob of j, the
// decoder's slack (chunkstore.DecodeSlack), so decompression never
// allocates, and the shift that aligns a blob for direct I/O.
func (b *fetchBufs) reserve(j *packJob) {
	need := 0
	for _, bj := range j.blobs {
		need = max(need, int(bj.blob.RawLength)+chunkstore.DecodeSlack+directAlign)
	}
	if cap(b.plain) < need {
		b.plain = make([]byte, 0, max(need+need/4, 2<<20))
	}
}

// stream reads j's range as a stream, one blob at a time into the start
// of b.data, so that each is decrypted, decoded and hashed while its
// bytes are still in the CPU's cache. It returns how many of j's blobs
// it handled; the caller fetches the rest another way. err is set only
// when the restore must stop.
func (r *restorer) stream(ctx context.Context, j *packJob, op *chunkstore.BlobOpener, name string, b *fetchBufs) (done int, err error) {
	rc, err := chunkstore.OpenRange(ctx, r.repo.Store(), name, j.start, j.end-j.start)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if errors.Is(err, chunkstore.ErrUnreachable) {
			return 0, err // names the pack
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			r.log.Debug("could not stream a pack range, reading it whole", "pack", name, "err", err)
		}
		return 0, nil
	}
	defer func() {
		// Every blob read was authenticated; a stream that fails only
		// here (a server that sent more than asked) is worth a word.
		if cerr := rc.Close(); cerr != nil && err == nil && done == len(j.blobs) {
			r.log.Warn("pack range read, but closing its stream failed", "pack", name, "err", cerr)
		}
	}()
	pos := j.start
	for i, bj := range j.blobs {
		off, n := int64(bj.blob.Offset), int64(bj.blob.Length)
		if int64(cap(b.data)) < max(n, off-pos) {
			b.data = make([]byte, 0, max(n, off-pos))
		}
		if off > pos { // a gap left between two needed blobs
			if _, err := io.ReadFull(rc, b.data[:off-pos]); err != nil {
				return r.streamBroke(ctx, name, i, err)
			}
		}
		sealed := b.data[:n]
		if _, err := io.ReadFull(rc, sealed); err != nil {
			return r.streamBroke(ctx, name, i, err)
		}
		pos = off + n
		if err := r.deliver(op, j.pack, name, bj, sealed, b); err != nil {
			return i, err
		}
	}
	return len(j.blobs), nil
}

// streamBroke notes a stream that failed before blob i of its range.
func (r *restorer) streamBroke(ctx context.Context, name string, i int, err error) (int, error) {
	if ctx.Err() != nil {
		return i, ctx.Err()
	}
	r.log.Debug("pack range stream broke off, reading the rest whole", "pack", name, "err", err)
	return i, nil
}

// fetchWhole reads the range of pack that holds blobs into b.data, in
// requests (retried) of at most maxHeld bytes, and handles the blobs.
func (r *restorer) fetchWhole(ctx context.Context, pack *chunkstore.PackEntry, blobs []blobJob, op *chunkstore.BlobOpener, name string, b *fetchBufs) error {
	for _, p := range ranges(pack, blobs, maxHeld) {
		if err := r.fetchHeld(ctx, p, op, name, b); err != nil {
			return err
		}
	}
	return nil
}

// fetchHeld reads j's range into b.data in one request (retried) and
// handles its blobs. If the range cannot be read, each blob is tried on
// its own, so that only damaged ones fail; but not after an error the
// store's retries gave up on (an outage, a stalled server): each blob's
// request would wait through the same retries again, which made a
// restore from a stopped server take hours. A store found unreachable
// (chunkstore.ErrUnreachable) stops the restore.
func (r *restorer) fetchHeld(ctx context.Context, j *packJob, op *chunkstore.BlobOpener, name string, b *fetchBufs) error {
	data, err := chunkstore.GetInto(ctx, r.repo.Store(), name, j.start, j.end-j.start, b.data)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, chunkstore.ErrUnreachable) {
			// The store stopped answering: every other pack would
			// fail the same way, so the restore stops here.
			return err // names the pack
		}
		if len(j.blobs) == 1 || !chunkstore.IsPermanent(err) {
			r.failBlobs(j.pack, j.blobs, fmt.Errorf("read %s: %w", name, err))
			return nil
		}
		for _, bj := range j.blobs {
			single := &packJob{pack: j.pack, start: int64(bj.blob.Offset), end: int64(bj.blob.Offset) + int64(bj.blob.Length), blobs: []blobJob{bj}}
			if err := r.fetchHeld(ctx, single, op, name, b); err != nil {
				return err
			}
		}
		return nil
	}
	if cap(data) > cap(b.data) {
		b.data = data[:0]
	}
	for _, bj := range j.blobs {
		off := int64(bj.blob.Offset) - j.start
		if err := r.deliver(op, j.pack, name, bj, data[off:off+int64(bj.blob.Length)], b); err != nil {
			return err
		}
	}
	return nil
}

// deliver verifies one sealed blob and writes its plaintext to every
// file position that needs it. The range is read once and each blob
// used once, so it is decrypted where it lies, or, if its first target
// is written with direct I/O, decoded at the address that target needs.
// A blob that fails verification fails its files; the error is set only
// when the restore must stop.
func (r *restorer) deliver(op *chunkstore.BlobOpener, pack *chunkstore.PackEntry, name string, bj blobJob, sealed []byte, b *fetchBufs) error {
	var plain []byte
	var err error
	if t := bj.targets[0]; t.file.direct && int64(bj.blob.RawLength) >= directMinSpan {
		plain, err = op.OpenInto(bj.blob, sealed, placeDirect(b.plain, t.offset))
	} else {
		plain, err = op.OpenInPlace(bj.blob, sealed, b.plain)
	}
	if err != nil {
		r.failBlobs(pack, []blobJob{bj}, fmt.Errorf("%s: %w", name, err))
		return nil
	}
	if t := r.tried[bj.blob.ID]; t != nil { // an earlier copy failed
		r.mu.Lock()
		failed := false
		for p, err := range t.packs {
			// A pack a prune deleted once it had moved the blob to
			// the one it came from failed nothing.
			if errors.Is(err, chunkstore.ErrNotFound) && r.moved[pack.ID] {
				continue
			}
			failed = true
			// Named for 'repair packs' only if the pack is damaged or
			// missing, not for a read that failed otherwise (an outage
			// longer than the retries).
			if errors.Is(err, chunkstore.ErrCorrupt) || errors.Is(err, chunkstore.ErrNotFound) {
				r.damaged[chunkstore.PackName(p)] = true
			}
		}
		if failed {
			r.fromCopies++
		}
		r.mu.Unlock()
	}
	zero := isZero(plain)
	for _, t := range bj.targets {
		if err := r.writeAt(t, plain, zero); err != nil {
			return err
		}
	}
	return nil
}

// failBlobs sets aside blobs that pack failed, to be tried from their
// other copies, if any, once the downloads are done (copyJobs).
func (r *restorer) failBlobs(pack *chunkstore.PackEntry, blobs []blobJob, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, bj := range blobs {
		r.failedCopies = append(r.failedCopies, failedCopy{bj: bj, pack: pack.ID, err: err})
	}
}

// fetchAll downloads jobs, opts.Packs at a time.
func (r *restorer) fetchAll(ctx context.Context, jobs []*packJob) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Packs)
	for _, j := range jobs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return r.fetch(gctx, j) })
	}
	return g.Wait()
}

// copyJobs plans the next round for the blobs the last one failed
// (failBlobs): each from a copy in a pack not yet tried for it. Those
// with none left fail their files, with the first copy's error.
func (r *restorer) copyJobs() []*packJob {
	r.mu.Lock()
	failed := r.failedCopies
	r.failedCopies = nil
	r.mu.Unlock()
	if len(failed) == 0 {
		return nil
	}
	if r.tried == nil {
		r.tried = map[chunkstore.ID]*blobTries{}
		r.damaged = map[string]bool{}
	}
	ids := map[chunkstore.ID]bool{}
	perPack := map[chunkstore.ID]int{}
	for _, fc := range failed {
		id := fc.bj.blob.ID
		t := r.tried[id]
		if t == nil {
			t = &blobTries{packs: map[chunkstore.ID]error{}, first: fc.err}
			r.tried[id] = t
		}
		t.packs[fc.pack] = fc.err
		ids[id] = true
		if perPack[fc.pack]++; perPack[fc.pack] == 1 {
			r.log.Debug("could not read blobs from a pack; looking for other copies", "pack", chunkstore.PackName(fc.pack), "first_blob", id.Short(), "err", fc.err)
		}
	}
	copies := r.repo.Index().Copies(ids, nil)
	byPack := map[*chunkstore.PackEntry][]blobJob{}
	var packs []*chunkstore.PackEntry
	for _, fc := range failed {
		id := fc.bj.blob.ID
		t := r.tried[id]
		var next *chunkstore.Location
		for i, l := range copies[id] {
			if _, tried := t.packs[l.Pack.ID]; !tried && l.Blob.Type == chunkstore.DataBlob {
				next = &copies[id][i]
				break
			}
		}
		if next == nil {
			err := t.first
			switch n := len(t.packs) - 1; {
			case n == 1:
				err = fmt.Errorf("%w (its other copy failed too)", err)
			case n > 1:
				err = fmt.Errorf("%w (its %d other copies failed too)", err, n)
			}
			r.giveUp(fc.bj, err)
			continue
		}
		bj := fc.bj
		bj.blob = next.Blob
		if byPack[next.Pack] == nil {
			packs = append(packs, next.Pack)
		}
		byPack[next.Pack] = append(byPack[next.Pack], bj)
	}
	var jobs []*packJob
	for _, p := range packs {
		bjs := byPack[p]
		slices.SortFunc(bjs, func(a, b blobJob) int { return cmp.Compare(a.blob.Offset, b.blob.Offset) })
		jobs = append(jobs, ranges(p, bjs, maxRange)...)
	}
	return jobs
}

// fetchWithCopies fetches jobs, then the blobs a pack failed from their
// other copies, and those that fail there too from the next copies; the
// jobs of the copies are added to jobs.
func (r *restorer) fetchWithCopies(ctx context.Context, jobs *[]*packJob) error {
	err := r.fetchAll(ctx, *jobs)
	for err == nil {
		r.reloadIndex(ctx)
		more := r.copyJobs()
		if len(more) == 0 {
			break
		}
		err = r.fetchAll(ctx, more)
		*jobs = append(*jobs, more...)
	}
	return err
}

// reloadIndex reads the index files written since the restore began if
// a pack it read from was not found: a prune repacks the packs it plans
// from (restores hold no prune back), and deletes them once it has
// copied what they hold that snapshots need into new packs and indexed
// those. copyJobs then takes the blobs from there. It runs between
// rounds of downloads, with none under way.
func (r *restorer) reloadIndex(ctx context.Context) {
	r.mu.Lock()
	gone := false
	for _, fc := range r.failedCopies {
		gone = gone || errors.Is(fc.err, chunkstore.ErrNotFound)
	}
	r.mu.Unlock()
	if !gone {
		return
	}
	known := map[chunkstore.ID]bool{}
	for _, p := range r.repo.Index().Packs() {
		known[p.ID] = true
	}
	if err := r.repo.LoadIndex(ctx); err != nil {
		// The copies the index already named are still tried.
		r.log.Warn("could not read the index again for the packs not found", "err", err)
	}
	if r.moved == nil {
		r.moved = map[chunkstore.ID]bool{}
	}
	for _, p := range r.repo.Index().Packs() {
		if !known[p.ID] {
			r.moved[p.ID] = true
		}
	}
}

// restoreHeirs restores, once the downloads are done, the content of
// each file that failed at its own path (its directory made read-only
// meanwhile, a rename into place refused), not for want of its data, at
// the first of its hard links still planned, and links the group's
// other names to that one (as passOn does for a name left out of the
// plan): otherwise they would all fail with it. Their data is downloaded
// again; the jobs are added to jobs.
func (r *restorer) restoreHeirs(ctx context.Context, pl *plan, jobs *[]*packJob) error {
	var out map[*fileState]*fileState
	for _, l := range pl.links {
		f := l.linkTo
		if _, ok := out[f]; ok || f.keep || f.skip {
			continue
		}
		var data dataError
		if err := r.failedErr(f); err == nil || errors.As(err, &data) {
			continue
		}
		out = leftOut(out, f)
	}
	n := len(pl.files)
	pl.passOn(out)
	heirs := pl.files[n:]
	if len(heirs) == 0 {
		return nil
	}
	for _, f := range heirs {
		r.prog.TotalBytes.Add(f.size)
	}
	if !r.t.fresh {
		if err := r.findIdentical(ctx, heirs, pl.links); err != nil {
			return err
		}
	}
	if err := r.createFiles(heirs); err != nil {
		return err
	}
	more := (&plan{files: heirs}).packJobs()
	if r.opts.DirectIO {
		more = interleave(more)
	}
	err := r.fetchWithCopies(ctx, &more)
	*jobs = append(*jobs, more...)
	return err
}

// giveUp fails bj's files: no copy of it could be read.
func (r *restorer) giveUp(bj blobJob, err error) {
	err = dataError{err}
	for _, t := range bj.targets {
		r.setFailed(t.file, err)
		r.blobDone(t.file)
	}
}

// dataError is the failure of a file whose data could not be read from
// the repository, as opposed to one its path in the target refused.
type dataError struct{ err error }

func (e dataError) Error() string { return e.err.Error() }
func (e dataError) Unwrap() error { return e.err }

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	return len(bytes.TrimLeft(b, "\x00")) == 0
}

// failedErr is f's failure so far, read under the lock setFailed writes
// it under.
func (r *restorer) failedErr(f *fileState) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return f.failed
}

func (r *restorer) setFailed(f *fileState, err error) {
	err = r.entryError(err)
	r.mu.Lock()
	if f.failed == nil {
		f.failed = err
	}
	r.mu.Unlock()
}

func (r *restorer) writeAt(t target, plain []byte, zero bool) error {
	f := t.file
	if len(f.chunks) == 1 {
		return r.writeSingle(f, plain, zero)
	}
	if !zero { // the file was created at full size: zeros are already there, as a hole
		fh, err := r.handle(f)
		if err != nil {
			if r.fatal(err) {
				return err
			}
			r.setFailed(f, err)
		} else if direct, err := r.writeData(f, fh, plain, t.offset); err != nil {
			if r.fatal(err) {
				return targetError(f.path, err)
			}
			r.setFailed(f, err)
		} else {
			r.written.Add(int64(len(plain)))
			if !direct {
				r.wb.wrote(fh, t.offset, int64(len(plain)))
			}
		}
	}
	r.prog.Bytes.Add(int64(len(plain)))
	r.blobDone(f)
	return nil
}

// writeSingle creates a file of one chunk, writes it, sets its metadata,
// puts it in place and closes it, all in one go.
func (r *restorer) writeSingle(f *fileState, plain []byte, zero bool) error {
	if f.tmp == 0 {
		err := r.writeUnnamed(f, plain, zero)
		if !errors.Is(err, errNoUnnamed) {
			return err
		}
		f.tmp = r.nextTmp()
	}
	n := f.node()
	perm := createPerm(n)
	fh, err := r.createTmp(f, perm)
	if err != nil {
		return r.settle(f, nil, err, false, len(plain))
	}
	wpath := f.wpath()
	direct := false
	if f.direct {
		// writeData opens it again for direct I/O, by name: that must
		// be this file (created).
		err = f.made(fh)
	}
	switch {
	case err != nil:
	case zero:
		err = fh.Truncate(int64(len(plain)))
	default:
		direct, err = r.writeData(f, fh, plain, 0)
		if cerr := r.dio.close(f); err == nil {
			err = cerr
		}
		r.written.Add(int64(len(plain)))
	}
	if err == nil {
		r.meta(r.t.setMetaFD(fh, wpath, n, perm), f.path)
		err = r.place(f)
	}
	return r.settle(f, fh, err, !zero && !direct, len(plain))
}

// createTmp creates f's file under its temporary name. One the target
// holds already is not f's to remove: another restore's (of the same PID
// in another PID namespace, running), or an earlier one's that the sweep
// left (removeLeftovers: another restore held the target), a directory
// with the user's entries, say. f draws another number instead.
func (r *restorer) createTmp(f *fileState, perm uint32) (*os.File, error) {
	for tries := 1; ; tries++ {
		fh, err := r.t.createNew(f.tmpPath(), perm)
		if !errors.Is(err, unix.EEXIST) || tries == maxTmpTries {
			return fh, err
		}
		f.tmp = r.nextTmp()
	}
}

// maxTmpTries bounds the temporary names createTmp tries for one file.
const maxTmpTries = 100

// settle finishes a file of one chunk: it hands fh (nil if the file
// could not be created) to the write-behind window, which closes it once
// written back, when the file was written through the page cache and is
// large enough, or closes it; and it records what failed.
func (r *restorer) settle(f *fileState, fh *os.File, err error, cached bool, size int) error {
	if fh != nil {
		if err == nil && cached && size >= writeBehindMinFile {
			r.wb.wrote(fh, 0, int64(size))
			r.wb.release(fh, func(err error) { r.closed(f, err) })
		} else if cerr := fh.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		if r.fatal(err) {
			return targetError(f.path, err)
		}
		r.setFailed(f, err)
	}
	r.prog.Bytes.Add(int64(size))
	// Read under the lock: once released, the file's write-back may
	// fail it from another worker (r.closed).
	if f.pending.Add(-1) == 0 && r.failedErr(f) == nil {
		r.prog.Files.Add(1)
	}
	return nil
}

// writeUnnamed is writeSingle for a file created without a name
// (targetDir.createUnnamed) and linked in once written and given its
// metadata. It returns errNoUnnamed, having written nothing anywhere,
// where the target cannot do that.
func (r *restorer) writeUnnamed(f *fileState, plain []byte, zero bool) error {
	n := f.node()
	perm := createPerm(n)
	fh, err := r.t.createUnnamed(f.path, perm)
	if errors.Is(err, errNoUnnamed) {
		return err
	}
	if err != nil {
		return r.settle(f, nil, err, false, len(plain))
	}
	if zero {
		err = fh.Truncate(int64(len(plain)))
	} else {
		_, err = fh.WriteAt(plain, 0)
	}
	if err != nil {
		return r.settle(f, fh, err, false, len(plain))
	}
	// Its metadata errors are counted once it is linked in: if it cannot
	// be, it is written again under a temporary name.
	merr := r.t.setMetaFD(fh, "", n, perm)
	if beforeLink != nil {
		beforeLink(f.path)
	}
	err = r.t.linkUnnamed(fh, f.path)
	if errors.Is(err, unix.EEXIST) {
		// Something appeared at its path since the plan: in place of
		// it, as for a file the target held.
		f.tmp = r.nextTmp()
		if err = r.t.linkUnnamed(fh, f.tmpPath()); err == nil {
			err = r.place(f)
		}
	}
	if errors.Is(err, errNoUnnamed) {
		fh.Close() // the file, still without a name, goes with it
		return err
	}
	if !zero {
		r.written.Add(int64(len(plain)))
	}
	if err == nil {
		f.placed = true
		r.meta(merr, f.path)
	}
	return r.settle(f, fh, err, !zero, len(plain))
}

// interleave reorders jobs so that ranges whose data mostly goes to
// files written with direct I/O (disk-bound: their writes wait for the
// device) alternate with the others (CPU-bound: small files, page cache),
// each kind keeping its order. In walk order the large files of a
// snapshot tend to come together, leaving a core idle while they wait on
// the disk and the disk idle while the small files are decoded.
func interleave(jobs []*packJob) []*packJob {
	var disk, cpu []*packJob
	for _, j := range jobs {
		var d, all int64
		for _, bj := range j.blobs {
			for _, t := range bj.targets {
				all += int64(bj.blob.RawLength)
				if t.file.direct {
					d += int64(bj.blob.RawLength)
				}
			}
		}
		if 2*d > all {
			disk = append(disk, j)
		} else {
			cpu = append(cpu, j)
		}
	}
	out := make([]*packJob, 0, len(jobs))
	for i, k := 0, 0; i < len(disk) || k < len(cpu); {
		// Take from the kind that is further behind, by share done.
		if k >= len(cpu) || (i < len(disk) && i*len(cpu) <= k*len(disk)) {
			out = append(out, disk[i])
			i++
		} else {
			out = append(out, cpu[k])
			k++
		}
	}
	return out
}

// writeData writes plain at offset off of f through fh, except the
// aligned interior of a large file's chunk, which goes through f's
// O_DIRECT descriptor when plain lies aligned for it. direct reports
// that it did: the little left in the page cache is not worth the
// write-behind window.
func (r *restorer) writeData(f *fileState, fh *os.File, plain []byte, off int64) (direct bool, err error) {
	if f.direct {
		a, b := interior(addr(plain), off, int64(len(plain)))
		release, ok := func() {}, false
		if a < b {
			release, ok = r.dio.slot()
		}
		if ok {
			defer release()
			dfh, err := r.dio.handle(r.t, f)
			if err != nil {
				// Out of descriptors, say: the ordinary one still works.
				r.log.Debug("could not open for direct I/O, writing through the page cache", "path", f.path, "err", err)
			}
			if dfh != nil {
				r.dio.reserve(dfh, a, b-a)
				_, err := writeDirect(dfh, plain[a-off:b-off], a)
				if err == nil {
					r.dio.written.Add(b - a)
					if _, err := fh.WriteAt(plain[:a-off], off); err != nil {
						return true, err
					}
					_, err = fh.WriteAt(plain[b-off:], b)
					return true, err
				}
				if !unsupportedDirect(err) {
					return true, err
				}
				r.dio.disable(err)
			}
		}
	}
	_, err = fh.WriteAt(plain, off)
	return false, err
}

// handle returns the descriptor of f, a file of several chunks, opening
// it on first use. It must be the file createFiles made: one swapped in
// under its name since (by someone else who may write in the target; a
// hard link to a file elsewhere, say) is not written to.
func (r *restorer) handle(f *fileState) (*os.File, error) {
	return r.open.get(f, func() (*os.File, error) {
		fh, err := r.t.openWrite(f.wpath())
		if err != nil {
			return nil, r.writeError(f.path, err)
		}
		if err := f.created(fh); err != nil {
			fh.Close()
			return nil, r.writeError(f.path, err)
		}
		return fh, nil
	})
}

// made records fh as the file the restore created for f, which later
// opens by name must find (created).
func (f *fileState) made(fh *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(fh.Fd()), &st); err != nil {
		return err
	}
	f.dev, f.ino = st.Dev, st.Ino
	return nil
}

// created checks that fh, opened by name, is the file made recorded for
// f.
func (f *fileState) created(fh *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(fh.Fd()), &st); err != nil {
		return err
	}
	if st.Dev != f.dev || st.Ino != f.ino {
		return fmt.Errorf("%s was replaced while the restore wrote it (by another process writing in the target), so it was not written to: find out what changes the target and restore again", f.wpath())
	}
	return nil
}

// blobDone counts down a file's pending blobs and finishes the file
// after the last one.
func (r *restorer) blobDone(f *fileState) {
	if f.pending.Add(-1) != 0 {
		return
	}
	if err := r.dio.close(f); err != nil {
		r.setFailed(f, r.writeError(f.path, err))
	}
	fh := r.open.take(f)
	if r.failedErr(f) != nil {
		if fh != nil {
			r.wb.release(fh, nil)
		}
		return
	}
	if fh != nil {
		r.meta(r.t.setMetaFD(fh, f.wpath(), f.node(), 0o600), f.path)
	} else {
		r.meta(r.t.setMetaAt(f.wpath(), f.node(), false), f.path)
	}
	if err := r.place(f); err != nil {
		r.setFailed(f, err)
		if fh != nil {
			r.wb.release(fh, nil)
		}
		return
	}
	if fh != nil {
		r.wb.release(fh, func(err error) { r.closed(f, err) })
	}
	r.prog.Files.Add(1)
}

// place moves a file written under a temporary name (f.tmp: the target
// held something else at its path) to its path, once it is complete,
// replacing what was there. Until then what the target held is left as
// it was, so a file the restore cannot finish costs the target nothing.
func (r *restorer) place(f *fileState) error {
	if f.tmp == 0 {
		return nil
	}
	dir, base := split(f.path)
	_, tmp := split(f.tmpPath())
	rename := func() error {
		return r.t.withDir(dir, func(dfd int) error { return unix.Renameat(dfd, tmp, dfd, base) })
	}
	err := rename()
	if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTDIR) {
		err = r.replaceDir(f, rename)
	}
	if err != nil {
		return fmt.Errorf("put in place (rename %s): %w", tmp, err)
	}
	f.placed = true
	return nil
}

// replaceDir puts f in place of the directory the target holds at its
// path. The two are exchanged in one step (renameat2 RENAME_EXCHANGE),
// so the path never lacks both, and the directory, now under f's
// temporary name, is removed with all it holds (Options.Delete; what of
// it cannot be removed is reported) or, without Delete, only if it is
// still empty, as dirConflicts found it: one that gained entries since
// is put back, with them, and f fails. Where the filesystem cannot
// exchange, the directory is moved aside first and back if the file
// cannot take its name.
func (r *restorer) replaceDir(f *fileState, rename func() error) error {
	dir, base := split(f.path)
	_, tmp := split(f.tmpPath())
	// Checked here: once exchanged, the directory is under f's temporary
	// name, which no mount table lists.
	if err := r.keepDir(f.path); err != nil {
		return err
	}
	r.t.forget(f.path)
	if beforeReplaceDir != nil {
		beforeReplaceDir(f.tmpPath())
	}
	leftover := f.tmpPath()
	// putBack undoes the replacement: the directory back at its path,
	// the file back under its temporary name. Where it fails, the file
	// is left in place (f.placed, so that its failure removes it) and the
	// directory where it was moved, which the error names.
	putBack := func(dfd int) error {
		err := exchangeAt(dfd, tmp, base)
		f.placed = err != nil
		return err
	}
	err := r.t.withDir(dir, func(dfd int) error { return exchangeAt(dfd, tmp, base) })
	switch {
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP):
		leftover = f.tmpPath() + "-old"
		_, aside := split(leftover)
		if err := r.t.withDir(dir, func(dfd int) error { return unix.Renameat(dfd, base, dfd, aside) }); err != nil {
			return fmt.Errorf("move the directory there aside: %w", err)
		}
		if err := rename(); err != nil {
			if back := r.t.withDir(dir, func(dfd int) error { return unix.Renameat(dfd, aside, dfd, base) }); back != nil {
				return &leftAsideError{err: err, aside: leftover, back: back}
			}
			return err
		}
		putBack = func(dfd int) error {
			if err := unix.Renameat(dfd, base, dfd, tmp); err != nil {
				f.placed = true
				return err
			}
			return unix.Renameat(dfd, aside, dfd, base)
		}
	case err != nil:
		return fmt.Errorf("exchange it with the directory there: %w", err)
	}
	// Without Delete only an empty directory goes (clear), as
	// dirConflicts found this one: entries it gained since are the
	// user's, and it is put back with them.
	err = r.t.clear(leftover)
	switch {
	case errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST):
		if back := r.t.withDir(dir, putBack); back != nil {
			return &leftAsideError{err: err, aside: leftover, back: back}
		}
		return err
	case err != nil:
		r.failRemoval(leftover, fmt.Errorf("could not remove the directory that was at %s, which the snapshot's file replaced: %w", f.path, err))
	}
	return nil
}

// dirGuard returns the guard of what the restore must never remove:
// Options.Delete's, or one made on first use for a restore that removes
// a directory only to put the snapshot's entry in its place.
func (r *restorer) dirGuard() (*deleteGuard, error) {
	r.guardOnce.Do(func() {
		if r.guard == nil {
			r.guard, r.guardErr = newDeleteGuard(r.opts.Target, r.opts.Protect, mountInfo)
		}
	})
	return r.guard, r.guardErr
}

// keepDir refuses to remove directory p of the target to make room for
// an entry of the snapshot (a file, a symlink, a device) when it is or
// holds a mounted file system, or holds what the restore uses (the
// repository, a key, the cache): the same guard as --delete's.
func (r *restorer) keepDir(p string) error {
	g, err := r.dirGuard()
	if err != nil {
		return fmt.Errorf("the target holds a directory here, which is not removed without knowing whether a file system is mounted in it: %w", err)
	}
	if why := g.why(p); why != "" {
		return fmt.Errorf("the target holds a directory here, which is not removed to make room for the snapshot's entry: %s; or restore into another directory", why)
	}
	return nil
}

// exchangeAt swaps the entries old and new of directory dfd (tests
// replace it to act as a filesystem that cannot).
var exchangeAt = func(dfd int, old, new string) error {
	return unix.Renameat2(dfd, old, dfd, new, unix.RENAME_EXCHANGE)
}

// leftAsideError is a file's failure to take the place of a directory
// that could not be moved back either: the directory is left under
// another name.
type leftAsideError struct {
	err   error
	aside string
	back  error
}

func (e *leftAsideError) Error() string {
	return fmt.Sprintf("%v; the directory that was there is left as %s (moving it back failed: %v): move it back by hand (a later restore into this target with --delete would remove it, with all it holds, as a leftover)", e.err, e.aside, e.back)
}

func (e *leftAsideError) Unwrap() error { return e.err }

// beforeLink, when set (by tests), runs just before a file created
// without a name is linked in at p.
var beforeLink func(p string)

// beforeReplaceDir, when set (by tests), runs just before replaceDir
// puts a file in place of a directory.
var beforeReplaceDir func(tmp string)

// unplaced removes the temporary files of files that were not put in
// place (failed, or the restore stopped), leaving what the target held
// at their paths.
func (r *restorer) unplaced(files []*fileState) {
	for _, f := range files {
		if f.tmp != 0 && !f.placed {
			_ = r.t.clearTmp(f.tmpPath())
		}
	}
}

// closed records the outcome of closing a finished file (after its
// write-back, when it went through the window).
func (r *restorer) closed(f *fileState, err error) {
	if err != nil {
		r.setFailed(f, r.writeError(f.path, err))
	}
}

func (r *restorer) closeAll() {
	r.dio.closeAll()
	r.open.takeAll(func(fh *os.File) { r.wb.release(fh, nil) })
}

// other creates symlinks, FIFOs and device nodes.
func (r *restorer) other(e *entry) error {
	if err := r.t.clear(e.path); err != nil {
		return fmt.Errorf("remove what the target holds there: %w", err)
	}
	n := e.node
	switch n.Type {
	case snapshot.TypeSymlink:
		// The link is created, never followed: its target may point anywhere.
		if err := r.t.symlink(n.LinkTarget, e.path); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
	case snapshot.TypeFIFO, snapshot.TypeDev, snapshot.TypeCharDev:
		mode := n.UnixPerm()
		switch n.Type {
		case snapshot.TypeFIFO:
			mode |= unix.S_IFIFO
		case snapshot.TypeDev:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFCHR
		}
		if err := r.t.mknod(e.path, mode, int(n.Device)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
	default:
		return fmt.Errorf("unsupported node type %q", n.Type)
	}
	r.meta(r.t.setMetaAt(e.path, n, false), e.path)
	return nil
}

// dirMeta applies directory metadata last, so creating entries does not
// disturb it, and deepest first, so a directory whose mode shuts its
// owner out is closed only after everything below it is done. The
// directories of one depth are independent and are done in parallel,
// owner and mode through each one's own descriptor: the 1,932 of the
// bench dataset took 25-30 ms one at a time by name, at the end of the
// restore when nothing else runs, and take 7-13 ms so (2 cores).
func (r *restorer) dirMeta(dirs []*entry) {
	depth := func(e *entry) int { return strings.Count(e.path, "/") }
	sort.SliceStable(dirs, func(i, j int) bool { return depth(dirs[i]) > depth(dirs[j]) })
	for len(dirs) > 0 {
		n := 1
		for n < len(dirs) && depth(dirs[n]) == depth(dirs[0]) {
			n++
		}
		var g errgroup.Group
		g.SetLimit(runtime.GOMAXPROCS(0))
		for _, d := range dirs[:n] {
			if d.node != nil {
				g.Go(func() error {
					r.meta(r.t.setDirMeta(d.path, d.node, d.held), d.path)
					return nil
				})
			}
		}
		_ = g.Wait() // failures are counted and logged by meta, as for every entry's metadata
		dirs = dirs[n:]
	}
}
