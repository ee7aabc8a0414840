package coordinator

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// This file is the only one besides fsm.go that knows hashicorp/raft. It
// wraps it once: stores and transport, bootstrap, futures and timeouts,
// errors, membership, status and leadership notifications.

// Errors of cluster operations. A write that gets ErrNoLeader,
// ErrLeadershipLost or ErrTimeout may be retried (see Retryable).
var (
	// ErrNotLeader: this node is not the leader. The error is a
	// *NotLeaderError naming the leader.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: there is no leader right now (an election, or this node
	// is cut off from a majority). Retry shortly or on another node.
	ErrNoLeader = errors.New("no leader (election in progress or no quorum)")
	// ErrLeadershipLost: the leader lost leadership while committing; the
	// write may or may not have been applied. Commands are designed to be
	// retried safely.
	ErrLeadershipLost = errors.New("leadership lost while committing: the write may or may not have been applied")
	// ErrTimeout: the write was not committed in time.
	ErrTimeout = errors.New("timed out waiting for the cluster")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("node is shut down")
)

// NotLeaderError says which node leads, so the caller can go there.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string // Raft address
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("not the leader: the leader is %s (%s)", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Retryable reports whether a write that failed with err may simply be
// tried again (here or on the leader).
func Retryable(err error) bool {
	return errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) ||
		errors.Is(err, ErrLeadershipLost) || errors.Is(err, ErrTimeout)
}

// Peer is a voting member of the cluster.
type Peer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// ParsePeers parses "id1=host:port,id2=host:port" (the --peers flag).
func ParsePeers(s string) ([]Peer, error) {
	var peers []Peer
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, addr, ok := strings.Cut(item, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q: want ID=HOST:PORT", item)
		}
		if seen[id] {
			return nil, fmt.Errorf("peer %q listed twice", id)
		}
		seen[id] = true
		peers = append(peers, Peer{ID: id, Addr: addr})
	}
	sortPeers(peers)
	return peers, nil
}

func sortPeers(p []Peer) { sort.Slice(p, func(i, j int) bool { return p[i].ID < p[j].ID }) }

// FormatPeers writes peers as --peers takes them: ID=ADDR,...
func FormatPeers(p []Peer) string {
	s := make([]string, len(p))
	for i, x := range p {
		s[i] = x.ID + "=" + x.Addr
	}
	return strings.Join(s, ",")
}

// RaftConfig configures a node's Raft instance.
type RaftConfig struct {
	ID       string // this node's ID, unique and stable
	Addr     string // address other nodes reach this one at (host:port)
	BindAddr string // address to listen on; defaults to Addr
	DataDir  string // Raft state lives in DataDir/raft
	// Peers is the voting membership to bootstrap a new cluster with; it
	// must include this node. Empty: start without bootstrapping and wait
	// to be added with AddVoter (joining an existing cluster).
	Peers []Peer
	// TLS, when set, secures Raft traffic: it is used to listen and to
	// dial, so it should carry a certificate, ClientCAs with
	// ClientAuth=RequireAndVerifyClientCert, and RootCAs.
	TLS    *tls.Config
	Logger *slog.Logger

	// Tuning; zero values get production defaults.
	HeartbeatTimeout   time.Duration // 1s
	ElectionTimeout    time.Duration // 1s
	LeaderLeaseTimeout time.Duration // 500ms
	CommitTimeout      time.Duration // 50ms
	ApplyTimeout       time.Duration // 10s, for writes without a context deadline
	SnapshotThreshold  uint64        // 4096 entries since the last snapshot trigger one
	TrailingLogs       uint64        // 2048 entries kept after a snapshot
	SnapshotInterval   time.Duration // 30s between threshold checks
	SnapshotRetain     int           // 2 snapshots kept on disk

	transport raft.Transport // tests: an in-memory transport
	noSync    bool           // tests: skip fsync in the log store
}

