package restore

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// fileState is one regular file being restored.
type fileState struct {
	path    string // slash-separated, relative to the target
	meta    fileMeta
	chunks  []chunkRef
	size    int64
	skip    bool   // already identical in the target
	keep    bool   // left as the target has it (Options.Overwrite)
	tmp     uint32 // written under tmpPath (its number; 0: none) until complete (place): a file of several chunks, or of one where the target holds something else at path, it is written with direct I/O, or the target cannot create it unnamed
	held    bool   // the target held something at path when the restore began (findIdentical)
	placed  bool   // moved from tmp to path, or linked there (unnamed)
	unnamed bool   // created without a name (writeUnnamed)
	direct  bool   // large: written with direct I/O where the target allows it
	dev     uint64 // of the file createFiles made (several chunks), which handle reopens
	ino     uint64
	linkTo  *fileState
	pending atomic.Int64 // blobs not yet written
	failed  error
}

// fileMeta is what of a file's node a restore needs once planned. The
// planned files hold it rather than their nodes, which kept every
// decoded directory listing in memory: 330 of the 1,070 MB a restore of
// a million small files took (docs/benchmarks.md, "Many small files").
type fileMeta struct {
	mode             fs.FileMode
	uid, gid         uint32
	mtimeNs, atimeNs int32
	mtime, atime     int64 // seconds of the Unix epoch
	xattrs           []snapshot.XAttr
}

func metaOf(n *snapshot.Node) fileMeta {
	return fileMeta{
		mode: n.Mode, uid: n.UID, gid: n.GID,
		mtime: n.ModTime.Unix(), mtimeNs: int32(n.ModTime.Nanosecond()),
		atime: n.AccessTime.Unix(), atimeNs: int32(n.AccessTime.Nanosecond()),
		xattrs: n.XAttrs,
	}
}

// node returns a node with what the restore needs of f's: its name,
// type, mode, owner, times, size and extended attributes (not its
// content, which f.chunks has).
func (f *fileState) node() *snapshot.Node {
	_, name := split(f.path)
	return &snapshot.Node{
		Name: name, Type: snapshot.TypeFile, Mode: f.meta.mode, UID: f.meta.uid, GID: f.meta.gid,
		ModTime:    time.Unix(f.meta.mtime, int64(f.meta.mtimeNs)).UTC(),
		AccessTime: time.Unix(f.meta.atime, int64(f.meta.atimeNs)).UTC(),
		Size:       uint64(f.size),
		XAttrs:     f.meta.xattrs,
	}
}

// detached is a copy of n that does not keep its directory listing's
// nodes in memory, without its content (nil stays nil).
func detached(n *snapshot.Node) *snapshot.Node {
	if n == nil {
		return nil
	}
	c := *n
	c.Content = nil
	return &c
}

// wpath is the name f is written under: its temporary one until it is
// put in place, if it has one.
func (f *fileState) wpath() string {
	if f.tmp != 0 && !f.placed {
		return f.tmpPath()
	}
	return f.path
}

