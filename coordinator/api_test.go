package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// farDaily is fixture.FarDaily on the wall clock, which the API tests
// run on.
func farDaily() string { return fixture.FarDaily(time.Now()) }

// apiCluster is an in-process cluster on the in-memory Raft transport,
// each node with its API on an httptest server and the wall clock.
type apiCluster struct {
	t     testing.TB
	net   *memNetwork
	peers []Peer
	dirs  []string
	nodes []*Node
	apis  []*API
	srvs  []*httptest.Server
	hs    []atomic.Pointer[API] // the API behind each server, nil while stopped
	stops []context.CancelFunc
	admin string // the initial admin token
}

func newAPICluster(t testing.TB, n int) *apiCluster {
	t.Helper()
	c := &apiCluster{t: t, net: newMemNetwork(), nodes: make([]*Node, n), apis: make([]*API, n), srvs: make([]*httptest.Server, n),
		hs: make([]atomic.Pointer[API], n), stops: make([]context.CancelFunc, n)}
	for i := range n {
		c.peers = append(c.peers, Peer{ID: fmt.Sprintf("n%d", i), Addr: fmt.Sprintf("api-mem-%d", i)})
		c.dirs = append(c.dirs, t.TempDir())
		i := i
		c.srvs[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := c.hs[i].Load()
			if h == nil {
				http.Error(w, `{"error":"node down","retryable":true}`, http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		}))
	}
	t.Cleanup(c.close)
	for i := range n {
		c.start(i)
	}
	// Wait for the cluster to be initialized and every API address known.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, a := range c.apis {
			if a != nil && a.InitialAdminToken() != "" {
				c.admin = a.InitialAdminToken()
			}
		}
		known := 0
		c.nodes[0].View(func(s *State) {
			for _, p := range c.peers {
				if s.NodeHTTP(p.ID) != "" {
					known++
				}
			}
		})
		if c.admin != "" && known == n {
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("cluster of %d not initialized within 15s", n)
	return nil
}

