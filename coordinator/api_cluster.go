package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/atomicfile"
)

// ---- cluster status ------------------------------------------------------------

// NodeSelf is one node's own view (GET /v1/cluster/self).
type NodeSelf struct {
	ID           string    `json:"id"`
	HTTPAddr     string    `json:"http_addr"`
	Version      string    `json:"version,omitempty"`
	State        string    `json:"state"`
	Leader       string    `json:"leader"`
	Term         uint64    `json:"term"`
	CommitIndex  uint64    `json:"commit_index"`
	AppliedIndex uint64    `json:"applied_index"`
	LastIndex    uint64    `json:"last_index"`
	LastContact  time.Time `json:"last_contact,omitzero"`
	Ready        bool      `json:"ready"`
	Reason       string    `json:"reason,omitempty"`
}

// MemberStatus is one member as seen from the answering node, with the
// health found by asking it.
type MemberStatus struct {
	ID           string    `json:"id"`
	RaftAddr     string    `json:"raft_addr"`
	HTTPAddr     string    `json:"http_addr,omitempty"`
	Voter        bool      `json:"voter"`
	Leader       bool      `json:"leader"`
	Health       string    `json:"health"` // ok, not-ready, unreachable, unknown
	State        string    `json:"state,omitempty"`
	Term         uint64    `json:"term,omitempty"`
	CommitIndex  uint64    `json:"commit_index,omitempty"`
	AppliedIndex uint64    `json:"applied_index,omitempty"`
	LastContact  time.Time `json:"last_contact,omitzero"`
	Error        string    `json:"error,omitempty"`
}

// ClusterStatus is the response of GET /v1/cluster.
type ClusterStatus struct {
	Cluster      string         `json:"cluster,omitempty"` // cluster ID
	Node         string         `json:"node"`              // the answering node
	State        string         `json:"state"`             // its Raft state
	Leader       string         `json:"leader"`            // the leader's node ID, "" during an election
	LeaderAddr   string         `json:"leader_addr,omitempty"`
	LeaderHTTP   string         `json:"leader_http,omitempty"`
	Term         uint64         `json:"term"`
	CommitIndex  uint64         `json:"commit_index"`
	AppliedIndex uint64         `json:"applied_index"`
	LastIndex    uint64         `json:"last_index"`
	Members      []MemberStatus `json:"members"`
}

func (a *API) self() NodeSelf {
	st := a.node.Status()
	ok, why := a.Ready()
	n := NodeSelf{ID: st.ID, HTTPAddr: a.cfg.SelfURL, Version: a.cfg.Version, State: st.State, Leader: st.Leader, Term: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastIndex: st.LastIndex, LastContact: st.LastContact, Ready: ok}
	if !ok {
		n.Reason = why
	}
	return n
}

func (a *API) clusterSelf(w http.ResponseWriter, _ *http.Request, _ *call) error {
	writeJSON(w, http.StatusOK, a.self())
	return nil
}

func (a *API) clusterStatus(w http.ResponseWriter, r *http.Request, _ *call) error {
	writeJSON(w, http.StatusOK, a.ClusterStatus(r.Context()))
	return nil
}

// ClusterStatus reports the cluster as this node sees it, asking every
// member with a known API address for its own view (1 s each, in parallel).
func (a *API) ClusterStatus(ctx context.Context) ClusterStatus {
	st := a.node.Status()
	cs := ClusterStatus{Node: st.ID, State: st.State, Leader: st.Leader, LeaderAddr: st.LeaderAddr, Term: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastIndex: st.LastIndex, Members: []MemberStatus{}}
	a.node.View(func(s *State) {
		if s.Cluster != nil {
			cs.Cluster = s.Cluster.ID
		}
		cs.LeaderHTTP = s.NodeHTTP(st.Leader)
		for _, m := range st.Members {
			cs.Members = append(cs.Members, MemberStatus{ID: m.ID, RaftAddr: m.Addr, HTTPAddr: s.NodeHTTP(m.ID), Voter: m.Voter, Leader: m.Leader})
		}
	})
	var wg sync.WaitGroup
	for i := range cs.Members {
		m := &cs.Members[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var self NodeSelf
			var err error
			switch {
			case m.ID == st.ID:
				self = a.self()
			case m.HTTPAddr == "":
				m.Health, m.Error = "unknown", "its API address is not known yet"
				return
			default:
				self, err = a.probe(ctx, m.HTTPAddr)
			}
			if err != nil {
				m.Health, m.Error = "unreachable", err.Error()
				return
			}
			m.State, m.Term, m.CommitIndex, m.AppliedIndex, m.LastContact = self.State, self.Term, self.CommitIndex, self.AppliedIndex, self.LastContact
			m.Health = "ok"
			if !self.Ready {
				m.Health, m.Error = "not-ready", self.Reason
			}
		}()
	}
	wg.Wait()
	return cs
}