func (c *RaftConfig) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, time.Second)
	def(&c.ElectionTimeout, time.Second)
	def(&c.LeaderLeaseTimeout, 500*time.Millisecond)
	def(&c.CommitTimeout, 50*time.Millisecond)
	def(&c.ApplyTimeout, 10*time.Second)
	def(&c.SnapshotInterval, 30*time.Second)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 4096
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 2048
	}
	if c.SnapshotRetain <= 0 {
		c.SnapshotRetain = 2
	}
	if c.BindAddr == "" {
		c.BindAddr = c.Addr
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// nodeFile records which node a data dir belongs to and the membership it
// was bootstrapped with.
type nodeFile struct {
	Format    int    `json:"format"`
	NodeID    string `json:"node_id"`
	Bootstrap []Peer `json:"bootstrap,omitempty"`
}

const nodeFileName = "node.json"

// Raft is a running Raft instance with its stores.
type Raft struct {
	cfg    RaftConfig
	raft   *raft.Raft
	fsm    *FSM
	store  *raftboltdb.BoltStore
	trans  raft.Transport
	notify chan bool

	leader atomic.Bool
	mu     sync.Mutex
	subs   []chan bool
	done   chan struct{}
	closed sync.Once
}

// OpenRaft opens (or creates) the Raft state in cfg.DataDir and starts
// Raft with fsm. A new data dir with Peers is bootstrapped; a data dir that
// has state is restarted as it is (bootstrapping is idempotent). It refuses
// a data dir written for another node ID, one with Raft files but no node
// record (not ours), and Peers that are neither the membership the data
// dir was bootstrapped with nor its current one.
func OpenRaft(cfg RaftConfig, fsm *FSM) (*Raft, error) {
	cfg.defaults()
	if cfg.ID == "" || cfg.Addr == "" || cfg.DataDir == "" {
		return nil, errors.New("start raft: node ID, raft address and data dir are required")
	}
	peers := slices.Clone(cfg.Peers)
	sortPeers(peers)
	if len(peers) > 0 && !slices.Contains(peers, Peer{ID: cfg.ID, Addr: cfg.Addr}) {
		return nil, fmt.Errorf("start raft: --peers %s does not list this node as %s=%s", FormatPeers(peers), cfg.ID, cfg.Addr)
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	rec, err := claimDataDir(dir, cfg.ID)
	if err != nil {
		return nil, err
	}

	r := &Raft{cfg: cfg, fsm: fsm, notify: make(chan bool, 8), done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			r.closeStores()
		}
	}()
	r.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), NoSync: cfg.noSync})
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	hlog := newHCLogger(cfg.Logger)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, cfg.SnapshotRetain, hlog)
	if err != nil {
		return nil, fmt.Errorf("open raft snapshots in %s: %w", dir, err)
	}
	if cfg.transport != nil {
		r.trans = cfg.transport
	} else if r.trans, err = newNetTransport(cfg, hlog); err != nil {
		return nil, err
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.NotifyCh = r.notify
	rc.Logger = hlog
	rc.NoLegacyTelemetry = true
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raft config: %w", err)
	}

	exists, err := raft.HasExistingState(r.store, r.store, snaps)
	if err != nil {
		return nil, fmt.Errorf("read raft state in %s: %w", dir, err)
	}
	switch {
	case !exists && len(peers) > 0:
		conf := raft.Configuration{}
		for _, p := range peers {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
		if err := raft.BootstrapCluster(rc, r.store, r.store, snaps, r.trans, conf); err != nil {
			return nil, fmt.Errorf("bootstrap cluster %s: %w", FormatPeers(peers), err)
		}
		rec.Bootstrap = peers
		if err := writeNodeFile(dir, rec); err != nil {
			return nil, err
		}
	case exists && len(peers) > 0:
		probe := *rc // GetConfiguration marks its config "skip startup"
		cur, err := raft.GetConfiguration(&probe, NewFSM(), r.store, r.store, snaps, r.trans)
		if err != nil {
			return nil, fmt.Errorf("read cluster membership in %s: %w", dir, err)
		}
		current := make([]Peer, 0, len(cur.Servers))
		for _, s := range cur.Servers {
			if s.Suffrage == raft.Voter {
				current = append(current, Peer{ID: string(s.ID), Addr: string(s.Address)})
			}
		}
		sortPeers(current)
		if !slices.Equal(peers, current) && !slices.Equal(peers, rec.Bootstrap) {
			return nil, fmt.Errorf("start raft: --peers %s conflicts with the cluster this data dir belongs to (members %s, bootstrapped as %s): start with matching --peers, change membership with 'lifeboat cluster join|remove', or use an empty data dir for a new cluster",
				FormatPeers(peers), FormatPeers(current), FormatPeers(rec.Bootstrap))
		}
	}

	r.raft, err = raft.NewRaft(rc, fsm, r.store, r.store, snaps, r.trans)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	ok = true
	go r.watchLeadership()
	return r, nil
}

