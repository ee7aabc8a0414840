package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// leaderKillEnv is what the leader-kill phase of TestAgentProcesses uses
// of its harness.
type leaderKillEnv struct {
	procs   []*serverProc
	urls    []string
	token   string
	rng     *rand.Rand
	lb      func(args ...string) (string, error)
	jobs    func(policy string) []coordinator.Job
	running func(policy string) *coordinator.Job
	change  func()            // gives agent a's next backup work to do
	check   func(what string) // 'check --read-data' with the agents stopped
}

// leaderKill kills the coordinator leader with SIGKILL while agent a is in
// the middle of a backup job, and checks that the job completes exactly
// once: it ends succeeded, the catalog holds one snapshot for its ID, no
// second job stands for its (policy, instant, agent), and the repository
// checks clean. The killed node is restarted and must catch up.
func leaderKill(t *testing.T, e leaderKillEnv) {
	status := func(addr string) (coordinator.ClusterStatus, error) {
		return clusterStatus(e.lb("cluster", "status", "--json", "--addr", addr))
	}
	show := func(id, addr string) (coordinator.Job, error) {
		var j coordinator.Job
		out, err := e.lb("job", "show", id, "--json", "--addr", addr)
		if err != nil {
			return j, err
		}
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			return j, fmt.Errorf("job show --json: %v\n%s", err, out)
		}
		return j, nil
	}
	const tries = 6
	// The kill comes up to maxDelay after the job is seen running. When a
	// job finished before the kill, the next kill aims inside the time
	// that job had left, so fast machines (short backups) still get a
	// kill mid-job.
	maxDelay := 300 * time.Millisecond
	for try := 1; ; try++ {
		if try > tries {
			t.Fatalf("the leader was never killed while a job ran, in %d tries", tries)
		}
		// A fresh backup with plenty to do, under a known leader.
		e.change()
		var j *coordinator.Job
		waitFor(t, 60*time.Second, "a running pa job", func() bool {
			j = e.running("pa")
			return j != nil
		})
		var cs coordinator.ClusterStatus
		waitFor(t, 30*time.Second, "a leader", func() bool {
			var err error
			if cs, err = status(strings.Join(e.urls, ",")); err != nil {
				t.Fatal(err)
			}
			return cs.Leader != ""
		})
		leader := -1
		for i, p := range e.procs {
			if p.name == cs.Leader {
				leader = i
			}
		}
		if leader < 0 {
			t.Fatalf("leader %q is none of the nodes", cs.Leader)
		}
		var survivors []string
		for i, u := range e.urls {
			if i != leader {
				survivors = append(survivors, u)
			}
		}
		delay := time.Duration(e.rng.Int64N(int64(maxDelay))).Round(time.Millisecond)
		time.Sleep(delay)
		killedAt := time.Now()
		e.procs[leader].kill()
		t.Logf("leader kill (try %d): killed leader %s %v into job %s (attempt %d)", try, cs.Leader, delay, j.ID, j.Attempt)

		// The job ends under the new leader, and succeeds.
		var done coordinator.Job
		waitFor(t, 90*time.Second, "job "+j.ID+" to end after the leader kill", func() bool {
			got, err := show(j.ID, strings.Join(survivors, ","))
			if err != nil {
				return false // e.g. during the election
			}
			done = got
			return done.State.Final()
		})
		midJob := done.FinishedAt.After(killedAt)
		if !midJob {
			maxDelay = max(20*time.Millisecond, (delay+done.FinishedAt.Sub(killedAt))*3/4)
		}
		if done.State != coordinator.JobSucceeded {
			t.Fatalf("job %s ended %s after the leader kill (attempt %d): %+v", done.ID, done.State, done.Attempt, done.Result)
		}
		if done.Result == nil || done.Result.SnapshotID == "" {
			t.Fatalf("job %s succeeded without a snapshot: %+v", done.ID, done.Result)
		}
		t.Logf("job %s succeeded on attempt %d with snapshot %s (finished %v after the kill)", done.ID, done.Attempt, done.Result.SnapshotID, done.FinishedAt.Sub(killedAt).Round(time.Millisecond))

		// One job per (policy, instant, agent), this one included.
		for _, policy := range []string{"pa", "pb"} {
			seen := map[string]string{}
			for _, x := range e.jobs(policy) {
				k := x.Policy + "|" + x.ScheduledAt.UTC().Format(time.RFC3339Nano) + "|" + x.Agent
				if other, dup := seen[k]; dup {
					t.Errorf("two jobs for (%s): %s and %s", k, other, x.ID)
				}
				seen[k] = x.ID
			}
		}

		// Exactly one catalog entry for the job, the snapshot it reports.
		var entries []coordinator.CatalogEntry
		waitFor(t, 20*time.Second, "the catalog entry of job "+j.ID, func() bool {
			all, err := catalog(survivors, e.token, "pa")
			if err != nil {
				return false
			}
			entries = entries[:0]
			for _, c := range all {
				if c.JobID == j.ID {
					entries = append(entries, c)
				}
			}
			return len(entries) > 0
		})
		if len(entries) != 1 || entries[0].ID != done.Result.SnapshotID {
			t.Fatalf("catalog entries for job %s: %+v, want exactly snapshot %s", j.ID, entries, done.Result.SnapshotID)
		}

		e.check("the leader kill")

		// The killed node restarts on its data dir and catches up.
		e.procs[leader].start(t)
		restarted := e.urls[leader]
		var target uint64
		waitFor(t, 30*time.Second, "the killed leader to rejoin and catch up", func() bool {
			lead, err := status(strings.Join(survivors, ","))
			if err != nil || lead.Leader == "" {
				return false
			}
			if target == 0 {
				target = lead.CommitIndex
			}
			mine, err := status(restarted)
			if err != nil || mine.Node != e.procs[leader].name || mine.Leader == "" || mine.AppliedIndex < target {
				return false
			}
			healthy := 0
			for _, m := range lead.Members {
				if m.Health == "ok" {
					healthy++
				}
			}
			return healthy == len(e.procs)
		})
		got, err := show(j.ID, restarted)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != coordinator.JobSucceeded || got.Result == nil || got.Result.SnapshotID != done.Result.SnapshotID {
			t.Fatalf("the restarted node shows job %s as %s %+v", j.ID, got.State, got.Result)
		}
		t.Logf("node %s rejoined and caught up past commit index %d", e.procs[leader].name, target)
		if midJob {
			return
		}
		t.Logf("job %s had finished before the kill; again", j.ID)
	}
}

// catalog lists the coordinator's snapshot catalog for a policy, asking
// the addresses in turn.
func catalog(addrs []string, token, policy string) ([]coordinator.CatalogEntry, error) {
	var last error
	for _, u := range addrs {
		req, err := http.NewRequest(http.MethodGet, u+"/v1/snapshots?policy="+policy, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err
			continue
		}
		var out []coordinator.CatalogEntry
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("GET %s/v1/snapshots: %s", u, resp.Status)
			continue
		}
		if err != nil {
			last = err
			continue
		}
		return out, nil
	}
	return nil, last
}
