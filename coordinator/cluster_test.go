package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock moved by hand; After channels fire when Advance
// passes their deadline.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
		} else {
			w.ch <- c.now
		}
	}
	c.waiters = kept
}

// waiting is how many waits are pending.
func (c *fakeClock) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// Step moves the wall clock by d (back, if negative) as an NTP correction
// does: waits in progress are relative, as time.After's are, and keep
// their remaining time.
func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for i := range c.waiters {
		c.waiters[i].at = c.waiters[i].at.Add(d)
	}
}

// testCluster is an in-process cluster on the in-memory transport, with
// stores on disk and one fake clock.
type testCluster struct {
	t       testing.TB
	net     *memNetwork
	clock   *fakeClock
	peers   []Peer
	dirs    []string
	nodes   []*Node // nil while stopped
	tweak   func(*Config)
	logging bool
}

func testRaftConfig(id, addr, dir string, peers []Peer, net *memNetwork) RaftConfig {
	return RaftConfig{
		ID: id, Addr: addr, DataDir: dir, Peers: peers,
		HeartbeatTimeout:   100 * time.Millisecond,
		ElectionTimeout:    100 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		ApplyTimeout:       2 * time.Second,
		SnapshotThreshold:  64,
		TrailingLogs:       16,
		SnapshotInterval:   50 * time.Millisecond,
		transport:          net.transport(addr),
		noSync:             true,
	}
}

func newTestCluster(t testing.TB, n int, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, net: newMemNetwork(), clock: newFakeClock(t0), tweak: tweak, logging: os.Getenv("LIFEBOAT_TEST_LOG") != ""}
	for i := range n {
		c.peers = append(c.peers, Peer{ID: fmt.Sprintf("n%d", i), Addr: fmt.Sprintf("mem-%d", i)})
		c.dirs = append(c.dirs, t.TempDir())
	}
	c.nodes = make([]*Node, n)
	for i := range n {
		c.start(i)
	}
	t.Cleanup(c.close)
	return c
}

