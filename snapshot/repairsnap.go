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
	"sync"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// RepairedTag is added to the tags of a snapshot RepairSnapshots rewrote.
const RepairedTag = "repaired"

// RepairSnapshotsOptions tune RepairSnapshots.
type RepairSnapshotsOptions struct {
	// IDs limits the repair to these snapshots; empty means all.
	IDs    []chunkstore.ID
	DryRun bool // report what would be removed, write nothing
	// Forget removes each damaged snapshot once its repaired copy is saved.
	Forget   bool
	Host     string // recorded in the session; default the hostname
	Sessions chunkstore.SessionTiming
	Logger   *slog.Logger
}

// RepairedSnapshot is one damaged snapshot and what became of it.
type RepairedSnapshot struct {
	Original chunkstore.ID `json:"original"`
	Time     time.Time     `json:"time"`
	Host     string        `json:"host"`
	// Removed are the snapshot paths left out: files whose data is lost,
	// and directories whose listing is lost (kept, empty; named with a
	// trailing slash).
	Removed []string `json:"removed"`
	// Repaired is the new snapshot (zero in a dry run, or when the root
	// listing itself is lost and nothing can be saved: Unrepairable).
	Repaired  chunkstore.ID `json:"repaired,omitzero"`
	Forgotten bool          `json:"forgotten,omitempty"`
	// AlreadyRepaired: a copy (Repaired) was made by an earlier run.
	AlreadyRepaired bool   `json:"already_repaired,omitempty"`
	Unrepairable    string `json:"unrepairable,omitempty"`
}

// RepairSnapshotsResult says what RepairSnapshots found and did.
type RepairSnapshotsResult struct {
	Snapshots int                `json:"snapshots"` // looked at
	Damaged   []RepairedSnapshot `json:"damaged"`
	// Unreadable are the snapshot manifests that could not be read:
	// nothing here can repair them ('lifeboat forget' with the full ID
	// removes one that rotted).
	Unreadable []UnreadableManifest `json:"unreadable,omitempty"`
	DryRun     bool                 `json:"dry_run,omitempty"`
}

// UnreadableManifest is a snapshot manifest RepairSnapshots could not read.
type UnreadableManifest struct {
	ID    chunkstore.ID `json:"id"`
	Error string        `json:"error"`
	// Newer is set for a manifest written by a newer lifeboat: not
	// damaged, and not to be forgotten; upgrading reads it.
	Newer bool `json:"newer_format,omitempty"`
}

// ErrIndexIncomplete is returned by RepairSnapshots when the index does
// not describe the packs the store holds: what it lacks is then not
// necessarily lost.
var ErrIndexIncomplete = errors.New("the index does not match the packs the repository holds")