// probeRetry is how often probe asks again a member that refuses the node
// secret.
const probeRetry = 50 * time.Millisecond

// probe asks the member at base for its own view, with the node secret of
// this node's state. A member that refuses it is asked again, with the
// secret read anew, until the second is up: right after a rotation one of
// the two nodes may not have applied it yet (it does within a heartbeat),
// and status would show a healthy member unreachable.
func (a *API) probe(ctx context.Context, base string) (NodeSelf, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for {
		n, refused, err := a.probeOnce(ctx, base)
		if !refused {
			return n, err
		}
		select {
		case <-ctx.Done():
			return NodeSelf{}, fmt.Errorf("%w (the two nodes hold different node secrets: one has not applied a rotation yet, or the member was removed)", err)
		case <-time.After(probeRetry):
		}
	}
}

// probeOnce is one request of probe; refused says the member refused the
// node secret.
func (a *API) probeOnce(ctx context.Context, base string) (n NodeSelf, refused bool, err error) {
	var secret string
	a.node.View(func(s *State) {
		if s.Cluster != nil {
			secret = s.Cluster.NodeSecret
		}
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/cluster/self", nil)
	if err != nil {
		return NodeSelf{}, false, err
	}
	req.Header.Set("Authorization", "Bearer "+nodeCredential(secret))
	req.Header.Set(headerNode, a.node.ID())
	resp, err := a.hc.Do(req)
	if err != nil {
		return NodeSelf{}, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return NodeSelf{}, resp.StatusCode == http.StatusUnauthorized, relayError(resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&n); err != nil {
		return NodeSelf{}, false, err
	}
	return n, false, nil
}

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // Raft address
}

// RemoveRequest is the body of POST /v1/cluster/remove.
type RemoveRequest struct {
	ID string `json:"id"`
}

// RemoveResult is the answer to POST /v1/cluster/remove.
type RemoveResult struct {
	Removed string `json:"removed"`
	// NodeSecretRotated says the node secret was replaced after the
	// removal, so the removed node's copy opens nothing. It is false
	// where that failed (the node removed was the leader, say): then run
	// POST /v1/cluster/node-secret (lifeboat cluster rotate-secret).
	NodeSecretRotated bool `json:"node_secret_rotated"`
}

func (a *API) clusterJoin(w http.ResponseWriter, r *http.Request, c *call) error {
	var q JoinRequest
	if err := decodeJSON(c.body, &q); err != nil {
		return err
	}
	if q.ID == "" || q.Addr == "" || strings.ContainsAny(q.ID, " ,=/") {
		return badRequest("join needs a node ID (no spaces, commas, '=' or '/') and its Raft address HOST:PORT")
	}
	if host, port, err := net.SplitHostPort(q.Addr); err != nil || host == "" || !validPort(port) {
		return badRequest("raft address %q of node %s: want HOST:PORT, as the node's --raft-addr (e.g. 10.0.0.4:8421)", q.Addr, q.ID)
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	// A voter that never answers can cost the cluster its quorum (a
	// single node that adds one has none), and removing it again needs
	// a quorum: the node must answer before it is added.
	d := net.Dialer{Timeout: 3 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", q.Addr)
	if err != nil {
		return badRequest("raft address %s of node %s cannot be reached from the leader (%v): start the node first ('lifeboat server --id %s --raft-addr %s ...', without --peers) and check the address; nothing was changed",
			q.Addr, q.ID, err, q.ID, q.Addr)
	}
	_ = conn.Close()
	if err := a.apply(func() error { return a.node.AddVoter(ctx, q.ID, q.Addr) }); err != nil {
		return err
	}
	if _, err := a.node.Propose(ctx, CmdClusterMember, c.p.Actor, ClusterMember{Op: "join", ID: q.ID, Addr: q.Addr}); err != nil {
		a.log.Warn("record cluster join in the audit log", "node", q.ID, "err", err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"joined": q.ID, "addr": q.Addr})
	return nil
}

func (a *API) clusterRemove(w http.ResponseWriter, r *http.Request, c *call) error {
	var q RemoveRequest
	if err := decodeJSON(c.body, &q); err != nil {
		return err
	}
	if q.ID == "" {
		return badRequest("remove needs a node ID")
	}
	found := false
	for _, m := range a.node.Status().Members {
		found = found || m.ID == q.ID
	}
	if !found {
		return notFound("cluster member", q.ID)
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	// Recorded first: removing the leader itself ends its leadership.
	if err := a.apply(func() error {
		_, err := a.node.Propose(ctx, CmdClusterMember, c.p.Actor, ClusterMember{Op: "remove", ID: q.ID})
		return err
	}); err != nil {
		return err
	}
	if err := a.node.RemoveServer(ctx, q.ID); err != nil {
		return err
	}
	// The removed node keeps the node secret in its data dir; once out
	// of the configuration it no longer gets the log, so a new secret is
	// one it never learns.
	res := RemoveResult{Removed: q.ID, NodeSecretRotated: true}
	if err := a.rotateSecret(ctx, c.p.Actor); err != nil {
		res.NodeSecretRotated = false
		a.log.Warn("node removed, but the node secret was not rotated: rotate it (lifeboat cluster rotate-secret)", "node", q.ID, "err", err)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// rotateNodeSecretAPI handles POST /v1/cluster/node-secret: a new node
// secret, after a node or a copy of a data dir was compromised.
func (a *API) rotateNodeSecretAPI(w http.ResponseWriter, r *http.Request, c *call) error {
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.rotateSecret(ctx, c.p.Actor); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) rotateSecret(ctx context.Context, actor string) error {
	return a.apply(func() error {
		_, err := a.node.Propose(ctx, CmdRotateNodeSecret, actor, RotateNodeSecret{NodeSecret: randomHex(32)})
		return err
	})
}

func (a *API) registerNode(w http.ResponseWriter, r *http.Request, c *call) error {
	var q NodeInfo
	if err := decodeJSON(c.body, &q); err != nil {
		return err
	}
	if q.ID == "" || !strings.HasPrefix(q.HTTPAddr, "http") || c.p.Actor != "node:"+q.ID {
		return badRequest("node registration needs the node's own ID (in %s) and its http(s) URL", headerNode)
	}
	// Every node holds the same node secret, and the ID it names is only a
	// header: a node — or a removed one, or whoever read a data dir —
	// could otherwise register the leader's address as its own URL, and
	// the followers would forward every client's token there. The leader
	// records its own address (maintainOnce); nobody else may.
	if q.ID == a.node.ID() {
		return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf("node %s is the leader: it records its own API address, no other node may register it", q.ID)}
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	if _, err := a.node.Propose(ctx, CmdSetNodeInfo, c.p.Actor, NodeInfo{ID: q.ID, HTTPAddr: q.HTTPAddr, Version: q.Version}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- cluster bookkeeping ---------------------------------------------------------

// AdminTokenFile is where the first leader of a new cluster writes the
// initial admin token, in its data dir (mode 0600).
const AdminTokenFile = "admin-token"

// Maintain runs until ctx ends: while this node leads a cluster that has
// no identity yet it initializes it (writing DATA_DIR/admin-token), and it
// keeps this node's API address recorded in the replicated state, so that
// followers can forward writes to it and probe its health.
func (a *API) Maintain(ctx context.Context) {
	for {
		if err := a.maintainOnce(ctx); err != nil && ctx.Err() == nil && !Retryable(err) {
			a.log.Warn("cluster bookkeeping", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (a *API) maintainOnce(ctx context.Context) error {
	me := NodeInfo{ID: a.node.ID(), HTTPAddr: a.cfg.SelfURL, Version: a.cfg.Version}
	if a.cfg.SelfURL == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	leader := a.node.IsLeader()
	if leader {
		// A restarted leader must see the cluster's identity before it
		// decides there is none.
		if err := a.syncLeader(ctx); err != nil {
			return err
		}
	}
	var ci *ClusterInfo
	a.node.View(func(s *State) { ci = s.Cluster.clone() })
	if leader {
		if ci == nil {
			return a.initCluster(ctx, me)
		}
		if cur := ci.Nodes[me.ID]; cur == nil || cur.HTTPAddr != me.HTTPAddr || cur.Version != me.Version {
			_, err := a.node.Propose(ctx, CmdSetNodeInfo, "node:"+me.ID, me)
			return err
		}
		return nil
	}
	if ci == nil {
		return nil
	}
	if cur := ci.Nodes[me.ID]; cur != nil && cur.HTTPAddr == me.HTTPAddr && cur.Version == me.Version {
		return nil
	}
	base, err := a.leaderURL()
	if err != nil {
		return nil // no leader, or it has not published its address: later
	}
	body, _ := json.Marshal(me)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/cluster/nodes", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+nodeCredential(ci.NodeSecret))
	req.Header.Set(headerNode, me.ID)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("register this node's API address with the leader: %w", ErrTimeout)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("register this node's API address with the leader: %w", relayError(resp))
	}
	return nil
}

// initCluster names a new cluster and creates the initial admin token,
// whose plaintext goes to DATA_DIR/admin-token before the command is
// proposed (a crash in between leaves a file that the next attempt
// reuses, never a token nobody has).
func (a *API) initCluster(ctx context.Context, me NodeInfo) error {
	path := ""
	var ct CreateToken
	var plain string
	written := false // by this attempt
	if a.cfg.DataDir != "" {
		path = filepath.Join(a.cfg.DataDir, AdminTokenFile)
		if b, err := os.ReadFile(path); err == nil {
			plain = strings.TrimSpace(string(b))
			if id, secret, ok := strings.Cut(strings.TrimPrefix(plain, tokenPrefix), "_"); ok && strings.HasPrefix(plain, tokenPrefix) {
				ct = CreateToken{ID: id, Hash: hashSecret(secret), Role: RoleAdmin, Name: "initial admin"}
			}
		}
	}
	if ct.ID == "" {
		ct, plain = NewAPIToken(RoleAdmin, "initial admin", time.Time{})
		if path != "" {
			if err := atomicfile.Write(path, []byte(plain+"\n"), 0o600); err != nil {
				return fmt.Errorf("write the initial admin token: %w", err)
			}
			written = true
		}
	}
	_, err := a.node.Propose(ctx, CmdInitCluster, "node:"+me.ID, InitCluster{ID: randomHex(8), NodeSecret: randomHex(32), AdminToken: ct, Node: &me})
	if errors.Is(err, ErrConflict) && path != "" {
		// Initialized already: keep the file only if it holds the token
		// the cluster was initialized with.
		var adminID string
		a.node.View(func(s *State) {
			if s.Cluster != nil {
				adminID = s.Cluster.AdminToken
			}
		})
		if written || (adminID != "" && adminID != ct.ID) {
			_ = os.Remove(path)
		}
	}
	if err != nil {
		return err
	}
	a.adminToken.Store(&plain)
	where := path
	if where == "" {
		where = "memory (no data dir)"
	}
	a.log.Info("initialized a new cluster; initial admin token written", "path", where)
	return nil
}

// InitialAdminToken returns the admin token this node created when it
// initialized the cluster, or "".
func (a *API) InitialAdminToken() string {
	if p := a.adminToken.Load(); p != nil {
		return *p
	}
	return ""
}

// validPort reports whether p is a TCP port number, 1-65535.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}
