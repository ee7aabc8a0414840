package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// RepairPacksOptions tune RepairPacks.
type RepairPacksOptions struct {
	DryRun   bool // read and verify, report what would be salvaged; write nothing
	Sessions chunkstore.SessionTiming
	Logger   *slog.Logger
}

// RepairedPack is one damaged pack and what was saved of it.
type RepairedPack struct {
	Pack string `json:"pack"`
	// Intact: the pack matches its name after all (nothing to repair).
	Intact bool `json:"intact,omitempty"`
	// Salvaged blobs authenticated and matched their IDs (here or in
	// another damaged pack named with it) and were copied into new packs.
	// Elsewhere ones failed here but a pack not named holds them (its copy
	// is not verified here: 'check --read-data' does). Lost ones failed,
	// or lay beyond the pack's end, and no other pack holds them.
	Salvaged  int      `json:"salvaged_blobs"`
	Elsewhere int      `json:"elsewhere_blobs"`
	Lost      int      `json:"lost_blobs"`
	LostIDs   []string `json:"lost_blob_ids"`
	Problem   string   `json:"problem,omitempty"` // why the pack is damaged
}

// RepairPacksResult says what RepairPacks found and did.
type RepairPacksResult struct {
	Packs        []RepairedPack `json:"packs"`
	Written      int64          `json:"written_bytes"` // of new packs
	IndexWritten int            `json:"index_files_written"`
	IndexRemoved int            `json:"index_files_removed"`
	DryRun       bool           `json:"dry_run,omitempty"`
}

