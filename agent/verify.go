package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// verifyWorkers is how many packs a verify job reads at once. Each holds
// at most two 4 MiB ranges (chunkstore.VerifyPack).
const verifyWorkers = 4

// listedPack is one pack object in the repository listing.
type listedPack struct {
	id   chunkstore.ID
	size int64
}

// verify runs a verify job: it loads the repository index, lists every
// pack once, counts every shard, and reads the packs of the job's shards,
// checking each one's SHA-256 against its name and its structure with the
// writer key. Damage is a result: the report goes with a failed job that
// names the damaged packs, and the coordinator records it without a
// retry. Damage is a pack that fails its check (chunkstore.ErrCorrupt),
// or one the index references that the listing lacks (deleted behind the
// repository's back: its data is lost). The index is loaded before the
// listing, so a pack a backup adds meanwhile is never taken as missing
// (its index is written after it). A job that could not load the index
// or list, a pack that could not be read (after the store's retries; that
// says nothing about the pack), or a cancellation reports no verification,
// and the job is retried.
func (a *Agent) verify(ctx context.Context, job *runningJob) outcome {
	item := job.item
	params := item.Job.Verify
	if params == nil || len(params.Shards) == 0 {
		return outcome{err: fmt.Errorf("verify job %s names no shards", item.Job.ID)}
	}
	if item.Repository == nil || item.Repository.URL == "" {
		return outcome{err: fmt.Errorf("verify job %s came without access to repository %q (not registered?)", item.Job.ID, item.Job.Repository)}
	}
	repo, err := a.openRepo(ctx, item.Repository, "")
	if err != nil {
		return outcome{err: err}
	}
	if err := repo.LoadIndex(ctx); err != nil {
		return outcome{err: fmt.Errorf("verify %s: %w", item.Repository.Name, err)}
	}
	packs, other, err := listPacks(ctx, repo.Store())
	if err != nil {
		return outcome{err: fmt.Errorf("verify %s: %w", item.Repository.Name, err)}
	}
	rep := &coordinator.VerifyReport{Shards: slices.Clone(params.Shards), Packs: []coordinator.PackCheck{},
		Inventory: make([]coordinator.ShardCount, coordinator.VerifyShards)}
	want := map[int]bool{}
	for _, sh := range params.Shards {
		want[sh] = true
	}
	var todo []listedPack
	var total int64
	for sh := range rep.Inventory {
		rep.Inventory[sh].Shard = sh
	}
	listed := make(map[chunkstore.ID]bool, len(packs))
	for _, p := range packs {
		listed[p.id] = true
		sh := int(p.id[0])
		rep.Inventory[sh].Packs++
		rep.Inventory[sh].Bytes += p.size
		if want[sh] {
			todo = append(todo, p)
			total += p.size
		}
	}
	for _, p := range repo.Index().Packs() {
		if want[int(p.ID[0])] && !listed[p.ID] {
			pc := coordinator.PackCheck{ID: p.ID.String(), Size: int64(p.Size),
				Error: "missing: referenced by the index but not in the bucket (" + chunkstore.PackName(p.ID) + ")"}
			rep.Packs = append(rep.Packs, pc)
			a.log.Warn("pack missing", "job", item.Job.ID, "pack", pc.ID, "err", pc.Error)
		}
	}
	job.expect.Store(total)
	a.log.Info("verifying packs", "job", item.Job.ID, "repository", item.Repository.Name, "shards", len(params.Shards),
		"packs", len(todo), "bytes", total, "listed", len(packs))

	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(verifyWorkers)
	for _, p := range todo {
		g.Go(func() error {
			err := repo.VerifyPack(gctx, p.id, p.size)
			if gctx.Err() != nil {
				return context.Cause(gctx)
			}
			job.prog.Files.Add(1)
			job.prog.BytesRead.Add(p.size)
			pc := coordinator.PackCheck{ID: p.id.String(), Size: p.size}
			switch {
			case errors.Is(err, chunkstore.ErrNotFound):
				// Deleted since the listing (pruned): nothing to verify,
				// and the coverage forgets it.
				a.log.Info("pack vanished since the listing", "job", item.Job.ID, "pack", pc.ID)
				return nil
			case errors.Is(err, chunkstore.ErrNewerFormat):
				// Intact, but this agent cannot read its format: no
				// verdict on it, and the job fails saying so.
				return fmt.Errorf("pack %s: %w: upgrade this agent (nothing was recorded)", pc.ID, err)
			case errors.Is(err, chunkstore.ErrCorrupt):
				pc.Error = err.Error()
				a.log.Warn("pack failed verification", "job", item.Job.ID, "pack", pc.ID, "err", err)
			case err != nil:
				// A read that still failed after the store's retries
				// says nothing about the pack: no report, and the job is
				// retried later.
				return &readError{pack: pc.ID, err: err}
			}
			mu.Lock()
			rep.Packs = append(rep.Packs, pc)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if re, ok := errors.AsType[*readError](err); ok && ctx.Err() == nil {
			return outcome{err: fmt.Errorf("verify %s: %w; nothing was recorded, the job will be retried", item.Repository.Name, re)}
		}
		if errors.Is(err, chunkstore.ErrNewerFormat) && ctx.Err() == nil {
			return outcome{err: fmt.Errorf("verify %s: %w", item.Repository.Name, err)}
		}
		return outcome{err: fmt.Errorf("verification cancelled: %w", err)}
	}
	if ctx.Err() != nil {
		return outcome{err: fmt.Errorf("verification cancelled: %w", context.Cause(ctx))}
	}
	sort.Slice(rep.Packs, func(i, j int) bool { return rep.Packs[i].ID < rep.Packs[j].ID })
	out := outcome{verify: rep}
	// The snapshots, listed after the lease: the coordinator drops catalog
	// entries of snapshots forgotten outside it. A failed listing leaves
	// the catalog alone and is no reason to redo the verification.
	if ids, err := repo.ListMeta(ctx, chunkstore.KindSnapshot); err != nil {
		out.warnings = append(out.warnings, fmt.Sprintf("snapshots not listed, the catalog is not compared with the repository this time: %v", err))
	} else {
		rep.SnapshotsListed = true
		for _, id := range ids {
			rep.Snapshots = append(rep.Snapshots, id.String())
		}
		slices.Sort(rep.Snapshots)
	}
	if len(other) > 0 {
		out.warnings = append(out.warnings, fmt.Sprintf("%d objects under %s that are not packs, e.g. %s", len(other), chunkstore.DataPrefix, other[0]))
	}
	out.err = damageError(rep.Packs)
	return out
}

// readError is a pack read that failed for another reason than damage.
type readError struct {
	pack string
	err  error
}

func (e *readError) Error() string { return fmt.Sprintf("could not read pack %s: %v", e.pack, e.err) }
func (e *readError) Unwrap() error { return e.err }

// listPacks lists every pack once. A failed listing is an error, never
// an empty repository. other holds object names that are not packs.
func listPacks(ctx context.Context, st chunkstore.Reader) (packs []listedPack, other []string, err error) {
	err = st.List(ctx, chunkstore.DataPrefix, func(oi chunkstore.ObjectInfo) error {
		id, ok := chunkstore.ParsePackName(oi.Name)
		if !ok {
			other = append(other, oi.Name)
			return nil
		}
		packs = append(packs, listedPack{id: id, size: oi.Size})
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list packs: %w", err)
	}
	return packs, other, nil
}

// damageError summarises the packs that failed verification, or is nil.
func damageError(packs []coordinator.PackCheck) error {
	var bad []string
	for _, p := range packs {
		if p.Error != "" {
			bad = append(bad, p.ID+": "+p.Error)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	const show = 5
	noun := "packs"
	if len(bad) == 1 {
		noun = "pack"
	}
	msg := fmt.Sprintf("%d damaged %s: %s", len(bad), noun, strings.Join(bad[:min(show, len(bad))], ", "))
	if len(bad) > show {
		msg += fmt.Sprintf(", and %d more", len(bad)-show)
	}
	return errors.New(msg)
}