// RepairSnapshots rewrites snapshots that reference data the index does
// not have — lost with a pack, after 'repair index' dropped it — into new
// snapshots without the damaged parts: a file with a lost chunk is left
// out, a directory whose listing is lost is kept empty. Everything else
// (metadata, tags, host, paths, time) is kept; the new snapshot gets the
// tag "repaired" and names its original. With Forget the original is then
// removed, so prune can run again. A snapshot already repaired (a copy
// names it) is not copied again; with Forget it is forgotten.
//
// What the index lacks counts as lost only if the index matches the store,
// so it refuses (ErrIndexIncomplete, before changing anything) while an
// index file is damaged, an indexed pack is missing, or a pack no index
// file lists holds data a snapshot needs: 'repair index' first. Every
// snapshot is examined, and every new directory listing encoded, before
// anything is written.
//
// Data that only packs in GC marks hold is not lost (a backup reused it
// after the mark): it is kept, and the copy references it as the original
// does. That is safe because no prune runs meanwhile: RepairSnapshots
// holds the prune session (a prune running refuses it with ErrPruneBusy,
// a prune started meanwhile stops with it), and commits a copy only while
// that session is safely alive, so no sweep can delete such a pack between
// reading the original and saving its copy, even if someone forgets the
// original meanwhile; a later sweep keeps the pack for the copy. The new
// listings are written as a backup writes: under a backup session, never
// into marked packs, each copy committed only while the session is safely
// alive (Session.CommitBy). It needs the identity, as it reads the trees.
func RepairSnapshots(ctx context.Context, repo *chunkstore.Repository, opts RepairSnapshotsOptions) (*RepairSnapshotsResult, error) {
	if !repo.CanRead() {
		return nil, fmt.Errorf("repair snapshots needs the identity (--identity): %w", chunkstore.ErrNoIdentity)
	}
	opts.Sessions = opts.Sessions.OrDefault()
	opts.Logger = orDiscard(opts.Logger)
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	held, err := holdPruneSession(ctx, repo, opts.DryRun, opts.Sessions, opts.Logger, "repair snapshots")
	if err != nil {
		return nil, err
	}
	defer held.end()
	var sess *chunkstore.Session
	if !opts.DryRun {
		sess, err = repo.StartSession(ctx, chunkstore.SessionInfo{Host: opts.Host, PID: os.Getpid(), Started: time.Now()}, opts.Sessions)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := sess.End(context.WithoutCancel(ctx)); err != nil {
				opts.Logger.Warn("could not end the repair's session; prune takes it for ended once it is stale", "err", err)
			}
		}()
	}
	// As a backup: marks first, so no new listing is deduplicated into a
	// pack a prune is about to delete; the index after the snapshots.
	if err := repo.ExcludeMarked(ctx); err != nil {
		return nil, err
	}
	snaps, errs, err := List(ctx, repo)
	if err != nil {
		return nil, err
	}
	var unreadable []UnreadableManifest
	for _, e := range errs {
		var ue *UnreadableError
		if errors.As(e, &ue) {
			unreadable = append(unreadable, UnreadableManifest{ID: ue.ID, Error: ue.Err.Error(), Newer: errors.Is(ue.Err, chunkstore.ErrNewerFormat)})
		}
	}
	if err := repo.LoadIndex(ctx); err != nil {
		return nil, err
	}
	if probs := repo.IndexProblems(); len(probs) > 0 {
		return nil, fmt.Errorf("%w: index file %s is damaged; run 'lifeboat repair index' first", ErrIndexIncomplete, probs[0].Object)
	}
	present, err := repo.ListPacks(ctx)
	if err != nil {
		return nil, err
	}
	idx := repo.Index()
	for _, p := range idx.Packs() {
		if _, ok := present[p.ID]; !ok && !idx.Excluded(p.ID) {
			return nil, fmt.Errorf("%w: pack %s is indexed but missing; run 'lifeboat repair index' first", ErrIndexIncomplete, chunkstore.PackName(p.ID))
		}
	}
	copies := map[chunkstore.ID]chunkstore.ID{} // original → a repaired copy
	for _, s := range snaps {
		// Repaired copies only: a rewritten one (RewriteSnapshots) names
		// its original too, and may carry the tag "repaired" on.
		if orig, ok := s.RepairOf(); ok {
			copies[orig] = s.ID
		}
	}
	if len(opts.IDs) > 0 {
		snaps = slices.DeleteFunc(snaps, func(s *Snapshot) bool { return !slices.Contains(opts.IDs, s.ID) })
	}

	// First pass, with marked packs visible (their data is not lost):
	// find the damage and every reason to refuse, and encode the new
	// listings. Nothing is written.
	marks := idx.ExcludedSet()
	idx.SetExcluded(nil)
	excludeMarks := sync.OnceFunc(func() { idx.SetExcluded(marks) })
	defer excludeMarks() // on every return: the repository may be used again
	rw := &rewriter{repo: repo, log: opts.Logger, done: map[chunkstore.ID]rewritten{}, lost: map[chunkstore.ID]bool{}, encoded: map[chunkstore.ID][]byte{}}
	res := &RepairSnapshotsResult{DryRun: opts.DryRun, Damaged: []RepairedSnapshot{}}
	if len(opts.IDs) == 0 { // those named were read
		res.Unreadable = unreadable
	}
	type todo struct {
		s       *Snapshot
		i       int // in res.Damaged
		tree    chunkstore.ID
		summary Summary // the copy's
	}
	var work []todo
	for _, s := range snaps {
		res.Snapshots++
		d := RepairedSnapshot{Original: s.ID, Time: s.Time, Host: s.Host, Removed: []string{}}
		if c, ok := copies[s.ID]; ok {
			d.Repaired, d.AlreadyRepaired = c, true
			res.Damaged = append(res.Damaged, d)
			work = append(work, todo{s, len(res.Damaged) - 1, chunkstore.ID{}, Summary{}})
			continue
		}
		var out rewritten
		err := errListingLost
		if rw.has(s.Tree, chunkstore.TreeBlob) {
			out, err = rw.tree(ctx, s.Tree, "/")
		} else {
			rw.lost[s.Tree] = true
		}
		if errors.Is(err, errListingLost) {
			d.Unrepairable = "its root directory listing is lost (" + err.Error() + "): nothing of it can be restored; forget it"
			res.Damaged = append(res.Damaged, d)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", s.ID.Short(), err)
		}
		if !out.changed {
			continue
		}
		for _, p := range out.removed {
			d.Removed = append(d.Removed, "/"+p)
		}
		sort.Strings(d.Removed)
		res.Damaged = append(res.Damaged, d)
		work = append(work, todo{s, len(res.Damaged) - 1, out.id, s.Summary.without(out.left)})
	}
	if len(rw.lost) > 0 {
		// Lost only if no pack the index misses holds it (marked ones
		// included): a backup's packs before its index file is written,
		// or packs a damaged index file listed.
		orphans, _, err := repo.ReadEveryUnindexed(ctx, present)
		if err != nil {
			return nil, err
		}
		for _, p := range orphans {
			for _, b := range p.Blobs {
				if rw.lost[b.ID] {
					return nil, fmt.Errorf("%w: pack %s, which no index file lists, holds blob %s that a snapshot needs (a backup may be uploading it; otherwise run 'lifeboat repair index' first)", ErrIndexIncomplete, chunkstore.PackName(p.ID), b.ID.Short())
				}
			}
		}
	}
	excludeMarks()
	if opts.DryRun || len(rw.encoded) == 0 && !opts.Forget {
		return res, nil
	}

	// Second pass: the new listings (a pack holding one already is
	// used, unless marked), then each copy's manifest, then with Forget
	// its original.
	reps := make([]replacement, len(work))
	for i, w := range work {
		d := &res.Damaged[w.i]
		reps[i] = replacement{s: w.s, tree: w.tree, saved: d.AlreadyRepaired, id: &d.Repaired, forgotten: &d.Forgotten, removed: len(d.Removed), summary: &w.summary}
	}
	if err := saveReplacements(ctx, repo, sess, held, rw.encoded, reps, RepairedTag, OriginalByRepair, opts.Forget, opts.Logger); err != nil {
		return res, err
	}
	return res, nil
}