// claimDataDir checks that dir is new or belongs to node id, and records
// the claim for a new one.
func claimDataDir(dir, id string) (nodeFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nodeFile{}, fmt.Errorf("create raft dir: %w", err)
	}
	rec, err := readNodeFile(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nodeFile{}, fmt.Errorf("read raft dir: %w", err)
		}
		if len(entries) > 0 {
			return nodeFile{}, fmt.Errorf("start raft: %s holds files but no %s: it was not written by a lifeboat node; use an empty data dir", dir, nodeFileName)
		}
		rec := nodeFile{Format: 1, NodeID: id}
		return rec, writeNodeFile(dir, rec)
	case err != nil:
		return nodeFile{}, fmt.Errorf("start raft: %w: restore it or use an empty data dir", err)
	}
	if rec.NodeID != id {
		return nodeFile{}, fmt.Errorf("start raft: data dir belongs to node %q, not %q: start with --id %s or use an empty data dir", rec.NodeID, id, rec.NodeID)
	}
	return rec, nil
}

// readNodeFile reads dir's node record; an error wrapping
// os.ErrNotExist if there is none.
func readNodeFile(dir string) (nodeFile, error) {
	path := filepath.Join(dir, nodeFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nodeFile{}, fmt.Errorf("read %s: %w", path, err)
	}
	var rec nodeFile
	if err := json.Unmarshal(b, &rec); err != nil || rec.NodeID == "" {
		return nodeFile{}, fmt.Errorf("%s is damaged (%v)", path, err)
	}
	return rec, nil
}

func writeNodeFile(dir string, rec nodeFile) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, nodeFileName+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, nodeFileName)); err != nil {
		return fmt.Errorf("write node record: %w", err)
	}
	return nil
}

// watchLeadership turns raft's leadership notifications into the leader
// flag and wakes subscribers.
func (r *Raft) watchLeadership() {
	for {
		select {
		case v := <-r.notify:
			r.leader.Store(v)
			r.mu.Lock()
			for _, ch := range r.subs {
				select { // keep only the latest value
				case <-ch:
				default:
				}
				ch <- v
			}
			r.mu.Unlock()
		case <-r.done:
			return
		}
	}
}

// LeadershipChanges returns a channel that receives true when this node
// becomes leader and false when it stops being leader. Only the latest
// value is kept if the receiver falls behind.
func (r *Raft) LeadershipChanges() <-chan bool {
	ch := make(chan bool, 1)
	r.mu.Lock()
	r.subs = append(r.subs, ch)
	r.mu.Unlock()
	if r.leader.Load() {
		select {
		case ch <- true:
		default:
		}
	}
	return ch
}

// IsLeader reports whether this node is the leader now.
func (r *Raft) IsLeader() bool { return r.raft.State() == raft.Leader }

// Leader returns the current leader's ID and Raft address, empty if none
// is known.
func (r *Raft) Leader() (id, addr string) {
	a, i := r.raft.LeaderWithID()
	return string(i), string(a)
}

func (r *Raft) notLeader() error {
	id, addr := r.Leader()
	if id == "" || id == r.cfg.ID {
		return ErrNoLeader
	}
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

func (r *Raft) timeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return r.cfg.ApplyTimeout
}

