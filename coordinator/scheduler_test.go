package coordinator

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

func testPolicy(name, schedule string, selector map[string]string) Policy {
	return Policy{Name: name, Repository: "main", Schedule: schedule, Agents: selector, Paths: []string{"/data"}}
}

func testAgents() []AgentInfo {
	return []AgentInfo{
		{Name: "web-2", Labels: map[string]string{"role": "web", "env": "prod"}, Connected: true},
		{Name: "db-1", Labels: map[string]string{"role": "db", "env": "prod"}, Connected: true},
		{Name: "web-1", Labels: map[string]string{"role": "web", "env": "prod"}, Connected: true},
		{Name: "web-3", Labels: map[string]string{"role": "web", "env": "staging"}, Connected: true},
	}
}

// jobKey identifies a scheduled run independently of its ID.
type jobKey struct {
	policy, agent string
	at            int64
}

func keyOf(j PlannedJob) jobKey { return jobKey{j.Policy, j.Agent, j.ScheduledAt.UnixNano()} }

// TestPlanExactlyOnce drives Plan the way a leader loop does — with random
// step sizes, lost proposals (a leader that died before its command
// committed), re-planning against jobs that exist but whose watermark was
// not persisted — and checks that the union of every call's jobs holds
// exactly one job per (instant, matching agent) for more than 10,000
// instants.
func TestPlanExactlyOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := utc("2026-03-01T00:00:00Z")
	policies := []Policy{
		testPolicy("every-minute", "@every 1m", map[string]string{"role": "web"}),
		testPolicy("cron-7", "*/7 * * * *", map[string]string{"env": "prod"}),
		testPolicy("berlin", "CRON_TZ=Europe/Berlin 30 2 * * *", nil), // crosses a DST change
		testPolicy("seconds", "*/45 * * * * *", map[string]string{"role": "db"}),
	}
	agents := testAgents()
	created := map[string]time.Time{}
	for _, p := range policies {
		created[p.Name] = t0
	}
	end := t0.Add(8 * 24 * time.Hour)

	// Replicated state.
	lastFired := map[string]time.Time{}
	jobs := map[string]PlannedJob{}
	seen := map[jobKey]bool{}
	commit := func(res PlanResult, withWatermark bool) {
		for _, j := range res.Jobs {
			if _, dup := jobs[j.ID]; dup {
				t.Fatalf("job %s planned twice (%s %s %s)", j.ID, j.Policy, j.Agent, j.ScheduledAt)
			}
			if seen[keyOf(j)] {
				t.Fatalf("run %v planned twice under different IDs", keyOf(j))
			}
			jobs[j.ID] = j
			seen[keyOf(j)] = true
		}
		if withWatermark {
			for p, w := range res.LastFired {
				lastFired[p] = w
			}
		}
	}

	now := t0
	calls := 0
	for now.Before(end) {
		switch r := rng.IntN(100); {
		case r < 70:
			now = now.Add(time.Duration(rng.Int64N(int64(3 * time.Minute))))
		case r < 95:
			now = now.Add(time.Duration(rng.Int64N(int64(time.Hour))))
		default: // a long election or outage
			now = now.Add(time.Duration(rng.Int64N(int64(6 * time.Hour))))
		}
		in := PlanInput{
			Now: now, Policies: policies, Agents: agents, LastFired: copyTimes(lastFired),
			PolicyCreated: created, Existing: func(id string) bool { _, ok := jobs[id]; return ok },
			MaxJobs:    []int{0, 0, 50, 500}[rng.IntN(4)],
			MaxCatchUp: 1 << 20, // skipping is tested on its own
		}
		res := Plan(in)
		calls++
		switch r := rng.IntN(10); {
		case r == 0: // the leader died before proposing: nothing committed
		case r == 1: // jobs committed but the watermark lost (an older leader's bug or split command)
			commit(res, false)
		default:
			commit(res, true)
		}
		if len(res.Skipped) > 0 {
			t.Fatalf("nothing should be skipped with the default catch-up bound: %+v", res.Skipped)
		}
	}
	// Drain: everything due by `now` must have been planned.
	for {
		res := Plan(PlanInput{Now: now, Policies: policies, Agents: agents, LastFired: copyTimes(lastFired),
			PolicyCreated: created, Existing: func(id string) bool { _, ok := jobs[id]; return ok }, MaxCatchUp: 1 << 20})
		commit(res, true)
		if len(res.Jobs) == 0 && !res.More {
			break
		}
	}

	// Expected: every instant in (t0, now] × matching agents.
	want := 0
	instants := 0
	for _, p := range policies {
		s := mustSchedule(t, p.Schedule)
		for _, at := range Instants(s, t0, now, 0) {
			instants++
			for _, a := range agents {
				if !SelectorMatches(p.Agents, a.Labels) {
					continue
				}
				want++
				k := jobKey{p.Name, a.Name, at.UnixNano()}
				if !seen[k] {
					t.Fatalf("missed run %v", k)
				}
				if id := JobID(p.Name, at, a.Name); jobs[id].Agent != a.Name {
					t.Fatalf("run %v has no job under its deterministic ID %s", k, id)
				}
			}
		}
	}
	if instants < 10000 {
		t.Fatalf("only %d instants exercised", instants)
	}
	if len(jobs) != want {
		t.Fatalf("%d jobs, want %d (one per instant and matching agent)", len(jobs), want)
	}
	t.Logf("%d calls, %d instants, %d jobs", calls, instants, len(jobs))
}

