package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// drillSetup adds to h.setup: a drill spec on policy p (runner role=db),
// and makes a1 drill-capable.
func (h *fsmHarness) drillSetup(wk []byte, schedule string) {
	h.t.Helper()
	h.setup(wk)
	h.must(CmdPutPolicy, PutPolicy{Policy: Policy{Name: "p", Repository: "r", Schedule: "@every 1m", Paths: []string{"/data"},
		Agents: map[string]string{"role": "db"}, MaxAttempts: 2,
		Drill: &DrillSpec{Schedule: schedule, Runner: map[string]string{"role": "db"}}}})
	h.must(CmdGrantAgent, GrantAgent{Name: "a1", Grants: []string{CapDrill}})
	h.must(CmdAgentSeen, AgentSeen{Name: "a1", Capabilities: []string{CapDrill}})
}

// leaseNew creates a manual job for agent a1 and leases it for ttl.
func (h *fsmHarness) leaseNew(nj NewJob, ttl time.Duration) *Job {
	h.t.Helper()
	nj.Trigger, nj.Agent = TriggerManual, "a1"
	h.must(CmdCreateJobs, CreateJobs{Jobs: []NewJob{nj}})
	return h.must(CmdLeaseJob, LeaseJob{Agent: "a1", JobID: nj.ID, TTL: ttl}).(*Job)
}

func (h *fsmHarness) state() *State {
	var st *State
	h.fsm.View(func(s *State) { st = s.Clone() })
	return st
}

func TestPlanDrillsPicksARunnerAndRecordsMissingOnes(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.drillSetup(wk, "@every 1h")
	// a2 holds an identity too, but the runner selector wants role=db.
	h.must(CmdGrantAgent, GrantAgent{Name: "a2", Grants: []string{CapDrill}})
	h.must(CmdAgentSeen, AgentSeen{Name: "a2", Capabilities: []string{CapDrill}})

	now := t0.Add(3*time.Hour + time.Minute)
	h.now = now
	h.must(CmdAgentSeen, AgentSeen{Name: "a1"})
	plan := PlanDrills(h.state(), now, 2*time.Minute)
	if len(plan.Jobs) != 1 || len(plan.NotRun) != 0 {
		t.Fatalf("plan = %+v, want one job", plan)
	}
	j := plan.Jobs[0]
	// Three instants were missed; only the newest runs.
	wantInst := t0.Truncate(time.Hour).Add(3 * time.Hour)
	if j.Agent != "a1" || j.Kind != KindDrill || !j.ScheduledAt.Equal(wantInst) || j.ID != DrillJobID("p", wantInst) {
		t.Fatalf("job = %+v", j)
	}
	if again := PlanDrills(h.state(), now, 2*time.Minute); !reflect.DeepEqual(again, plan) {
		t.Fatalf("planning is not deterministic:\n%+v\n%+v", plan, again)
	}
	h.must(CmdCreateJobs, CreateJobs{Jobs: plan.Jobs, DrillFired: plan.Fired})
	if p := PlanDrills(h.state(), now, 2*time.Minute); len(p.Jobs)+len(p.NotRun) != 0 {
		t.Fatalf("the same instant planned twice: %+v", p)
	}
	// A drill job needs a drill-capable agent: the FSM refuses others.
	if _, err := h.apply(CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "d-x", Kind: KindDrill, Trigger: TriggerManual, Policy: "p", Agent: "a1"}}}); err != nil {
		t.Fatalf("drill job on a1: %v", err)
	}
	h.must(CmdAgentSeen, AgentSeen{Name: "a1", Capabilities: []string{}})
	if _, err := h.apply(CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "d-y", Kind: KindDrill, Trigger: TriggerManual, Policy: "p", Agent: "a1"}}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("drill job on an agent without identity: err = %v, want conflict", err)
	}

	// An hour later no runner is connected: the drill is recorded as not run.
	h.now = now.Add(time.Hour)
	plan = PlanDrills(h.state(), h.now, 2*time.Minute)
	if len(plan.Jobs) != 0 || len(plan.NotRun) != 1 {
		t.Fatalf("plan without runner = %+v", plan)
	}
	if !strings.Contains(plan.NotRun[0].Reason, "runner selector role=db") {
		t.Fatalf("reason = %q", plan.NotRun[0].Reason)
	}
	h.must(CmdRecordDrill, plan.NotRun[0])
	st := h.state()
	d := st.Drills[plan.NotRun[0].ID]
	if d == nil || d.Passed || !slices.Equal(d.Reasons, []string{ReasonRunner}) || !strings.Contains(d.Summary, "no connected drill runner") {
		t.Fatalf("record = %+v", d)
	}
	if !st.DrillFired["p"].Equal(plan.NotRun[0].ScheduledAt) {
		t.Fatalf("watermark not advanced: %v", st.DrillFired["p"])
	}
}

