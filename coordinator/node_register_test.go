package coordinator

import (
	"bytes"
	"io"
	"net/http"
	"testing"
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