// commitRepaired saves a repaired snapshot's manifest as Backup does: only
// while the backup session is safely alive, and within its commit window;
// and only while the prune session held is too (the copy may reference
// packs in GC marks, which only the absence of a prune keeps).
func commitRepaired(ctx context.Context, repo *chunkstore.Repository, sess *chunkstore.Session, held *heldSession, m Manifest) (chunkstore.ID, error) {
	commitBy, err := sess.CommitBy()
	if err != nil {
		return chunkstore.ID{}, fmt.Errorf("not committing: %w", err)
	}
	wctx, cancelHeld, err := held.window(ctx, "committing")
	if err != nil {
		return chunkstore.ID{}, err
	}
	defer cancelHeld()
	saveCtx, cancel := context.WithDeadline(wctx, commitBy) // the earlier of the two
	defer cancel()
	// As in writeSession.commit: trees written before a change of
	// recipients are wrapped to the old ones.
	if err := repo.CheckGeneration(saveCtx); err != nil {
		return chunkstore.ID{}, fmt.Errorf("not committing: %w", err)
	}
	return Save(saveCtx, repo, m)
}

// replacement is a snapshot saved again with another tree, by
// RepairSnapshots or RewriteSnapshots.
type replacement struct {
	s       *Snapshot
	tree    chunkstore.ID
	saved   bool           // by an earlier run, as *id: only forget
	id      *chunkstore.ID // the copy's, set once it is saved
	removed int            // paths left out, for the log
	summary *Summary       // the copy's, if not the original's

	forgotten *bool
}

