package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkDispatch measures job dispatch through the HTTP API: 1,000
// simulated agents long-poll GET /v1/agents/NAME/work on a single-node
// cluster (real Raft with its log on disk and fsync, in-process HTTP); the
// benchmark creates b.N jobs spread over the agents and each agent
// completes every job it is handed (one lease and one completion command
// per job). It reports completed jobs per second and the lease latency
// (job created → agent holds the lease) at p50 and p99, for jobs created
// in bursts of 500 per command (a scheduler tick of a big fleet: latency
// includes waiting behind the burst) and in trickles of 10.
//
//	go test ./coordinator -run XXX -bench Dispatch -benchtime 5000x
func BenchmarkDispatch(b *testing.B) {
	for _, batch := range []int{500, 10} {
		b.Run(fmt.Sprintf("agents=1000/batch=%d", batch), func(b *testing.B) { benchmarkDispatch(b, 1000, batch) })
	}
}

func benchmarkDispatch(b *testing.B, agents, batch int) {
	net := newMemNetwork()
	rc := RaftConfig{ID: "b0", Addr: "bench-0", DataDir: b.TempDir(), Peers: []Peer{{ID: "b0", Addr: "bench-0"}},
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond,
		CommitTimeout: time.Millisecond, ApplyTimeout: 10 * time.Second, transport: net.transport("bench-0"),
		SnapshotThreshold: 1 << 20}
	n, err := NewNode(Config{Raft: rc, TickInterval: time.Hour, JobHistory: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	a := NewAPI(APIConfig{Node: n, SelfURL: "http://bench.invalid", LeaseTTL: 10 * time.Minute})
	srv := httptest.NewServer(a)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for a.InitialAdminToken() == "" {
		_ = a.maintainOnce(ctx)
		time.Sleep(5 * time.Millisecond)
	}
	wk, _ := testWriterKey(b)
	if err := n.AddRepository(ctx, "bench", AddRepository{Name: "r", URL: "/srv/r", WriterKey: wk}); err != nil {
		b.Fatal(err)
	}
	if _, err := n.PutPolicy(ctx, "bench", Policy{Name: "p", Repository: "r", Schedule: "@yearly", Paths: []string{"/x"}}); err != nil {
		b.Fatal(err)
	}
	tk, agentToken := NewAPIToken(RoleAgent, "bench", time.Time{})
	if _, err := n.Propose(ctx, CmdCreateToken, "bench", tk); err != nil {
		b.Fatal(err)
	}
	names := make([]string, agents)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range names {
		names[i] = fmt.Sprintf("agent-%04d", i)
		wg.Add(1)
		sem <- struct{}{}
		go func(name string) {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := n.Propose(ctx, CmdEnrollAgent, "bench", EnrollAgent{Name: name, CredentialHash: hashSecret(name)}); err != nil {
				b.Error(err)
			}
		}(names[i])
	}
	wg.Wait()

	tr := &http.Transport{MaxIdleConns: 4 * agents, MaxIdleConnsPerHost: 4 * agents, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	var (
		created   sync.Map // job ID → time.Time it was proposed
		mu        sync.Mutex
		latencies []time.Duration
		done      atomic.Int64
		failures  atomic.Int64
	)
	do := func(method, url string, body string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+agentToken)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		return hc.Do(req)
	}
	var agentsWG sync.WaitGroup
	for _, name := range names {
		agentsWG.Add(1)
		go func() {
			defer agentsWG.Done()
			for ctx.Err() == nil {
				resp, err := do(http.MethodGet, srv.URL+"/v1/agents/"+name+"/work?wait=5s", "")
				if err != nil {
					continue
				}
				if resp.StatusCode != http.StatusOK {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					continue
				}
				var item WorkItem
				err = json.NewDecoder(resp.Body).Decode(&item)
				resp.Body.Close()
				if err != nil {
					failures.Add(1)
					continue
				}
				if t, ok := created.Load(item.Job.ID); ok {
					mu.Lock()
					latencies = append(latencies, time.Since(t.(time.Time)))
					mu.Unlock()
				}
				body := fmt.Sprintf(`{"agent":%q,"token":%d,"success":true,"snapshot":{"id":%q,"host":%q,"time":%q,"size":1}}`,
					name, item.Token, item.Job.ID, name, time.Now().UTC().Format(time.RFC3339Nano))
				resp, err = do(http.MethodPost, srv.URL+"/v1/jobs/"+item.Job.ID+"/complete", body)
				if err != nil || resp.StatusCode != http.StatusOK {
					failures.Add(1)
				} else {
					done.Add(1)
				}
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // let the polls arrive

	b.ResetTimer()
	start := time.Now()
	base := done.Load()
	seq := 0
	for remaining := b.N; remaining > 0; {
		k := min(batch, remaining)
		cj := CreateJobs{}
		now := time.Now()
		for range k {
			id := fmt.Sprintf("bench-%d-%d", b.N, seq)
			cj.Jobs = append(cj.Jobs, NewJob{ID: id, Kind: KindBackup, Trigger: TriggerManual, Policy: "p", Agent: names[seq%agents], ScheduledAt: now})
			created.Store(id, now)
			seq++
		}
		if _, err := n.Propose(ctx, CmdCreateJobs, "bench", cj); err != nil {
			b.Fatal(err)
		}
		remaining -= k
		// Keep at most a few batches outstanding, like a scheduler would.
		for int(done.Load()-base) < seq-2*batch && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for done.Load()-base < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d jobs completed", done.Load()-base, b.N)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	srv.CloseClientConnections()
	agentsWG.Wait()

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-lease-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-lease-ms")
	b.ReportMetric(float64(failures.Load()), "failures")
}
