package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestAgentStreamEmptySkipsRetention: a stream command that exits 0 but
// writes nothing (a dump whose output went elsewhere, a wrapper that
// swallowed the error) commits an empty snapshot with a warning. Like a
// partial snapshot, it must not make retention forget the good dumps it
// would replace: with keep_last 1, one empty run would otherwise leave no
// usable dump at all.
func TestAgentStreamEmptySkipsRetention(t *testing.T) {
	tc := newTestCoordinator(t)
	dir := t.TempDir()
	dump := filepath.Join(dir, "orders.src")
	if err := os.WriteFile(dump, fixture.Random(5, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	hooks := Hooks{"orders": {Stream: &StreamHook{Command: "cat " + dump, Filename: "orders.sql"}}}
	tc.policy(coordinator.Policy{Name: "orders", Paths: []string{"/orders.sql"}, MaxAttempts: 1,
		Retention: coordinator.Retention{KeepLast: 1}})
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "db", Hooks: hooks})
	tc.waitEnrolled("db")

	good := tc.waitJob(tc.run("orders"), "finish", final)
	if good.State != coordinator.JobSucceeded {
		t.Fatalf("first dump: %s %+v", good.State, good.Result)
	}
	if err := os.WriteFile(dump, nil, 0o600); err != nil { // the dump now writes nothing
		t.Fatal(err)
	}
	empty := tc.waitJob(tc.run("orders"), "finish", final)
	if empty.State != coordinator.JobSucceeded {
		t.Fatalf("empty dump: %s %+v", empty.State, empty.Result)
	}
	if len(empty.Result.Forgotten) != 0 {
		t.Errorf("an empty dump forgot %v (the last good dump %s)", empty.Result.Forgotten, good.Result.SnapshotID)
	}
	if all := strings.Join(empty.Result.Warnings, "\n"); !strings.Contains(all, "wrote nothing") || !strings.Contains(all, "retention not applied") {
		t.Errorf("warnings %q: want the empty dump and the skipped retention", empty.Result.Warnings)
	}
	found := false
	for _, s := range tc.snapshots() {
		found = found || s.ID.String() == good.Result.SnapshotID
	}
	if !found {
		t.Errorf("the last good dump %s is gone from the repository", good.Result.SnapshotID)
	}
}