// RepairPacks salvages damaged packs (named by 'check --read-data'): every
// blob of such a pack that still authenticates and matches its keyed ID is
// copied into a new pack, and the damaged pack is then dropped from the
// index. What could not be saved is reported; 'repair snapshots' then
// cuts it out of the snapshots that reference it. The damaged object is
// left in place, unindexed (nothing but index files is deleted): a prune
// deletes it once no snapshot needs data that is lost.
//
// It rewrites the index, so it holds the prune session (no prune or index
// repair runs beside it); backups may run. It needs the identity (blobs
// are decrypted to be verified and copied).
func RepairPacks(ctx context.Context, repo *chunkstore.Repository, ids []chunkstore.ID, opts RepairPacksOptions) (*RepairPacksResult, error) {
	if !repo.CanRead() {
		return nil, fmt.Errorf("repair packs needs the identity (--identity): %w", chunkstore.ErrNoIdentity)
	}
	opts.Sessions = opts.Sessions.OrDefault()
	opts.Logger = orDiscard(opts.Logger)
	res := &RepairPacksResult{DryRun: opts.DryRun, Packs: []RepairedPack{}}
	held, err := holdPruneSession(ctx, repo, opts.DryRun, opts.Sessions, opts.Logger, "repair packs")
	if err != nil {
		return nil, err
	}
	defer held.end()
	if err := loadIndexForPrune(ctx, repo); err != nil {
		return nil, err
	}
	idx := repo.Index()
	marks, err := repo.GCMarks(ctx)
	if err != nil {
		return nil, err
	}
	// Excluded: marked packs (as for any writer) and the damaged ones, so
	// that their blobs count as not stored and are written anew.
	excluded := chunkstore.MarkedPacks(marks)
	var damaged []*chunkstore.PackEntry
	named := map[chunkstore.ID]bool{}
	for _, id := range ids {
		if named[id] {
			continue
		}
		named[id] = true
		p := idx.Pack(id)
		if p == nil {
			return nil, fmt.Errorf("pack %s is not in the index: nothing to salvage from it ('lifeboat repair index' indexes the packs the store holds)", chunkstore.PackName(id))
		}
		if excluded[id] {
			return nil, fmt.Errorf("pack %s is marked for deletion (no snapshot needed its data when the mark was made): let 'lifeboat prune' delete it", chunkstore.PackName(id))
		}
		damaged = append(damaged, p)
	}
	// Every other pack holding a blob of a damaged one is excluded too,
	// for this process: its copy has not been verified, so each blob that
	// verifies here is written anew (prune later keeps one copy).
	inDamaged := map[chunkstore.ID]bool{}
	for _, p := range damaged {
		for _, b := range p.Blobs {
			inDamaged[b.ID] = true
		}
	}
	present, err := repo.ListPacks(ctx)
	if err != nil {
		return nil, err
	}
	// A present pack not named that holds a blob keeps it reachable, marked
	// or not (prune's sweep keeps a marked pack whose blob is needed).
	elsewhere := map[chunkstore.ID]bool{}
	for _, p := range idx.Packs() {
		if named[p.ID] {
			excluded[p.ID] = true
			continue
		}
		for _, b := range p.Blobs {
			if inDamaged[b.ID] {
				if _, ok := present[p.ID]; ok {
					elsewhere[b.ID] = true
				}
				excluded[p.ID] = true
			}
		}
	}
	idx.SetExcluded(excluded)

	var w *chunkstore.Writer
	if !opts.DryRun {
		if w, err = repo.NewWriter(ctx, chunkstore.WriterOptions{}); err != nil {
			return nil, err
		}
	}
	drop := map[chunkstore.ID]bool{}
	saved := map[chunkstore.ID]bool{}               // verified in some damaged pack
	failed := make([][]chunkstore.ID, len(damaged)) // blobs that failed, by pack
	res.Packs = make([]RepairedPack, len(damaged))
	var plain []byte
	for i, p := range damaged {
		res.Packs[i] = RepairedPack{Pack: chunkstore.PackName(p.ID), LostIDs: []string{}}
		rp := &res.Packs[i]
		b, err := repo.Store().Get(ctx, rp.Pack, 0, -1)
		switch {
		case errors.Is(err, chunkstore.ErrNotFound):
			b, rp.Problem = nil, "the pack is missing"
		case err != nil:
			res.Packs = res.Packs[:i]
			return res, fmt.Errorf("read %s: %w", rp.Pack, err)
		case chunkstore.Hash(b) == p.ID:
			rp.Intact = true
			continue
		case int64(len(b)) != int64(p.Size):
			rp.Problem = fmt.Sprintf("%d bytes, the index says %d", len(b), p.Size)
		default:
			rp.Problem = "its content does not match its name"
		}
		// A key that does not open is the identity's problem, not the
		// pack's: nothing is dropped for it.
		key, err := repo.PackKey(p)
		if err != nil {
			res.Packs = res.Packs[:i] // the ones read whole; err names this one
			return res, fmt.Errorf("salvage %s: %w", rp.Pack, err)
		}
		for _, bl := range p.Blobs {
			out, err := openPackBlob(repo, key, bl, b, rp.Pack, plain)
			if err != nil {
				failed[i] = append(failed[i], bl.ID)
				continue
			}
			plain = out
			rp.Salvaged++
			saved[bl.ID] = true
			if w == nil || !idx.Reserve(bl.ID) {
				continue // a dry run, or copied from another damaged pack already
			}
			if _, err := w.SaveReserved(ctx, bl.Type, bl.ID, plain); err != nil {
				res.Packs = res.Packs[:i]
				return res, fmt.Errorf("salvage %s: %w", rp.Pack, err)
			}
		}
		drop[p.ID] = true
	}
	// Lost: verified in no damaged pack and held by no other pack.
	for i := range res.Packs {
		rp := &res.Packs[i]
		for _, id := range failed[i] {
			switch {
			case saved[id]:
				rp.Salvaged++ // another damaged pack's copy verified
			case elsewhere[id]:
				rp.Elsewhere++
			default:
				rp.Lost++
				rp.LostIDs = append(rp.LostIDs, id.String())
			}
		}
		opts.Logger.Info("damaged pack read", "pack", rp.Pack, "salvaged", rp.Salvaged, "elsewhere", rp.Elsewhere, "lost", rp.Lost)
	}
	sort.Slice(res.Packs, func(i, j int) bool { return res.Packs[i].Pack < res.Packs[j].Pack })
	if w == nil {
		return res, nil
	}
	// The copies first (new packs and their index file), then an index
	// without the damaged packs, while the prune session is safely alive.
	if err := w.Flush(ctx); err != nil {
		return res, fmt.Errorf("save the salvaged blobs: %w", err)
	}
	res.Written = w.Stats().StoredAdded
	if len(drop) == 0 {
		return res, nil
	}
	wctx, cancel, err := held.writeWindow(ctx)
	if err != nil {
		return res, err
	}
	defer cancel()
	// nil: the packs it wrote came after its listing.
	if res.IndexWritten, res.IndexRemoved, err = repo.RewriteIndex(wctx, drop, nil); err != nil {
		return res, err
	}
	return res, nil
}
