package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestAgentKilledAfterCommitReportsSnapshot: the agent is killed (kill -9,
// OOM) after the backup committed its snapshot but before the report
// reached the coordinator — here during a slow post-hook. The next start
// must not report the job as "interrupted, no snapshot was committed":
// the snapshot exists, and a failure would raise alerts and run the
// backup again for nothing. It reports the committed snapshot.
func TestAgentKilledAfterCommitReportsSnapshot(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	marks := t.TempDir()
	hooks := Hooks{"p": {Post: &Hook{Command: fmt.Sprintf("touch %s/post; sleep 30", marks), Timeout: coordinator.Duration(6 * time.Second)}}}
	tc.policy(coordinator.Policy{Name: "p", Paths: []string{src}, MaxAttempts: 1})
	dataDir := t.TempDir()
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: dataDir, Name: "k", Hooks: hooks})
	tc.waitEnrolled("k")

	id := tc.run("p")
	waitFor(t, "the post-hook", func() bool { _, err := os.Stat(filepath.Join(marks, "post")); return err == nil })
	// What kill -9 leaves on disk at this point: a copy of the data
	// directory, which a new process (same name, same credential) starts from.
	killed := filepath.Join(t.TempDir(), "data")
	if out, err := exec.Command("cp", "-a", dataDir, killed).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	snaps := tc.snapshots()
	if len(snaps) != 1 {
		t.Fatalf("%d snapshots before the post-hook, want the committed one", len(snaps))
	}
	// The first agent runs on here, as a killed one would not: ending
	// its post-hook (what the next start does to a killed one's) would
	// let it report the job itself.
	startAgent(t, Config{Servers: []string{tc.srv.URL}, DataDir: killed, Name: "k", keepLeftovers: true})
	j := tc.waitJob(id, "finish", final)
	if j.State != coordinator.JobSucceeded || j.Result.SnapshotID != snaps[0].ID.String() {
		t.Fatalf("job %s (attempt %d): %+v; want succeeded with the committed snapshot %s", j.State, j.Attempt, j.Result, snaps[0].ID)
	}
	if all := strings.Join(j.Result.Warnings, "\n"); !strings.Contains(all, "stopped after") {
		t.Errorf("warnings %q: want one saying the agent stopped after the commit", j.Result.Warnings)
	}
}