func (c *apiCluster) start(i int) {
	c.t.Helper()
	rc := RaftConfig{ID: c.peers[i].ID, Addr: c.peers[i].Addr, DataDir: c.dirs[i], Peers: c.peers,
		HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond, LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout: 5 * time.Millisecond, ApplyTimeout: 2 * time.Second, transport: c.net.transport(c.peers[i].Addr), noSync: true}
	n, err := NewNode(Config{Raft: rc, TickInterval: 100 * time.Millisecond, VerifySchedule: farDaily()})
	if err != nil {
		c.t.Fatalf("start %s: %v", c.peers[i].ID, err)
	}
	a := NewAPI(APIConfig{Node: n, SelfURL: c.srvs[i].URL, DataDir: c.dirs[i], LeaseTTL: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	go a.Maintain(ctx)
	c.nodes[i], c.apis[i], c.stops[i] = n, a, cancel
	c.hs[i].Store(a)
}

func (c *apiCluster) stop(i int) {
	c.hs[i].Store(nil)
	c.stops[i]()
	c.net.down(c.peers[i].Addr)
	_ = c.nodes[i].Close()
	c.nodes[i] = nil
}

func (c *apiCluster) close() {
	for i := range c.nodes {
		if c.nodes[i] != nil {
			c.stop(i)
		}
		c.srvs[i].Close()
	}
}

func (c *apiCluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, n := range c.nodes {
			if n != nil && n.IsLeader() {
				return i
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatal("no leader within 10s")
	return -1
}

func (c *apiCluster) follower() int {
	l := c.leader()
	for i, n := range c.nodes {
		if n != nil && i != l {
			return i
		}
	}
	c.t.Fatal("no follower")
	return -1
}

func (c *apiCluster) url(i int) string { return c.srvs[i].URL }

// token creates a token of role with the admin token.
func (c *apiCluster) token(role Role) string {
	c.t.Helper()
	var res TokenCreateResult
	c.mustJSON(http.MethodPost, c.url(c.leader())+"/v1/tokens", c.admin, TokenCreateRequest{Role: role, Name: "test " + string(role)}, &res)
	return res.Token
}

// call sends a request; body is JSON-encoded unless it is []byte.
func httpCall(t testing.TB, method, url, token string, body any, contentType string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
		if contentType == "" {
			contentType = "application/json"
		}
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *apiCluster) mustJSON(method, url, token string, in, out any) {
	c.t.Helper()
	status, b := httpCall(c.t, method, url, token, in, "")
	if status/100 != 2 {
		c.t.Fatalf("%s %s: %d %s", method, url, status, b)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, url, b, err)
		}
	}
}

// errBody decodes an error answer and checks its status.
func errBody(t testing.TB, status int, b []byte, want int) ErrorBody {
	t.Helper()
	var eb ErrorBody
	if err := json.Unmarshal(b, &eb); err != nil || eb.Error == "" {
		t.Fatalf("status %d: not a JSON error: %s", status, b)
	}
	if status != want {
		t.Fatalf("status %d, want %d: %s", status, want, b)
	}
	return eb
}

// stateBytes is the node's encoded state without its applied index (a
// no-op command moves the index but changes nothing).
func stateBytes(t testing.TB, n *Node) []byte {
	st := n.State()
	st.Index = 0
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const testPolicyYAML = `name: web
repository: r
schedule: "@every 1h"
agents: {role: web}
paths: [/srv/www]
targets: {rpo: 2h}
`

func (c *apiCluster) addRepo(token string) {
	c.t.Helper()
	wk, _ := testWriterKey(c.t)
	c.mustJSON(http.MethodPost, c.url(c.leader())+"/v1/repos", token, RepoAddRequest{Name: "r", URL: "/srv/backup", WriterKey: string(wk)}, nil)
}

func TestAPIAuthz(t *testing.T) {
	c := newAPICluster(t, 1)
	u := c.url(0)
	ro, op, ag := c.token(RoleReadOnly), c.token(RoleOperator), c.token(RoleAgent)

	for _, tc := range []struct {
		name, method, path, token string
		body                      any
		want                      int
	}{
		{"no token", http.MethodGet, "/v1/policies", "", nil, 401},
		{"garbage token", http.MethodGet, "/v1/policies", "nope", nil, 401},
		{"wrong secret", http.MethodGet, "/v1/policies", c.admin[:len(c.admin)-4] + "0000", nil, 401},
		{"unknown token", http.MethodGet, "/v1/policies", "lbt_abcdef012345_00", nil, 401},
		{"read-only reads", http.MethodGet, "/v1/policies", ro, nil, 200},
		{"read-only reads audit", http.MethodGet, "/v1/audit", ro, nil, 200},
		{"read-only cannot apply", http.MethodPut, "/v1/policies", ro, []byte(testPolicyYAML), 403},
		{"read-only cannot add repo", http.MethodPost, "/v1/repos", ro, RepoAddRequest{Name: "x"}, 403},
		{"read-only cannot cancel", http.MethodPost, "/v1/jobs/x/cancel", ro, nil, 403},
		{"read-only cannot create tokens", http.MethodPost, "/v1/tokens", ro, TokenCreateRequest{Role: RoleAdmin}, 403},
		{"operator cannot create tokens", http.MethodPost, "/v1/tokens", op, TokenCreateRequest{Role: RoleAdmin}, 403},
		{"operator cannot join nodes", http.MethodPost, "/v1/cluster/join", op, JoinRequest{ID: "x", Addr: "y:1"}, 403},
		{"agent cannot read policies", http.MethodGet, "/v1/policies", ag, nil, 403},
		{"agent cannot apply", http.MethodPut, "/v1/policies", ag, []byte(testPolicyYAML), 403},
		{"node endpoint needs a node credential", http.MethodPost, "/v1/cluster/nodes", c.admin, NodeInfo{ID: "n9", HTTPAddr: "http://x"}, 403},
		{"no such endpoint", http.MethodGet, "/v1/nothing", c.admin, nil, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := stateBytes(t, c.nodes[0])
			status, b := httpCall(t, tc.method, u+tc.path, tc.token, tc.body, "application/yaml")
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, b)
			}
			if status >= 400 {
				errBody(t, status, b, tc.want)
				if after := stateBytes(t, c.nodes[0]); !bytes.Equal(before, after) {
					t.Fatal("a refused request changed the state")
				}
			}
		})
	}

	// The operator can apply; every write is in the audit log with who did it.
	c.addRepo(op)
	status, b := httpCall(t, http.MethodPut, u+"/v1/policies?filename=web.yaml", op, []byte(testPolicyYAML), "application/yaml")
	if status != 200 {
		t.Fatalf("operator apply: %d %s", status, b)
	}
	var audit []AuditView
	c.mustJSON(http.MethodGet, u+"/v1/audit", ro, nil, &audit)
	var actions []string
	for _, e := range audit {
		actions = append(actions, e.Action+" "+e.Target+" by "+string(e.ActorRole))
		if e.Time.IsZero() || e.Actor == "" {
			t.Errorf("audit entry without time or actor: %+v", e)
		}
	}
	for _, want := range []string{"repo.add repo/r by operator", "policy.put policy/web by operator", "token.create token/"} {
		if !strings.Contains(strings.Join(actions, "\n"), want) {
			t.Errorf("audit log lacks %q:\n%s", want, strings.Join(actions, "\n"))
		}
	}
}