func TestDrillVerdictsAreFinalAndEveryDrillJobEndsInARecord(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.drillSetup(wk, "")
	lease := func(id string) *Job {
		t.Helper()
		return h.leaseNew(NewJob{ID: id, Kind: KindDrill, Policy: "p", Drill: &DrillParams{Snapshot: "latest"}}, time.Minute)
	}
	report := DrillReport{Passed: false, Reasons: []string{"check", "content", "check"}, Summary: "FAILED (content, check)",
		SnapshotID: "abcd", StartedAt: t0, FinishedAt: t0.Add(time.Minute), RTOSeconds: 60, RPOSeconds: 3600, Result: []byte(`{"passed":false}`)}

	// Malformed reports change nothing.
	j := lease("d1")
	bad := []CompleteJob{
		{JobID: "d1", Agent: "a1", Token: j.Lease.Token, Success: true},                         // success without a result
		{JobID: "d1", Agent: "a1", Token: j.Lease.Token, Success: true, Drill: &report},         // success but not passed
		{JobID: "d1", Agent: "a1", Token: j.Lease.Token, Success: false, Drill: &DrillReport{}}, // failed without a reason
		{JobID: "d1", Agent: "a1", Token: j.Lease.Token, Success: false, Drill: &DrillReport{Reasons: []string{"x"}, Result: []byte(`"` + strings.Repeat("x", MaxDrillResult) + `"`)}},
		{JobID: "d1", Agent: "a1", Token: j.Lease.Token, Success: false, Verify: &VerifyReport{}},
	}
	before := h.snapshot()
	for i, c := range bad {
		if _, err := h.apply(CmdCompleteJob, c); !errors.Is(err, ErrInvalidCommand) {
			t.Fatalf("bad report %d: err = %v, want invalid", i, err)
		}
	}
	if string(before) != string(h.snapshot()) {
		t.Fatal("a rejected report changed the state")
	}

	// A failed verdict is final: no retry although attempts remain.
	h.must(CmdCompleteJob, CompleteJob{JobID: "d1", Agent: "a1", Token: j.Lease.Token, Success: false, Error: "drill failed", Drill: &report})
	st := h.state()
	if got := st.Jobs["d1"]; got.State != JobFailed || got.Result.Drill != "d1" {
		t.Fatalf("job = %+v", got)
	}
	d := st.Drills["d1"]
	if d == nil || d.Passed || !slices.Equal(d.Reasons, []string{"check", "content"}) || d.Runner != "a1" || d.TriggeredBy != "test" ||
		d.Trigger != TriggerManual || d.RTOSeconds != 60 || string(d.Result) != `{"passed":false}` {
		t.Fatalf("record = %+v", d)
	}

	// A passed verdict.
	j = lease("d2")
	ok := DrillReport{Passed: true, SnapshotID: "abcd", StartedAt: t0, FinishedAt: t0.Add(time.Second), RTOSeconds: 1}
	h.must(CmdCompleteJob, CompleteJob{JobID: "d2", Agent: "a1", Token: j.Lease.Token, Success: true, Drill: &ok})
	if st := h.state(); st.Jobs["d2"].State != JobSucceeded || !st.Drills["d2"].Passed || st.LatestDrill("p").ID != "d2" {
		t.Fatalf("passed drill: job %+v record %+v", st.Jobs["d2"], st.Drills["d2"])
	}

	// No verdict (the runner could not start): retried, and once the
	// attempts are used up, recorded with reason "runner".
	j = lease("d3")
	h.must(CmdCompleteJob, CompleteJob{JobID: "d3", Agent: "a1", Token: j.Lease.Token, Success: false, Error: "bucket unreachable"})
	if st := h.state(); st.Jobs["d3"].State != JobPending || st.Drills["d3"] != nil {
		t.Fatalf("first failure without verdict: job %+v", st.Jobs["d3"])
	}
	j = h.must(CmdLeaseJob, LeaseJob{Agent: "a1", JobID: "d3", TTL: time.Minute}).(*Job)
	h.now = h.now.Add(2 * time.Minute) // the lease lapses
	h.must(CmdExpireLease, ExpireLease{JobID: "d3", Token: j.Lease.Token})
	st = h.state()
	d = st.Drills["d3"]
	if st.Jobs["d3"].State != JobFailed || d == nil || d.Passed || !slices.Equal(d.Reasons, []string{ReasonRunner}) ||
		!strings.Contains(d.Summary, "attempt 2 of 2") {
		t.Fatalf("exhausted drill job: job %+v record %+v", st.Jobs["d3"], d)
	}
	if got := st.DrillsFor("p", time.Time{}); len(got) != 3 {
		t.Fatalf("DrillsFor = %d records, want 3", len(got))
	}
	// Old records are pruned with jobs.
	h.must(CmdPruneJobs, PruneJobs{FinishedBefore: t0, DrillsBefore: t0.Add(time.Hour)})
	if n := len(h.state().Drills); n != 0 {
		t.Fatalf("%d drill records left after pruning", n)
	}
}

func TestMaintenanceSlotDoesNotTakeABackupSlot(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.drillSetup(wk, "")
	h.must(CmdCreateJobs, CreateJobs{Jobs: []NewJob{
		{ID: "b1", Kind: KindBackup, Trigger: TriggerManual, Policy: "p", Agent: "a1"},
		{ID: "b2", Kind: KindBackup, Trigger: TriggerManual, Policy: "p", Agent: "a1"},
		{ID: "v1", Kind: KindVerify, Trigger: TriggerManual, Repository: "r", Agent: "a1", Verify: &VerifyParams{Shards: []int{1}}},
		{ID: "d1", Kind: KindDrill, Trigger: TriggerManual, Policy: "p", Agent: "a1"},
	}})
	if j := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", JobID: "b1", TTL: time.Minute}).(*Job); j.ID != "b1" {
		t.Fatal(j.ID)
	}
	// The backup slot (limit 1) is taken; the maintenance slot is not.
	if _, err := h.apply(CmdLeaseJob, LeaseJob{Agent: "a1", JobID: "b2", TTL: time.Minute}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second backup: err = %v, want conflict", err)
	}
	var st *State
	h.fsm.View(func(s *State) {
		if !s.HasWork("a1", h.now) {
			t.Error("HasWork = false with a free maintenance slot")
		}
	})
	j := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", TTL: time.Minute}).(*Job)
	if !maintenance(j.Kind) {
		t.Fatalf("leased %s, want a verify or drill job", j.ID)
	}
	// One maintenance job at a time.
	if v := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", TTL: time.Minute}); v.(*Job) != nil {
		t.Fatalf("leased a second job %s", v.(*Job).ID)
	}
	st = h.state()
	if len(st.Agents["a1"].Running) != 2 {
		t.Fatalf("running = %v", st.Agents["a1"].Running)
	}
}

