package snapshot

import (
	"context"
	"log/slog"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// RepairOptions tune RepairIndex.
type RepairOptions struct {
	DryRun   bool // report what is wrong, change nothing
	Sessions chunkstore.SessionTiming
	Logger   *slog.Logger
}

// RepairIndex rebuilds the index from the packs the store holds
// (chunkstore's RepairIndex): it removes damaged index files, drops the
// entries of packs that are gone and indexes the packs no readable index
// file lists. It holds the repository's prune session while it works, so
// it never runs beside a prune (both rewrite the index) and a prune
// started meanwhile stops with ErrPruneBusy; backups may run.
func RepairIndex(ctx context.Context, repo *chunkstore.Repository, opts RepairOptions) (*chunkstore.IndexRepair, error) {
	opts.Sessions = opts.Sessions.OrDefault()
	opts.Logger = orDiscard(opts.Logger)
	ro := chunkstore.IndexRepairOptions{DryRun: opts.DryRun}
	held, err := holdPruneSession(ctx, repo, opts.DryRun, opts.Sessions, opts.Logger, "repair index")
	if err != nil {
		return nil, err
	}
	defer held.end()
	if held != nil {
		ro.WriteWindow = held.writeWindow
	}
	return repo.RepairIndex(ctx, ro)
}

// orDiscard returns log, or a logger that discards everything if it is nil.
func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
