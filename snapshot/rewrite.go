package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// RewrittenTag is added to the tags of a snapshot RewriteSnapshots made.
const RewrittenTag = "rewritten"

// RewriteOptions tune RewriteSnapshots.
type RewriteOptions struct {
	// IDs are the snapshots to rewrite; empty means every snapshot.
	IDs []chunkstore.ID
	// Exclude names what to remove, as backup's --exclude patterns do,
	// matched against each entry's path in the snapshot (the path it was
	// backed up from). An excluded directory goes with all it holds.
	Exclude []string
	DryRun  bool // report what would be removed, write nothing
	// Forget removes each original once its rewritten copy is saved.
	Forget   bool
	Host     string // recorded in the sessions; default the hostname
	Sessions chunkstore.SessionTiming
	Logger   *slog.Logger
}

// RewrittenSnapshot is a snapshot that held excluded paths, and what
// became of it.
type RewrittenSnapshot struct {
	Original chunkstore.ID `json:"original"`
	Time     time.Time     `json:"time"`
	Host     string        `json:"host"`
	// Removed are the excluded paths, directories with a trailing slash
	// (their contents are not listed).
	Removed []string `json:"removed"`
	// Rewritten is the new snapshot (zero in a dry run).
	Rewritten chunkstore.ID `json:"rewritten,omitzero"`
	// AlreadyRewritten: an earlier run saved this very copy (Rewritten).
	AlreadyRewritten bool `json:"already_rewritten,omitempty"`
	Forgotten        bool `json:"forgotten,omitempty"`
}

// RewriteResult says what RewriteSnapshots found and did.
type RewriteResult struct {
	Snapshots int                 `json:"snapshots"` // looked at
	Rewritten []RewrittenSnapshot `json:"rewritten"` // those that held excluded paths
	DryRun    bool                `json:"dry_run,omitempty"`
}

// ErrNoExclude is returned by RewriteSnapshots without a pattern.
var ErrNoExclude = errors.New("no --exclude pattern: nothing to remove")

