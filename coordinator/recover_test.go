package coordinator

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRecoverClusterAfterQuorumLoss: two of three nodes are lost for
// good. The survivor cannot elect itself, nor remove the others (that
// needs the quorum). RecoverCluster on its stopped data dir makes it a
// cluster of one with all its state; it then takes writes, and a new node
// with an empty data dir joins it.
func TestRecoverClusterAfterQuorumLoss(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.seed("@daily")
	for i := range 100 {
		c.must(CmdCreateToken, tokenCmd(i))
	}
	want := c.converge()
	c.stop(1)
	c.stop(2)
	// Alone, n0 cannot lead.
	time.Sleep(500 * time.Millisecond)
	if c.nodes[0].IsLeader() {
		t.Fatal("one node of three leads")
	}
	if _, err := RecoverCluster(c.dirs[0], c.peers[:1], nil); err == nil || !strings.Contains(err.Error(), "in use: stop 'lifeboat server'") {
		t.Fatalf("recover while the node runs: %v", err)
	}
	c.stop(0)

	for _, tc := range []struct {
		dir   string
		peers []Peer
		want  string
	}{
		{t.TempDir(), c.peers[:1], "holds no coordinator node"},
		{c.dirs[0], c.peers[1:2], `does not list this data dir's node "n0"`},
	} {
		if _, err := RecoverCluster(tc.dir, tc.peers, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("RecoverCluster(%v): %v, want %q", tc.peers, err, tc.want)
		}
	}
	res, err := RecoverCluster(c.dirs[0], c.peers[:1], nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.NodeID != "n0" || len(res.Before) != 3 || len(res.After) != 1 || res.LastIndex == 0 {
		t.Fatalf("result %+v", res)
	}
	if _, err := RecoverCluster(c.dirs[0], c.peers[:1], nil); err == nil || !strings.Contains(err.Error(), "nothing to recover") {
		t.Fatalf("second recovery: %v", err)
	}

	// Started as before (its --peers unchanged), it leads alone with
	// everything it held.
	c.start(0)
	if l := c.leader(0); l != 0 {
		t.Fatalf("leader %d", l)
	}
	if got := c.converge(0); string(stripIndex(got)) != string(stripIndex(want)) {
		t.Fatal("state after recovery differs from the cluster's")
	}
	c.must(CmdCreateToken, tokenCmd(1000))
	if st := c.nodes[0].Status(); len(st.Members) != 1 {
		t.Fatalf("members after recovery: %+v", st.Members)
	}

	// A replacement with an empty data dir joins.
	n3, err := NewNode(Config{Raft: testRaftConfig("n3", "mem-3", t.TempDir(), nil, c.net), Clock: c.clock})
	if err != nil {
		t.Fatal(err)
	}
	defer n3.Close()
	if err := c.nodes[0].AddVoter(context.Background(), "n3", "mem-3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return n3.State().Tokens[tokenCmd(1000).ID] != nil })
}
