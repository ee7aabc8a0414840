package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/internal/tied/tiedtest"
)

// TestAgentKilledDuringHook: 'lifeboat agent' is killed with SIGKILL
// while its pre-hook runs a long command in the background of its shell
// (as "pg_dump ... | gzip" would). The kernel ends the hook's shell with
// the agent (tied); what the shell started runs on until the agent
// starts again, which ends it before it reaches the coordinator, so the
// job's retry does not run a second one beside it.
func TestAgentKilledDuringHook(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process agent test")
	}
	root := t.TempDir()
	procs, urls := startServers(t, root, 1)
	agent := &agentProc{process{name: "agent-h", dir: filepath.Join(root, "agent-h")}}
	marks := filepath.Join(root, "marks")
	if err := os.Mkdir(marks, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.kill()
		if b, err := os.ReadFile(filepath.Join(marks, "bg")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			logTails(t, root, 20000, "n1", "agent-h")
		}
	})
	lb := coordCLI{env: []string{"LIFEBOAT_ADDR=" + strings.Join(urls, ","), "LIFEBOAT_TOKEN=" + adminToken(t, procs), "HOME=" + root}}
	waitFor(t, 30*time.Second, "the cluster to accept writes", func() bool {
		_, err := lb.run("agent", "token", "create", "--ttl", "1h")
		return err == nil
	})
	repo := filepath.Join(root, "repo")
	lb.must(t, "init", "--repo", repo, "--identity-out", filepath.Join(root, "id.txt"), "--key-out", filepath.Join(root, "writer.key"))
	lb.must(t, "repo", "add", "r", "--repo", repo, "--key", filepath.Join(root, "writer.key"))
	src := filepath.Join(root, "src")
	fixture.Create(t, src, fixture.Tree{"a.txt": {Content: []byte("a\n"), Mode: 0o644}})

	hooks := filepath.Join(root, "hooks.yaml")
	pre := fmt.Sprintf("sleep 600 & echo $! > %s/bg; echo $$ > %s/shell; wait", marks, marks)
	if err := os.WriteFile(hooks, []byte(fmt.Sprintf("h:\n  pre:\n    command: %q\n    timeout: 10m\n", pre)), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(root, "h.yaml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf("name: h\nrepository: r\nschedule: %q\nagents: {role: h}\npaths: [%s]\n", farDaily(), src)), 0o600); err != nil {
		t.Fatal(err)
	}
	out := lb.must(t, "agent", "token", "create", "--ttl", "1h")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	agent.args = []string{"agent", "--server", strings.Join(urls, ","), "--data-dir", agent.dir, "--name", "agent-h",
		"--label", "role=h", "--hooks", hooks, "--lease-ttl", "10s", "--poll-wait", "2s"}
	agent.env = withoutS3Env("HOME="+root, "LIFEBOAT_JOIN_TOKEN="+lines[len(lines)-1])
	agent.start(t)
	waitFor(t, 30*time.Second, "the agent to enroll", func() bool {
		out, err := lb.run("agent", "list")
		return err == nil && strings.Contains(out, "agent-h")
	})
	lb.must(t, "policy", "apply", "-f", policy)
	lb.must(t, "policy", "run", "h")

	pid := func(name string) int { return tiedtest.PIDIn(filepath.Join(marks, name)) }
	waitFor(t, 30*time.Second, "the pre-hook to start", func() bool { return pid("shell") > 0 && pid("bg") > 0 })
	shell, bg := pid("shell"), pid("bg")
	// The state file names the hook's group once the agent has saved it.
	waitFor(t, 10*time.Second, "the hook in the agent's state file", func() bool {
		b, err := os.ReadFile(filepath.Join(agent.dir, "state.json"))
		return err == nil && strings.Contains(string(b), fmt.Sprintf(`"pgid": %d`, shell))
	})

	agent.kill()
	waitFor(t, 5*time.Second, "the hook's shell to end with the agent", func() bool { return !tiedtest.Running(shell) })
	if !tiedtest.Running(bg) {
		t.Fatal("the hook's background process ended with the agent: this test no longer shows what the next start does")
	}
	agent.start(t)
	waitFor(t, 15*time.Second, "the restarted agent to end the hook's background process", func() bool { return !tiedtest.Running(bg) })
	if b, _ := os.ReadFile(filepath.Join(root, "agent-h.log")); !strings.Contains(string(b), "ended a command the previous agent process left running") {
		t.Error("the restarted agent's log does not say it ended the hook's command")
	}
}