// saveReplacements stores the new listings, then saves each replacement
// as a copy of its snapshot with the new tree, tag added, Original
// naming it and OriginalBy set to by (commitRepaired), then with forget
// removes the original; tag ("repaired", "rewritten") also names what
// happened in errors and the log.
func saveReplacements(ctx context.Context, repo *chunkstore.Repository, sess *chunkstore.Session, held *heldSession, encoded map[chunkstore.ID][]byte, reps []replacement, tag, by string, forget bool, log *slog.Logger) error {
	if len(encoded) > 0 {
		// Its packs are in no snapshot until a copy is committed: a
		// prune that took the sessions for dead may have deleted them.
		w, err := repo.NewWriter(ctx, chunkstore.WriterOptions{IndexBy: sess.CommitBy})
		if err != nil {
			return err
		}
		for id, b := range encoded {
			if _, err := w.SaveBlobID(ctx, chunkstore.TreeBlob, id, b); err != nil {
				return fmt.Errorf("save a %s directory listing: %w", tag, err)
			}
		}
		if err := w.Flush(ctx); err != nil {
			return fmt.Errorf("save the %s directory listings: %w", tag, err)
		}
	}
	for _, r := range reps {
		s := r.s
		if !r.saved {
			m := s.Manifest
			m.Tree = r.tree
			m.Tags = slices.Clone(m.Tags)
			if !slices.Contains(m.Tags, tag) {
				m.Tags = append(m.Tags, tag)
			}
			orig := s.ID
			m.Original, m.OriginalBy = &orig, by
			if r.summary != nil {
				m.Summary = *r.summary
			}
			id, err := commitRepaired(ctx, repo, sess, held, m)
			if err != nil {
				return fmt.Errorf("save the %s copy of snapshot %s: %w", tag, s.ID.Short(), err)
			}
			*r.id = id
			log.Info("snapshot "+tag, "snapshot", s.ID.Short(), tag, id.Short(), "removed", r.removed)
		}
		if forget {
			if err := Forget(ctx, repo, s.ID); err != nil {
				return err
			}
			*r.forgotten = true
		}
	}
	return nil
}

// rewriter works out trees without their lost parts, each tree once
// however many snapshots share it, and encodes the new ones (encoded, by
// ID) for RepairSnapshots to store.
type rewriter struct {
	repo    *chunkstore.Repository
	done    map[chunkstore.ID]rewritten
	lost    map[chunkstore.ID]bool // blobs found lost
	encoded map[chunkstore.ID][]byte
	log     *slog.Logger
}

// errListingLost: a directory listing is not indexed, or its blob fails
// verification — its contents are lost.
var errListingLost = errors.New("directory listing lost")

type rewritten struct {
	id      chunkstore.ID
	changed bool
	removed []string // relative to the tree
	// left counts what the copy leaves out. Repair counts the regular
	// files only (not those in a directory whose listing is lost:
	// nothing says what that held); rewrite counts its directories too.
	left leftOut
}

// has reports whether a blob of type t is indexed.
func (rw *rewriter) has(id chunkstore.ID, t chunkstore.BlobType) bool {
	loc, ok := rw.repo.Index().Lookup(id)
	return ok && loc.Blob.Type == t
}

