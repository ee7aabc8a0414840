package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// TestAgentPreHookLeavesDaemon: a pre-hook that exits 0 after starting a
// background process which keeps its output open (a mount helper that
// daemonizes without redirecting) succeeded: the backup runs. It used
// to fail every attempt with "exec: WaitDelay expired before I/O complete".
func TestAgentPreHookLeavesDaemon(t *testing.T) {
	tc := newTestCoordinator(t)
	tc.smallPolicy("p")
	hooks := Hooks{"p": {Pre: &Hook{Command: "sleep 6 & echo mounted"}}}
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "b", Hooks: hooks})
	tc.waitEnrolled("b")
	j := tc.waitJob(tc.run("p"), "finish", final)
	if j.State != coordinator.JobSucceeded {
		t.Fatalf("job %s: %+v", j.State, j.Result)
	}
	// The operator learns of the daemon from the job, not only from the
	// agent's log.
	if all := strings.Join(j.Result.Warnings, "\n"); !strings.Contains(all, `pre-hook "sleep 6 & echo mounted" exited 0 but left processes`) {
		t.Errorf("warnings %q: want one naming the pre-hook that left a process holding its output", j.Result.Warnings)
	}
}