// packID makes a deterministic pack ID.
func packID(i int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "pack %d", i))
	return hex.EncodeToString(h[:])
}

// verifyAgent plays an agent for a verify job over a fixed set of packs.
func verifyReport(packs map[string]int64, shards []int, damaged map[string]bool) *VerifyReport {
	want := map[int]bool{}
	for _, s := range shards {
		want[s] = true
	}
	r := &VerifyReport{Shards: shards}
	counts := map[int]*ShardCount{}
	for _, id := range sortedKeys(packs) {
		sh := ShardOf(id)
		if counts[sh] == nil {
			counts[sh] = &ShardCount{Shard: sh}
		}
		counts[sh].Packs++
		counts[sh].Bytes += packs[id]
		if want[sh] {
			pc := PackCheck{ID: id, Size: packs[id]}
			if damaged[id] {
				pc.Error = "sha-256 mismatch"
			}
			r.Packs = append(r.Packs, pc)
		}
	}
	for sh := 0; sh < VerifyShards; sh++ {
		if c := counts[sh]; c != nil {
			r.Inventory = append(r.Inventory, *c)
		}
	}
	return r
}

func TestVerificationCoverageReaches100PercentOverSimulatedDays(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.setup(wk)
	h.must(CmdPutPolicy, PutPolicy{Policy: Policy{Name: "p", Repository: "r", Schedule: "@daily", Paths: []string{"/data"},
		Agents: map[string]string{"role": "db"}, VerifyEvery: Duration(20 * 24 * time.Hour)}})
	packs := map[string]int64{}
	for i := range 3000 {
		packs[packID(i)] = int64(16<<20 + i)
	}
	sched, err := ParseSchedule("@daily")
	if err != nil {
		t.Fatal(err)
	}
	every := 20 * 24 * time.Hour
	perRun := ShardsPerRun(every, 24*time.Hour)
	if perRun != 26 { // 256 shards in 10 runs
		t.Fatalf("ShardsPerRun = %d, want 26", perRun)
	}
	var reachedAt int
	for day := 1; day <= 25; day++ {
		h.now = t0.Truncate(24 * time.Hour).Add(time.Duration(day)*24*time.Hour + time.Hour)
		h.must(CmdAgentSeen, AgentSeen{Name: "a1"})
		plan := PlanVerify(h.state(), sched, h.now, 2*time.Minute)
		if len(plan.Jobs) != 1 {
			t.Fatalf("day %d: %d verify jobs, want 1 (%+v)", day, len(plan.Jobs), plan)
		}
		nj := plan.Jobs[0]
		if nj.Agent != "a1" || nj.Repository != "r" || len(nj.Verify.Shards) != perRun {
			t.Fatalf("day %d: job %+v", day, nj)
		}
		h.must(CmdCreateJobs, CreateJobs{Jobs: plan.Jobs, VerifyFired: plan.Fired})
		if again := PlanVerify(h.state(), sched, h.now, 2*time.Minute); len(again.Jobs) != 0 {
			t.Fatalf("day %d: a second verify job for the same instant", day)
		}
		j := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", JobID: nj.ID, TTL: time.Hour}).(*Job)
		h.must(CmdCompleteJob, CompleteJob{JobID: j.ID, Agent: "a1", Token: j.Lease.Token, Success: true,
			Verify: verifyReport(packs, j.Verify.Shards, nil)})
		rep := h.state().CoverageOf(h.now)[0]
		if rep.Packs != len(packs) {
			t.Fatalf("day %d: coverage counts %d packs, want %d", day, rep.Packs, len(packs))
		}
		if rep.Ratio == 1 && reachedAt == 0 {
			reachedAt = day
			if rep.OverduePacks != 0 || rep.VerifiedPacks != len(packs) {
				t.Fatalf("day %d: 100%% but %+v", day, rep)
			}
		}
		if day < 10 && rep.Ratio >= 1 {
			t.Fatalf("day %d: coverage %.2f before the shards could all have been read", day, rep.Ratio)
		}
		if reachedAt > 0 && rep.Ratio != 1 {
			t.Fatalf("day %d: coverage fell back to %.3f (overdue %d)", day, rep.Ratio, rep.OverduePacks)
		}
	}
	if reachedAt != 10 {
		t.Fatalf("100%% coverage reached on day %d, want day 10 (26 of 256 shards a day)", reachedAt)
	}

	// Damage: a full verification finds a flipped pack; a deleted pack
	// disappears from the coverage.
	var bad, gone string
	for _, id := range sortedKeys(packs) {
		if bad == "" {
			bad = id
		} else if gone == "" && ShardOf(id) != ShardOf(bad) {
			gone = id
		}
	}
	delete(packs, gone)
	h.now = h.now.Add(time.Hour)
	j := h.leaseNew(NewJob{ID: "vall", Kind: KindVerify, Repository: "r", Verify: &VerifyParams{Shards: AllShards()}}, time.Hour)
	h.must(CmdCompleteJob, CompleteJob{JobID: "vall", Agent: "a1", Token: j.Lease.Token, Success: false, Error: "1 damaged pack",
		Verify: verifyReport(packs, AllShards(), map[string]bool{bad: true})})
	st := h.state()
	if got := st.Jobs["vall"]; got.State != JobFailed || got.Result.Verify == nil || !slices.Equal(got.Result.Verify.Damaged, []string{bad}) {
		t.Fatalf("verify job = %+v", got)
	}
	rep := st.CoverageOf(h.now)[0]
	if len(rep.Damaged) != 1 || rep.Damaged[0].Pack != bad || rep.Packs != len(packs) || rep.VerifiedPacks != len(packs)-1 {
		t.Fatalf("coverage after damage = %+v", rep)
	}
	if st.Coverage["r"].Packs[gone] != nil {
		t.Fatal("a deleted pack is still tracked")
	}
	// A report for other shards than the job's is refused.
	j = h.leaseNew(NewJob{ID: "v2", Kind: KindVerify, Repository: "r", Verify: &VerifyParams{Shards: []int{1}}}, time.Hour)
	if _, err := h.apply(CmdCompleteJob, CompleteJob{JobID: "v2", Agent: "a1", Token: j.Lease.Token, Success: true,
		Verify: verifyReport(packs, []int{2}, nil)}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("report for the wrong shards: err = %v", err)
	}
}

