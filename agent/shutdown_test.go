package agent

import (
	"context"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestAgentGracefulShutdown: when Run's context ends (SIGTERM in the
// daemon) the agent takes no more work; a running job that finishes
// within ShutdownGrace commits and is reported, one that does not is
// cancelled without committing, and Run returns either way.
func TestAgentGracefulShutdown(t *testing.T) {
	for _, tc := range []struct {
		name     string
		grace    time.Duration
		release  bool // let the upload finish after the shutdown begins
		wantSnap bool
	}{
		{"job finishes within the grace period", 20 * time.Second, true, true},
		{"grace period runs out", 300 * time.Millisecond, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			co := newTestCoordinator(t)
			src := t.TempDir()
			fixture.Create(t, src, smallTree())
			co.policy(coordinator.Policy{Name: "p", Paths: []string{src}, MaxAttempts: 1})
			bs := &blockingStore{started: make(chan struct{}), release: make(chan struct{})}
			a, err := New(Config{Servers: []string{co.srv.URL}, JoinToken: co.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "g1",
				Logger: testLogger(t), LeaseTTL: 3 * time.Second, PollWait: time.Second, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
				ShutdownGrace: tc.grace, Version: "test",
				wrapStore: func(st chunkstore.Store) chunkstore.Store { bs.Store = st; return bs }})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			co.waitEnrolled("g1")
			id := co.run("p")
			select {
			case <-bs.started:
			case <-time.After(30 * time.Second):
				t.Fatal("backup never started uploading")
			}
			start := time.Now()
			cancel() // SIGTERM
			if tc.release {
				time.Sleep(200 * time.Millisecond)
				close(bs.release)
			}
			select {
			case <-done:
			case <-time.After(tc.grace + 15*time.Second):
				t.Fatal("Run did not return after the shutdown began")
			}
			if !tc.release {
				close(bs.release)
				if waited := time.Since(start); waited < tc.grace {
					t.Errorf("Run returned after %v, before the %v grace period", waited, tc.grace)
				}
			}
			snaps := co.snapshots()
			if got := len(snaps) > 0; got != tc.wantSnap {
				t.Fatalf("snapshot committed = %v, want %v", got, tc.wantSnap)
			}
			if tc.wantSnap {
				j := co.waitJob(id, "finish", final)
				if j.State != coordinator.JobSucceeded {
					t.Fatalf("job %s: %+v", j.State, j.Result)
				}
			}
		})
	}
}
