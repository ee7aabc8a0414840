package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// TestClusterProcesses runs three real 'lifeboat server' processes on
// loopback, kills the leader with SIGKILL and checks that a new leader
// serves writes within seconds, that scheduling goes on with every instant
// run once, and that the killed node rejoins and catches up.
func TestClusterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	root := t.TempDir()
	procs, urls := startServers(t, root, 3)
	t.Cleanup(func() {
		if t.Failed() {
			logTails(t, root, 3000, "n1", "n2", "n3")
		}
	})
	token := adminToken(t, procs)
	env := []string{"LIFEBOAT_ADDR=" + strings.Join(urls, ","), "LIFEBOAT_TOKEN=" + token, "HOME=" + root}
	lb := func(extra []string, args ...string) (string, error) {
		cmd := exec.Command(lifeboatBin, args...)
		cmd.Env = append(append(os.Environ(), env...), extra...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err != nil {
			return out.String(), fmt.Errorf("lifeboat %s: %w: %s", strings.Join(args, " "), err, errb.String())
		}
		return out.String(), nil
	}
	status := func(addr string) coordinator.ClusterStatus {
		t.Helper()
		cs, err := clusterStatus(lb([]string{"LIFEBOAT_ADDR=" + addr}, "cluster", "status", "--json"))
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	var cs coordinator.ClusterStatus
	waitFor(t, 20*time.Second, "a leader and every node's API address", func() bool {
		cs = status(strings.Join(urls, ","))
		known := 0
		for _, m := range cs.Members {
			if m.Health == "ok" {
				known++
			}
		}
		return cs.Leader != "" && known == 3
	})
	leader := -1
	for i, p := range procs {
		if p.name == cs.Leader {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("leader %q is none of the nodes", cs.Leader)
	}
	t.Logf("leader: %s (term %d, commit %d)", cs.Leader, cs.Term, cs.CommitIndex)

	// A repository, an agent and a policy firing every second.
	repo := filepath.Join(root, "repo")
	if _, err := lb(nil, "init", "--repo", repo, "--identity-out", filepath.Join(root, "id.txt"), "--key-out", filepath.Join(root, "writer.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := lb(nil, "repo", "add", "r", "--repo", repo, "--key", filepath.Join(root, "writer.key")); err != nil {
		t.Fatal(err)
	}
	out, err := lb(nil, "token", "create", "--role", "agent", "--name", "test agent")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	agentToken := lines[len(lines)-1]
	cl, err := coordinator.NewClient(coordinator.ClientConfig{Addrs: urls, Token: agentToken})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Post(context.Background(), "/v1/agents", coordinator.EnrollRequest{Name: "a1"}, nil); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(root, "p.yaml")
	if err := os.WriteFile(policy, []byte("name: p\nrepository: r\nschedule: \"@every 1s\"\npaths: [/data]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := lb(nil, "policy", "apply", "-f", policy); err != nil {
		t.Fatal(err)
	}
	// Bad input through the CLI: exit 1, the problem located, nothing applied.
	bad := filepath.Join(root, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: q\nrepository: r\nschedule: \"61 * * * *\"\npaths: [/data]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "apply", "-f", bad}, bad + ":3: schedule: invalid cron expression"},
		{[]string{"repo", "add", "stolen", "--repo", repo, "--key", filepath.Join(root, "id.txt")}, "age identity"},
	} {
		_, err := lb(nil, tc.args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lifeboat %s: %v; want exit 1 and %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	if out, _ := lb(nil, "policy", "list", "--json"); strings.Contains(out, `"name":"q"`) {
		t.Error("the invalid policy was applied")
	}
	jobs := func(addr string) []coordinator.Job {
		t.Helper()
		out, err := lb([]string{"LIFEBOAT_ADDR=" + addr}, "job", "list", "--policy", "p", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var js []coordinator.Job
		if err := json.Unmarshal([]byte(out), &js); err != nil {
			t.Fatalf("job list --json: %v\n%s", err, out)
		}
		for _, j := range js {
			if j.State == "" {
				t.Fatalf("job without a state: %+v", j)
			}
		}
		return js
	}
	waitFor(t, 10*time.Second, "scheduled jobs", func() bool { return len(jobs(strings.Join(urls, ","))) >= 2 })

	// kill -9 the leader; measure until a write succeeds.
	survivors := []string{}
	for i, u := range urls {
		if i != leader {
			survivors = append(survivors, u)
		}
	}
	writer, err := coordinator.NewClient(coordinator.ClientConfig{Addrs: survivors, Token: token, Timeout: 2 * time.Second, RetryFor: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	procs[leader].kill()
	attempts := 0
	for {
		attempts++
		err := writer.Post(context.Background(), "/v1/tokens", coordinator.TokenCreateRequest{Role: coordinator.RoleReadOnly, Name: "after failover"}, nil)
		if err == nil {
			break
		}
		if time.Since(killed) > 15*time.Second {
			t.Fatalf("no write succeeded within 15s of killing the leader: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	failover := time.Since(killed)
	t.Logf("failover: kill -9 of leader %s to first successful write: %v (%d attempts)", procs[leader].name, failover.Round(time.Millisecond), attempts)
	if failover > 10*time.Second {
		t.Errorf("failover took %v", failover)
	}
	cs = status(strings.Join(survivors, ","))
	if cs.Leader == "" || cs.Leader == procs[leader].name {
		t.Fatalf("leader after failover: %q", cs.Leader)
	}

	// Scheduling goes on under the new leader, every instant once.
	before := len(jobs(strings.Join(survivors, ",")))
	waitFor(t, 10*time.Second, "new jobs after the failover", func() bool { return len(jobs(strings.Join(survivors, ","))) >= before+2 })
	seen := map[time.Time]string{}
	for _, j := range jobs(strings.Join(survivors, ",")) {
		if other, dup := seen[j.ScheduledAt]; dup && j.Trigger == coordinator.TriggerSchedule {
			t.Errorf("instant %s ran twice: %s and %s", j.ScheduledAt, other, j.ID)
		}
		seen[j.ScheduledAt] = j.ID
	}

	// The killed node restarts on its data dir, rejoins and catches up.
	procs[leader].start(t)
	restarted := urls[leader]
	var target uint64
	waitFor(t, 20*time.Second, "the restarted node to catch up", func() bool {
		lead := status(strings.Join(survivors, ","))
		if target == 0 {
			target = lead.CommitIndex
		}
		resp, err := http.Get(restarted + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		mine := status(restarted)
		return resp.StatusCode == 200 && mine.Node == procs[leader].name && mine.Leader != "" && mine.CommitIndex >= target && mine.AppliedIndex >= target
	})
	t.Logf("node %s rejoined and caught up past commit index %d", procs[leader].name, target)
	if len(jobs(restarted)) < before+2 {
		t.Error("the restarted node does not serve the jobs created while it was down")
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
