package coordinator

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"
)

// TestFailoverExactlyOnce drives an "@every 1s" policy on two agents with
// a fake clock through more than 1,000 instants while killing the leader at
// random moments — often right after the clock crossed an instant, while
// the leader is planning or proposing it — and restarting it from its data
// dir. Every (instant, agent) must end up with exactly one job.
func TestFailoverExactlyOnce(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LIFEBOAT_TEST_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set LIFEBOAT_TEST_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	const instants = 1100
	c := newTestCluster(t, 3, nil)
	c.seed("@every 1s")
	c.must(CmdEnrollAgent, EnrollAgent{Name: "a2", Labels: map[string]string{"role": "db"}, CredentialHash: hashOf("a2")})
	start := c.clock.Now() // the policy's watermark
	end := start.Add(instants * time.Second)

	lastFired := func() time.Time {
		for _, n := range c.nodes {
			if n != nil && n.IsLeader() {
				var lf time.Time
				n.View(func(s *State) { lf = s.LastFired["p"] })
				return lf
			}
		}
		return time.Time{}
	}
	leaderIndex := func() int {
		for i, n := range c.nodes {
			if n != nil && n.IsLeader() {
				return i
			}
		}
		return -1
	}

	down, downFor := -1, 0
	stalls, steps := 0, 0
	kills := map[string]int{}
	for c.clock.Now().Before(end) {
		before := c.clock.Now()
		c.clock.Advance(time.Duration(100+rng.IntN(500)) * time.Millisecond)
		crossed := c.clock.Now().Truncate(time.Second).After(before)

		if down >= 0 {
			if downFor--; downFor <= 0 {
				c.start(down)
				down = -1
			}
		}
		odds := 400 // kill ten times as often right at an instant
		if crossed {
			odds = 40
		}
		if down < 0 && rng.IntN(odds) == 0 {
			if l := leaderIndex(); l >= 0 {
				mode := "between ticks"
				switch {
				case crossed && rng.IntN(2) == 0:
					mode = "at a tick"
				case crossed:
					time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
					mode = "just after a tick"
				}
				c.stop(l)
				kills[mode]++
				down, downFor = l, 1+rng.IntN(12)
				continue
			}
		}
		// Usually let the leader keep up; sometimes race ahead so that
		// several instants are due at once.
		if rng.IntN(10) < 8 {
			want := c.clock.Now().Add(-time.Second).Truncate(time.Second)
			deadline := time.Now().Add(500 * time.Millisecond)
			for lastFired().Before(want) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if lastFired().Before(want) {
				stalls++
			}
			steps++
		}
	}
	if down >= 0 {
		c.start(down)
	}
	// Let the last instants fire.
	deadline := time.Now().Add(20 * time.Second)
	for lastFired().Before(end) {
		if time.Now().After(deadline) {
			t.Fatalf("watermark stuck at %v, want %v", lastFired(), end)
		}
		c.clock.Advance(100 * time.Millisecond)
		time.Sleep(5 * time.Millisecond)
	}
	total := 0
	for _, k := range kills {
		total += k
	}
	t.Logf("%d leader kills: %v; %d of %d paced steps stalled", total, kills, stalls, steps)
	if total < 10 {
		t.Fatalf("only %d leader kills: the test did not exercise failover", total)
	}

	c.converge()
	st := c.nodes[c.leader()].State()
	lf := st.LastFired["p"]
	type key struct {
		at    time.Time
		agent string
	}
	seen := map[key]string{}
	for _, j := range st.Jobs {
		k := key{j.ScheduledAt, j.Agent}
		if other, dup := seen[k]; dup {
			t.Fatalf("instant %v for %s has two jobs: %s and %s", j.ScheduledAt, j.Agent, other, j.ID)
		}
		seen[k] = j.ID
		if j.ID != JobID("p", j.ScheduledAt, j.Agent) {
			t.Fatalf("job %s has a non-deterministic ID", j.ID)
		}
		if !j.ScheduledAt.After(start) || j.ScheduledAt.After(lf) || j.ScheduledAt.Truncate(time.Second) != j.ScheduledAt {
			t.Fatalf("job %s for instant %v outside (%v, %v]", j.ID, j.ScheduledAt, start, lf)
		}
	}
	var missing []string
	n := 0
	for at := start.Truncate(time.Second).Add(time.Second); !at.After(lf); at = at.Add(time.Second) {
		n++
		for _, a := range []string{"a1", "a2"} {
			if _, ok := seen[key{at, a}]; !ok {
				missing = append(missing, fmt.Sprintf("%s@%s", a, at.Format(time.TimeOnly)))
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("%d runs missed, e.g. %v", len(missing), missing[:min(len(missing), 10)])
	}
	if n < instants || len(st.Jobs) != 2*n {
		t.Fatalf("%d instants, %d jobs", n, len(st.Jobs))
	}
	t.Logf("%d instants, %d jobs, each exactly once", n, len(st.Jobs))
}

// BenchmarkLeaderFailover measures, in-process, the time from stopping the
// leader to the first successful write on its successor.
func BenchmarkLeaderFailover(b *testing.B) {
	for _, tc := range []struct {
		name  string
		tweak func(*Config)
	}{
		{"test-timeouts-100ms", nil},
		{"default-timeouts-1s", func(c *Config) {
			c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout, c.Raft.LeaderLeaseTimeout, c.Raft.CommitTimeout = 0, 0, 0, 0
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := newTestCluster(b, 3, tc.tweak)
			c.seed("@daily")
			var total time.Duration
			i := 0
			for b.Loop() {
				l := c.leader()
				begin := time.Now()
				c.stop(l)
				c.must(CmdCreateToken, tokenCmd(i))
				total += time.Since(begin)
				b.StopTimer()
				c.start(l)
				c.converge()
				b.StartTimer()
				i++
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(i), "ms/failover")
		})
	}
}
