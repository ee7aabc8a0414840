package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// applyRetention forgets the snapshots of a policy's group that its
// retention does not keep, after a backup committed. The group is
// what this agent's backups of the policy produce: this host, the
// policy's paths, and every tag of the policy. Only manifests are
// removed; 'lifeboat prune' (with the identity, which agents do not hold)
// frees the data. It returns the IDs removed and, if something went
// wrong, a warning for the job's result: retention never fails a backup
// that committed.
func (a *Agent) applyRetention(ctx context.Context, repo *chunkstore.Repository, p coordinator.Policy, made chunkstore.ID) ([]string, string) {
	rules := p.Retention.Rules()
	if rules == (snapshot.Retention{}) {
		return nil, ""
	}
	list, bad, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, fmt.Sprintf("retention not applied: list snapshots: %v", err)
	}
	paths := cleanSorted(p.Paths)
	var refs []snapshot.SnapshotRef
	for _, s := range list {
		if s.Host != a.cfg.Host || !slices.Equal(cleanSorted(s.Paths), paths) || !hasAll(s.Tags, p.Tags) {
			continue
		}
		refs = append(refs, snapshot.SnapshotRef{ID: s.ID.String(), Time: s.Time})
	}
	_, forget, _ := snapshot.Keep(refs, rules, a.clock.Now())
	var removed []string
	for _, f := range forget {
		if f.ID == made.String() {
			continue // never the snapshot just made (Keep keeps the newest anyway)
		}
		name := chunkstore.SnapshotsPrefix + f.ID
		if err := repo.Store().Delete(ctx, name); err != nil {
			return removed, fmt.Sprintf("retention: could not forget snapshot %s (%d forgotten before it): %v; the repository's storage credentials must allow deletes for agents to apply retention, or run 'lifeboat forget' elsewhere", f.ID[:8], len(removed), err)
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

func cleanSorted(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Clean(p)
	}
	slices.Sort(out)
	return out
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