func TestAPIBadInputChangesNothing(t *testing.T) {
	c := newAPICluster(t, 1)
	u := c.url(0)
	c.addRepo(c.admin)
	wk, id := testWriterKey(t)
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		ctype              string
		want               int
		contains           string
	}{
		{"malformed JSON", http.MethodPost, "/v1/repos", []byte(`{"name": "x",`), "application/json", 400, "invalid JSON"},
		{"unknown field", http.MethodPost, "/v1/repos", []byte(`{"name":"x","url":"/x","writer_key":"k","colour":"red"}`), "application/json", 400, "unknown field"},
		{"trailing data", http.MethodPost, "/v1/tokens", []byte(`{"role":"admin"}{"role":"admin"}`), "application/json", 400, "after the object"},
		{"empty body", http.MethodPost, "/v1/tokens", nil, "application/json", 400, "empty request body"},
		{"wrong type", http.MethodPost, "/v1/tokens", []byte(`{"role": 7}`), "application/json", 400, "invalid JSON"},
		{"bad role", http.MethodPost, "/v1/tokens", []byte(`{"role":"root"}`), "application/json", 400, "role"},
		{"identity as writer key", http.MethodPost, "/v1/repos", mustJSON(RepoAddRequest{Name: "x", URL: "/x", WriterKey: string(id)}), "application/json", 400, "age identity"},
		{"not a writer key", http.MethodPost, "/v1/repos", mustJSON(RepoAddRequest{Name: "x", URL: "/x", WriterKey: "hello"}), "application/json", 400, "writer key"},
		{"relative repo path", http.MethodPost, "/v1/repos", mustJSON(RepoAddRequest{Name: "x", URL: "backups", WriterKey: string(wk)}), "application/json", 400, "absolute"},
		{"foreign env", http.MethodPost, "/v1/repos", mustJSON(RepoAddRequest{Name: "x", URL: "/x", WriterKey: string(wk), Env: map[string]string{"LD_PRELOAD": "/x"}}), "application/json", 400, "AWS_"},
		{"duplicate repo", http.MethodPost, "/v1/repos", mustJSON(RepoAddRequest{Name: "r", URL: "/x", WriterKey: string(wk)}), "application/json", 409, "already registered"},
		{"policy JSON unknown field", http.MethodPut, "/v1/policies", []byte(`{"name":"a","colour":1}`), "application/json", 400, "unknown field"},
		{"bad job state filter", http.MethodGet, "/v1/jobs?state=done", nil, "", 400, "state"},
		{"bad wait", http.MethodGet, "/v1/agents/a/work?wait=soon", nil, "", 400, "wait"},
		{"body too large", http.MethodPut, "/v1/policies", bytes.Repeat([]byte("#"), DefaultMaxBody+1), "application/yaml", 413, "larger"},
		{"unknown job", http.MethodPost, "/v1/jobs/nope/cancel", nil, "", 404, "not found"},
		{"unknown policy run", http.MethodPost, "/v1/policies/nope/run", nil, "", 404, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := stateBytes(t, c.nodes[0])
			status, b := httpCall(t, tc.method, u+tc.path, c.admin, tc.body, tc.ctype)
			eb := errBody(t, status, b, tc.want)
			if !strings.Contains(eb.Error, tc.contains) || eb.Retryable {
				t.Errorf("error %q (retryable %v), want one containing %q", eb.Error, eb.Retryable, tc.contains)
			}
			if after := stateBytes(t, c.nodes[0]); !bytes.Equal(before, after) {
				t.Fatal("a refused request changed the state")
			}
		})
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestAPIInvalidPolicyRejectedWhole(t *testing.T) {
	c := newAPICluster(t, 1)
	u := c.url(0)
	c.addRepo(c.admin)
	file := testPolicyYAML + `---
name: db
repository: r
schedule: "61 * * * *"
paths: [relative/path]
---
name: logs
repository: nowhere
schedule: "@daily"
paths: [/var/log]
`
	before := stateBytes(t, c.nodes[0])
	status, b := httpCall(t, http.MethodPut, u+"/v1/policies?filename=fleet.yaml", c.admin, []byte(file), "application/yaml")
	eb := errBody(t, status, b, 400)
	var lines []string
	for _, p := range eb.Problems {
		lines = append(lines, p.String())
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{"fleet.yaml:10: schedule: invalid cron expression", "fleet.yaml:11: paths[0]"} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	if !bytes.Equal(before, stateBytes(t, c.nodes[0])) {
		t.Fatal("an invalid file changed the state")
	}
	// Valid on its own, but naming an unregistered repository: the whole
	// file is refused before anything is proposed.
	file = testPolicyYAML + "---\nname: logs\nrepository: nowhere\nschedule: \"@daily\"\npaths: [/var/log]\n"
	status, b = httpCall(t, http.MethodPut, u+"/v1/policies?filename=fleet.yaml", c.admin, []byte(file), "application/yaml")
	eb = errBody(t, status, b, 400)
	if len(eb.Problems) != 1 || eb.Problems[0].Field != "repository" {
		t.Errorf("problems %+v, want one about the repository", eb.Problems)
	}
	if !bytes.Equal(before, stateBytes(t, c.nodes[0])) {
		t.Fatal("a refused file changed the state")
	}
	// JSON works too, and applying the same policy twice changes nothing.
	var res PolicyApplyResult
	p, _ := ParsePolicies([]byte(testPolicyYAML), "")
	c.mustJSON(http.MethodPut, u+"/v1/policies", c.admin, p[0], &res)
	c.mustJSON(http.MethodPut, u+"/v1/policies", c.admin, p[0], &res)
	if len(res.Policies) != 1 || res.Policies[0].Status != "unchanged" {
		t.Errorf("second apply: %+v, want unchanged", res)
	}
	status, yml := httpCall(t, http.MethodGet, u+"/v1/policies/web?format=yaml", c.admin, nil, "")
	if back, err := ParsePolicies(yml, ""); status != 200 || err != nil || back[0].Schedule != "@every 1h" {
		t.Errorf("policy show as YAML: %d %v\n%s", status, err, yml)
	}
}

func TestAPIFollowerForwardsWrites(t *testing.T) {
	c := newAPICluster(t, 3)
	l, f := c.leader(), c.follower()
	op := c.token(RoleOperator)
	wk, _ := testWriterKey(t)
	// A write on a follower is applied by the leader.
	c.mustJSON(http.MethodPost, c.url(f)+"/v1/repos", op, RepoAddRequest{Name: "r", URL: "/srv/b", WriterKey: string(wk)}, nil)
	status, b := httpCall(t, http.MethodPut, c.url(f)+"/v1/policies", op, []byte(testPolicyYAML), "application/yaml")
	if status != 200 {
		t.Fatalf("apply on a follower: %d %s", status, b)
	}
	var found bool
	c.nodes[l].View(func(s *State) { found = s.Policies["web"] != nil && s.Repositories["r"] != nil })
	if !found {
		t.Fatal("the leader does not have the policy written through a follower")
	}
	// A token created a moment ago works on every node (a follower that
	// has not seen it yet sends the request on to the leader).
	ro := c.token(RoleReadOnly)
	for i := range c.nodes {
		if status, b := httpCall(t, http.MethodGet, c.url(i)+"/v1/policies/web", ro, nil, ""); status != 200 {
			t.Errorf("node %d: %d %s", i, status, b)
		}
	}
	// The audit log names the operator's token on every node.
	time.Sleep(200 * time.Millisecond)
	var audit []AuditView
	c.mustJSON(http.MethodGet, c.url(f)+"/v1/audit", c.admin, nil, &audit)
	var ok bool
	for _, e := range audit {
		ok = ok || (e.Action == string(CmdPutPolicy) && e.ActorRole == RoleOperator && strings.HasPrefix(e.Actor, "token:"))
	}
	if !ok {
		t.Errorf("no policy.put by the operator in the follower's audit log: %+v", audit)
	}
	// Cluster status from a follower: the leader, and every member healthy.
	var cs ClusterStatus
	c.mustJSON(http.MethodGet, c.url(f)+"/v1/cluster", c.admin, nil, &cs)
	if cs.Leader != c.peers[l].ID || len(cs.Members) != 3 || cs.Node != c.peers[f].ID {
		t.Fatalf("cluster status: %+v", cs)
	}
	for _, m := range cs.Members {
		if m.Health != "ok" || m.HTTPAddr == "" {
			t.Errorf("member %s: health %q (%s)", m.ID, m.Health, m.Error)
		}
	}
}

func TestAPIWriteDuringElectionIsRetryable(t *testing.T) {
	c := newAPICluster(t, 3)
	l := c.leader()
	c.addRepo(c.admin)
	// Lose the majority: the survivor has no leader.
	survivor := (l + 1) % 3
	for i := range c.nodes {
		if i != survivor {
			c.stop(i)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if id, _ := c.nodes[survivor].Leader(); id == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the survivor still sees a leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := stateBytes(t, c.nodes[survivor])
	status, b := httpCall(t, http.MethodPut, c.url(survivor)+"/v1/policies", c.admin, []byte(testPolicyYAML), "application/yaml")
	eb := errBody(t, status, b, http.StatusServiceUnavailable)
	if !eb.Retryable {
		t.Errorf("election-time write: %+v, want retryable", eb)
	}
	if !bytes.Equal(before, stateBytes(t, c.nodes[survivor])) {
		t.Fatal("the refused write changed the state")
	}
	// Reads still work; readiness says why not.
	if status, b := httpCall(t, http.MethodGet, c.url(survivor)+"/v1/repos", c.admin, nil, ""); status != 200 {
		t.Errorf("read without a leader: %d %s", status, b)
	}
	if status, b := httpCall(t, http.MethodGet, c.url(survivor)+"/readyz", "", nil, ""); status != 503 || !strings.Contains(string(b), "no leader") {
		t.Errorf("readyz without a leader: %d %s", status, b)
	}
	// The client retries until a leader is back, then succeeds.
	cl, err := NewClient(ClientConfig{Addrs: []string{c.url(survivor)}, Token: c.admin, RetryFor: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(500 * time.Millisecond)
		c.start(l)
	}()
	defer func() { <-restarted }()
	res, err := cl.ApplyPolicies(context.Background(), []byte(testPolicyYAML), "web.yaml", false)
	if err != nil || len(res.Policies) != 1 {
		t.Fatalf("client write across the election: %+v, %v", res, err)
	}
}
