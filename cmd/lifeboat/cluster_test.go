package main

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/testnet"
)

// TestClusterStatusNoLeader stops one node of a real two-node cluster, so
// the other has no quorum: cluster status still prints the status (as a
// table and as JSON) but exits 4 and says what to do, while with a leader
// it exits 0.
func TestClusterStatusNoLeader(t *testing.T) {
	t.Parallel()
	ids := []string{"n1", "n2"}
	var peers []coordinator.Peer
	https := make([]string, len(ids))
	for i, id := range ids {
		peers = append(peers, coordinator.Peer{ID: id, Addr: testnet.FreeAddr(t)})
		https[i] = testnet.FreeAddr(t)
	}
	srvs := make([]*coordinator.Server, len(ids))
	for i, p := range peers {
		srv, err := coordinator.NewServer(coordinator.ServerConfig{ID: p.ID, DataDir: t.TempDir(), RaftAddr: p.Addr, HTTPAddr: https[i], Peers: peers})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		t.Cleanup(func() { srv.Close() })
		srvs[i] = srv
	}
	// The node that initialized the cluster holds the admin token.
	keep := -1
	deadline := time.Now().Add(20 * time.Second)
	for keep < 0 {
		for i, s := range srvs {
			if s.AdminToken() != "" {
				keep = i
			}
		}
		if keep < 0 && time.Now().After(deadline) {
			t.Fatal("the cluster did not initialize within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := newCLI(t).with("LIFEBOAT_ADDR="+srvs[keep].URL(), "LIFEBOAT_TOKEN="+srvs[keep].AdminToken())
	if r := c.ok("cluster", "status"); !strings.Contains(r.stdout, "leader n") {
		t.Errorf("status with a leader:\n%s", r.stdout)
	}

	srvs[1-keep].Close()
	// The survivor steps down (a leader) or stops hearing from one (a
	// follower) once its lease runs out; until then status exits 0.
	var r result
	deadline = time.Now().Add(30 * time.Second)
	for {
		r = c.run("cluster", "status")
		if r.code != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster status still exits 0 30s after one of two nodes stopped:\n%s", r.stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.code != exitNoLeader {
		t.Fatalf("cluster status without a leader: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, exitNoLeader, r.stdout, r.stderr)
	}
	for _, want := range []string{"leader none", "n1", "n2"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status without a leader does not show %q:\n%s", want, r.stdout)
		}
	}
	for _, want := range []string{"has no leader", "lifeboat cluster recover", "Losing the coordinator"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}
	r = c.run("cluster", "status", "--json")
	cs := decodeJSON[coordinator.ClusterStatus](t, r.stdout)
	if r.code != exitNoLeader || cs.Leader != "" || len(cs.Members) != 2 || !strings.Contains(r.stderr, "has no leader") {
		t.Errorf("status --json without a leader: exit %d, %+v\nstderr:\n%s", r.code, cs, r.stderr)
	}
}

// TestClusterRotateSecret: an admin rotates the node secret with the CLI
// (TestNodeSecretRotation checks what that does to the cluster); extra
// arguments are a usage error.
func TestClusterRotateSecret(t *testing.T) {
	t.Parallel()
	c := startCoordinator(t)
	if r := c.ok("cluster", "rotate-secret"); !strings.Contains(r.stdout, "node secret rotated") {
		t.Errorf("rotate-secret printed %q", r.stdout)
	}
	c.fails(exitUsage, []string{"cluster", "rotate-secret", "now"}, "too many arguments")
}