// wait waits for a raft future, or for ctx (the operation then goes on in
// the background; its outcome is unknown).
func (r *Raft) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return r.mapErr(err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Raft) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return r.notLeader()
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return ErrLeadershipLost
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrTimeout
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	}
	return err
}

// Apply commits an encoded command and returns what the FSM made of it.
// It fails with *NotLeaderError or ErrNoLeader on a non-leader without
// touching the log.
func (r *Raft) Apply(ctx context.Context, data []byte) (*ApplyResult, error) {
	if r.raft.State() != raft.Leader {
		return nil, r.notLeader()
	}
	t := r.timeout(ctx)
	if t <= 0 {
		return nil, ErrTimeout
	}
	f := r.raft.Apply(data, t)
	if err := r.wait(ctx, f); err != nil {
		return nil, err
	}
	res, ok := f.Response().(*ApplyResult)
	if !ok {
		return nil, fmt.Errorf("apply: unexpected FSM response %T", f.Response())
	}
	return res, nil
}

// Barrier waits until every entry committed before it has been applied to
// this (leader) node's FSM.
func (r *Raft) Barrier(ctx context.Context) error {
	if r.raft.State() != raft.Leader {
		return r.notLeader()
	}
	return r.wait(ctx, r.raft.Barrier(r.timeout(ctx)))
}

// AddVoter adds (or updates the address of) a voting member. Leader only.
func (r *Raft) AddVoter(ctx context.Context, id, addr string) error {
	if r.raft.State() != raft.Leader {
		return r.notLeader()
	}
	if err := r.wait(ctx, r.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, r.timeout(ctx))); err != nil {
		return fmt.Errorf("add voter %s=%s: %w", id, addr, err)
	}
	return nil
}

// RemoveServer removes a member. Leader only; removing the leader itself
// makes it step down.
func (r *Raft) RemoveServer(ctx context.Context, id string) error {
	if r.raft.State() != raft.Leader {
		return r.notLeader()
	}
	if err := r.wait(ctx, r.raft.RemoveServer(raft.ServerID(id), 0, r.timeout(ctx))); err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	return nil
}

// TakeSnapshot makes Raft snapshot the FSM and compact its log now.
func (r *Raft) TakeSnapshot(ctx context.Context) error {
	return r.wait(ctx, r.raft.Snapshot())
}

// Member is one server in the cluster configuration.
type Member struct {
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader"`
}

// Status is a node's view of the cluster.
type Status struct {
	ID           string    `json:"id"`
	Addr         string    `json:"addr"`
	State        string    `json:"state"` // Leader, Follower, Candidate, Shutdown
	Leader       string    `json:"leader"`
	LeaderAddr   string    `json:"leader_addr"`
	Term         uint64    `json:"term"`
	CommitIndex  uint64    `json:"commit_index"`
	AppliedIndex uint64    `json:"applied_index"`
	LastIndex    uint64    `json:"last_index"`
	LastContact  time.Time `json:"last_contact,omitzero"` // with the leader (followers)
	Members      []Member  `json:"members"`
}

// Status reports this node's view of the cluster.
func (r *Raft) Status() Status {
	id, addr := r.Leader()
	st := Status{
		ID: r.cfg.ID, Addr: r.cfg.Addr, State: r.raft.State().String(), Leader: id, LeaderAddr: addr,
		Term: r.raft.CurrentTerm(), CommitIndex: r.raft.CommitIndex(), AppliedIndex: r.raft.AppliedIndex(),
		LastIndex: r.raft.LastIndex(), LastContact: r.raft.LastContact(),
	}
	if f := r.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Members = append(st.Members, Member{ID: string(s.ID), Addr: string(s.Address),
				Voter: s.Suffrage == raft.Voter, Leader: string(s.ID) == id})
		}
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	return st
}

// Shutdown stops Raft and closes the stores. The data dir can then be
// opened again.
func (r *Raft) Shutdown() error {
	var err error
	r.closed.Do(func() {
		err = r.raft.Shutdown().Error()
		close(r.done)
		r.closeStores()
	})
	return err
}

