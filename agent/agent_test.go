package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/testnet"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// offsetClock is the wall clock moved forward by hand: the coordinator's
// leader loop keeps ticking in real time while leases expire at will.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time                         { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (c *offsetClock) Advance(d time.Duration)                { c.off.Add(int64(d)) }

// farDaily is fixture.FarDaily on the test coordinator's clock.
func farDaily(c *offsetClock) string { return fixture.FarDaily(c.Now()) }

// testCoordinator is a single-node coordinator with its HTTP API on
// loopback and a local repository registered with its writer key.
type testCoordinator struct {
	t        *testing.T
	node     *coordinator.Node
	api      *coordinator.API
	srv      *httptest.Server
	clock    *offsetClock
	repoURL  string
	identity []byte
}

const testRepo = "main"

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("LIFEBOAT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// smallPolicy creates a directory holding smallTree and a policy name that
// backs it up, and returns the directory.
func (tc *testCoordinator) smallPolicy(name string) string {
	tc.t.Helper()
	src := tc.t.TempDir()
	fixture.Create(tc.t, src, smallTree())
	tc.policy(coordinator.Policy{Name: name, Paths: []string{src}})
	return src
}

// newTestCoordinator starts a one-node coordinator on a clock the test
// moves; opts change its configuration.
func newTestCoordinator(t *testing.T, opts ...func(*coordinator.Config)) *testCoordinator {
	t.Helper()
	ctx := t.Context()
	tc := &testCoordinator{t: t, clock: &offsetClock{}}
	addr := testnet.FreeAddr(t)
	cfg := coordinator.Config{
		Raft: coordinator.RaftConfig{ID: "n1", Addr: addr, DataDir: t.TempDir(), Peers: []coordinator.Peer{{ID: "n1", Addr: addr}},
			HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond,
			CommitTimeout: 5 * time.Millisecond},
		Clock:          tc.clock,
		VerifySchedule: farDaily(tc.clock),
		Logger:         testLogger(t),
		TickInterval:   100 * time.Millisecond,
		RetryBackoff:   func(int) time.Duration { return 100 * time.Millisecond },
	}
	for _, o := range opts {
		o(&cfg)
	}
	node, err := coordinator.NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc.node = node
	var handler atomic.Pointer[http.Handler]
	tc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*handler.Load()).ServeHTTP(w, r) }))
	tc.api = coordinator.NewAPI(coordinator.APIConfig{Node: node, Logger: testLogger(t), SelfURL: tc.srv.URL, MaxWait: 2 * time.Second})
	h := http.Handler(tc.api)
	handler.Store(&h)
	t.Cleanup(func() {
		tc.srv.Close()
		node.Close()
	})
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := node.WaitLeader(wctx); err != nil {
		t.Fatal(err)
	}
	for !node.IsLeader() {
		time.Sleep(10 * time.Millisecond)
	}

	// The repository: the identity stays with the test (the "incident
	// responder"), the coordinator gets the writer key only.
	tc.repoURL = filepath.Join(t.TempDir(), "repo")
	st, err := location.Open(ctx, tc.repoURL, true)
	if err != nil {
		t.Fatal(err)
	}
	id, recipient, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	tc.identity = id
	sec, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{recipient}})
	if err != nil {
		t.Fatal(err)
	}
	key, err := chunkstore.MarshalWriterKey(sec)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.AddRepository(ctx, "test", coordinator.AddRepository{Name: testRepo, URL: tc.repoURL, WriterKey: key}); err != nil {
		t.Fatal(err)
	}
	return tc
}

// joinToken creates a join token and returns its plaintext.
func (tc *testCoordinator) joinToken(labels map[string]string, expires time.Time) string {
	tc.t.Helper()
	jt, plain := coordinator.NewJoinToken(labels, expires, 0)
	jt.Grants = []string{coordinator.CapDrill} // agents started with an identity may run drills
	if _, err := tc.node.Propose(tc.t.Context(), coordinator.CmdCreateJoinToken, "test", jt); err != nil {
		tc.t.Fatal(err)
	}
	return plain
}