func TestCoverageReportOfAnUnverifiedRepository(t *testing.T) {
	var c *Coverage
	rep := c.Report("r", DefaultVerifyEvery, t0)
	// Never listed: nothing is known to be verified, everything is overdue.
	if rep.Ratio != 0 || rep.Packs != 0 || len(rep.OverdueShards) != VerifyShards || !rep.ListedAt.IsZero() {
		t.Fatalf("coverage of a repository never verified = %+v", rep)
	}
	// Listed and empty: fully covered.
	c = newCoverage()
	c.ListedAt = t0
	for i := range c.ShardVerified {
		c.ShardVerified[i] = t0
	}
	if rep := c.Report("r", DefaultVerifyEvery, t0.Add(time.Hour)); rep.Ratio != 1 || len(rep.OverdueShards) != 0 {
		t.Fatalf("coverage of an empty, verified repository = %+v", rep)
	}
	if got := c.DueShards(3); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("DueShards = %v", got)
	}
	if ShardOf("ff00") != 255 || ShardOf("zz") != -1 || ShardOf("a") != -1 {
		t.Fatal("ShardOf")
	}
}

// Commands whose meaning is new in version 2 are stamped 2, so that a
// version-1 node rejects them cleanly instead of applying them its way;
// everything else stays 1 and applies on every node.
func TestCommandVersionStamping(t *testing.T) {
	for _, tc := range []struct {
		name    string
		typ     CommandType
		payload any
		want    int
	}{
		{"backup jobs", CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "b", Kind: KindBackup}}, Fired: map[string]time.Time{"p": t0}}, 1},
		{"a verify job", CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "v", Kind: KindVerify, Repository: "r", Verify: &VerifyParams{Shards: []int{1}}}}}, 2},
		{"a drill watermark", CmdCreateJobs, CreateJobs{DrillFired: map[string]time.Time{"p": t0}}, 2},
		{"a backup result", CmdCompleteJob, CompleteJob{JobID: "b", Success: true}, 1},
		{"a drill verdict", CmdCompleteJob, CompleteJob{JobID: "d", Drill: &DrillReport{Reasons: []string{"check"}}}, 2},
		{"a verify report", CmdCompleteJob, CompleteJob{JobID: "v", Verify: &VerifyReport{}}, 2},
		{"a backup result with forgotten snapshots", CmdCompleteJob, CompleteJob{JobID: "b", Success: true, Forgotten: []string{"s0"}}, 3},
		{"a backup result whose catalog claims are checked when applied", CmdCompleteJob, CompleteJob{JobID: "b", Success: true, Forgotten: []string{"s0"}, CheckClaims: true}, 12},
		{"a verify report listing snapshots", CmdCompleteJob, CompleteJob{JobID: "v", Verify: &VerifyReport{SnapshotsListed: true}}, 4},
		{"a prune job", CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "pr", Kind: KindPrune, Policy: "p"}}}, 5},
		{"a prune job naming its repository", CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "pr", Kind: KindPrune, Policy: "p", Repository: "r"}}}, 6},
		{"a repository removal", CmdRemoveRepository, RemoveRepository{Name: "r"}, 6},
		{"a prune watermark", CmdCreateJobs, CreateJobs{PruneFired: map[string]time.Time{"p": t0}}, 5},
		{"a prune summary", CmdCompleteJob, CompleteJob{JobID: "pr", Success: true, Prune: &PruneSummary{}}, 5},
		{"a policy with a prune schedule", CmdPutPolicy, PutPolicy{Policy: Policy{Retention: Retention{KeepLast: 1, Prune: "@weekly"}}}, 5},
		{"a policy with retention rules only", CmdPutPolicy, PutPolicy{Policy: Policy{Retention: Retention{KeepLast: 1}}}, 1},
		{"a policy with a legal-hold tag", CmdPutPolicy, PutPolicy{Policy: Policy{Retention: Retention{KeepLast: 1, KeepTags: []string{"hold"}}}}, 7},
		{"a policy", CmdPutPolicy, PutPolicy{}, 1},
		{"a policy with a check index", CmdPutPolicy, PutPolicy{CheckIndex: new(uint64)}, 10},
		{"a policy batch", CmdPutPolicies, PutPolicies{Policies: []Policy{{}, {}}}, 1},
		{"a policy batch with a legal-hold tag", CmdPutPolicies, PutPolicies{Policies: []Policy{{}, {Retention: Retention{KeepLast: 1, KeepTags: []string{"hold"}}}, {Retention: Retention{Prune: "@weekly"}}}}, 7},
		{"a token revoke", CmdRevokeToken, RevokeToken{ID: "t"}, 1},
		{"a token revoke judged at an instant", CmdRevokeToken, RevokeToken{ID: "t", CheckedAt: t0}, 8},
		{"an alert sync", CmdSyncAlerts, SyncAlerts{Open: []Condition{{Key: "drill_failed/p", Kind: AlertDrillFailed}}}, 1},
		{"an alert sync keeping an earlier opening", CmdSyncAlerts, SyncAlerts{Open: []Condition{{Key: "drill_failed/p", Kind: AlertDrillFailed}}, Keep: []string{"drill_failed/p"}}, 9},
		{"a join token", CmdCreateJoinToken, CreateJoinToken{ID: "j", Labels: map[string]string{"tier": "web"}}, 1},
		{"a join token with fixed labels", CmdCreateJoinToken, CreateJoinToken{ID: "j", Labels: map[string]string{"tier": "web"}, FixedLabels: true}, 11},
	} {
		c, err := NewCommand(tc.typ, "test", tc.payload)
		if err != nil {
			t.Fatal(err)
		}
		if c.Version != tc.want {
			t.Errorf("%s: version %d, want %d", tc.name, c.Version, tc.want)
		}
	}
	// A version-1 node (simulated: it applies up to 1) refuses a drill
	// verdict without changing anything.
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.drillSetup(wk, "")
	j := h.leaseNew(NewJob{ID: "d1", Kind: KindDrill, Policy: "p"}, time.Minute)
	c, _ := NewCommand(CmdCompleteJob, "test", CompleteJob{JobID: "d1", Agent: "a1", Token: j.Lease.Token, Drill: &DrillReport{Reasons: []string{"check"}}})
	c.Version = CommandVersion + 1 // what an older node sees: newer than it applies
	c.Time = h.now
	b, _ := c.Encode()
	before := h.snapshot()
	if res := h.raw(b); !errors.Is(res.Err, ErrUnsupportedCommand) || string(before) != string(h.snapshot()) {
		t.Fatalf("newer command: %v, state changed %v", res.Err, string(before) != string(h.snapshot()))
	}
}

