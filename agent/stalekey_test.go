package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// TestAgentStaleWriterKey: after 'lifeboat key add' the writer key the
// coordinator holds is of an older generation. Every backup must fail,
// commit nothing, and say what to do where the key lives: on the
// coordinator ('lifeboat repo add --replace'), not on the agent.
func TestAgentStaleWriterKey(t *testing.T) {
	tc := newTestCoordinator(t)
	tc.smallPolicy("p")
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "s"})
	tc.waitEnrolled("s")
	if j := tc.waitJob(tc.run("p"), "finish", final); j.State != coordinator.JobSucceeded {
		t.Fatalf("before the key change: %s %+v", j.State, j.Result)
	}

	repo := tc.openRepo()
	_, recipient, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	_, old, _ := strings.Cut(string(tc.identity), "# public key: ")
	old, _, _ = strings.Cut(old, "\n")
	if _, err := repo.Rekey(t.Context(), []string{old, recipient}); err != nil {
		t.Fatal(err)
	}
	before := len(tc.snapshots())
	j := tc.waitJob(tc.run("p"), "finish", final)
	if j.State == coordinator.JobSucceeded {
		t.Fatalf("a backup with a stale writer key succeeded: %+v", j.Result)
	}
	t.Logf("error: %s", j.Result.Error)
	if !strings.Contains(j.Result.Error, "stale key") || !strings.Contains(j.Result.Error, "repo add") {
		t.Errorf("error %q: want 'stale key' and the coordinator-side fix ('lifeboat repo add ... --replace')", j.Result.Error)
	}
	if n := len(tc.snapshots()); n != before {
		t.Errorf("%d snapshots after the stale-key backup, want %d", n, before)
	}
}
