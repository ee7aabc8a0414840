package agent

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestAgentRetentionClockAhead: the agent's clock has jumped a year ahead
// (here: the real clock, with the coordinator's a year behind it, which is
// the true time). Its backup is dated a year ahead; its retention must not
// measure keep_within from that snapshot and forget every correctly dated
// one, as Keep already refuses to for a snapshot dated after now — the
// agent's "now" is the wrong one here.
func TestAgentRetentionClockAhead(t *testing.T) {
	tc := newTestCoordinator(t)
	const year = 365 * 24 * time.Hour
	tc.clock.Advance(-year) // the true time
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	tc.policy(coordinator.Policy{Name: "p", Paths: []string{src}, MaxAttempts: 1,
		Retention: coordinator.Retention{KeepWithin: coordinator.Duration(30 * 24 * time.Hour)}})
	// Backups of the policy made when the agent's clock was right: the
	// last three days, by the true time.
	repo := tc.openRepo()
	var good []string
	for d := 3; d >= 1; d-- {
		res, err := snapshot.Backup(t.Context(), repo, snapshot.BackupOptions{Paths: []string{src}, Host: "h.example",
			Time: tc.clock.Now().Add(-time.Duration(d) * 24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		good = append(good, res.ID.String())
	}
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "h", Host: "h.example"})
	tc.waitEnrolled("h")
	j := tc.waitJob(tc.run("p"), "finish", final)
	if j.State != coordinator.JobSucceeded {
		t.Fatalf("job %s: %+v", j.State, j.Result)
	}
	if len(j.Result.Forgotten) > 0 {
		t.Errorf("a backup dated a year ahead had retention forget %v (good: %v)", j.Result.Forgotten, good)
	}
	if w := strings.Join(j.Result.Warnings, "\n"); !strings.Contains(w, "clock is") {
		t.Errorf("warnings %q: want the clock ahead named", j.Result.Warnings)
	}
	var ids []string
	for _, s := range tc.snapshots() {
		ids = append(ids, s.ID.String())
	}
	for _, id := range good {
		if !slices.Contains(ids, id) {
			t.Errorf("correctly dated snapshot %s is gone", id)
		}
	}
}
