package e2e

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// TestClusterRecoverProcesses: three 'lifeboat server' processes; two are
// killed with SIGKILL for good. The survivor has no quorum: writes fail.
// 'lifeboat cluster recover' refuses its data dir while it runs; stopped,
// the survivor is recovered as a cluster of one, restarted with its old
// flags, keeps its policies and tokens, takes writes, and a replacement
// started without --peers joins it.
func TestClusterRecoverProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	root := t.TempDir()
	procs, urls := startServers(t, root, 3)
	t.Cleanup(func() {
		if t.Failed() {
			logTails(t, root, 3000, "n1", "n2", "n3", "n4")
		}
	})
	lb := coordCLI{env: []string{"LIFEBOAT_ADDR=" + urls[0], "LIFEBOAT_TOKEN=" + adminToken(t, procs), "HOME=" + root}}
	waitFor(t, 30*time.Second, "the cluster to accept writes", func() bool {
		_, err := lb.run("agent", "token", "create", "--ttl", "1h")
		return err == nil
	})
	lb.must(t, "token", "create", "--role", "read-only", "--name", "made-before-the-loss")

	procs[1].kill()
	procs[2].kill()
	if _, err := lb.run("agent", "token", "create", "--ttl", "1h"); err == nil {
		t.Fatal("a write succeeded on one node of three")
	}
	survivor := procs[0]
	if out, err := lb.run("cluster", "recover", "--data-dir", survivor.dir, "--peers", "n1="+survivor.raft); err == nil || !strings.Contains(err.Error(), "stop 'lifeboat server' on this data dir first") {
		t.Fatalf("recover of a running node's data dir: %v\n%s", err, out)
	}
	survivor.kill()
	out := lb.must(t, "cluster", "recover", "--data-dir", survivor.dir, "--peers", "n1="+survivor.raft)
	if !strings.Contains(out, "members were n1="+survivor.raft+",n2=") || !strings.Contains(out, "now n1="+survivor.raft+" ") {
		t.Fatalf("recover said:\n%s", out)
	}
	survivor.start(t) // with its old --peers
	waitFor(t, 30*time.Second, "the recovered node to take writes", func() bool {
		_, err := lb.run("agent", "token", "create", "--ttl", "3h")
		return err == nil
	})
	var tokens []coordinator.TokenView
	if err := json.Unmarshal([]byte(lb.must(t, "token", "list", "--json")), &tokens); err != nil || !slices.ContainsFunc(tokens, func(v coordinator.TokenView) bool { return v.Name == "made-before-the-loss" }) {
		t.Fatalf("tokens after recovery: %+v, %v; want the one made before the loss", tokens, err)
	}

	// A replacement, with an empty data dir and no --peers, joins.
	n4 := &serverProc{process: process{name: "n4", dir: filepath.Join(root, "n4")}, raft: procs[1].raft, http: procs[1].http}
	n4.args = []string{"server", "--id", "n4", "--data-dir", n4.dir, "--raft-addr", n4.raft, "--http-addr", n4.http, "--verify-schedule", "off"}
	n4.start(t)
	t.Cleanup(n4.kill)
	// Joined once it listens: the leader dials it first.
	waitFor(t, 30*time.Second, "n4 to join", func() bool {
		_, err := lb.run("cluster", "join", "n4", n4.raft)
		return err == nil
	})
	waitFor(t, 30*time.Second, "two healthy members", func() bool {
		out, err := lb.run("cluster", "status", "--json")
		var cs coordinator.ClusterStatus
		if err != nil || json.Unmarshal([]byte(out), &cs) != nil {
			return false
		}
		ok := 0
		for _, m := range cs.Members {
			if m.Health == "ok" {
				ok++
			}
		}
		return cs.Leader == "n1" && ok == 2
	})
}