// TestRetentionLeavesTheCatalog: the snapshots an agent forgot by the
// policy's retention after a backup leave the catalog with that backup's
// result, and the result names them.
func TestRetentionLeavesTheCatalog(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.drillSetup(wk, "")
	for i, id := range []string{"s1", "s2"} {
		j := h.leaseNew(NewJob{ID: fmt.Sprintf("b%d", i+1), Kind: KindBackup, Policy: "p"}, time.Minute)
		h.must(CmdCompleteJob, CompleteJob{JobID: j.ID, Agent: "a1", Token: j.Lease.Token, Success: true,
			Snapshot: &SnapshotInfo{ID: id, Host: "h", Time: h.now}})
	}
	j := h.leaseNew(NewJob{ID: "b3", Kind: KindBackup, Policy: "p"}, time.Minute)
	done := h.must(CmdCompleteJob, CompleteJob{JobID: "b3", Agent: "a1", Token: j.Lease.Token, Success: true,
		Snapshot: &SnapshotInfo{ID: "s3", Host: "h", Time: h.now}, Forgotten: []string{"s1", "unknown"}}).(*Job)
	if !slices.Equal(done.Result.Forgotten, []string{"s1", "unknown"}) {
		t.Errorf("result forgotten = %v", done.Result.Forgotten)
	}
	st := h.state()
	if _, ok := st.Catalog["s1"]; ok || st.Catalog["s2"] == nil || st.Catalog["s3"] == nil {
		t.Errorf("catalog after retention: %v, want s2 and s3", slices.Sorted(maps.Keys(st.Catalog)))
	}
}