// RewriteSnapshots removes the paths Exclude matches from snapshots: a
// secret backed up by mistake, data that must be erased. Each snapshot
// that holds such a path is saved again as a copy without them, with
// the same time, host, paths and other tags, the tag "rewritten", and
// its original named (Original; 'snapshots --json' shows it); with
// Forget the original is then removed, and a prune deletes the data no
// snapshot needs any more. Snapshots that hold no excluded path are left
// as they are.
//
// Only directory listings are written: the copy references the same data
// as its original. It is written as RepairSnapshots writes: under a
// backup session, while holding the prune session, each copy committed
// only while both are safely alive, so no prune can delete data between
// reading the original and saving its copy, even if the original is
// forgotten meanwhile. Every snapshot is examined, and every new listing
// encoded, before anything is written. It needs the identity.
func RewriteSnapshots(ctx context.Context, repo *chunkstore.Repository, opts RewriteOptions) (*RewriteResult, error) {
	if !repo.CanRead() {
		return nil, fmt.Errorf("rewrite needs the identity (--identity): %w", chunkstore.ErrNoIdentity)
	}
	if len(opts.Exclude) == 0 {
		return nil, ErrNoExclude
	}
	excl, err := NewExcluder(opts.Exclude)
	if err != nil {
		return nil, err
	}
	opts.Sessions = opts.Sessions.OrDefault()
	opts.Logger = orDiscard(opts.Logger)
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	held, err := holdPruneSession(ctx, repo, opts.DryRun, opts.Sessions, opts.Logger, "rewrite")
	if err != nil {
		return nil, err
	}
	defer held.end()
	var ws *writeSession
	if !opts.DryRun {
		if ws, _, err = beginWrite(ctx, repo, chunkstore.SessionInfo{
			Host: opts.Host, PID: os.Getpid(), Started: time.Now(),
		}, opts.Sessions, opts.Logger); err != nil {
			return nil, err
		}
		defer ws.end(ctx)
	}
	snaps, bad, err := List(ctx, repo)
	if err != nil {
		return nil, err
	}
	// The index after the snapshots: a backup that committed since
	// beginWrite loaded it wrote its index files first.
	if err := repo.LoadIndex(ctx); err != nil {
		return nil, err
	}
	// The listings are read with the packs in GC marks visible: a backup
	// may have reused one after the mark, and no prune deletes it while
	// the prune session is held. New listings are written with them
	// hidden again (excludeMarks), never into a marked pack.
	idx := repo.Index()
	marks := idx.ExcludedSet()
	idx.SetExcluded(nil)
	excludeMarks := sync.OnceFunc(func() { idx.SetExcluded(marks) })
	defer excludeMarks() // on every return: the repository may be used again
	for _, e := range bad {
		opts.Logger.Warn("snapshot unreadable, not rewritten", "err", e)
	}
	// Copies saved by an earlier run, by original and tree.
	type copyKey struct{ original, tree chunkstore.ID }
	copies := map[copyKey]chunkstore.ID{}
	for _, s := range snaps {
		if s.Original != nil {
			copies[copyKey{*s.Original, s.Tree}] = s.ID
		}
	}
	listed := map[chunkstore.ID]bool{}
	for _, s := range snaps {
		listed[s.ID] = true
	}
	if len(opts.IDs) > 0 {
		snaps = slices.DeleteFunc(snaps, func(s *Snapshot) bool { return !slices.Contains(opts.IDs, s.ID) })
	}

	pr := &pathRewriter{repo: repo, excl: excl, done: map[pathTree]rewritten{}, encoded: map[chunkstore.ID][]byte{}, counted: map[chunkstore.ID]leftOut{}}
	res := &RewriteResult{DryRun: opts.DryRun, Rewritten: []RewrittenSnapshot{}}
	type todo struct {
		s       *Snapshot
		i       int // in res.Rewritten
		tree    chunkstore.ID
		summary Summary // the copy's
	}
	var work []todo
	for _, s := range snaps {
		res.Snapshots++
		out, err := pr.tree(ctx, s.Tree, "", WayTo(s.Paths))
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", s.ID.Short(), err)
		}
		if !out.changed {
			continue
		}
		d := RewrittenSnapshot{Original: s.ID, Time: s.Time, Host: s.Host, Removed: out.removed}
		sort.Strings(d.Removed)
		if c, ok := copies[copyKey{s.ID, out.id}]; ok {
			d.Rewritten, d.AlreadyRewritten = c, true
		}
		res.Rewritten = append(res.Rewritten, d)
		work = append(work, todo{s, len(res.Rewritten) - 1, out.id, s.Summary.without(out.left)})
	}
	if opts.DryRun || len(work) == 0 {
		return res, nil
	}

	reps := make([]replacement, len(work))
	for i, w := range work {
		d := &res.Rewritten[w.i]
		reps[i] = replacement{s: w.s, tree: w.tree, saved: d.AlreadyRewritten, id: &d.Rewritten, forgotten: &d.Forgotten, removed: len(d.Removed), summary: &w.summary}
	}
	excludeMarks()
	if err := saveReplacements(ctx, repo, ws.sess, held, pr.encoded, reps, RewrittenTag, OriginalByRewrite, opts.Forget, opts.Logger); err != nil {
		return res, err
	}
	if opts.Forget {
		forgotten := map[chunkstore.ID]chunkstore.ID{} // tree -> original
		for _, w := range work {
			if res.Rewritten[w.i].Forgotten {
				forgotten[w.s.Tree] = w.s.ID
			}
		}
		return res, savedMeanwhile(ctx, repo, forgotten, listed)
	}
	return res, nil
}

// savedMeanwhile fails if a snapshot saved since the rewrite listed them
// has the tree of an original it forgot (forgotten: tree -> original): 'lifeboat tag' saves the
// snapshot it retags again, with its tree, before it removes it, so a
// tag that ran at the same time has kept the removed paths in a copy
// (Retag drops its copy only when the original was already gone). Our
// copies have other trees; a later backup has a tree of its own.
func savedMeanwhile(ctx context.Context, repo *chunkstore.Repository, forgotten map[chunkstore.ID]chunkstore.ID, listed map[chunkstore.ID]bool) error {
	if len(forgotten) == 0 {
		return nil
	}
	snaps, _, err := List(ctx, repo)
	if err != nil {
		return fmt.Errorf("the originals were forgotten, but whether a snapshot saved meanwhile still holds the removed paths could not be checked: %w; run the rewrite again", err)
	}
	var found []string
	for _, s := range snaps {
		if o, ok := forgotten[s.Tree]; ok && !listed[s.ID] {
			found = append(found, fmt.Sprintf("%s (a copy of %s)", s.ID.Short(), o.Short()))
		}
	}
	if len(found) > 0 {
		sort.Strings(found)
		return fmt.Errorf("snapshot %s, saved while the rewrite ran (by a 'lifeboat tag' at the same time?), still holds the removed paths: run the rewrite again", strings.Join(found, ", "))
	}
	return nil
}

