package agent

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestAgentLeaseLostAfterCommitReportsSnapshot: the coordinator is
// unreachable for a while during the post-hook, after the backup
// committed. The agent gives the lease up a margin before its deadline;
// the coordinator, reachable again when the hook ends, still holds it.
// The committed snapshot is the job's outcome: reporting "lease lost"
// (a failure, then a retry making a second snapshot) would be false.
func TestAgentLeaseLostAfterCommitReportsSnapshot(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	marks := t.TempDir()
	release := filepath.Join(marks, "release")
	hooks := Hooks{"p": {Post: &Hook{Command: fmt.Sprintf("touch %s/post; while [ ! -e %s ]; do sleep 0.05; done", marks, release)}}}
	tc.policy(coordinator.Policy{Name: "p", Paths: []string{src}, MaxAttempts: 2})

	// A proxy that can make heartbeats fail as an unreachable coordinator does.
	var block atomic.Bool
	target, _ := url.Parse(tc.srv.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if block.Load() && strings.HasSuffix(r.URL.Path, "/heartbeat") {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	a, _ := startAgent(t, Config{Servers: []string{proxy.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "l",
		Hooks: hooks, LeaseTTL: 6 * time.Second})
	tc.waitEnrolled("l")
	id := tc.run("p")
	waitFor(t, "the post-hook", func() bool { _, err := os.Stat(filepath.Join(marks, "post")); return err == nil })
	block.Store(true)
	waitFor(t, "the agent to give the lease up", func() bool { return testutilCounter(a.m.leaseLost) > 0 })
	block.Store(false)
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	j := tc.waitJob(id, "finish", final)
	snaps := tc.snapshots()
	if len(snaps) != 1 {
		t.Errorf("%d snapshots, want the one committed", len(snaps))
	}
	if j.State != coordinator.JobSucceeded || j.Attempt != 1 || len(snaps) == 0 || j.Result.SnapshotID != snaps[0].ID.String() {
		t.Fatalf("job %s attempt %d: %+v; want succeeded with the committed snapshot", j.State, j.Attempt, j.Result)
	}
}