// TestVerifyReconcilesCatalog: a verify job that lists the repository's
// snapshots removes the catalog entries of snapshots forgotten outside the
// coordinator — only those added before its lease (a snapshot added since
// may be newer than the listing) and only of its repository.
func TestVerifyReconcilesCatalog(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.drillSetup(wk, "")
	hexID := func(c byte) string { return strings.Repeat(string(c), 64) }
	backup := func(jobID, snap string) {
		j := h.leaseNew(NewJob{ID: jobID, Kind: KindBackup, Policy: "p"}, time.Minute)
		h.must(CmdCompleteJob, CompleteJob{JobID: jobID, Agent: "a1", Token: j.Lease.Token, Success: true,
			Snapshot: &SnapshotInfo{ID: snap, Host: "h", Time: h.now}})
	}
	gone, kept, late := hexID('a'), hexID('b'), hexID('c')
	backup("b1", gone)
	backup("b2", kept)
	// An entry of another repository, absent from r's listing.
	h.must(CmdAddRepository, AddRepository{Name: "r2", URL: "s3:bucket/r2", WriterKey: wk})
	h.must(CmdPutPolicy, PutPolicy{Policy: Policy{Name: "p2", Repository: "r2", Schedule: "@every 1m", Paths: []string{"/x"},
		Agents: map[string]string{"role": "db"}, MaxAttempts: 1}})
	j := h.leaseNew(NewJob{ID: "o1", Kind: KindBackup, Policy: "p2"}, time.Minute)
	other := hexID('d')
	h.must(CmdCompleteJob, CompleteJob{JobID: "o1", Agent: "a1", Token: j.Lease.Token, Success: true,
		Snapshot: &SnapshotInfo{ID: other, Host: "h", Time: h.now}})

	// A report from an agent that did not list snapshots changes nothing.
	v := h.leaseNew(NewJob{ID: "v0", Kind: KindVerify, Repository: "r", Verify: &VerifyParams{Shards: []int{3}}}, time.Minute)
	done := h.must(CmdCompleteJob, CompleteJob{JobID: "v0", Agent: "a1", Token: v.Lease.Token, Success: true,
		Verify: &VerifyReport{Shards: []int{3}}}).(*Job)
	if n := len(h.state().Catalog); n != 3 || len(done.Result.Verify.CatalogDropped) != 0 {
		t.Fatalf("catalog after a report without a snapshot listing: %d entries, dropped %v", n, done.Result.Verify.CatalogDropped)
	}

	v = h.leaseNew(NewJob{ID: "v1", Kind: KindVerify, Repository: "r", Verify: &VerifyParams{Shards: []int{3}}}, time.Minute)
	backup("b3", late) // committed after the verify job's listing may have run
	done = h.must(CmdCompleteJob, CompleteJob{JobID: "v1", Agent: "a1", Token: v.Lease.Token, Success: true,
		Verify: &VerifyReport{Shards: []int{3}, Snapshots: []string{kept}, SnapshotsListed: true}}).(*Job)
	if !slices.Equal(done.Result.Verify.CatalogDropped, []string{gone}) {
		t.Errorf("dropped %v, want only %s", done.Result.Verify.CatalogDropped, gone)
	}
	st := h.state()
	if got, want := slices.Sorted(maps.Keys(st.Catalog)), []string{kept, late, other}; !slices.Equal(got, want) {
		t.Errorf("catalog = %v, want %v", got, want)
	}

	// An empty listing changes nothing: more likely another copy of the
	// repository than one emptied of snapshots.
	v = h.leaseNew(NewJob{ID: "v3", Kind: KindVerify, Repository: "r", Verify: &VerifyParams{Shards: []int{3}}}, time.Minute)
	done = h.must(CmdCompleteJob, CompleteJob{JobID: "v3", Agent: "a1", Token: v.Lease.Token, Success: true,
		Verify: &VerifyReport{Shards: []int{3}, SnapshotsListed: true}}).(*Job)
	if n := len(h.state().Catalog); n != 3 || len(done.Result.Verify.CatalogDropped) != 0 {
		t.Errorf("an empty listing dropped %v (%d entries left)", done.Result.Verify.CatalogDropped, n)
	}

	// A malformed listing is refused and changes nothing; so is an upper-
	// case ID, which would match no catalog entry.
	v = h.leaseNew(NewJob{ID: "v2", Kind: KindVerify, Repository: "r", Verify: &VerifyParams{Shards: []int{3}}}, time.Minute)
	before := h.snapshot()
	if _, err := h.apply(CmdCompleteJob, CompleteJob{JobID: "v2", Agent: "a1", Token: v.Lease.Token, Success: true,
		Verify: &VerifyReport{Shards: []int{3}, Snapshots: []string{"latest"}, SnapshotsListed: true}}); err == nil || !strings.Contains(err.Error(), `"latest"`) {
		t.Errorf("a listing with a bad ID: %v", err)
	}
	if _, err := h.apply(CmdCompleteJob, CompleteJob{JobID: "v2", Agent: "a1", Token: v.Lease.Token, Success: true,
		Verify: &VerifyReport{Shards: []int{3}, Snapshots: []string{strings.ToUpper(kept)}, SnapshotsListed: true}}); err == nil || !strings.Contains(err.Error(), "lower-case") {
		t.Errorf("a listing with an upper-case ID: %v", err)
	}
	if string(before) != string(h.snapshot()) {
		t.Error("a refused report changed the state")
	}
}