func copyTimes(m map[string]time.Time) map[string]time.Time {
	out := make(map[string]time.Time, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestPlanDeterministic(t *testing.T) {
	now := utc("2026-05-01T12:00:00Z")
	in := PlanInput{
		Now: now,
		Policies: []Policy{
			testPolicy("b", "@every 10m", map[string]string{"role": "web"}),
			testPolicy("a", "*/15 * * * *", nil),
			{Name: "c", Schedule: "@hourly", Jitter: Duration(5 * time.Minute)},
		},
		Agents:    testAgents(),
		LastFired: map[string]time.Time{"a": now.Add(-time.Hour), "b": now.Add(-time.Hour), "c": now.Add(-5 * time.Hour)},
	}
	first := Plan(in)
	if len(first.Jobs) == 0 {
		t.Fatal("no jobs planned")
	}
	for i := 0; i < 20; i++ {
		// Same input, reordered slices and freshly built maps.
		in2 := in
		in2.Policies = append([]Policy(nil), in.Policies...)
		in2.Agents = append([]AgentInfo(nil), in.Agents...)
		rand.Shuffle(len(in2.Policies), func(i, j int) { in2.Policies[i], in2.Policies[j] = in2.Policies[j], in2.Policies[i] })
		rand.Shuffle(len(in2.Agents), func(i, j int) { in2.Agents[i], in2.Agents[j] = in2.Agents[j], in2.Agents[i] })
		in2.LastFired = copyTimes(in.LastFired)
		if got := Plan(in2); !reflect.DeepEqual(got, first) {
			t.Fatalf("Plan is not a pure function of its input:\n%+v\n%+v", got, first)
		}
	}
	// Jobs come out ordered by policy, instant, agent.
	for i := 1; i < len(first.Jobs); i++ {
		a, b := first.Jobs[i-1], first.Jobs[i]
		if a.Policy > b.Policy || a.Policy == b.Policy && (a.ScheduledAt.After(b.ScheduledAt) ||
			a.ScheduledAt.Equal(b.ScheduledAt) && a.Agent >= b.Agent) {
			t.Fatalf("jobs out of order at %d: %+v then %+v", i, a, b)
		}
	}
}

func TestPlanCatchUp(t *testing.T) {
	now := utc("2026-05-04T00:00:00Z")
	agents := []AgentInfo{{Name: "n1", Connected: true}, {Name: "n2", Connected: true}}
	for _, spec := range []string{"@hourly", "@every 1h"} { // the cron walk and the @every arithmetic
		t.Run(spec, func(t *testing.T) {
			in := PlanInput{
				Now:       now,
				Policies:  []Policy{testPolicy("p", spec, nil)},
				Agents:    agents,
				LastFired: map[string]time.Time{"p": now.Add(-72 * time.Hour)}, // three days down
			}
			res := Plan(in)
			if len(res.Jobs) != 72*2 || len(res.Skipped) != 0 {
				t.Fatalf("a 72-hour gap fires all 72 instants once per agent: %d jobs, skipped %+v", len(res.Jobs), res.Skipped)
			}
			if !res.LastFired["p"].Equal(now) {
				t.Errorf("watermark %s, want %s", res.LastFired["p"], now)
			}

			in.MaxCatchUp = 10
			res = Plan(in)
			if len(res.Jobs) != 20 {
				t.Fatalf("MaxCatchUp 10: %d jobs, want 20", len(res.Jobs))
			}
			if !res.Jobs[0].ScheduledAt.Equal(now.Add(-9 * time.Hour)) {
				t.Errorf("the newest instants are kept; oldest kept is %s", res.Jobs[0].ScheduledAt)
			}
			want := SkippedInstant{Policy: "p", First: now.Add(-71 * time.Hour), Last: now.Add(-10 * time.Hour), Count: 62}
			if len(res.Skipped) != 1 || !reflect.DeepEqual(res.Skipped[0], want) {
				t.Errorf("skipped %+v, want %+v", res.Skipped, want)
			}
			if !res.LastFired["p"].Equal(now) {
				t.Errorf("watermark %s, want %s", res.LastFired["p"], now)
			}
		})
	}
}

func TestPlanNewPolicy(t *testing.T) {
	now := utc("2026-05-01T12:00:00Z")
	p := testPolicy("p", "@every 10m", nil)
	agents := []AgentInfo{{Name: "n1", Connected: true}}

	// Created 25 minutes ago: instants after creation only.
	res := Plan(PlanInput{Now: now, Policies: []Policy{p}, Agents: agents,
		PolicyCreated: map[string]time.Time{"p": now.Add(-25 * time.Minute)}})
	if len(res.Jobs) != 3 || !res.Jobs[0].ScheduledAt.Equal(now.Add(-20*time.Minute)) {
		t.Fatalf("jobs %+v", res.Jobs)
	}
	// A watermark older than the creation (a deleted and re-created policy)
	// does not resurrect instants from before the creation.
	res = Plan(PlanInput{Now: now, Policies: []Policy{p}, Agents: agents,
		LastFired:     map[string]time.Time{"p": now.Add(-24 * time.Hour)},
		PolicyCreated: map[string]time.Time{"p": now.Add(-5 * time.Minute)}})
	if len(res.Jobs) != 1 {
		t.Fatalf("jobs %+v", res.Jobs)
	}
	// Neither known: start now (nothing in the past fires), and say so.
	res = Plan(PlanInput{Now: now, Policies: []Policy{p}, Agents: agents})
	if len(res.Jobs) != 0 || !res.LastFired["p"].Equal(now) {
		t.Fatalf("jobs %+v, watermark %v", res.Jobs, res.LastFired)
	}
	// Nothing due: the watermark does not move and is not returned.
	res = Plan(PlanInput{Now: now, Policies: []Policy{p}, Agents: agents,
		LastFired: map[string]time.Time{"p": now}})
	if len(res.Jobs) != 0 || len(res.LastFired) != 0 {
		t.Fatalf("nothing due, got %+v", res)
	}
}

func TestPlanAgents(t *testing.T) {
	now := utc("2026-05-01T12:00:00Z")
	agents := []AgentInfo{
		{Name: "web-1", Labels: map[string]string{"role": "web", "env": "prod"}, Connected: true},
		{Name: "web-2", Labels: map[string]string{"role": "web", "env": "prod"}, Connected: false},
		{Name: "web-3", Labels: map[string]string{"role": "web", "env": "prod"}, Connected: true, Revoked: true},
		{Name: "web-4", Labels: map[string]string{"role": "web"}, Connected: true},
		{Name: "db-1", Labels: map[string]string{"role": "db", "env": "prod"}, Connected: true},
	}
	in := PlanInput{Now: now, Agents: agents,
		Policies:  []Policy{testPolicy("p", "@every 1h", map[string]string{"role": "web", "env": "prod"})},
		LastFired: map[string]time.Time{"p": now.Add(-time.Hour)},
	}
	res := Plan(in)
	if len(res.Jobs) != 1 || res.Jobs[0].Agent != "web-1" {
		t.Fatalf("only the connected, unrevoked agent matching every label gets a job: %+v", res.Jobs)
	}
	j := res.Jobs[0]
	if j.ID != JobID("p", now, "web-1") || j.Kind != JobKindBackup || !j.ScheduledAt.Equal(now) || !j.NotBefore.Equal(now) {
		t.Errorf("job %+v", j)
	}
	if want := []MissedRun{{Policy: "p", Agent: "web-2", ScheduledAt: now}}; !reflect.DeepEqual(res.Missed, want) {
		t.Errorf("missed %+v, want %+v", res.Missed, want)
	}
	// Existing IDs are skipped, the watermark still moves.
	in.Existing = func(id string) bool { return id == j.ID }
	res = Plan(in)
	if len(res.Jobs) != 0 || !res.LastFired["p"].Equal(now) {
		t.Errorf("existing job planned again: %+v", res)
	}
}

func TestSelectorMatches(t *testing.T) {
	labels := map[string]string{"role": "web", "env": "prod", "empty": ""}
	for _, tc := range []struct {
		sel  map[string]string
		want bool
	}{
		{nil, true},
		{map[string]string{}, true},
		{map[string]string{"role": "web"}, true},
		{map[string]string{"role": "web", "env": "prod"}, true},
		{map[string]string{"role": "web", "env": "staging"}, false},
		{map[string]string{"zone": "a"}, false},
		{map[string]string{"empty": ""}, true},
		{map[string]string{"missing": ""}, false}, // a key must be present, even with an empty value
		{map[string]string{"role": "Web"}, false},
	} {
		if got := SelectorMatches(tc.sel, labels); got != tc.want {
			t.Errorf("SelectorMatches(%v) = %v, want %v", tc.sel, got, tc.want)
		}
	}
	if SelectorMatches(map[string]string{"role": "web"}, nil) {
		t.Error("an agent without labels matches a non-empty selector")
	}
}

func TestJitter(t *testing.T) {
	const max = 10 * time.Minute
	slots := map[time.Duration]bool{}
	for i := 0; i < 1000; i++ {
		agent := fmt.Sprintf("agent-%d", i)
		j := JitterFor("p", agent, max)
		if j < 0 || j >= max {
			t.Fatalf("jitter %s out of [0, %s)", j, max)
		}
		if j != JitterFor("p", agent, max) {
			t.Fatal("jitter is not deterministic")
		}
		slots[j/time.Minute] = true
	}
	if len(slots) != 10 {
		t.Errorf("1000 agents fill only %d of 10 one-minute slots", len(slots))
	}
	if JitterFor("p", "a", 0) != 0 || JitterFor("p", "a", -time.Second) != 0 {
		t.Error("no jitter configured must mean none")
	}

	now := utc("2026-05-01T12:00:00Z")
	p := testPolicy("p", "@every 1h", nil)
	p.Jitter = Duration(max)
	res := Plan(PlanInput{Now: now, Policies: []Policy{p}, Agents: testAgents(),
		LastFired: map[string]time.Time{"p": now.Add(-3 * time.Hour)}})
	for _, j := range res.Jobs {
		if d := j.NotBefore.Sub(j.ScheduledAt); d != JitterFor("p", j.Agent, max) {
			t.Errorf("%s: NotBefore - ScheduledAt = %s, want the agent's jitter", j.ID, d)
		}
	}
}

func TestPlanMaxJobs(t *testing.T) {
	now := utc("2026-05-01T12:00:00Z")
	in := PlanInput{Now: now, Agents: testAgents(), // 4 agents
		Policies: []Policy{testPolicy("a", "@every 1m", nil), testPolicy("b", "@every 1m", nil)},
		LastFired: map[string]time.Time{
			"a": now.Add(-10 * time.Minute), "b": now.Add(-10 * time.Minute)},
		MaxJobs: 6,
	}
	total := map[string]bool{}
	for i := 0; ; i++ {
		res := Plan(in)
		if len(res.Jobs) > in.MaxJobs+3 {
			t.Fatalf("%d jobs with MaxJobs %d", len(res.Jobs), in.MaxJobs)
		}
		for _, j := range res.Jobs {
			total[j.ID] = true
		}
		for p, w := range res.LastFired {
			in.LastFired[p] = w
		}
		if !res.More {
			break
		}
		if i > 100 {
			t.Fatal("More never cleared")
		}
	}
	if len(total) != 2*10*4 {
		t.Fatalf("%d jobs in all, want 80", len(total))
	}
}

func TestPlanBadSchedule(t *testing.T) {
	now := utc("2026-05-01T12:00:00Z")
	res := Plan(PlanInput{Now: now, Agents: testAgents(),
		Policies:  []Policy{testPolicy("bad", "CRON_TZ=Mars/Olympus 0 * * * *", nil), testPolicy("good", "@hourly", nil)},
		LastFired: map[string]time.Time{"bad": now.Add(-5 * time.Hour), "good": now.Add(-time.Hour)}})
	if len(res.Errors) != 1 || res.Errors[0].Policy != "bad" {
		t.Fatalf("errors %+v", res.Errors)
	}
	if _, moved := res.LastFired["bad"]; moved {
		t.Error("the watermark of an unschedulable policy must not move")
	}
	if len(res.Jobs) != 4 {
		t.Errorf("the good policy still fires: %d jobs", len(res.Jobs))
	}
}

func TestNextDue(t *testing.T) {
	now := utc("2026-05-01T12:07:00Z")
	in := PlanInput{Now: now,
		Policies: []Policy{testPolicy("a", "@hourly", nil), testPolicy("b", "*/15 * * * *", nil)},
		LastFired: map[string]time.Time{
			"a": utc("2026-05-01T12:00:00Z"), "b": utc("2026-05-01T12:00:00Z")},
	}
	if got := NextDue(in); !got.Equal(utc("2026-05-01T12:15:00Z")) {
		t.Errorf("NextDue = %s", got)
	}
	in.LastFired["a"] = utc("2026-05-01T10:00:00Z") // 11:00 and 12:00 are overdue
	if got := NextDue(in); !got.Equal(now) {
		t.Errorf("overdue: NextDue = %s, want now", got)
	}
	if got := NextDue(PlanInput{Now: now}); !got.IsZero() {
		t.Errorf("no policies: NextDue = %s", got)
	}
	// After Plan, NextDue is in the future.
	res := Plan(in)
	for p, w := range res.LastFired {
		in.LastFired[p] = w
	}
	if got := NextDue(in); !got.After(now) {
		t.Errorf("after Plan: NextDue = %s", got)
	}
}

// JobIDs must never change between versions: a mixed-version cluster would
// otherwise fire an instant twice.
func TestJobIDGolden(t *testing.T) {
	at := utc("2026-05-01T12:00:00Z")
	for _, tc := range []struct{ policy, agent, want string }{
		{"web", "web-1", JobID("web", at.In(time.FixedZone("X", 3600)), "web-1")}, // zone-independent
	} {
		if got := JobID(tc.policy, at, tc.agent); got != tc.want {
			t.Errorf("JobID depends on the instant's zone: %s != %s", got, tc.want)
		}
	}
	distinct := map[string]bool{
		JobID("web", at, "web-1"):                          true,
		JobID("web", at.Add(time.Nanosecond), "web-1"):     true,
		JobID("web", at, "web-2"):                          true,
		JobID("we", at, "bweb-2"):                          true, // the separators matter
		JobID("web", utc("2026-05-01T12:00:01Z"), "web-1"): true,
	}
	if len(distinct) != 5 {
		t.Fatal("JobID collides for distinct runs")
	}
	if got, want := JobID("web", at, "web-1"), "bk-"+goldenWebID; got != want {
		t.Errorf("JobID drifted: %s, want %s", got, want)
	}
	if len(JobID("x", at, "y")) != 19 {
		t.Error("JobID length")
	}
}

// goldenWebID is JobID("web", 2026-05-01T12:00:00Z, "web-1") without its
// prefix: sha256("web\x002026-05-01T12:00:00Z\x00web-1")[:8] in hex.
const goldenWebID = "5540406a76f9bb8f"

func TestRetryDelay(t *testing.T) {
	for attempt, want := range map[int]time.Duration{
		-1: 30 * time.Second, 0: 30 * time.Second, 1: 30 * time.Second, 2: time.Minute, 3: 2 * time.Minute,
		6: 16 * time.Minute, 7: 30 * time.Minute, 8: 30 * time.Minute, 1000: 30 * time.Minute,
	} {
		if got := RetryDelay(attempt); got != want {
			t.Errorf("RetryDelay(%d) = %s, want %s", attempt, got, want)
		}
	}
}