func (c *testCluster) config(i int) Config {
	logger := slog.New(slog.DiscardHandler)
	if c.logging {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := Config{
		Raft:         testRaftConfig(c.peers[i].ID, c.peers[i].Addr, c.dirs[i], c.peers, c.net),
		Clock:        c.clock,
		Logger:       logger,
		TickInterval: time.Second,
		AgentTimeout: 1000 * time.Hour,
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	n, err := NewNode(c.config(i))
	if err != nil {
		c.t.Fatalf("start %s: %v", c.peers[i].ID, err)
	}
	c.nodes[i] = n
}

func (c *testCluster) stop(i int) {
	c.t.Helper()
	if c.nodes[i] == nil {
		return
	}
	c.net.down(c.addr(i))
	if err := c.nodes[i].Close(); err != nil {
		c.t.Fatalf("stop %s: %v", c.peers[i].ID, err)
	}
	c.nodes[i] = nil
}

func (c *testCluster) close() {
	for i := range c.nodes {
		if c.nodes[i] != nil {
			_ = c.nodes[i].Close()
			c.nodes[i] = nil
		}
	}
}

func (c *testCluster) addr(i int) string { return c.peers[i].Addr }

// leader waits for exactly one leader among the running nodes in among
// (all if empty) and returns its index.
func (c *testCluster) leader(among ...int) int {
	c.t.Helper()
	if len(among) == 0 {
		for i := range c.nodes {
			among = append(among, i)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		found := -1
		count := 0
		for _, i := range among {
			if n := c.nodes[i]; n != nil && n.IsLeader() {
				found, count = i, count+1
			}
		}
		if count == 1 {
			return found
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("no single leader among %v within 10s", among)
	return -1
}

// propose sends a command to whichever running node leads, retrying
// retryable errors like a client with every address would.
func (c *testCluster) propose(typ CommandType, payload any) (any, error) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	uncertain := false // an earlier attempt may have committed
	for {
		var err error
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			var v any
			v, err = n.Propose(ctx, typ, "test", payload)
			cancel()
			if uncertain && errors.Is(err, ErrConflict) {
				// A retryable failure (a timeout, a leader change) can
				// hide a commit; the retry then conflicts with it. On a
				// loaded machine the 2 s timeout does elapse.
				c.t.Logf("propose %s: conflict after a retried attempt, taken as committed: %v", typ, err)
				return nil, nil
			}
			if err == nil || !Retryable(err) {
				return v, err
			}
			uncertain = true
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("propose %s: gave up: %w", typ, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *testCluster) must(typ CommandType, payload any) any {
	c.t.Helper()
	v, err := c.propose(typ, payload)
	if err != nil {
		c.t.Fatalf("%s: %v", typ, err)
	}
	return v
}

// converge waits until every running node (in among, or all) holds
// byte-identical state, and returns it.
func (c *testCluster) converge(among ...int) []byte {
	c.t.Helper()
	if len(among) == 0 {
		for i := range c.nodes {
			among = append(among, i)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var first []byte
		same := true
		for _, i := range among {
			n := c.nodes[i]
			if n == nil {
				continue
			}
			b, err := n.Snapshot()
			if err != nil {
				c.t.Fatal(err)
			}
			if first == nil {
				first = b
			} else if !bytes.Equal(first, b) {
				same = false
			}
		}
		if same {
			return first
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nodes %v did not converge within 10s", among)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seed registers a repository, a policy and an agent.
func (c *testCluster) seed(schedule string) {
	c.t.Helper()
	wk, _ := testWriterKey(c.t)
	c.must(CmdAddRepository, AddRepository{Name: "r", URL: "s3:bucket/r", WriterKey: wk})
	c.must(CmdEnrollAgent, EnrollAgent{Name: "a1", Labels: map[string]string{"role": "db"}, CredentialHash: hashOf("a1")})
	c.must(CmdPutPolicy, PutPolicy{Policy: Policy{Name: "p", Repository: "r", Schedule: schedule, Paths: []string{"/data"}, Agents: map[string]string{"role": "db"}}})
}

func tokenCmd(i int) CreateToken {
	id := fmt.Sprintf("tok-%04d", i)
	return CreateToken{ID: id, Hash: hashOf(id), Role: RoleReadOnly}
}

func TestClusterLeaderLoss(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d nodes", size), func(t *testing.T) {
			c := newTestCluster(t, size, nil)
			c.seed("@daily")
			for i := range 10 {
				c.must(CmdCreateToken, tokenCmd(i))
			}
			// Lose leaders one after another while a majority remains.
			var lost []int
			for k := 0; k < (size-1)/2; k++ {
				old := c.leader()
				start := time.Now()
				c.stop(old)
				lost = append(lost, old)
				c.must(CmdCreateToken, tokenCmd(100+k))
				t.Logf("leader %s stopped: next write committed after %v", c.peers[old].ID, time.Since(start).Round(time.Millisecond))
				if idx := c.leader(); idx == old {
					t.Fatal("a stopped node leads")
				}
			}
			// The lost nodes come back from their data dirs and catch up.
			for _, i := range lost {
				c.start(i)
			}
			want := c.converge()
			var sf snapshotFile
			if err := json.Unmarshal(want, &sf); err != nil {
				t.Fatal(err)
			}
			if got := len(sf.State.Tokens); got != 10+(size-1)/2 {
				t.Fatalf("%d tokens after failover, want %d", got, 10+(size-1)/2)
			}
		})
	}
}

func TestClusterPartition(t *testing.T) {
	c := newTestCluster(t, 5, nil)
	c.seed("@daily")
	old := c.leader()
	// The leader and one follower end up on the minority side.
	minority := []int{old, (old + 1) % 5}
	var majority []int
	for i := range 5 {
		if i != minority[0] && i != minority[1] {
			majority = append(majority, i)
		}
	}
	c.net.partition(c.addr(minority[0]), c.addr(minority[1]))

	// Writes on the minority side fail with a retryable error: never a
	// silent success.
	var wg sync.WaitGroup
	minorityErrs := make([]error, 2)
	for k, i := range minority {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, minorityErrs[k] = c.nodes[i].Propose(ctx, CmdCreateToken, "test", tokenCmd(900+k))
		}()
	}
	// The majority elects a leader and keeps going.
	nl := c.leader(majority...)
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if _, err := c.nodes[nl].Propose(ctx, CmdCreateToken, "test", tokenCmd(i)); err != nil {
			t.Fatalf("majority write %d: %v", i, err)
		}
		cancel()
	}
	wg.Wait()
	for k, err := range minorityErrs {
		if err == nil {
			t.Fatalf("write on minority node %s succeeded", c.peers[minority[k]].ID)
		}
		if !Retryable(err) {
			t.Fatalf("write on minority node %s: %v is not retryable", c.peers[minority[k]].ID, err)
		}
		t.Logf("minority write on %s: %v", c.peers[minority[k]].ID, err)
	}
	// A minority node that knows no leader says so; one that does names it.
	if _, err := c.nodes[minority[1]].Propose(context.Background(), CmdCreateToken, "test", tokenCmd(999)); !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) {
		t.Fatalf("follower write: %v", err)
	}
	// Any node serves reads: the minority still has its (stale) state.
	if c.nodes[minority[0]].State().Repositories["r"] == nil {
		t.Fatal("minority node lost its state")
	}

	c.net.heal()
	want := c.converge()
	var sf snapshotFile
	if err := json.Unmarshal(want, &sf); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if sf.State.Tokens[tokenCmd(i).ID] == nil {
			t.Fatalf("committed write %d lost", i)
		}
	}
	for k := range 2 {
		if sf.State.Tokens[tokenCmd(900+k).ID] != nil {
			t.Fatalf("a write that failed on the minority was applied")
		}
	}
	if l := c.leader(); l != nl && !c.nodes[l].IsLeader() {
		t.Fatalf("leader after heal: %d", l)
	}
}

func TestClusterRestartFromDiskWithSnapshots(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.seed("@daily")
	lagger := (c.leader() + 1) % 3
	c.stop(lagger)
	// Far more entries than SnapshotThreshold+TrailingLogs: the leader
	// compacts its log, so the lagger must catch up from a snapshot.
	for i := range 300 {
		c.must(CmdCreateToken, tokenCmd(i))
	}
	l := c.leader()
	if err := c.nodes[l].TakeSnapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	first, err := c.nodes[l].raft.store.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, _ := c.nodes[l].raft.store.LastIndex()
	if first <= 1 || last-first > 200 {
		t.Fatalf("log not compacted: entries %d..%d", first, last)
	}
	c.start(lagger)
	want := c.converge()
	// A full restart of every node comes back to the same state.
	for i := range c.nodes {
		c.stop(i)
	}
	for i := range c.nodes {
		c.start(i)
	}
	c.leader()
	if got := c.converge(); !bytes.Equal(stripIndex(got), stripIndex(want)) {
		t.Fatal("state after a full restart differs")
	}
	c.must(CmdCreateToken, tokenCmd(1000))
}

func TestClusterMembership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.seed("@daily")
	// A fourth node starts without peers and waits to be added.
	dir := t.TempDir()
	n3, err := NewNode(Config{Raft: testRaftConfig("n3", "mem-3", dir, nil, c.net), Clock: c.clock})
	if err != nil {
		t.Fatal(err)
	}
	defer n3.Close()
	l := c.leader()
	if err := c.nodes[l].AddVoter(context.Background(), "n3", "mem-3"); err != nil {
		t.Fatal(err)
	}
	c.must(CmdCreateToken, tokenCmd(1))
	deadline := time.Now().Add(10 * time.Second)
	for n3.State().Tokens[tokenCmd(1).ID] == nil {
		if time.Now().After(deadline) {
			t.Fatal("new member did not catch up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := n3.Ready(); err != nil {
		t.Fatalf("caught-up member not ready: %v", err)
	}
	st := c.nodes[l].Status()
	if len(st.Members) != 4 || st.Leader != c.peers[l].ID || st.Term == 0 || st.CommitIndex == 0 {
		t.Fatalf("status: %+v", st)
	}
	// Followers refuse membership changes, naming the leader.
	var nle *NotLeaderError
	if err := c.nodes[(l+1)%3].RemoveServer(context.Background(), "n3"); !errors.As(err, &nle) || nle.LeaderID != c.peers[l].ID {
		t.Fatalf("follower remove: %v", err)
	}
	if err := c.nodes[l].RemoveServer(context.Background(), "n3"); err != nil {
		t.Fatal(err)
	}
	if st := c.nodes[l].Status(); len(st.Members) != 3 {
		t.Fatalf("members after remove: %+v", st.Members)
	}
}

func TestClusterDataDirChecks(t *testing.T) {
	net := newMemNetwork()
	peers := []Peer{{ID: "a", Addr: "mem-a"}}
	dir := t.TempDir()
	open := func(id, addr string, peers []Peer) (*Raft, error) {
		return OpenRaft(testRaftConfig(id, addr, dir, peers, net), NewFSM())
	}
	r, err := open("a", "mem-a", peers)
	if err != nil {
		t.Fatal(err)
	}
	r.Shutdown()
	// Restarting with the same peers is fine (bootstrap is idempotent), and
	// so is restarting without peers.
	for _, p := range [][]Peer{peers, nil} {
		r, err := open("a", "mem-a", p)
		if err != nil {
			t.Fatalf("restart with peers %v: %v", p, err)
		}
		// Raft really runs: the single node elects itself.
		waitFor(t, r.IsLeader)
		r.Shutdown()
	}
	tests := []struct {
		name, id, addr string
		peers          []Peer
		want           string
	}{
		{"another node's data dir", "b", "mem-b", []Peer{{ID: "b", Addr: "mem-b"}}, `belongs to node "a"`},
		{"conflicting peers", "a", "mem-a", []Peer{{ID: "a", Addr: "mem-a"}, {ID: "z", Addr: "mem-z"}}, "conflicts with the cluster"},
		{"peers without this node", "a", "mem-a", []Peer{{ID: "z", Addr: "mem-z"}}, "does not list this node"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := open(tc.id, tc.addr, tc.peers)
			if err == nil {
				r.Shutdown()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
	t.Run("foreign data dir", func(t *testing.T) {
		foreign := t.TempDir()
		if err := os.MkdirAll(filepath.Join(foreign, "raft"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(foreign, "raft", "raft.db"), []byte("not ours"), 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := OpenRaft(testRaftConfig("a", "mem-a", foreign, peers, net), NewFSM())
		if err == nil {
			r.Shutdown()
			t.Fatal("started on a foreign data dir")
		}
		if !strings.Contains(err.Error(), "not written by a lifeboat node") {
			t.Fatalf("err = %v", err)
		}
	})
	if _, err := ParsePeers("a=h:1,b"); err == nil {
		t.Fatal("ParsePeers accepted an entry without an address")
	}
	if p, err := ParsePeers("b=h:2, a=h:1"); err != nil || p[0].ID != "a" {
		t.Fatalf("ParsePeers: %v %v", p, err)
	}
}

func TestNodeLeaderLoopExpiresLeases(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.RetryBackoff = func(int) time.Duration { return 10 * time.Second } })
	c.seed("@every 1m")
	c.leader()
	// The first scheduled instant produces a job.
	c.clock.Advance(time.Minute)
	var job Job
	waitFor(t, func() bool {
		jobs := c.nodes[c.leader()].State().FindJobs(JobFilter{Policy: "p"})
		if len(jobs) == 1 {
			job = jobs[0]
		}
		return len(jobs) == 1
	})
	if job.ID != JobID("p", t0.Add(time.Minute), "a1") || !job.ScheduledAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("job %+v", job)
	}
	l := c.leader()
	leased, err := c.nodes[l].LeaseJob(context.Background(), "a1", "", 30*time.Second)
	if err != nil || leased == nil {
		t.Fatalf("lease: %v %v", leased, err)
	}
	// The agent goes quiet; after the deadline and the grace the leader
	// takes the lease back. The clock then goes on ticking, as a real one
	// would: a tick whose proposal failed under load, or a new leader
	// (which takes no lease back during its first LeaseGrace), waits for
	// the next tick.
	c.clock.Advance(31*time.Second + 15*time.Second)
	expiredFrom := c.clock.Now()
	waitFor(t, func() bool {
		j := c.nodes[c.leader()].State().Jobs[job.ID]
		if j.State == JobPending && j.Lease == nil {
			return true
		}
		c.clock.Advance(100 * time.Millisecond)
		return false
	})
	expiredBy := c.clock.Now()
	_, err = c.nodes[c.leader()].CompleteJob(context.Background(), CompleteJob{JobID: job.ID, Agent: "a1", Token: leased.Lease.Token, Success: true, Snapshot: &SnapshotInfo{ID: "s"}})
	if !errors.Is(err, ErrStaleLease) {
		t.Fatalf("stale complete: %v", err)
	}
	j := c.nodes[c.leader()].State().Jobs[job.ID]
	if j.NotBefore.Before(expiredFrom.Add(10*time.Second)) || j.NotBefore.After(expiredBy.Add(10*time.Second)) {
		t.Fatalf("no backoff of 10s from the expiry (between %s and %s): %+v", expiredFrom, expiredBy, j)
	}
	// Manual runs and the remaining API surface.
	ids, err := c.nodes[c.leader()].RunPolicy(context.Background(), "test", "p")
	if err != nil || len(ids) != 1 || !strings.HasPrefix(ids[0], "run-") {
		t.Fatalf("RunPolicy: %v %v", ids, err)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPutPolicyValidatesBeforeProposing: validation happens on the node
// that proposes, so an invalid policy never reaches the log (the FSM does
// not re-validate, to stay deterministic across versions).
func TestPutPolicyValidatesBeforeProposing(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	n := c.nodes[c.leader()]
	before := n.Status()
	_, err := n.PutPolicy(context.Background(), "test", Policy{Name: "q", Repository: "r", Schedule: "61 * * * *", Paths: []string{"/srv"}})
	if err == nil {
		t.Fatal("a policy with an invalid schedule was accepted")
	}
	if !strings.Contains(err.Error(), "schedule") {
		t.Errorf("error %q does not name the schedule", err)
	}
	// The log itself may grow meanwhile (the new leader's own entries), so
	// look for the policy in the state every log entry is applied to: the
	// FSM applies a proposed policy without validating it.
	b, err := n.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sf snapshotFile
	if err := json.Unmarshal(b, &sf); err != nil {
		t.Fatal(err)
	}
	if _, ok := sf.State.Policies["q"]; ok {
		t.Errorf("the invalid policy reached the state (log %d → %d): it was proposed", before.LastIndex, n.Status().LastIndex)
	}
}

// TestNodeLeaseExpiryGrace: the leader takes a lease back only LeaseGrace
// after its deadline (the deadline may come from another node's clock),
// and a fresh leader takes none back during its first LeaseGrace.
func TestNodeLeaseExpiryGrace(t *testing.T) {
	const grace = 15 * time.Second
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.RetryBackoff = func(int) time.Duration { return 10 * time.Second } })
	c.seed("@every 24h")
	c.leader()
	// Past the leader's own first grace period.
	c.clock.Advance(grace + time.Second)
	lease := func() Job {
		t.Helper()
		n := c.nodes[c.leader()]
		ids, err := n.RunPolicy(context.Background(), "test", "p")
		if err != nil || len(ids) != 1 {
			t.Fatalf("RunPolicy: %v %v", ids, err)
		}
		j, err := n.LeaseJob(context.Background(), "a1", ids[0], 30*time.Second)
		if err != nil || j == nil || j.Lease == nil {
			t.Fatalf("lease: %v %v", j, err)
		}
		return *j
	}
	state := func(id string) JobState { return c.nodes[c.leader()].State().Jobs[id].State }
	// settle lets the leader loop run the ticks the last Advance fired.
	settle := func() { time.Sleep(300 * time.Millisecond) }

	job := lease()
	c.clock.Advance(31 * time.Second) // deadline + 1s
	settle()
	if s := state(job.ID); s != JobRunning {
		t.Fatalf("lease expired 1s after its deadline: job is %s", s)
	}
	c.clock.Advance(grace) // deadline + grace + 1s
	waitFor(t, func() bool { return state(job.ID) == JobPending })

	// A lease whose deadline passed while no node led: the new leader
	// waits out its first grace period before it takes it back.
	job = lease()
	c.stop(0)
	c.clock.Advance(time.Minute) // deadline + 30s
	c.start(0)
	c.leader()
	settle()
	c.clock.Advance(grace / 3)
	settle()
	c.clock.Advance(grace / 3)
	settle()
	if s := state(job.ID); s != JobRunning {
		t.Fatalf("a fresh leader expired a lease within its first grace period: job is %s", s)
	}
	c.clock.Advance(grace/3 + time.Second)
	waitFor(t, func() bool { return state(job.ID) == JobPending })
}