// TestPlanPrunes: a policy whose retention sets a prune schedule gets a
// prune job at each due instant on one of its drill runners, none while
// one is pending or running for the repository, and none (reported) when
// no runner is connected; the job's summary becomes its result.
func TestPlanPrunes(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.drillSetup(wk, "")
	pol := h.state().Policies["p"].Policy
	pol.Retention = Retention{KeepLast: 3, Prune: "@every 1h", MaxUnused: "5%"}
	h.must(CmdPutPolicy, PutPolicy{Policy: pol})

	now := t0.Add(61 * time.Minute)
	h.now = now
	h.must(CmdAgentSeen, AgentSeen{Name: "a1", Capabilities: []string{CapDrill}})
	plan := PlanPrunes(h.state(), now, 2*time.Minute)
	if len(plan.Jobs) != 1 || plan.Jobs[0].Agent != "a1" || plan.Jobs[0].Kind != KindPrune || len(plan.Unassigned) != 0 {
		t.Fatalf("plan = %+v", plan)
	}
	h.must(CmdCreateJobs, CreateJobs{Jobs: plan.Jobs, PruneFired: plan.Fired})
	if again := PlanPrunes(h.state(), now.Add(time.Hour), 2*time.Minute); len(again.Jobs) != 0 {
		t.Errorf("a second prune planned while the first is pending: %+v", again.Jobs)
	}
	id := plan.Jobs[0].ID
	j := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", JobID: id, TTL: time.Minute}).(*Job)
	if _, err := h.apply(CmdCompleteJob, CompleteJob{JobID: id, Agent: "a1", Token: j.Lease.Token, Success: true}); err == nil {
		t.Error("a successful prune without its summary was accepted")
	}
	sum := PruneSummary{Snapshots: 3, MarkedPacks: 4, DeletedPacks: 4, DeletedBytes: 9 << 20}
	done := h.must(CmdCompleteJob, CompleteJob{JobID: id, Agent: "a1", Token: j.Lease.Token, Success: true, Prune: &sum}).(*Job)
	if done.State != JobSucceeded || done.Result.Prune == nil || *done.Result.Prune != sum {
		t.Fatalf("completed prune job: %s %+v", done.State, done.Result)
	}
	// The next instant plans again; with the runner gone it is reported.
	next := PlanPrunes(h.state(), now.Add(time.Hour), 2*time.Minute)
	if len(next.Jobs) != 0 || len(next.Unassigned) != 1 || !strings.Contains(next.Unassigned[0].Err, "no connected drill runner") || len(next.Fired) != 0 {
		t.Errorf("plan with the runner silent for an hour: %+v; want no job and the watermark kept (tried again)", next)
	}
	h.now = now.Add(time.Hour)
	h.must(CmdAgentSeen, AgentSeen{Name: "a1", Capabilities: []string{CapDrill}})
	if next = PlanPrunes(h.state(), now.Add(time.Hour), 2*time.Minute); len(next.Jobs) != 1 {
		t.Errorf("plan an hour later: %+v", next)
	}
	// A second policy on the same repository: still one prune at a time,
	// in the plan and in the state machine. Its schedule starts when it
	// is set, not at the policy's creation.
	q := pol
	q.Name = "q"
	h.must(CmdPutPolicy, PutPolicy{Policy: q})
	if st := h.state(); !st.PruneFired["q"].Equal(h.now) {
		t.Errorf("prune watermark of a new prune schedule: %v, want %v", st.PruneFired["q"], h.now)
	}
	h.now = now.Add(3 * time.Hour)
	h.must(CmdAgentSeen, AgentSeen{Name: "a1", Capabilities: []string{CapDrill}})
	both := PlanPrunes(h.state(), h.now, 2*time.Minute)
	if len(both.Jobs) != 1 || len(both.Fired) != 2 {
		t.Fatalf("plan for two policies of one repository: %+v, want one job and both watermarks", both)
	}
	h.must(CmdCreateJobs, CreateJobs{Jobs: both.Jobs, PruneFired: both.Fired})
	if _, err := h.apply(CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "x2", Kind: KindPrune, Trigger: TriggerManual, Policy: "q", Agent: "a1"}}}); !errors.Is(err, ErrConflict) {
		t.Errorf("a second prune job of the repository: %v, want a conflict", err)
	}
	// Only drill runners (agents with the identity) take prune jobs.
	if _, err := h.apply(CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "x", Kind: KindPrune, Trigger: TriggerManual, Policy: "p", Agent: "a2"}}}); !errors.Is(err, ErrConflict) {
		t.Errorf("prune job for an agent that is no drill runner: %v", err)
	}
}

func TestStrandedJobsAreCancelledAndDrillsRecorded(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.drillSetup(wk, "")
	h.must(CmdCreateJobs, CreateJobs{Jobs: []NewJob{
		{ID: "b1", Kind: KindBackup, Trigger: TriggerManual, Policy: "p", Agent: "a1"},
		{ID: "v1", Kind: KindVerify, Trigger: TriggerManual, Repository: "r", Agent: "a1", Verify: &VerifyParams{Shards: []int{3}}},
		{ID: "d1", Kind: KindDrill, Trigger: TriggerManual, Policy: "p", Agent: "a1"},
	}})
	timeout := 2 * time.Minute
	if got := StrandedJobs(h.state(), h.now.Add(time.Minute), timeout); len(got) != 0 {
		t.Fatalf("stranded too early: %+v", got)
	}
	// a1 goes quiet: its maintenance jobs are given up, its backup waits.
	got := StrandedJobs(h.state(), h.now.Add(5*time.Minute), timeout)
	if len(got) != 2 || got[0].JobID != "d1" || got[1].JobID != "v1" || !strings.Contains(got[0].Reason, "not been in touch") {
		t.Fatalf("stranded = %+v", got)
	}
	for _, c := range got {
		h.must(CmdCancelJob, c)
	}
	st := h.state()
	if d := st.Drills["d1"]; d == nil || d.Passed || !slices.Equal(d.Reasons, []string{ReasonRunner}) || !strings.Contains(d.Summary, "not been in touch") {
		t.Fatalf("cancelled drill record = %+v", d)
	}
	if st.verifyRunning("r") {
		t.Fatal("a cancelled verify job still blocks planning")
	}
	// Revoked: every pending job goes, backups included.
	h.must(CmdRevokeAgent, RevokeAgent{Name: "a1"})
	got = StrandedJobs(h.state(), h.now, timeout)
	if len(got) != 1 || got[0].JobID != "b1" || !strings.Contains(got[0].Reason, "revoked") {
		t.Fatalf("stranded after revocation = %+v", got)
	}
}