// tree rewrites the tree id found at dir ("/" for the root).
func (rw *rewriter) tree(ctx context.Context, id chunkstore.ID, dir string) (rewritten, error) {
	if r, ok := rw.done[id]; ok {
		return r, nil
	}
	if err := ctx.Err(); err != nil {
		return rewritten{}, err
	}
	t, err := LoadTree(ctx, rw.repo, id)
	if err != nil {
		if errors.Is(err, chunkstore.ErrCorrupt) || errors.Is(err, ErrInvalidTree) {
			return rewritten{}, fmt.Errorf("%w: %v", errListingLost, err)
		}
		return rewritten{}, fmt.Errorf("read the directory listing of %s (tree %s): %w", dir, id.Short(), err)
	}
	out := rewritten{id: id}
	nodes := make([]Node, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		name := n.Name
		lost := false
		for _, c := range n.Content {
			if !rw.has(c, chunkstore.DataBlob) {
				rw.lost[c] = true
				lost = true
				break
			}
		}
		if lost {
			out.changed = true
			out.removed = append(out.removed, name)
			if n.Type == TypeFile {
				out.left.files++
				out.left.bytes += n.Size
			}
			continue
		}
		if n.Type == TypeDir && n.Subtree != nil {
			sub := *n.Subtree
			var r rewritten
			err := errListingLost
			if rw.has(sub, chunkstore.TreeBlob) {
				r, err = rw.tree(ctx, sub, path.Join(dir, name))
			}
			switch {
			case err == nil:
				if r.changed {
					out.changed = true
					out.left.add(r.left)
					for _, p := range r.removed {
						out.removed = append(out.removed, name+"/"+p)
					}
					n.Subtree = &r.id
				}
			case !errors.Is(err, errListingLost):
				return rewritten{}, err
			default:
				// The listing is lost (not indexed, or unreadable): keep
				// the directory, empty.
				rw.lost[sub] = true
				rw.log.Warn("directory listing lost; keeping the directory empty", "dir", path.Join(dir, name), "tree", sub.Short(), "err", err)
				empty, err := rw.encode(&Tree{Nodes: []Node{}})
				if err != nil {
					return rewritten{}, err
				}
				n.Subtree = &empty
				out.changed = true
				out.removed = append(out.removed, name+"/")
			}
		}
		nodes = append(nodes, n)
	}
	if out.changed {
		if out.id, err = rw.encode(&Tree{Nodes: nodes}); err != nil {
			return rewritten{}, err
		}
	}
	rw.done[id] = out
	return out, nil
}

// encode encodes a new listing and returns its ID.
func (rw *rewriter) encode(t *Tree) (chunkstore.ID, error) {
	b, err := t.Encode()
	if err != nil {
		return chunkstore.ID{}, err
	}
	id := rw.repo.TreeID(b)
	rw.encoded[id] = b
	return id, nil
}

// leftOut counts what a rewritten or repaired copy of a snapshot
// leaves out: regular files (those a backup counts), their bytes, and
// directories.
type leftOut struct{ files, bytes, dirs uint64 }

func (l *leftOut) add(o leftOut) {
	l.files += o.files
	l.bytes += o.bytes
	l.dirs += o.dirs
}

// without is the summary less what a copy leaves out: what 'snapshots'
// and 'stats' show of the copy (repair snapshots, rewrite) is then its
// own. Which of new, changed and unmodified the files were is not
// recorded; they are taken from unmodified first. The rest (times, bytes
// read and added) describes the backup and stays.
func (s Summary) without(l leftOut) Summary {
	files := l.files
	for _, n := range []*uint64{&s.FilesUnmodified, &s.FilesChanged, &s.FilesNew} {
		d := min(files, *n)
		*n -= d
		files -= d
	}
	s.BytesProcessed -= min(l.bytes, s.BytesProcessed)
	s.Dirs -= min(l.dirs, s.Dirs)
	return s
}
