package coordinator

import (
	"fmt"
	"maps"
	"time"
)

// Cluster bookkeeping the HTTP layer needs in the replicated state: the
// cluster's identity, the secret nodes present to each other, and each
// node's HTTP address (so that any node can forward a write to the
// leader's API and ask every member for its health).

// Command types of cluster bookkeeping. Stored in the log: never rename.
const (
	// CmdInitCluster is proposed once, by the first leader of a new
	// cluster: it names the cluster and creates the initial admin token.
	CmdInitCluster CommandType = "cluster.init"
	// CmdSetNodeInfo records a node's HTTP address.
	CmdSetNodeInfo CommandType = "node.info"
	// CmdClusterMember records a membership change made through the API
	// (the change itself is Raft's), so it appears in the audit log, and
	// forgets a removed node's address.
	CmdClusterMember CommandType = "cluster.member"
	// CmdRotateNodeSecret replaces the node secret. The members present
	// the new one from then on (they read it from the state for each
	// call); a removed node, which no longer receives the log, is left
	// with one that opens nothing.
	CmdRotateNodeSecret CommandType = "cluster.node_secret"
)

func init() {
	// Registered here rather than in fsm.go's table to keep the HTTP
	// layer's bookkeeping in one file; same contract as every transition.
	transitions[CmdInitCluster] = payload(initCluster)
	transitions[CmdSetNodeInfo] = payload(setNodeInfo)
	transitions[CmdClusterMember] = payload(clusterMember)
	transitions[CmdRotateNodeSecret] = payload(rotateNodeSecret)
}

// ClusterInfo is the cluster's identity, set once by its first leader.
type ClusterInfo struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	// NodeSecret authenticates nodes to each other's API (a node
	// registering its address with the leader, health probes). Every
	// member holds the replicated state, so every member knows it; it is
	// never shown by the API.
	NodeSecret string `json:"node_secret"`
	// AdminToken is the ID of the initial admin token, whose secret only
	// the first leader's DATA_DIR/admin-token holds.
	AdminToken string               `json:"admin_token"`
	Nodes      map[string]*NodeInfo `json:"nodes,omitempty"`
}

// NodeInfo is what the cluster knows of one node's API.
type NodeInfo struct {
	ID        string    `json:"id"`
	HTTPAddr  string    `json:"http_addr"` // base URL: http(s)://host:port
	Version   string    `json:"version,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (c *ClusterInfo) clone() *ClusterInfo {
	if c == nil {
		return nil
	}
	cp := *c
	cp.Nodes = make(map[string]*NodeInfo, len(c.Nodes))
	for k, v := range c.Nodes {
		n := *v
		cp.Nodes[k] = &n
	}
	return &cp
}

// NodeHTTP returns the recorded HTTP address of node id, or "".
func (s *State) NodeHTTP(id string) string {
	if s.Cluster == nil || s.Cluster.Nodes[id] == nil {
		return ""
	}
	return s.Cluster.Nodes[id].HTTPAddr
}

// InitCluster names a new cluster and creates its initial admin token.
type InitCluster struct {
	ID         string      `json:"id"`
	NodeSecret string      `json:"node_secret"`
	AdminToken CreateToken `json:"admin_token"`
	Node       *NodeInfo   `json:"node,omitempty"` // the proposing leader's address
}

// ClusterMember records a membership change.
type ClusterMember struct {
	Op   string `json:"op"` // "join" or "remove"
	ID   string `json:"id"`
	Addr string `json:"addr,omitempty"`
}

func initCluster(s *State, c *Command, _ uint64, p *InitCluster) (outcome, error) {
	tk := p.AdminToken
	switch {
	case s.Cluster != nil:
		return outcome{}, conflict("cluster %q is already initialized", s.Cluster.ID)
	case p.ID == "" || p.NodeSecret == "":
		return outcome{}, invalid("cluster init needs an ID and a node secret")
	case tk.ID == "" || tk.Role != RoleAdmin:
		return outcome{}, invalid("cluster init needs an admin token")
	case s.Tokens[tk.ID] != nil:
		return outcome{}, conflict("token %q exists", tk.ID)
	}
	if err := checkHash(tk.Hash); err != nil {
		return outcome{}, invalid("admin token: %v", err)
	}
	ci := &ClusterInfo{ID: p.ID, CreatedAt: c.Time, NodeSecret: p.NodeSecret, AdminToken: tk.ID, Nodes: map[string]*NodeInfo{}}
	if n := p.Node; n != nil && n.ID != "" {
		ci.Nodes[n.ID] = &NodeInfo{ID: n.ID, HTTPAddr: n.HTTPAddr, Version: n.Version, UpdatedAt: c.Time}
	}
	s.Cluster = ci
	s.Tokens[tk.ID] = &APIToken{ID: tk.ID, Hash: tk.Hash, Role: RoleAdmin, Name: tk.Name, Expires: tk.Expires.UTC(),
		CreatedAt: c.Time, CreatedBy: c.Actor}
	return outcome{target: "cluster/" + p.ID}, nil
}

func setNodeInfo(s *State, c *Command, _ uint64, p *NodeInfo) (outcome, error) {
	switch {
	case s.Cluster == nil:
		return outcome{}, conflict("cluster is not initialized yet")
	case p.ID == "" || p.HTTPAddr == "":
		return outcome{}, invalid("node info needs an ID and an HTTP address")
	}
	if old := s.Cluster.Nodes[p.ID]; old != nil && old.HTTPAddr == p.HTTPAddr && old.Version == p.Version {
		return outcome{noop: true}, nil
	}
	if s.Cluster.Nodes == nil {
		s.Cluster.Nodes = map[string]*NodeInfo{}
	}
	s.Cluster.Nodes[p.ID] = &NodeInfo{ID: p.ID, HTTPAddr: p.HTTPAddr, Version: p.Version, UpdatedAt: c.Time}
	return outcome{target: "node/" + p.ID}, nil
}

func clusterMember(s *State, _ *Command, _ uint64, p *ClusterMember) (outcome, error) {
	if p.ID == "" || (p.Op != "join" && p.Op != "remove") {
		return outcome{}, invalid("cluster member change needs an ID and op join or remove")
	}
	if p.Op == "remove" && s.Cluster != nil {
		nodes := maps.Clone(s.Cluster.Nodes)
		delete(nodes, p.ID)
		s.Cluster.Nodes = nodes
	}
	target := "node/" + p.ID
	if p.Addr != "" {
		target = fmt.Sprintf("node/%s (%s)", p.ID, p.Addr)
	}
	return outcome{target: target}, nil
}

// RotateNodeSecret is the payload of CmdRotateNodeSecret.
type RotateNodeSecret struct {
	NodeSecret string `json:"node_secret"`
}

// minNodeSecret is the shortest node secret accepted: the 32 random
// bytes the API makes, hex-encoded, are 64 characters.
const minNodeSecret = 32

func rotateNodeSecret(s *State, _ *Command, _ uint64, p *RotateNodeSecret) (outcome, error) {
	switch {
	case s.Cluster == nil:
		return outcome{}, conflict("cluster is not initialized yet")
	case len(p.NodeSecret) < minNodeSecret:
		return outcome{}, invalid("a node secret needs at least %d characters", minNodeSecret)
	case p.NodeSecret == s.Cluster.NodeSecret:
		return outcome{}, invalid("the new node secret is the current one")
	}
	ci := *s.Cluster
	ci.NodeSecret = p.NodeSecret
	s.Cluster = &ci
	return outcome{target: "cluster/" + ci.ID + " node secret"}, nil
}
