package chunkstore

import (
	"context"
	"fmt"
	"sort"
)

// IndexRepair is what RepairIndex found and (unless DryRun) did.
type IndexRepair struct {
	IndexFiles int `json:"index_files"` // listed, damaged ones included
	// DamagedIndex are index files that could not be read. They are
	// removed: the packs they listed are described again from the packs
	// themselves (their sealed trailers).
	DamagedIndex []string `json:"damaged_index_files"`
	Packs        int      `json:"packs"` // in the store
	PackBytes    int64    `json:"pack_bytes"`
	// MissingPacks are listed in the index but not in the store. Their
	// entries are dropped, so backups stop deduplicating against blobs
	// that are gone and store them again when they meet the data.
	MissingPacks []string `json:"missing_packs"`
	MissingBlobs int      `json:"missing_blobs"`
	// WrongSize are packs the store holds with another size than the
	// index records (truncated or replaced). Their entries are kept:
	// every blob a restore reads from them is still verified, and
	// 'check --read-data' tells what is left of them.
	WrongSize []string `json:"wrong_size_packs"`
	// Reindexed are packs no readable index file listed, read and
	// verified whole and described from their trailers.
	Reindexed      int   `json:"reindexed_packs"`
	ReindexedBytes int64 `json:"reindexed_bytes"`
	// DamagedPacks are unlisted packs that failed verification. They stay
	// unindexed (no backup reuses them); prune deletes them.
	DamagedPacks []string `json:"damaged_packs"`
	IndexWritten int      `json:"index_files_written"`
	IndexRemoved int      `json:"index_files_removed"`
	DryRun       bool     `json:"dry_run,omitempty"`
}

// Changed reports whether the index needed (or, in a dry run, needs) to
// be rewritten.
func (ir *IndexRepair) Changed() bool {
	return len(ir.DamagedIndex)+len(ir.MissingPacks)+ir.Reindexed > 0
}

// IndexRepairOptions tune RepairIndex.
type IndexRepairOptions struct {
	DryRun bool
	// WriteWindow, if set, is asked right before the index is rewritten
	// for the context to rewrite it in (the caller's session must still be
	// held then, and until the context ends); an error stops the repair
	// before anything is written.
	WriteWindow func(context.Context) (context.Context, context.CancelFunc, error)
}

// RepairIndex makes the index describe exactly the packs the store holds:
// it reads every index file, drops the entries of packs that are gone,
// reads every pack that no readable index file lists (verifying its hash
// and trailer, as backups do before they reuse one), and then writes
// index files for all of them and removes the old ones, damaged ones
// included. New index files are written before any old one is removed, and
// index files others write meanwhile are left alone, so backups may run
// (and LoadIndex copes with files vanishing while it reads). Two rewrites
// of the index must not run at once: the caller holds the repository's
// prune session (snapshot.RepairIndex). Packs in GC marks are re-read and
// indexed like the others (prune's sweep decides their fate from the
// index); an indexed, marked pack that is gone (a prune deleted it and has
// not yet removed its mark) is not reported as missing, and the rewrite
// leaves it out, as it does every indexed pack that is gone.
//
// A writer key is enough: the trailers and index files are sealed with the
// metadata key, which writers hold. Nothing is deleted but index files.
func (r *Repository) RepairIndex(ctx context.Context, opts IndexRepairOptions) (*IndexRepair, error) {
	// Packs indexed from the store are labelled with the credential's
	// generation's view (unindexedGen): it must be the current one.
	if err := r.checkGeneration(ctx); err != nil && !opts.DryRun {
		return nil, err
	}
	if err := r.LoadIndex(ctx); err != nil {
		return nil, err
	}
	if err := r.ExcludeMarked(ctx); err != nil {
		return nil, err
	}
	present, err := r.ListPacks(ctx)
	if err != nil {
		return nil, err
	}
	res := &IndexRepair{IndexFiles: r.indexFiles, Packs: len(present), DryRun: opts.DryRun,
		DamagedIndex: []string{}, MissingPacks: []string{}, WrongSize: []string{}, DamagedPacks: []string{}}
	for _, size := range present {
		res.PackBytes += size
	}
	for _, p := range r.indexProblems {
		res.DamagedIndex = append(res.DamagedIndex, p.Object)
	}
	drop := map[ID]bool{}
	for _, p := range r.index.Packs() {
		size, ok := present[p.ID]
		switch {
		case !ok && r.index.Excluded(p.ID):
			// Marked and already deleted by a prune that has not yet
			// removed its mark: not lost, and the rewrite leaves it out.
		case !ok:
			if gone, err := r.packGone(ctx, p.ID); err != nil {
				return nil, fmt.Errorf("repair index: %w", err)
			} else if !gone {
				continue
			}
			drop[p.ID] = true
			res.MissingPacks = append(res.MissingPacks, PackName(p.ID))
			res.MissingBlobs += len(p.Blobs)
		case size != int64(p.Size):
			res.WrongSize = append(res.WrongSize, PackName(p.ID))
		}
	}
	// Marked packs too: a prune's sweep needs their entries to keep one
	// that a backup reused meanwhile.
	good, damaged, err := r.ReadEveryUnindexed(ctx, present)
	if err != nil {
		return nil, err
	}
	res.Reindexed = len(good)
	for _, p := range good {
		res.ReindexedBytes += int64(p.Size)
	}
	res.DamagedPacks = append(res.DamagedPacks, damaged...)
	sort.Strings(res.DamagedIndex)
	sort.Strings(res.MissingPacks)
	sort.Strings(res.WrongSize)
	if opts.DryRun || !res.Changed() {
		return res, nil
	}
	r.index.AddPacks(good)
	wctx := ctx
	if opts.WriteWindow != nil {
		var cancel context.CancelFunc
		if wctx, cancel, err = opts.WriteWindow(ctx); err != nil {
			return res, err
		}
		defer cancel()
	}
	res.IndexWritten, res.IndexRemoved, err = r.rewriteIndex(wctx, drop, present, true)
	if err != nil {
		return res, fmt.Errorf("repair index: %w", err)
	}
	return res, nil
}
