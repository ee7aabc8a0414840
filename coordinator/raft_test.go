package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/testnet"
)

// testTLS returns a config with a certificate for 127.0.0.1 signed by a
// fresh CA, requiring and verifying client certificates from that CA.
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	cert, pool := testnet.SelfSignedCert(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

// TestRaftOverTLS runs a three-node cluster over real loopback sockets
// with mutual TLS, and checks that a node with a certificate from another
// CA cannot take part.
func TestRaftOverTLS(t *testing.T) {
	cfg := testTLS(t)
	var peers []Peer
	for _, id := range []string{"t0", "t1", "t2"} {
		peers = append(peers, Peer{ID: id, Addr: testnet.FreeAddr(t)})
	}
	var rafts []*Raft
	var fsms []*FSM
	for _, p := range peers {
		// Real sockets and TLS handshakes under a loaded CI machine (and
		// -race): timeouts generous enough that leadership does not flap.
		rc := RaftConfig{ID: p.ID, Addr: p.Addr, DataDir: t.TempDir(), Peers: peers, TLS: cfg,
			HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
			LeaderLeaseTimeout: 500 * time.Millisecond, CommitTimeout: 5 * time.Millisecond, noSync: true}
		f := NewFSM()
		r, err := OpenRaft(rc, f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Shutdown() })
		rafts = append(rafts, r)
		fsms = append(fsms, f)
	}
	var leader *Raft
	b := entry(t, CmdCreateToken, t0, tokenCmd(1))
	// Apply on whichever node leads, retrying what a client would retry
	// (an election in between), as every command is safe to repeat.
	waitFor(t, func() bool {
		for _, r := range rafts {
			if !r.IsLeader() {
				continue
			}
			res, err := r.Apply(context.Background(), b)
			if err == nil && res.Err == nil {
				leader = r
				return true
			}
			if err != nil && !Retryable(err) {
				t.Fatalf("apply over TLS: %v", err)
			}
			if res != nil && res.Err != nil {
				t.Fatalf("apply over TLS: %v", res.Err)
			}
		}
		return false
	})

	waitFor(t, func() bool {
		for _, f := range fsms {
			if f.State().Tokens[tokenCmd(1).ID] == nil {
				return false
			}
		}
		return true
	})
	// Followers refuse writes and name the leader.
	for _, r := range rafts {
		if r == leader {
			continue
		}
		_, err := r.Apply(context.Background(), b)
		var nle *NotLeaderError
		if !errors.As(err, &nle) || nle.LeaderAddr == "" {
			t.Fatalf("follower apply: %v", err)
		}
	}

	// A node whose certificate comes from another CA is added to the
	// configuration but never receives the log.
	rogueAddr := testnet.FreeAddr(t)
	rogueFSM := NewFSM()
	rogue, err := OpenRaft(RaftConfig{ID: "rogue", Addr: rogueAddr, DataDir: t.TempDir(), TLS: testTLS(t),
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond, noSync: true}, rogueFSM)
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_ = leader.AddVoter(ctx, "rogue", rogueAddr) // may time out: the rogue never answers
	time.Sleep(300 * time.Millisecond)
	if rogueFSM.State().Tokens[tokenCmd(1).ID] != nil {
		t.Fatal("a node with an untrusted certificate received the log")
	}
}
