package coordinator

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Recovery from the loss of a quorum. A cluster that lost a majority of
// its voters for good (two of three machines gone) cannot elect a leader,
// and without one it cannot change its membership either: 'cluster
// remove' needs the quorum it lacks. RecoverCluster rewrites the
// membership in a stopped node's data dir instead, the way Raft's own
// recovery does: the node's state (its snapshot and every entry of its
// log, committed or not) is kept, and its next start forms a cluster of
// the members given. Replacements join it afterwards, with empty data
// dirs, through 'cluster join'.
//
// Run on a node while a majority of the old members still runs, it
// makes a second cluster beside the first, each taking writes: the
// operator decides that the others are gone, and docs/operations.md
// says how.

// RecoverResult is what RecoverCluster did.
type RecoverResult struct {
	NodeID    string
	Before    []Peer // the voting members the data dir held
	After     []Peer
	LastIndex uint64 // the last entry of the node's log (or snapshot)
	LastTerm  uint64
}

// RecoverCluster sets the membership of the stopped node whose data dir
// is dataDir to peers, which must include the node. It refuses a data
// dir in use (a server running on it), one without a node's state, and
// peers that are already the membership.
func RecoverCluster(dataDir string, peers []Peer, logger *slog.Logger) (*RecoverResult, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(dataDir, "raft")
	rec, err := readNodeFile(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s holds no coordinator node (no raft/%s): give the data dir of a node that was part of the cluster", dataDir, nodeFileName)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: this data dir cannot be recovered", err)
	}
	peers = slices.Clone(peers)
	sortPeers(peers)
	if !slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == rec.NodeID }) {
		return nil, fmt.Errorf("--peers %s does not list this data dir's node %q: include it (%s=RAFTADDR)", FormatPeers(peers), rec.NodeID, rec.NodeID)
	}

	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: &bbolt.Options{Timeout: 2 * time.Second}})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("%s is in use: stop 'lifeboat server' on this data dir first", filepath.Join(dir, "raft.db"))
	}
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	defer store.Close()
	hlog := newHCLogger(logger)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		return nil, fmt.Errorf("open raft snapshots in %s: %w", dir, err)
	}
	exists, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return nil, fmt.Errorf("read raft state in %s: %w", dir, err)
	}
	if !exists {
		return nil, fmt.Errorf("%s holds no Raft state (the node never joined a cluster): nothing to recover", dir)
	}
	// The transport only encodes addresses into the new snapshot; nothing
	// is sent.
	_, trans := raft.NewInmemTransport("")
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(rec.NodeID)
	rc.Logger = hlog
	probe := *rc
	cur, err := raft.GetConfiguration(&probe, NewFSM(), store, store, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("read cluster membership in %s: %w", dir, err)
	}
	res := &RecoverResult{NodeID: rec.NodeID, After: peers}
	for _, s := range cur.Servers {
		if s.Suffrage == raft.Voter {
			res.Before = append(res.Before, Peer{ID: string(s.ID), Addr: string(s.Address)})
		}
	}
	sortPeers(res.Before)
	if slices.Equal(res.Before, peers) {
		return nil, fmt.Errorf("the membership in %s is %s already: nothing to recover (start the server)", dir, FormatPeers(peers))
	}
	conf := raft.Configuration{}
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	if err := raft.RecoverCluster(rc, NewFSM(), store, store, snaps, trans, conf); err != nil {
		return nil, fmt.Errorf("recover the membership in %s: %w", dir, err)
	}
	// RecoverCluster ends with a snapshot of everything the node held.
	if metas, err := snaps.List(); err == nil && len(metas) > 0 {
		res.LastIndex, res.LastTerm = metas[0].Index, metas[0].Term
	}
	return res, nil
}
