package agent

import (
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// TestAgentHungStreamCancellable: a stream command that hangs (a dump
// waiting forever on a lock) has no timeout of its own; cancelling the
// job must end it, free the agent's slot, and commit nothing.
func TestAgentHungStreamCancellable(t *testing.T) {
	tc := newTestCoordinator(t)
	hooks := Hooks{"hang": {Stream: &StreamHook{Command: "echo start; sleep 3600", Filename: "h.sql"}}}
	tc.policy(coordinator.Policy{Name: "hang", Paths: []string{"/h.sql"}, MaxAttempts: 1})
	a, _ := startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "h", Hooks: hooks})
	tc.waitEnrolled("h")
	id := tc.run("hang")
	waitFor(t, "the job to run", func() bool { return len(a.runningIDs()) == 1 })
	time.Sleep(500 * time.Millisecond)
	tc.cancel(id)
	start := time.Now()
	waitFor(t, "the agent to end the hung job", func() bool { return len(a.runningIDs()) == 0 })
	t.Logf("ended %v after the cancel", time.Since(start))
	if n := len(tc.snapshots()); n != 0 {
		t.Errorf("%d snapshots committed for a cancelled hung stream", n)
	}
}