// tmpPath is f's temporary name, ".lifeboat-restore-PID-N" in its
// directory: made when needed from the number, so a restore of millions
// of files does not hold a second name for each.
func (f *fileState) tmpPath() string {
	dir, _ := split(f.path)
	name := leftoverPrefix + restorePID + "-" + strconv.FormatUint(uint64(f.tmp), 10)
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// restorePID names this process's temporary files (see leftovers.go).
var restorePID = strconv.Itoa(os.Getpid())

type chunkRef struct {
	offset int64
	length int64
	loc    chunkstore.Location
}

// plan is everything a restore will create.
type plan struct {
	// onDir, if set, is called with each directory as it is planned,
	// parents first, while the walk goes on.
	onDir func(*entry)
	// handed holds the directories an earlier walk handed to onDir
	// (planSnapshot): they go into this plan as they are, not again to
	// onDir, which may still be marking them held.
	handed map[string]*entry
	dirs   []*entry // in walk order (parents first)
	files  []*fileState
	others []*entry // symlinks, fifos, devices
	links  []*fileState
	bytes  int64
	// tmpsTaken holds the numbers of this process's temporary names
	// (fileState.tmpPath) that entries of the snapshot have as their
	// names, which restorer.nextTmp does not hand out.
	tmpsTaken map[uint32]bool
}

// takeTmp notes that the snapshot restores an entry named name: if
// that is one of this process's temporary names (a backup of a target a
// killed restore left them in, restored again as the same PID: 1 in a
// container), no file may be written under it, nor a directory moved
// aside to it.
func (pl *plan) takeTmp(name string) { pl.tmpsTaken = takeTmpName(pl.tmpsTaken, name) }

// takeTmpName adds to taken (made if nil) the number of name, if it is
// one of this process's temporary names, and returns taken.
func takeTmpName(taken map[uint32]bool, name string) map[uint32]bool {
	rest, ok := strings.CutPrefix(name, leftoverPrefix+restorePID+"-")
	if !ok {
		return taken
	}
	rest = strings.TrimSuffix(rest, "-old")
	n, err := strconv.ParseUint(rest, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != rest {
		return taken
	}
	if taken == nil {
		taken = map[uint32]bool{}
	}
	taken[uint32(n)] = true
	return taken
}

type entry struct {
	path string
	node *snapshot.Node
	// held marks a directory the target held before the restore: its
	// mkdir found one there (dirMaker, which sets it before its wait
	// returns). Only such a directory can carry user.* attributes the
	// snapshot lacks (setDirMeta). It takes an entry from 24 bytes to
	// 32 (of directories, symlinks, FIFOs and devices; not of files).
	held bool
}

// includer decides which snapshot paths are restored: those an include
// pattern matches, or below one that does (everything without include
// patterns), except those an exclude pattern matches, or below one that
// does. match must see every node of the walk, parents before children.
type includer struct {
	patterns []snapshot.Pattern
	dirOnly  []bool // per pattern: it ended in "/", so matches directories only
	matched  []bool // per pattern: it matched a path the restore selects
	shadowed []bool // per pattern: it matched a path an exclude pattern left out
	excl     *snapshot.Excluder
	excluded map[string]bool // directories excluded, with all they hold
	way      map[string]bool // directories above the backed-up paths (wayTo)
	roots    map[string]bool // the backed-up paths (wayTo)
	// rootsExcluded: backed-up paths an exclude pattern left out whole
	// (excludedRoots).
	rootsExcluded map[string]bool
}

// wayTo sets the directories above the snapshot's backed-up paths
// (snapshot.WayTo), relative as the walk names them ("a" and "a/b" for
// "/a/b/c"): no exclude pattern leaves them out.
func (in *includer) wayTo(paths []string) {
	in.way, in.roots = map[string]bool{}, map[string]bool{}
	for d := range snapshot.WayTo(paths) {
		in.way[d[1:]] = true
	}
	for _, p := range paths {
		in.roots[strings.Trim(path.Clean("/"+p), "/")] = true
	}
}

// excludedRoots returns the backed-up paths an exclude pattern left out
// with all they hold ("--exclude data" where /srv/data was backed up),
// sorted: the restore restores nothing of them.
func (in *includer) excludedRoots() []string {
	var out []string
	for p := range in.rootsExcluded {
		out = append(out, "/"+p)
	}
	slices.Sort(out)
	return out
}

func newIncluder(patterns, excludes []string) (*includer, error) {
	in := &includer{}
	for _, p := range patterns {
		// A trailing "/" means directories only, as in find and in
		// exclude patterns ("**/cache/" is no file named cache).
		dirOnly := strings.HasSuffix(p, "/") && strings.Trim(p, "/") != ""
		// Cleaned as ls, dump and --delete's scope clean a path
		// ("./etc", "etc//nginx", "etc/nginx/." are etc/nginx): the
		// walk's paths have no such elements, so the pattern matched
		// nothing. "/" (or ".") is the whole snapshot.
		p = strings.Trim(path.Clean("/"+p), "/")
		if p == "" {
			p = "**"
		}
		pat, err := snapshot.NewPattern(p)
		if err != nil {
			return nil, fmt.Errorf("include pattern %q: %w", p, err)
		}
		in.patterns = append(in.patterns, pat)
		in.dirOnly = append(in.dirOnly, dirOnly)
	}
	in.matched = make([]bool, len(in.patterns))
	in.shadowed = make([]bool, len(in.patterns))
	if len(excludes) > 0 {
		excl, err := snapshot.NewExcluder(excludes)
		if err != nil {
			return nil, err
		}
		in.excl, in.excluded = excl, map[string]bool{}
	}
	return in, nil
}

// match reports whether p, a node of the walk, is restored.
func (in *includer) match(p string, dir bool) bool {
	if in.excl != nil && in.isExcluded(p, dir) {
		in.included(p, dir, in.shadowed)
		return false
	}
	return in.included(p, dir, in.matched)
}

// isExcluded applies the exclude patterns as backup does, to the path
// as it was backed up ("/" + p): a pattern without a slash matches any
// element of it, one with a slash the whole path.
func (in *includer) isExcluded(p string, dir bool) bool {
	if in.way[p] {
		return false
	}
	parent, _ := split(p)
	if (parent != "" && in.excluded[parent]) || in.excl.Excluded("/"+p, dir) {
		if dir {
			in.excluded[p] = true
		}
		if in.roots[p] {
			if in.rootsExcluded == nil {
				in.rootsExcluded = map[string]bool{}
			}
			in.rootsExcluded[p] = true
		}
		return true
	}
	return false
}

// included reports whether p (a directory if dir) or one of its
// ancestors matches an include pattern, marking in mark each pattern
// that does.
func (in *includer) included(p string, dir bool, mark []bool) bool {
	if len(in.patterns) == 0 {
		return true
	}
	for {
		// Every pattern that matches is marked (unmatched), not only the
		// first: "*" must not hide that "etc" matched too.
		found := false
		for i, pat := range in.patterns {
			if (dir || !in.dirOnly[i]) && pat.Match(p) {
				mark[i], found = true, true
			}
		}
		if found {
			return true
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return false
		}
		p, dir = p[:i], true
	}
}

// mayHoldMatches reports whether directory p, which match did not
// select, may hold paths an include pattern selects (a "*" matches no
// "/", so only a pattern with more elements than p, or with a "**", can:
// snapshot.Pattern.MayMatchBelow). An excluded p holds nothing selected.
func (in *includer) mayHoldMatches(p string) bool {
	if len(in.patterns) == 0 || (in.excl != nil && in.isExcluded(p, true)) {
		return false
	}
	for _, pat := range in.patterns {
		if pat.MayMatchBelow(p) {
			return true
		}
	}
	return false
}

// unmatched returns the include patterns that selected no path of the
// snapshot during the walk, and which of those matched only paths an
// exclude pattern left out.
func (in *includer) unmatched() (none, excluded []string) {
	for i, m := range in.matched {
		if !m {
			none = append(none, in.patterns[i].String())
			if in.shadowed[i] {
				excluded = append(excluded, in.patterns[i].String())
			}
		}
	}
	return none, excluded
}

// build walks the snapshot's trees and resolves every chunk in the index.
func (pl *plan) build(ctx context.Context, repo *chunkstore.Repository, root chunkstore.ID, in *includer) ([]Failure, error) {
	var failures []Failure
	dirSeen := map[string]bool{}
	lastDir := "" // the last parent addDirs found planned
	addDirs := func(p string, lookup map[string]*snapshot.Node) {
		// Ensure every ancestor directory of p is planned. Entries come
		// directory by directory, so the parent is usually the last one.
		parent := ""
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			parent = p[:i]
		}
		if parent == lastDir {
			return
		}
		var missing []string
		for d := path.Dir(p); d != "." && !dirSeen[d]; d = path.Dir(d) {
			missing = append(missing, d)
		}
		for i := len(missing) - 1; i >= 0; i-- {
			d := missing[i]
			dirSeen[d] = true
			pl.addDir(&entry{path: d, node: lookup[d]})
		}
		lastDir = parent
	}
	dirNodes := map[string]*snapshot.Node{}
	hardlinks := map[[2]uint64]*fileState{}
	err := walkTolerant(ctx, repo, root, func(p string, err error) {
		failures = append(failures, Failure{Path: p, Err: err})
	}, func(p string, n *snapshot.Node) error {
		if n.Type == snapshot.TypeDir {
			n = detached(n)
			dirNodes[p] = n
		}
		if !in.match(p, n.Type == snapshot.TypeDir) {
			return nil
		}
		addDirs(p, dirNodes)
		if strings.HasPrefix(n.Name, leftoverPrefix) {
			pl.takeTmp(n.Name)
		}
		switch n.Type {
		case snapshot.TypeDir:
			if !dirSeen[p] {
				dirSeen[p] = true
				pl.addDir(&entry{path: p, node: n})
			}
		case snapshot.TypeFile:
			f := &fileState{path: p, meta: metaOf(n)}
			if n.Links > 1 {
				key := [2]uint64{n.DeviceID, n.Inode}
				if first, ok := hardlinks[key]; ok {
					f.linkTo = first
					pl.links = append(pl.links, f)
					return nil
				}
				hardlinks[key] = f
			}
			var off int64
			for _, id := range n.Content {
				loc, ok := repo.Index().Lookup(id)
				if !ok || loc.Blob.Type != chunkstore.DataBlob {
					f.failed = fmt.Errorf("%w: data blob %s", errNotIndexed, id.Short())
					break
				}
				l := int64(loc.Blob.RawLength)
				f.chunks = append(f.chunks, chunkRef{offset: off, length: l, loc: loc})
				off += l
			}
			f.size = off
			if f.failed != nil {
				failures = append(failures, Failure{Path: p, Err: f.failed})
				return nil
			}
			pl.files = append(pl.files, f)
			pl.bytes += off
		default:
			pl.others = append(pl.others, &entry{path: p, node: detached(n)})
		}
		return nil
	})
	return failures, err
}

func (pl *plan) addDir(e *entry) {
	if old := pl.handed[e.path]; old != nil {
		old.node = e.node // the same tree's; the dirMaker reads only path and sets only held
		pl.dirs = append(pl.dirs, old)
		return
	}
	pl.dirs = append(pl.dirs, e)
	if pl.onDir != nil {
		pl.onDir(e)
	}
}

// errNotIndexed marks content no readable index file lists: what check
// reports as snapshot.ErrNotIndexed, with the likely causes.
var errNotIndexed = fmt.Errorf("%w (lost or damaged index file, or missing pack)", snapshot.ErrNotIndexed)

// walkTolerant visits every node under the tree id depth-first. A
// subtree that cannot be loaded is reported through fail and skipped, so
// one damaged directory listing does not stop the restore of the rest;
// only the root tree is required. Listings are loaded ahead of the walk
// on idle cores (treeLoader); the visiting order is the same.
func walkTolerant(ctx context.Context, repo *chunkstore.Repository, root chunkstore.ID, fail func(string, error), fn func(string, *snapshot.Node) error) error {
	l := newTreeLoader(ctx, repo)
	defer l.close()
	return l.walk("", l.queue([]chunkstore.ID{root})[0], fail, fn)
}

func (l *treeLoader) walk(prefix string, t *treeLoad, fail func(string, error), fn func(string, *snapshot.Node) error) error {
	if _, ok := l.repo.Index().Lookup(t.id); !ok && prefix != "" {
		fail(prefix, fmt.Errorf("%w: directory listing %s", errNotIndexed, t.id.Short()))
		return nil
	}
	tree, err := l.load(t)
	if err != nil {
		if l.ctx.Err() != nil || prefix == "" {
			return err
		}
		fail(prefix, fmt.Errorf("directory listing unreadable, its contents were skipped: %w", err))
		return nil
	}
	var subtrees []chunkstore.ID
	for i := range tree.Nodes {
		if n := &tree.Nodes[i]; n.Type == snapshot.TypeDir && n.Subtree != nil {
			subtrees = append(subtrees, *n.Subtree)
		}
	}
	loads := l.queue(subtrees)
	for i := range tree.Nodes {
		n := &tree.Nodes[i]
		p := n.Name
		if prefix != "" {
			// What path.Join gives: prefix is clean and tree decoding
			// rejects names that are empty, "." or "..", or hold a slash.
			p = prefix + "/" + n.Name
		}
		if err := fn(p, n); err != nil {
			return err
		}
		if n.Type == snapshot.TypeDir && n.Subtree != nil {
			if err := l.walk(p, loads[0], fail, fn); err != nil {
				return err
			}
			loads = loads[1:]
		}
	}
	return nil
}

// packJob is one contiguous range of a pack and the blobs it serves.
type packJob struct {
	pack  *chunkstore.PackEntry
	start int64
	end   int64
	blobs []blobJob
}

type blobJob struct {
	blob    chunkstore.Blob
	targets []target
}

type target struct {
	file   *fileState
	offset int64
}

// maxRange caps one ranged GET. It is twice the default pack size (a
// pack holds at most 16 MiB of blobs), so a pack whose blobs are all
// needed is read with one request: on the bench dataset 53 GETs instead of 130,
// which cut MinIO's CPU per restore by a quarter (docs/benchmarks.md).
// A range is streamed blob by blob, so its size does not bound memory;
// maxHeld does.
const maxRange = 32 << 20

// maxHeld bounds the bytes of a range one download worker holds at once:
// its buffer's size, and the most the fallback path (a range read whole
// when its stream cannot be used) reads in one request. A sealed blob
// larger than this (a chunk of up to 8 MiB stored raw, plus its few
// bytes of framing) is still read, into a buffer of its own.
const maxHeld = 8 << 20

// packJobs groups the chunks of files still to be written by pack and
// coalesces neighbouring blobs into ranges, so each region of a pack is
// read once however many files share its blobs. Ranges come in the order
// the walk first needed their packs (so files are created roughly
// directory by directory), each pack's by offset; a blob's targets keep
// walk order.
//
// It runs between the walk and the first download, so it buckets one
// slice of references by pack rather than filling a map per pack: for
// the bench dataset's 16,832 files 3-4 ms instead of 10-12, and 482
// allocations instead of 35,000 (a Go benchmark on the 2-core VM).
func (pl *plan) packJobs() []*packJob {
	type ref struct {
		pack int32  // index into packs
		off  uint32 // of the blob in its pack
		c    *chunkRef
		f    *fileState
	}
	var n int
	for _, f := range pl.files {
		n += len(f.chunks)
	}
	refs := make([]ref, 0, n)
	var packs []*chunkstore.PackEntry
	byID := map[chunkstore.ID]int32{}
	var last *chunkstore.PackEntry
	var lastIdx int32
	for _, f := range pl.files {
		if f.skip || f.keep || f.failed != nil {
			continue
		}
		for i := range f.chunks {
			c := &f.chunks[i]
			if c.loc.Pack != last {
				// By ID, not by pointer: a pack that two index files
				// list is still one pack, read once.
				idx, ok := byID[c.loc.Pack.ID]
				if !ok {
					idx = int32(len(packs))
					byID[c.loc.Pack.ID] = idx
					packs = append(packs, c.loc.Pack)
				}
				last, lastIdx = c.loc.Pack, idx
			}
			refs = append(refs, ref{pack: lastIdx, off: c.loc.Blob.Offset, c: c, f: f})
			f.pending.Add(1)
		}
	}
	// Bucket by pack (stable, so walk order is kept), then order each
	// pack's references by offset; they mostly come in order already.
	// The ID is compared too: an index that placed two IDs at one offset
	// must not have one blob's plaintext written where the other's is
	// expected (each is verified against its own ID, and fails).
	start := make([]int, len(packs)+1)
	for _, r := range refs {
		start[r.pack+1]++
	}
	for i := range packs {
		start[i+1] += start[i]
	}
	sorted := make([]ref, len(refs))
	next := slices.Clone(start[:len(packs)])
	for _, r := range refs {
		sorted[next[r.pack]] = r
		next[r.pack]++
	}
	refs = sorted
	byOffset := func(a, b ref) int {
		if c := cmp.Compare(a.off, b.off); c != 0 {
			return c
		}
		return bytes.Compare(a.c.loc.Blob.ID[:], b.c.loc.Blob.ID[:])
	}
	for i := range packs {
		if seg := refs[start[i]:start[i+1]]; !slices.IsSortedFunc(seg, byOffset) {
			slices.SortStableFunc(seg, byOffset)
		}
	}
	targets := make([]target, len(refs))
	for i, r := range refs {
		targets[i] = target{file: r.f, offset: r.c.offset}
	}
	var jobs []*packJob
	var blobs []blobJob
	for i := 0; i < len(refs); {
		p := refs[i].pack
		blobs = blobs[:0]
		for i < len(refs) && refs[i].pack == p {
			j := i + 1
			for j < len(refs) && refs[j].pack == p && refs[j].off == refs[i].off && refs[j].c.loc.Blob.ID == refs[i].c.loc.Blob.ID {
				j++
			}
			blobs = append(blobs, blobJob{blob: refs[i].c.loc.Blob, targets: targets[i:j:j]})
			i = j
		}
		jobs = append(jobs, ranges(packs[p], blobs, maxRange)...)
	}
	return jobs
}

// ranges coalesces blobs of pack, sorted by offset, into ranges of at
// most limit bytes (chunkstore.JoinRanges). blobs is not kept: the
// caller reuses it.
func ranges(pack *chunkstore.PackEntry, blobs []blobJob, limit int64) []*packJob {
	bs := make([]chunkstore.Blob, len(blobs))
	for i, bj := range blobs {
		bs[i] = bj.blob
	}
	var out []*packJob
	start := 0
	for _, end := range chunkstore.JoinRanges(bs, limit) {
		first, last := bs[start], bs[end-1]
		out = append(out, &packJob{pack: pack, start: int64(first.Offset), end: int64(last.Offset) + int64(last.Length),
			blobs: slices.Clone(blobs[start:end])})
		start = end
	}
	return out
}