// pathTree is a listing at a path: whether an entry is excluded depends
// on both.
type pathTree struct {
	dir string
	id  chunkstore.ID
}

// pathRewriter works out trees without their excluded entries, each
// (path, tree) once however many snapshots share it, and encodes the new
// ones (encoded, by ID) for RewriteSnapshots to store.
type pathRewriter struct {
	repo    *chunkstore.Repository
	excl    *Excluder
	done    map[pathTree]rewritten
	encoded map[chunkstore.ID][]byte
	counted map[chunkstore.ID]leftOut // what count found below each tree
}

// WayTo returns the directories above the backed-up paths ("/a" and
// "/a/b" for "/a/b/c"): a snapshot holds them only as the way there, and
// a backup never matches them against its excludes, so neither a rewrite
// nor a restore does ("**/tmp/" must not take /tmp, and with it a backup
// of /tmp/app).
func WayTo(paths []string) map[string]bool {
	way := map[string]bool{}
	for _, p := range paths {
		for d := path.Dir(path.Clean("/" + p)); d != "/"; d = path.Dir(d) {
			way[d] = true
		}
	}
	for _, p := range paths {
		delete(way, path.Clean("/"+p)) // a backup path above another is one still
	}
	return way
}

// tree rewrites the tree id found at dir ("" for the root, else
// "/a/b"), where way holds the directories above the backed-up paths
// (WayTo). A listing that cannot be read stops the rewrite: 'lifeboat
// repair snapshots' deals with lost data.
func (pr *pathRewriter) tree(ctx context.Context, id chunkstore.ID, dir string, way map[string]bool) (rewritten, error) {
	key := pathTree{dir, id}
	// The root and the directories on the way depend on the snapshot's
	// paths, not only on (dir, id): they are not cached. Nothing below
	// them that is not on the way is either.
	onWay := dir == "" || way[dir]
	if r, ok := pr.done[key]; ok && !onWay {
		return r, nil
	}
	if err := ctx.Err(); err != nil {
		return rewritten{}, err
	}
	t, err := LoadTree(ctx, pr.repo, id)
	if err != nil {
		shown := dir
		if shown == "" {
			shown = "/"
		}
		return rewritten{}, fmt.Errorf("read the directory listing of %s (tree %s): %w; run 'lifeboat check', and 'lifeboat repair snapshots' if its data is lost", shown, id.Short(), err)
	}
	out := rewritten{id: id}
	nodes := make([]Node, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		p := dir + "/" + n.Name
		isDir := n.Type == TypeDir
		if !way[p] && pr.excl.Excluded(p, isDir) {
			out.changed = true
			if isDir {
				p += "/"
			}
			out.removed = append(out.removed, p)
			switch {
			case n.Type == TypeFile:
				out.left.files++
				out.left.bytes += n.Size
			case isDir && n.Subtree != nil:
				out.left.add(pr.count(ctx, *n.Subtree))
			}
			continue
		}
		if isDir && n.Subtree != nil {
			r, err := pr.tree(ctx, *n.Subtree, p, way)
			if err != nil {
				return rewritten{}, err
			}
			if r.changed {
				out.changed = true
				out.removed = append(out.removed, r.removed...)
				out.left.add(r.left)
				n.Subtree = &r.id
			}
		}
		nodes = append(nodes, n)
	}
	if out.changed {
		b, err := (&Tree{Nodes: nodes}).Encode()
		if err != nil {
			return rewritten{}, err
		}
		out.id = pr.repo.TreeID(b)
		pr.encoded[out.id] = b
	}
	if !onWay {
		pr.done[key] = out
	}
	return out, nil
}

// count returns what the directory whose listing is tree holds, itself
// included, as a backup counts it (a directory with a listing, regular
// files and their sizes): what a copy without it leaves out.
// A listing below it that cannot be read counts as its directory alone:
// the rewrite drops it anyway, and a figure is no reason to stop one.
func (pr *pathRewriter) count(ctx context.Context, tree chunkstore.ID) leftOut {
	if c, ok := pr.counted[tree]; ok {
		return c
	}
	c := leftOut{dirs: 1}
	if t, err := LoadTree(ctx, pr.repo, tree); err == nil {
		for _, n := range t.Nodes {
			switch {
			case n.Type == TypeFile:
				c.files++
				c.bytes += n.Size
			case n.Type == TypeDir && n.Subtree != nil:
				c.add(pr.count(ctx, *n.Subtree))
			}
		}
	}
	pr.counted[tree] = c
	return c
}
