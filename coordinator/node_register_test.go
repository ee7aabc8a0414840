package coordinator

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestNodeCannotRegisterTheLeadersAddress: the node secret is shared and
// the calling node's ID is a header, so a node credential could name the
// leader and register another URL for it, where the followers would then
// forward clients' tokens. The leader refuses a registration of its own
// ID; a follower's own registration still works.
func TestNodeCannotRegisterTheLeadersAddress(t *testing.T) {
	c := newAPICluster(t, 3)
	l, f := c.leader(), c.follower()
	var secret, leaderURL string
	c.nodes[l].View(func(s *State) { secret, leaderURL = s.Cluster.NodeSecret, s.NodeHTTP(c.peers[l].ID) })

	register := func(id, url string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, c.url(l)+"/v1/cluster/nodes", bytes.NewReader(mustJSON(NodeInfo{ID: id, HTTPAddr: url})))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+nodeCredential(secret))
		req.Header.Set(headerNode, id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	status, b := register(c.peers[l].ID, "http://attacker.invalid:8420")
	errBody(t, status, b, http.StatusForbidden)
	var now string
	c.nodes[l].View(func(s *State) { now = s.NodeHTTP(c.peers[l].ID) })
	if now != leaderURL {
		t.Fatalf("the leader's address is %q after a refused registration, was %q", now, leaderURL)
	}
	if status, b := register(c.peers[f].ID, c.url(f)); status != http.StatusNoContent {
		t.Fatalf("a follower's own registration: %d %s", status, b)
	}
}

// TestNodeSecretRotation: an admin replaces the node secret; every member
// holds the new one at once and a follower still registers its address
// with it, while the old one (what a removed node, or a copy of a data
// dir, still holds) opens nothing. Removing a member rotates it too.
func TestNodeSecretRotation(t *testing.T) {
	c := newAPICluster(t, 3)
	secrets := func() []string {
		t.Helper()
		var out []string
		for _, n := range c.nodes {
			n.View(func(s *State) { out = append(out, s.Cluster.NodeSecret) })
		}
		return out
	}
	// waitSecret waits until every member holds one secret other than
	// old, and returns it.
	waitSecret := func(old string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s := secrets()
			if s[0] != old && len(slices.Compact(slices.Clone(s))) == 1 {
				return s[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("node secrets %q: want one new secret on every member (old %q)", s, old)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	nodeCall := func(i int, secret string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, c.url(i)+"/v1/cluster", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+nodeCredential(secret))
		req.Header.Set(headerNode, c.peers[i].ID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	l, f := c.leader(), c.follower()
	old := secrets()[0]
	if got := nodeCall(l, old); got != http.StatusOK {
		t.Fatalf("the node secret before the rotation: %d", got)
	}

	// A follower's admin call is forwarded to the leader.
	status, b := httpCall(t, http.MethodPost, c.url(f)+"/v1/cluster/node-secret", c.admin, nil, "")
	if status != http.StatusNoContent {
		t.Fatalf("rotate: %d %s", status, b)
	}
	cur := waitSecret(old)
	if len(cur) < 64 {
		t.Errorf("new node secret %q: want 32 random bytes, hex", cur)
	}
	for i := range c.nodes {
		if got := nodeCall(i, old); got != http.StatusUnauthorized {
			t.Errorf("node %d takes the old node secret: %d", i, got)
		}
		if got := nodeCall(i, cur); got != http.StatusOK {
			t.Errorf("node %d refuses the new node secret: %d", i, got)
		}
	}
	// A follower registers its address with the new one.
	req, err := http.NewRequest(http.MethodPost, c.url(l)+"/v1/cluster/nodes", bytes.NewReader(mustJSON(NodeInfo{ID: c.peers[f].ID, HTTPAddr: c.url(f)})))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+nodeCredential(cur))
	req.Header.Set(headerNode, c.peers[f].ID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("a follower's registration with the new secret: %d", resp.StatusCode)
	}
	// Only an admin rotates it.
	agent := c.token(RoleAgent)
	status, b = httpCall(t, http.MethodPost, c.url(l)+"/v1/cluster/node-secret", agent, nil, "")
	errBody(t, status, b, http.StatusForbidden)

	// Removing a member rotates the secret.
	var res RemoveResult
	c.mustJSON(http.MethodPost, c.url(l)+"/v1/cluster/remove", c.admin, RemoveRequest{ID: c.peers[f].ID}, &res)
	if res.Removed != c.peers[f].ID || !res.NodeSecretRotated {
		t.Fatalf("remove: %+v, want the node removed and the secret rotated", res)
	}
	var after string
	c.nodes[l].View(func(s *State) { after = s.Cluster.NodeSecret })
	if after == cur {
		t.Fatal("the node secret is the one the removed node holds")
	}
	if got := nodeCall(l, cur); got != http.StatusUnauthorized {
		t.Errorf("the leader takes the removed node's secret: %d", got)
	}
}

// TestClusterStatusAfterRotation: right after the node secret is rotated,
// status on the leader and on a follower shows every member healthy,
// although the member asked (or the node asking) may not have applied the
// rotation yet: it showed both followers unreachable ("invalid node
// credential") every time.
func TestClusterStatusAfterRotation(t *testing.T) {
	c := newAPICluster(t, 3)
	l, f := c.leader(), c.follower()
	for round := range 5 {
		status, b := httpCall(t, http.MethodPost, c.url(l)+"/v1/cluster/node-secret", c.admin, nil, "")
		if status != http.StatusNoContent {
			t.Fatalf("rotate: %d %s", status, b)
		}
		for _, i := range []int{l, f} {
			for _, m := range c.apis[i].ClusterStatus(t.Context()).Members {
				if m.Health != "ok" {
					t.Errorf("round %d, status on %s: member %s %s: %s", round, c.peers[i].ID, m.ID, m.Health, m.Error)
				}
			}
		}
	}
}