func (r *Raft) closeStores() {
	if c, ok := r.trans.(io.Closer); ok && r.cfg.transport == nil {
		_ = c.Close()
	}
	if r.store != nil {
		_ = r.store.Close()
	}
}

// newNetTransport listens on cfg.BindAddr, with TLS if configured.
func newNetTransport(cfg RaftConfig, log hclog.Logger) (raft.Transport, error) {
	adv, err := net.ResolveTCPAddr("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("raft address %s: %w", cfg.Addr, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft address %s: other nodes cannot reach an unspecified address; give a routable host", cfg.Addr)
	}
	if cfg.TLS == nil {
		t, err := raft.NewTCPTransportWithLogger(cfg.BindAddr, adv, 3, 10*time.Second, log)
		if err != nil {
			return nil, fmt.Errorf("listen for raft on %s: %w", cfg.BindAddr, err)
		}
		return t, nil
	}
	ln, err := tls.Listen("tcp", cfg.BindAddr, cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("listen for raft (TLS) on %s: %w", cfg.BindAddr, err)
	}
	return raft.NewNetworkTransportWithLogger(&tlsStream{Listener: ln, adv: adv, cfg: cfg.TLS}, 3, 10*time.Second, log), nil
}

type tlsStream struct {
	net.Listener
	adv net.Addr
	cfg *tls.Config
}

func (s *tlsStream) Addr() net.Addr { return s.adv }

func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), s.cfg)
}

// newHCLogger sends raft's warnings and errors to slog.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{l}, DisableTime: true})
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, "[ERROR]") {
		level = slog.LevelError
	}
	w.l.Log(context.Background(), level, msg, "component", "raft")
	return len(p), nil
}

// memNetwork connects in-memory transports, for in-process clusters in
// tests: nodes can be cut off and reconnected to simulate partitions.
type memNetwork struct {
	mu    sync.Mutex
	trans map[string]*raft.InmemTransport
	cut   map[[2]string]bool // pairs that cannot talk
}

func newMemNetwork() *memNetwork {
	return &memNetwork{trans: map[string]*raft.InmemTransport{}, cut: map[[2]string]bool{}}
}

// transport returns a fresh transport for addr (replacing one of a
// stopped node), connected to every peer it is not cut off from.
func (m *memNetwork) transport(addr string) raft.Transport {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drop(addr)
	_, t := raft.NewInmemTransportWithTimeout(raft.ServerAddress(addr), 500*time.Millisecond)
	m.trans[addr] = t
	m.wire()
	return t
}

// down takes addr off the network, as if its process died.
func (m *memNetwork) down(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drop(addr)
}

// drop removes addr's transport; peers' pipelines to it are closed, since
// they would keep sending to the old transport.
func (m *memNetwork) drop(addr string) {
	old, ok := m.trans[addr]
	if !ok {
		return
	}
	old.DisconnectAll()
	delete(m.trans, addr)
	for _, t := range m.trans {
		t.Disconnect(raft.ServerAddress(addr))
	}
}

func (m *memNetwork) wire() {
	for a, ta := range m.trans {
		for b, tb := range m.trans {
			if a == b {
				continue
			}
			if m.cut[[2]string{a, b}] {
				ta.Disconnect(raft.ServerAddress(b))
			} else {
				ta.Connect(raft.ServerAddress(b), tb)
			}
		}
	}
}

// partition splits the network: addresses in group talk only among
// themselves, the rest only among themselves.
func (m *memNetwork) partition(group ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := map[string]bool{}
	for _, a := range group {
		in[a] = true
	}
	m.cut = map[[2]string]bool{}
	for a := range m.trans {
		for b := range m.trans {
			if in[a] != in[b] {
				m.cut[[2]string{a, b}] = true
			}
		}
	}
	m.wire()
}

// heal reconnects everyone.
func (m *memNetwork) heal() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cut = map[[2]string]bool{}
	m.wire()
}
