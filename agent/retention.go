package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// applyRetention forgets the snapshots of a policy's group that its
// retention does not keep, after a backup committed. The group is
// what this agent's backups of the policy produce: this host, the
// policy's paths, and exactly the policy's tags — a manual backup of the
// same paths with a tag of its own ('--tag before-upgrade'), or another
// policy's with more tags, is not this policy's to forget. Only manifests are
// removed; 'lifeboat prune' (with the identity, which the coordinator never
// hands to backup agents) frees the data. It returns the IDs removed and, if something went
// wrong, a warning for the job's result: retention never fails a backup
// that committed.
//
// now is the time the rules are applied at: the agent's clock, unless it
// is well ahead of the coordinator's (see retentionNow).
func (a *Agent) applyRetention(ctx context.Context, repo *chunkstore.Repository, p coordinator.Policy, made chunkstore.ID, now time.Time) ([]string, string) {
	rules := p.Retention.Rules()
	if rules.IsZero() {
		return nil, ""
	}
	repo.DistrustCache() // as forget does: the store's copies decide
	list, bad, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, fmt.Sprintf("retention not applied: list snapshots: %v", err)
	}
	group := snapshot.GroupKey(a.cfg.Host, p.Paths)
	var refs []snapshot.SnapshotRef
	for _, g := range snapshot.Groups(list, snapshot.Filter{Tags: p.Tags, ExactTags: true}) {
		if g.Key == group {
			refs = g.Refs()
			break
		}
	}
	_, forget, _ := snapshot.Keep(refs, rules, now)
	var removed []string
	for _, f := range forget {
		if f.ID == made.String() {
			continue // never the snapshot just made (Keep keeps the newest anyway)
		}
		id, err := chunkstore.ParseID(f.ID)
		if err == nil {
			err = snapshot.Forget(ctx, repo, id)
		}
		if err != nil {
			return removed, fmt.Sprintf("retention: %v (%d forgotten before it); the repository's storage credentials must allow deletes for agents to apply retention, or run 'lifeboat forget' elsewhere", err, len(removed))
		}
		removed = append(removed, f.ID)
	}
	if len(removed) > 0 {
		a.log.Info("retention: forgot snapshots; 'lifeboat prune' frees their data", "policy", p.Name, "forgotten", len(removed))
	}
	if len(bad) > 0 {
		return removed, fmt.Sprintf("retention: %d unreadable snapshots were not considered (run 'lifeboat check'): %v", len(bad), bad[0])
	}
	return removed, ""
}

// clockAheadTolerance is how far the agent's clock may run ahead of the
// coordinator's before retention goes by the coordinator's.
const clockAheadTolerance = 5 * time.Minute

// retentionNow is the time a job's retention is applied at. The agent
// dates its snapshots by its own clock; if that clock jumped ahead, its new
// snapshot is the newest, and keep_within measured from it (or periods
// counted from it) would forget every correctly dated one. snapshot.Keep
// keeps a snapshot dated after now and leaves it out of the rules, so now
// must not come from the same wrong clock: when the agent's clock is more
// than clockAheadTolerance ahead of the coordinator's (the lease's start,
// stamped by the coordinator, plus the time the job has run), the
// coordinator's is used, and the warning says so.
func (a *Agent) retentionNow(job *runningJob) (time.Time, string) {
	now := a.clock.Now()
	if job.item.Job.StartedAt.IsZero() {
		return now, ""
	}
	coord := job.item.Job.StartedAt.Add(now.Sub(job.started))
	if ahead := now.Sub(coord); ahead > clockAheadTolerance {
		return coord, fmt.Sprintf("agent %s's clock is %s ahead of the coordinator's: its snapshot is dated ahead, and retention went by the coordinator's time (fix the clock, then forget the misdated snapshot by ID)",
			a.cfg.Name, ahead.Round(time.Second))
	}
	return now, ""
}