func (tc *testCoordinator) waitEnrolled(name string) {
	tc.t.Helper()
	waitFor(tc.t, "enrollment of "+name, func() bool {
		var ok bool
		tc.node.View(func(s *coordinator.State) { ok = s.Agents[name] != nil })
		return ok
	})
}

func (tc *testCoordinator) policy(p coordinator.Policy) {
	tc.t.Helper()
	if p.Repository == "" {
		p.Repository = testRepo
	}
	if p.Schedule == "" {
		p.Schedule = farDaily(tc.clock)
	}
	if _, err := tc.node.PutPolicy(tc.t.Context(), "test", p); err != nil {
		tc.t.Fatal(err)
	}
}

// run triggers a policy now and returns the one job it creates.
func (tc *testCoordinator) run(policy string) string {
	tc.t.Helper()
	ids, err := tc.node.RunPolicy(tc.t.Context(), "test", policy)
	if err != nil {
		tc.t.Fatal(err)
	}
	if len(ids) != 1 {
		tc.t.Fatalf("run %s: %d jobs, want 1", policy, len(ids))
	}
	return ids[0]
}

// cancel cancels job id through the API, as an operator's 'lifeboat job
// cancel' does.
func (tc *testCoordinator) cancel(id string) {
	tc.t.Helper()
	tk, admin := coordinator.NewAPIToken(coordinator.RoleAdmin, "ops", time.Time{})
	if _, err := tc.node.Propose(tc.t.Context(), coordinator.CmdCreateToken, "test", tk); err != nil {
		tc.t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(tc.t.Context(), http.MethodPost, tc.srv.URL+"/v1/jobs/"+id+"/cancel", strings.NewReader(`{"reason":"operator"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tc.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tc.t.Fatalf("cancel %s: %s", id, resp.Status)
	}
}

func (tc *testCoordinator) job(id string) coordinator.Job {
	var j coordinator.Job
	tc.node.View(func(s *coordinator.State) {
		for _, x := range s.FindJobs(coordinator.JobFilter{}) {
			if x.ID == id {
				j = x
			}
		}
	})
	return j
}

// waitJob waits until the job satisfies cond.
func (tc *testCoordinator) waitJob(id string, what string, cond func(coordinator.Job) bool) coordinator.Job {
	tc.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j := tc.job(id)
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			tc.t.Fatalf("job %s: %s: not within 30s; job is %+v (result %+v)", id, what, j, j.Result)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func final(j coordinator.Job) bool { return j.State.Final() }

// openRepo opens the repository with the identity.
func (tc *testCoordinator) openRepo() *chunkstore.Repository {
	tc.t.Helper()
	st, err := location.Open(tc.t.Context(), tc.repoURL, false)
	if err != nil {
		tc.t.Fatal(err)
	}
	ids, err := chunkstore.ParseIdentityFile(tc.identity, nil)
	if err != nil {
		tc.t.Fatal(err)
	}
	repo, err := chunkstore.Open(tc.t.Context(), st, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
	if err != nil {
		tc.t.Fatal(err)
	}
	return repo
}

func (tc *testCoordinator) snapshots() []*snapshot.Snapshot {
	tc.t.Helper()
	list, bad, err := snapshot.List(tc.t.Context(), tc.openRepo())
	if err != nil || len(bad) > 0 {
		tc.t.Fatalf("list snapshots: %v %v", err, bad)
	}
	return list
}

// startAgent runs an agent until the test ends; the returned channel
// receives Run's result.
func startAgent(t *testing.T, cfg Config) (*Agent, *running) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 3 * time.Second
	}
	if cfg.PollWait == 0 {
		cfg.PollWait = time.Second
	}
	cfg.BackoffMin, cfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Version = "test"
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{done: make(chan struct{})}
	go func() { r.err = a.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Error("agent did not stop within 20s")
		}
	})
	return a, r
}

// running is an agent's Run in progress.
type running struct {
	done chan struct{}
	err  error
}

func (r *running) assertRunning(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
		t.Fatalf("agent stopped: %v", r.err)
	default:
	}
}

func smallTree() fixture.Tree {
	return fixture.Tree{
		"a.txt":         {Content: []byte("hello agent\n"), Mode: 0o644},
		"dir/b.bin":     {Content: fixture.Random(7, 3<<20), Mode: 0o600},
		"dir/sub/c.txt": {Content: []byte("c"), Mode: 0o644},
		"link":          {Symlink: "a.txt"},
	}
}

func TestAgentBackupRestoreAndRestart(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	tree := smallTree()
	fixture.Create(t, src, tree)
	tc.policy(coordinator.Policy{Name: "web", Agents: map[string]string{"role": "web"}, Paths: []string{src}, Tags: []string{"nightly"}})

	dataDir := t.TempDir()
	token := tc.joinToken(map[string]string{"env": "test"}, time.Time{})
	a, _ := startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: token, DataDir: dataDir, Name: "web-1",
		Labels: map[string]string{"role": "web"}, Host: "web-1.example"})
	tc.waitEnrolled("web-1")
	waitFor(t, "the credential file", func() bool {
		_, err := os.Stat(filepath.Join(dataDir, credentialFile))
		return err == nil
	})
	fi, err := os.Stat(filepath.Join(dataDir, credentialFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode %v, want 0600", fi.Mode().Perm())
	}

	id := tc.run("web")
	j := tc.waitJob(id, "finish", final)
	if j.State != coordinator.JobSucceeded {
		t.Fatalf("job %s: %s (%+v)", id, j.State, j.Result)
	}
	var entry *coordinator.CatalogEntry
	tc.node.View(func(s *coordinator.State) {
		if e := s.Catalog[j.Result.SnapshotID]; e != nil {
			c := *e
			entry = &c
		}
	})
	if entry == nil || entry.Policy != "web" || entry.Repository != testRepo || entry.Host != "web-1.example" || entry.Size == 0 {
		t.Fatalf("catalog entry %+v", entry)
	}

	// Restore with the identity: byte-identical.
	repo := tc.openRepo()
	if err := repo.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	sid, err := chunkstore.ParseID(j.Result.SnapshotID)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Load(t.Context(), repo, sid)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Tags) != 1 || snap.Tags[0] != "nightly" {
		t.Errorf("snapshot tags %v", snap.Tags)
	}
	target := t.TempDir()
	res, err := restore.Restore(t.Context(), repo, snap, restore.Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) > 0 {
		t.Fatalf("restore failures: %v", res.Failures)
	}
	fixture.Compare(t, tree, filepath.Join(target, src))

	// The agent's own state holds no key material beyond its credential.
	filepath.WalkDir(dataDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "AGE-SECRET-KEY") || strings.Contains(string(b), string(mustWriterKey(t, tc))) {
			t.Errorf("%s holds key material", p)
		}
		return nil
	})
	if h := a.Health(); h.Status != "ok" {
		t.Errorf("health %+v", h)
	}
}

func mustWriterKey(t *testing.T, tc *testCoordinator) []byte {
	var k []byte
	tc.node.View(func(s *coordinator.State) { k = append([]byte(nil), s.Repositories[testRepo].WriterKey...) })
	if len(k) == 0 {
		t.Fatal("no writer key")
	}
	return k
}

func TestAgentRestartReusesCredential(t *testing.T) {
	tc := newTestCoordinator(t)
	tc.smallPolicy("p")
	dataDir := t.TempDir()
	token := tc.joinToken(nil, time.Time{})

	cfg := Config{Servers: []string{tc.srv.URL}, JoinToken: token, DataDir: dataDir, Name: "n1", Logger: testLogger(t),
		LeaseTTL: 3 * time.Second, PollWait: time.Second, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
	a1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a1.Run(ctx) }()
	tc.waitEnrolled("n1")
	j := tc.waitJob(tc.run("p"), "finish", final)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if j.State != coordinator.JobSucceeded {
		t.Fatalf("first job: %+v", j.Result)
	}
	b1, _ := os.ReadFile(filepath.Join(dataDir, credentialFile))

	// Restart without a join token: the stored credential is used.
	cfg.JoinToken = ""
	startAgent(t, cfg)
	j = tc.waitJob(tc.run("p"), "finish", final)
	if j.State != coordinator.JobSucceeded {
		t.Fatalf("job after restart: %+v", j.Result)
	}
	b2, _ := os.ReadFile(filepath.Join(dataDir, credentialFile))
	if string(b1) != string(b2) {
		t.Error("restart enrolled again instead of reusing the credential")
	}
	// The files cache is per policy, in the data dir.
	if _, err := os.Stat(filepath.Join(dataDir, "cache", "p", "files")); err != nil {
		t.Errorf("files cache: %v", err)
	}
}

// blockingStore holds every pack upload until released or cancelled.
type blockingStore struct {
	chunkstore.Store
	started chan struct{}
	once    sync.Once
	release chan struct{}
}

func (s *blockingStore) Put(ctx context.Context, name string, data []byte) error {
	if strings.HasPrefix(name, chunkstore.DataPrefix) {
		s.once.Do(func() { close(s.started) })
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Put(ctx, name, data)
}

func TestAgentLeaseLostAbortsWithoutCommit(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	tc.policy(coordinator.Policy{Name: "slow", Paths: []string{src}, MaxAttempts: 1})
	bs := &blockingStore{started: make(chan struct{}), release: make(chan struct{})}
	a, done := startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "slow-1",
		wrapStore: func(st chunkstore.Store) chunkstore.Store { bs.Store = st; return bs }})
	tc.waitEnrolled("slow-1")
	id := tc.run("slow")
	select {
	case <-bs.started:
	case <-time.After(30 * time.Second):
		t.Fatal("backup never started uploading")
	}
	running := tc.job(id)
	if running.State != coordinator.JobRunning {
		t.Fatalf("job is %s", running.State)
	}
	// Heartbeats keep the lease while the upload hangs.
	time.Sleep(2 * time.Second)
	if j := tc.job(id); j.State != coordinator.JobRunning || j.Progress == nil {
		t.Fatalf("job should still run with progress: %+v", j)
	}
	// The coordinator's clock jumps past the deadline: the leader loop
	// takes the lease back, and the agent's next renewal is refused.
	tc.clock.Advance(10 * time.Minute)
	j := tc.waitJob(id, "fail", final)
	if j.State != coordinator.JobFailed || !strings.Contains(j.Result.Error, "expired") {
		t.Fatalf("job %+v, result %+v: want failed by lease expiry", j, j.Result)
	}
	waitFor(t, "the agent to notice", func() bool { return len(a.runningIDs()) == 0 })
	if n := testutilCounter(a.m.leaseLost); n != 1 {
		t.Errorf("lease_lost = %v, want 1", n)
	}
	close(bs.release) // anything still trying to upload may now
	if list := tc.snapshots(); len(list) != 0 {
		t.Fatalf("a snapshot was committed after the lease was lost: %v", list[0].ID)
	}
	// The stale holder's report is refused: the job's result is the
	// coordinator's (lease expired), not the agent's.
	if strings.Contains(j.Result.Error, errLeaseLost.Error()) {
		t.Errorf("the agent's stale report was accepted: %q", j.Result.Error)
	}
	done.assertRunning(t)
}

func TestAgentHooks(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	marks := t.TempDir()
	post := fmt.Sprintf(`echo "$LIFEBOAT_POLICY $LIFEBOAT_JOB_ID $LIFEBOAT_JOB_STATUS $LIFEBOAT_SNAPSHOT_ID" > %s/$LIFEBOAT_POLICY.post`, marks)
	hooks := Hooks{
		"ok":      {Pre: &Hook{Command: fmt.Sprintf(`echo "$LIFEBOAT_JOB_ID" > %s/ok.pre`, marks)}, Post: &Hook{Command: post}},
		"badpre":  {Pre: &Hook{Command: "echo dump failed: disk full >&2; exit 3"}, Post: &Hook{Command: post}},
		"hang":    {Pre: &Hook{Command: "sleep 60", Timeout: coordinator.Duration(300 * time.Millisecond)}, Post: &Hook{Command: post}},
		"badpost": {Post: &Hook{Command: "exit 1"}},
		"frozen":  {Pre: &Hook{Command: "sleep 1", TakesSnapshot: true}},
		"live":    {Pre: &Hook{Command: "sleep 1"}},
	}
	for _, name := range []string{"ok", "badpre", "hang", "badpost", "frozen", "live"} {
		tc.policy(coordinator.Policy{Name: name, Paths: []string{src}, MaxAttempts: 1})
	}
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "h", Hooks: hooks})
	tc.waitEnrolled("h")

	t.Run("pre and post run around a backup", func(t *testing.T) {
		id := tc.run("ok")
		j := tc.waitJob(id, "finish", final)
		if j.State != coordinator.JobSucceeded {
			t.Fatalf("%+v", j.Result)
		}
		pre, _ := os.ReadFile(filepath.Join(marks, "ok.pre"))
		if strings.TrimSpace(string(pre)) != id {
			t.Errorf("pre-hook saw LIFEBOAT_JOB_ID %q, want %q", pre, id)
		}
		got, _ := os.ReadFile(filepath.Join(marks, "ok.post"))
		if want := fmt.Sprintf("ok %s succeeded %s", id, j.Result.SnapshotID); strings.TrimSpace(string(got)) != want {
			t.Errorf("post-hook saw %q, want %q", got, want)
		}
	})
	t.Run("failing pre-hook fails the job with its output; post runs", func(t *testing.T) {
		id := tc.run("badpre")
		j := tc.waitJob(id, "finish", final)
		if j.State != coordinator.JobFailed || !strings.Contains(j.Result.Error, "pre-hook") || !strings.Contains(j.Result.Error, "dump failed: disk full") {
			t.Fatalf("job %s: %+v", j.State, j.Result)
		}
		got, _ := os.ReadFile(filepath.Join(marks, "badpre.post"))
		if !strings.Contains(string(got), "failed") {
			t.Errorf("post-hook after failure saw %q", got)
		}
	})
	t.Run("hanging pre-hook is killed at its timeout", func(t *testing.T) {
		start := time.Now()
		id := tc.run("hang")
		j := tc.waitJob(id, "finish", final)
		if j.State != coordinator.JobFailed || !strings.Contains(j.Result.Error, "timed out") {
			t.Fatalf("job %s: %+v", j.State, j.Result)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("took %v", d)
		}
		if _, err := os.Stat(filepath.Join(marks, "hang.post")); err != nil {
			t.Errorf("post-hook did not run after the timeout: %v", err)
		}
	})
	t.Run("a pre-hook that takes a snapshot dates the backup", func(t *testing.T) {
		for name, frozen := range map[string]bool{"frozen": true, "live": false} {
			asked := time.Now()
			j := tc.waitJob(tc.run(name), "finish", final)
			if j.State != coordinator.JobSucceeded {
				t.Fatalf("%s: %+v", name, j.Result)
			}
			var snap *snapshot.Snapshot
			for _, s := range tc.snapshots() {
				if s.ID.String() == j.Result.SnapshotID {
					snap = s
				}
			}
			if snap == nil {
				t.Fatalf("%s: snapshot %s not in the repository", name, j.Result.SnapshotID)
			}
			// The hook sleeps a second between its start and the backup's.
			dated := snap.Time.Before(snap.Summary.Start.Add(-900*time.Millisecond)) && !snap.Time.Before(asked)
			if dated != frozen || (!frozen && !snap.Time.Equal(snap.Summary.Start)) {
				t.Errorf("%s: snapshot dated %s, backup started %s (job asked for at %s); want it dated at the hook's start: %v", name, snap.Time, snap.Summary.Start, asked, frozen)
			}
		}
	})
	t.Run("failing post-hook does not undo a committed snapshot", func(t *testing.T) {
		j := tc.waitJob(tc.run("badpost"), "finish", final)
		if j.State != coordinator.JobSucceeded {
			t.Fatalf("%+v", j.Result)
		}
		if all := strings.Join(j.Result.Warnings, "\n"); !strings.Contains(all, "post-hook failed") || !strings.Contains(all, "exit status 1") {
			t.Errorf("warnings %q: want one saying the post-hook failed, with its exit status", j.Result.Warnings)
		}
	})
}

func TestAgentBadPathKeepsRunning(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	tc.policy(coordinator.Policy{Name: "missing", Paths: []string{missing}, MaxAttempts: 1})
	tc.policy(coordinator.Policy{Name: "good", Paths: []string{src}})
	_, done := startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "b"})
	tc.waitEnrolled("b")
	j := tc.waitJob(tc.run("missing"), "finish", final)
	if j.State != coordinator.JobFailed || !strings.Contains(j.Result.Error, missing) || !strings.Contains(j.Result.Error, "does not exist") {
		t.Fatalf("job %s: %+v", j.State, j.Result)
	}
	j = tc.waitJob(tc.run("good"), "finish", final)
	if j.State != coordinator.JobSucceeded {
		t.Fatalf("other policy after a failure: %+v", j.Result)
	}
	done.assertRunning(t)
}

// TestAgentUnreachableAndGarbage: a dead address and a node answering
// garbage; the agent backs off and keeps going, and catches up when the
// cluster answers properly.
func TestAgentUnreachableAndGarbage(t *testing.T) {
	tc := newTestCoordinator(t)
	tc.smallPolicy("p")

	var healthy atomic.Bool
	var garbageHits atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if healthy.Load() {
			tc.api.ServeHTTP(w, r)
			return
		}
		garbageHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`<html>{{{ not json`))
	}))
	defer flaky.Close()
	dead := "http://" + testnet.FreeAddr(t)
	a, done := startAgent(t, Config{Servers: []string{dead, flaky.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "g"})
	waitFor(t, "several failed attempts", func() bool { return garbageHits.Load() >= 3 })
	h := a.Health()
	if h.Status != "disconnected" || h.LastError == "" {
		t.Errorf("health while unreachable: %+v", h)
	}
	done.assertRunning(t)
	healthy.Store(true)
	tc.waitEnrolled("g")
	j := tc.waitJob(tc.run("p"), "finish", final)
	if j.State != coordinator.JobSucceeded {
		t.Fatalf("%+v", j.Result)
	}
	if h := a.Health(); h.Status != "ok" {
		t.Errorf("health after recovery: %+v", h)
	}
	// The agent counts the job once its report is acknowledged, which can
	// be a moment after the coordinator shows it succeeded.
	waitFor(t, "the succeeded job in the agent's metrics", func() bool {
		rec := httptest.NewRecorder()
		a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return strings.Contains(rec.Body.String(), `lifeboat_agent_jobs_total{result="succeeded"} 1`)
	})
}

func TestAgentRevoked(t *testing.T) {
	tc := newTestCoordinator(t)
	tc.smallPolicy("p")
	_, done := startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "r"})
	tc.waitEnrolled("r")
	j := tc.waitJob(tc.run("p"), "finish", final)
	if j.State != coordinator.JobSucceeded {
		t.Fatalf("%+v", j.Result)
	}
	if _, err := tc.node.Propose(t.Context(), coordinator.CmdRevokeAgent, "test", coordinator.RevokeAgent{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done.done:
		if !errors.Is(done.err, ErrRevoked) {
			t.Fatalf("Run = %v, want ErrRevoked", done.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("revoked agent kept running")
	}
	if _, err := tc.node.RunPolicy(t.Context(), "test", "p"); err == nil {
		t.Error("a revoked agent still gets jobs")
	}
}

func TestAgentExpiredJoinToken(t *testing.T) {
	tc := newTestCoordinator(t)
	a, err := New(Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Now().Add(-time.Hour)), DataDir: t.TempDir(), Name: "x",
		BackoffMin: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "token create") {
		t.Fatalf("Run = %v, want an expired-token error with advice", err)
	}
}

// TestAgentReportsInterruptedJob: a job recorded as running by a previous
// process (killed) is reported at start, retried by the coordinator and
// completed by the new process.
func TestAgentReportsInterruptedJob(t *testing.T) {
	tc := newTestCoordinator(t)
	tc.smallPolicy("p")
	dataDir := t.TempDir()
	token := tc.joinToken(nil, time.Time{})

	// Enroll, then stop before any work.
	a1, err := New(Config{Servers: []string{tc.srv.URL}, JoinToken: token, DataDir: dataDir, Name: "k", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a1.enroll(t.Context()); err != nil {
		t.Fatal(err)
	}
	// What a killed process leaves: a leased job (a long lease: without
	// the report it would wait an hour) and its record.
	id := tc.run("p")
	leased, err := tc.node.LeaseJob(t.Context(), "k", id, time.Hour)
	if err != nil || leased == nil {
		t.Fatalf("lease: %v %v", leased, err)
	}
	if err := a1.state.add(record{JobID: id, Policy: "p", Token: leased.Lease.Token, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}

	startAgent(t, Config{Servers: []string{tc.srv.URL}, DataDir: dataDir, Name: "k"})
	j := tc.waitJob(id, "finish", final)
	if j.State != coordinator.JobSucceeded || j.Attempt != 2 {
		t.Fatalf("job %s attempt %d: %+v", j.State, j.Attempt, j.Result)
	}
	waitFor(t, "state.json to be cleared", func() bool {
		st, err := openState(filepath.Join(dataDir, stateFileName))
		return err == nil && len(st.Running) == 0
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			// Show where everything is stuck (how the midnight
			// schedule of testCoordinator.policy was found).
			buf := make([]byte, 256<<10)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("timed out waiting for %s; goroutines:\n%s", what, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testutilCounter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// An operator cancels a job while its backup uploads, after the agent's
// last heartbeat and long before its next one: the agent must not commit
// the snapshot it was about to write, and reports the job as aborted.
func TestAgentCancelledJobDoesNotCommit(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	tc.policy(coordinator.Policy{Name: "slow", Paths: []string{src}, MaxAttempts: 1})
	bs := &blockingStore{started: make(chan struct{}), release: make(chan struct{})}
	// A long TTL: the next heartbeat is 20s after the first one.
	a, done := startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "slow-1",
		LeaseTTL:  time.Minute,
		wrapStore: func(st chunkstore.Store) chunkstore.Store { bs.Store = st; return bs }})
	tc.waitEnrolled("slow-1")
	id := tc.run("slow")
	select {
	case <-bs.started:
	case <-time.After(30 * time.Second):
		t.Fatal("backup never started uploading")
	}
	// The first heartbeat (sent at once) has come and gone.
	tc.waitJob(id, "first heartbeat", func(j coordinator.Job) bool { return j.State == coordinator.JobRunning && j.Progress != nil })

	tc.cancel(id)
	close(bs.release) // the backup goes on to its commit at once

	waitFor(t, "the agent to finish the job", func() bool {
		return testutilCounter(a.m.jobs.WithLabelValues("succeeded"))+testutilCounter(a.m.jobs.WithLabelValues("lease_lost"))+
			testutilCounter(a.m.jobs.WithLabelValues("failed")) > 0
	})
	waitFor(t, "the job record to go", func() bool { return len(a.runningIDs()) == 0 })
	ids, err := tc.openRepo().ListMeta(t.Context(), chunkstore.KindSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Fatalf("a snapshot was committed for a cancelled job: %v", ids)
	}
	if n := testutilCounter(a.m.jobs.WithLabelValues("lease_lost")); n != 1 {
		t.Errorf("jobs{lease_lost} = %v, want 1 (succeeded %v, failed %v)", n,
			testutilCounter(a.m.jobs.WithLabelValues("succeeded")), testutilCounter(a.m.jobs.WithLabelValues("failed")))
	}
	if n := testutilCounter(a.m.leaseLost); n != 1 {
		t.Errorf("lease_lost = %v, want 1", n)
	}
	if j := tc.job(id); j.State != coordinator.JobCancelled {
		t.Errorf("job %+v: want cancelled", j)
	}
	done.assertRunning(t)
}
