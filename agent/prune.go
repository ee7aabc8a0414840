package agent

import (
	"context"
	"fmt"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// prune runs a prune job on a drill runner: 'lifeboat prune' of the
// policy's repository with the agent's identity and the policy's
// retention.max_unused. It is as safe beside running backups as the
// CLI's, by the repository's garbage-collection protocol: a mark that must
// wait for backups is reported, and the next prune deletes its packs. A
// prune that could not finish, or found another prune running on the
// repository (snapshot.ErrPruneBusy), fails and is retried.
func (a *Agent) prune(ctx context.Context, job *runningJob) outcome {
	item := job.item
	if err := a.checkRunnerJob(item); err != nil {
		return outcome{err: err}
	}
	maxUnused, err := coordinator.ParseMaxUnused(item.Policy.Retention.MaxUnused)
	if err != nil {
		return outcome{err: fmt.Errorf("prune %s of policy %q: retention.max_unused: %w", item.Job.ID, item.Policy.Name, err)}
	}
	repo, err := a.openRepoWith(ctx, item.Repository, item.Policy.Name, chunkstore.Credentials{Identities: a.cfg.Identity})
	if err != nil {
		return outcome{err: fmt.Errorf("prune could not start: %w", err)}
	}
	log := a.log.With("job", item.Job.ID, "repository", item.Repository.Name)
	res, err := snapshot.Prune(ctx, repo, snapshot.PruneOptions{MaxUnused: maxUnused, Logger: log})
	if err != nil {
		return outcome{err: fmt.Errorf("prune of repository %q: %w", item.Repository.Name, err)}
	}
	log.Info("pruned", "marked", res.MarkedPacks, "deleted", res.DeletedPacks, "deleted_bytes", res.DeletedBytes,
		"repacked", res.RepackedPacks, "pending_marks", res.PendingMarks)
	out := outcome{prune: &coordinator.PruneSummary{Snapshots: res.Snapshots, Packs: res.Packs, PackBytes: res.PackBytes,
		MarkedPacks: res.MarkedPacks, DeletedPacks: res.DeletedPacks, DeletedBytes: res.DeletedBytes,
		RepackedPacks: res.RepackedPacks, RepackWritten: res.RepackWritten,
		PendingMarks: res.PendingMarks, WaitingFor: len(res.Waiting)}}
	if len(res.Waiting) > 0 {
		w := res.Waiting[0]
		out.warnings = append(out.warnings, fmt.Sprintf("%d packs wait for %d running backups (e.g. host %s, pid %d, started %s) to end; the next prune deletes them",
			res.PendingPacks, len(res.Waiting), w.Host, w.PID, w.Started.UTC().Format("2006-01-02 15:04:05")))
	}
	return out
}
