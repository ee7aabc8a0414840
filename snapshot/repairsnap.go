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
	DryRun    bool               `json:"dry_run,omitempty"`
}

// ErrRepairMarked is returned when a snapshot needs data that only packs
// in a GC mark hold: it is not lost, and prune decides its fate first.
var ErrRepairMarked = errors.New("snapshot needs data that only packs marked for deletion hold")

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
// file lists holds data a snapshot needs: 'repair index' first. It refuses
// likewise (ErrRepairMarked) a snapshot that needs data only packs in GC
// marks hold: run prune first. All snapshots are examined before the first
// is rewritten.
//
// It writes trees as a backup does: under a backup session, never reusing
// packs in GC marks, committing each manifest only while its session is
// safely alive (Session.CommitBy). It needs the identity, as it reads the
// trees.
func RepairSnapshots(ctx context.Context, repo *chunkstore.Repository, opts RepairSnapshotsOptions) (*RepairSnapshotsResult, error) {
	if !repo.CanRead() {
		return nil, fmt.Errorf("repair snapshots needs the identity (--identity): %w", chunkstore.ErrNoIdentity)
	}
	if opts.Sessions == (chunkstore.SessionTiming{}) {
		opts.Sessions = chunkstore.DefaultSessionTiming
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	var sess *chunkstore.Session
	if !opts.DryRun {
		var err error
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
	// As a backup: marks first, so no new tree is deduplicated into a
	// pack a prune is about to delete; the index after the snapshots.
	if err := repo.ExcludeMarked(ctx); err != nil {
		return nil, err
	}
	snaps, errs, err := List(ctx, repo)
	if err != nil {
		return nil, err
	}
	for _, e := range errs {
		opts.Logger.Warn("snapshot unreadable, not repaired", "err", e)
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
	marked := map[chunkstore.ID]bool{}
	for _, p := range idx.Packs() {
		if idx.Excluded(p.ID) {
			for _, b := range p.Blobs {
				marked[b.ID] = true
			}
		}
	}
	copies := map[chunkstore.ID]chunkstore.ID{} // original → a repaired copy
	for _, s := range snaps {
		if s.Original != nil {
			copies[*s.Original] = s.ID
		}
	}
	if len(opts.IDs) > 0 {
		snaps = slices.DeleteFunc(snaps, func(s *Snapshot) bool { return !slices.Contains(opts.IDs, s.ID) })
	}

	// First pass: find the damage and every reason to refuse, changing
	// nothing.
	dry := &rewriter{repo: repo, dryRun: true, log: opts.Logger, done: map[chunkstore.ID]rewritten{}, marked: marked, lost: map[chunkstore.ID]bool{}}
	res := &RepairSnapshotsResult{DryRun: opts.DryRun, Damaged: []RepairedSnapshot{}}
	type todo struct {
		s *Snapshot
		i int // in res.Damaged
	}
	var work []todo
	for _, s := range snaps {
		res.Snapshots++
		d := RepairedSnapshot{Original: s.ID, Time: s.Time, Host: s.Host, Removed: []string{}}
		if c, ok := copies[s.ID]; ok {
			d.Repaired, d.AlreadyRepaired = c, true
			res.Damaged = append(res.Damaged, d)
			work = append(work, todo{s, len(res.Damaged) - 1})
			continue
		}
		if !dry.has(s.Tree, chunkstore.TreeBlob) {
			if marked[s.Tree] {
				return nil, fmt.Errorf("%w (snapshot %s, its root listing %s); run 'lifeboat prune' first", ErrRepairMarked, s.ID.Short(), s.Tree.Short())
			}
			dry.lost[s.Tree] = true
			d.Unrepairable = "its root directory listing is lost: nothing of it can be restored; forget it"
			res.Damaged = append(res.Damaged, d)
			continue
		}
		out, err := dry.tree(ctx, s.Tree, "/")
		if errors.Is(err, errListingLost) {
			d.Unrepairable = "its root directory listing cannot be read (" + err.Error() + "): nothing of it can be restored; forget it"
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
		work = append(work, todo{s, len(res.Damaged) - 1})
	}
	if len(dry.lost) > 0 {
		// Lost only if no pack the index misses holds it (marked ones
		// included): a backup's packs before its index file is written,
		// or packs a damaged index file listed.
		orphans, _, err := repo.ReadEveryUnindexed(ctx, present)
		if err != nil {
			return nil, err
		}
		for _, p := range orphans {
			for _, b := range p.Blobs {
				if dry.lost[b.ID] {
					return nil, fmt.Errorf("%w: pack %s, which no index file lists, holds blob %s that a snapshot needs (a backup may be uploading it; otherwise run 'lifeboat repair index' first)", ErrIndexIncomplete, chunkstore.PackName(p.ID), b.ID.Short())
				}
			}
		}
	}
	if opts.DryRun {
		return res, nil
	}

	// Second pass: write. The trees first, then the manifest that
	// commits them, then (with Forget) the original.
	rw := &rewriter{repo: repo, log: opts.Logger, done: map[chunkstore.ID]rewritten{}, marked: marked, lost: map[chunkstore.ID]bool{}}
	for _, w := range work {
		s, d := w.s, &res.Damaged[w.i]
		if !d.AlreadyRepaired {
			out, err := rw.tree(ctx, s.Tree, "/")
			if err != nil {
				return res, fmt.Errorf("snapshot %s: %w", s.ID.Short(), err)
			}
			if err := rw.flush(ctx); err != nil {
				return res, fmt.Errorf("save the repaired trees of snapshot %s: %w", s.ID.Short(), err)
			}
			m := s.Manifest
			m.Tree = out.id
			m.Tags = slices.Clone(m.Tags)
			if !slices.Contains(m.Tags, RepairedTag) {
				m.Tags = append(m.Tags, RepairedTag)
			}
			orig := s.ID
			m.Original = &orig
			if d.Repaired, err = commitRepaired(ctx, repo, sess, m); err != nil {
				return res, fmt.Errorf("save the repaired copy of snapshot %s: %w", s.ID.Short(), err)
			}
			opts.Logger.Info("snapshot repaired", "snapshot", s.ID.Short(), "repaired", d.Repaired.Short(), "removed", len(d.Removed))
		}
		if opts.Forget {
			if err := Forget(ctx, repo, s.ID); err != nil {
				return res, err
			}
			d.Forgotten = true
		}
	}
	return res, nil
}

// commitRepaired saves a repaired snapshot's manifest as Backup does: only
// while the session is safely alive, and within its commit window.
func commitRepaired(ctx context.Context, repo *chunkstore.Repository, sess *chunkstore.Session, m Manifest) (chunkstore.ID, error) {
	commitBy, err := sess.CommitBy()
	if err != nil {
		return chunkstore.ID{}, fmt.Errorf("not committing: %w", err)
	}
	saveCtx, cancel := context.WithDeadline(ctx, commitBy)
	defer cancel()
	return Save(saveCtx, repo, m)
}

// rewriter rewrites trees without their lost parts, each tree once
// however many snapshots share it.
type rewriter struct {
	repo   *chunkstore.Repository
	dryRun bool
	w      *chunkstore.Writer // of the snapshot being repaired, until flush
	done   map[chunkstore.ID]rewritten
	marked map[chunkstore.ID]bool // blobs in packs of GC marks
	lost   map[chunkstore.ID]bool // blobs found lost
	log    *slog.Logger
}

// errListingLost: a directory listing is not indexed, or its blob fails
// verification — its contents are lost.
var errListingLost = errors.New("directory listing lost")

type rewritten struct {
	id      chunkstore.ID
	changed bool
	removed []string // relative to the tree
}

// has reports whether a blob of type t is stored outside GC marks.
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
			if rw.has(c, chunkstore.DataBlob) {
				continue
			}
			if rw.marked[c] {
				return rewritten{}, fmt.Errorf("%w (%s, data blob %s); run 'lifeboat prune' first", ErrRepairMarked, path.Join(dir, name), c.Short())
			}
			rw.lost[c] = true
			lost = true
			break
		}
		if lost {
			out.changed = true
			out.removed = append(out.removed, name)
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
					for _, p := range r.removed {
						out.removed = append(out.removed, name+"/"+p)
					}
					n.Subtree = &r.id
				}
			case !errors.Is(err, errListingLost):
				return rewritten{}, err
			case rw.marked[sub]:
				return rewritten{}, fmt.Errorf("%w (%s, tree %s); run 'lifeboat prune' first", ErrRepairMarked, path.Join(dir, name), sub.Short())
			default:
				// The listing is lost (not indexed, or unreadable): keep
				// the directory, empty.
				rw.lost[sub] = true
				rw.log.Warn("directory listing lost; keeping the directory empty", "dir", path.Join(dir, name), "tree", sub.Short(), "err", err)
				empty, err := rw.save(ctx, &Tree{Nodes: []Node{}})
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
		if out.id, err = rw.save(ctx, &Tree{Nodes: nodes}); err != nil {
			return rewritten{}, err
		}
	}
	rw.done[id] = out
	return out, nil
}

// save encodes and stores a tree (in a dry run only computes its ID).
func (rw *rewriter) save(ctx context.Context, t *Tree) (chunkstore.ID, error) {
	b, err := t.Encode()
	if err != nil {
		return chunkstore.ID{}, err
	}
	if rw.dryRun {
		return rw.repo.TreeID(b), nil
	}
	if rw.w == nil {
		if rw.w, err = rw.repo.NewWriter(ctx, chunkstore.WriterOptions{}); err != nil {
			return chunkstore.ID{}, err
		}
	}
	id, _, err := rw.w.SaveBlob(ctx, chunkstore.TreeBlob, b)
	if err != nil {
		return chunkstore.ID{}, fmt.Errorf("save a repaired directory listing: %w", err)
	}
	return id, nil
}

// flush uploads the trees saved so far and indexes them.
func (rw *rewriter) flush(ctx context.Context) error {
	if rw.w == nil {
		return nil
	}
	w := rw.w
	rw.w = nil
	return w.Flush(ctx)
}