// A runner whose lease was taken back cannot record a verdict or a
// verification: its report is refused and changes nothing.
func TestStaleReportsRecordNothing(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.drillSetup(wk, "")
	h.must(CmdCreateJobs, CreateJobs{Jobs: []NewJob{
		{ID: "d1", Kind: KindDrill, Trigger: TriggerManual, Policy: "p", Agent: "a1"},
		{ID: "v1", Kind: KindVerify, Trigger: TriggerManual, Repository: "r", Agent: "a1", Verify: &VerifyParams{Shards: []int{ShardOf(packID(1))}}},
	}})
	d := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", JobID: "d1", TTL: time.Minute}).(*Job)
	if _, err := h.apply(CmdLeaseJob, LeaseJob{Agent: "a1", JobID: "v1", TTL: time.Minute}); !errors.Is(err, ErrConflict) {
		t.Fatalf("a second maintenance job: err = %v, want conflict", err)
	}
	h.now = h.now.Add(2 * time.Minute)
	h.must(CmdExpireLease, ExpireLease{JobID: "d1", Token: d.Lease.Token})
	before := h.snapshot()
	passed := DrillReport{Passed: true, StartedAt: t0, FinishedAt: t0}
	if _, err := h.apply(CmdCompleteJob, CompleteJob{JobID: "d1", Agent: "a1", Token: d.Lease.Token, Success: true, Drill: &passed}); !errors.Is(err, ErrStaleLease) {
		t.Fatalf("stale drill verdict: err = %v", err)
	}
	if string(before) != string(h.snapshot()) || h.state().Drills["d1"] != nil {
		t.Fatal("a stale drill verdict changed the state")
	}
	// The verify job, leased now, reports after its deadline.
	vj := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", JobID: "v1", TTL: time.Minute}).(*Job)
	h.now = h.now.Add(2 * time.Minute)
	before = h.snapshot()
	rep := verifyReport(map[string]int64{packID(1): 10}, vj.Verify.Shards, nil)
	if _, err := h.apply(CmdCompleteJob, CompleteJob{JobID: "v1", Agent: "a1", Token: vj.Lease.Token, Success: true, Verify: rep}); !errors.Is(err, ErrStaleLease) {
		t.Fatalf("late verify report: err = %v", err)
	}
	if string(before) != string(h.snapshot()) || h.state().Coverage["r"] != nil {
		t.Fatal("a late verify report changed the coverage")
	}
}

// TestParseMaxUnused: a policy's retention.max_unused and 'lifeboat prune
// --max-unused' read the same forms.
func TestParseMaxUnused(t *testing.T) {
	for in, want := range map[string]float64{"": DefaultMaxUnused, "unlimited": -1, "10%": 0.1, " 5 % ": 0.05, "0.1": 0.1, "0": 0, "0%": 0, "99.5%": 0.995} {
		if got, err := ParseMaxUnused(in); err != nil || got != want {
			t.Errorf("ParseMaxUnused(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"5": "did you mean 5%?", "5 ": "did you mean 5%?", "1": "did you mean 1%?", "100%": "must be under 100%", "120%": "must be under 100%",
		"-1%": "want a percentage", "NaN": "want a percentage", "lots": `"unlimited"`, "Inf": "must be under 100%",
	} {
		if got, err := ParseMaxUnused(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseMaxUnused(%q) = %v, %v; want an error saying %q", in, got, err, msg)
		}
	}
}

// TestPruneJobKeepsItsRepository: a prune job records the repository its
// policy had when it was planned. Moving the policy to another repository
// then neither moves the prune (its work item names the first) nor lets a
// second prune start on the first repository, while the new one may get
// its own; the first repository cannot be removed under the job (from
// command version 6 on: an older entry replayed applies as it did).
func TestPruneJobKeepsItsRepository(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.drillSetup(wk, "")
	pol := h.state().Policies["p"].Policy
	pol.Retention = Retention{KeepLast: 3, Prune: "@every 1h"}
	h.must(CmdPutPolicy, PutPolicy{Policy: pol})
	h.now = t0.Add(61 * time.Minute)
	h.must(CmdAgentSeen, AgentSeen{Name: "a1", Capabilities: []string{CapDrill}})
	plan := PlanPrunes(h.state(), h.now, 2*time.Minute)
	if len(plan.Jobs) != 1 || plan.Jobs[0].Repository != "r" {
		t.Fatalf("plan = %+v; want one prune job of repository r", plan.Jobs)
	}
	h.must(CmdCreateJobs, CreateJobs{Jobs: plan.Jobs, PruneFired: plan.Fired})
	id := plan.Jobs[0].ID

	h.must(CmdAddRepository, AddRepository{Name: "r2", URL: "s3:bucket/r2", WriterKey: wk})
	moved := pol
	moved.Repository = "r2"
	h.must(CmdPutPolicy, PutPolicy{Policy: moved})
	q := pol
	q.Name = "q" // still on r
	h.must(CmdPutPolicy, PutPolicy{Policy: q})

	st := h.state()
	if got := st.jobRepository(st.Jobs[id]); got != "r" {
		t.Errorf("the pending prune's repository after its policy moved: %q, want r", got)
	}
	if pr := st.pruningRepos(); !pr["r"] || pr["r2"] {
		t.Errorf("repositories with a prune job: %v, want r only", pr)
	}
	if _, err := h.apply(CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "x", Kind: KindPrune, Trigger: TriggerManual, Policy: "q", Repository: "r", Agent: "a1"}}}); !errors.Is(err, ErrConflict) {
		t.Errorf("a second prune of r: %v, want a conflict", err)
	}
	h.must(CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "y", Kind: KindPrune, Trigger: TriggerManual, Policy: "p", Repository: "r2", Agent: "a1"}}})
	if _, err := h.apply(CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "z", Kind: KindPrune, Trigger: TriggerManual, Policy: "p", Repository: "nope", Agent: "a1"}}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("a prune job of an unknown repository: %v, want not found", err)
	}

	h.must(CmdDeletePolicy, DeletePolicy{Name: "q"})
	if _, err := h.apply(CmdRemoveRepository, RemoveRepository{Name: "r"}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), id) {
		t.Errorf("removing r under its pending prune job: %v, want a conflict naming %s", err, id)
	}
	// An entry of version 5 (a log written before the upgrade, replayed)
	// removes it, as it did when it was first applied.
	c, err := NewCommand(CmdRemoveRepository, "test", RemoveRepository{Name: "r"})
	if err != nil {
		t.Fatal(err)
	}
	c.Version, c.Time = 5, h.now
	b, _ := c.Encode()
	if res := h.raw(b); res.Err != nil || h.state().Repositories["r"] != nil {
		t.Fatalf("a version-5 removal replayed: %v", res.Err)
	}
}
