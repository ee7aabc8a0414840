package agent

import (
	"context"
	"fmt"

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
func (a *Agent) applyRetention(ctx context.Context, repo *chunkstore.Repository, p coordinator.Policy, made chunkstore.ID) ([]string, string) {
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
	_, forget, _ := snapshot.Keep(refs, rules, a.clock.Now())
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
