package coordinator

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// evalState is a state with repository r, policy p (role=db, RPO 1h, RTO
// 10m, created at t0), agents a1 (db), a2 (db, revoked) and w1 (web), all
// last seen at t0.
func evalState() *State {
	s := NewState()
	s.Repositories["r"] = &Repository{Name: "r", URL: "s3:bucket/r"}
	s.Policies["p"] = &PolicyRecord{Policy: Policy{Name: "p", Repository: "r", Schedule: "@every 1h", Agents: map[string]string{"role": "db"},
		Targets: Targets{RPO: Duration(time.Hour), RTO: Duration(10 * time.Minute)}}, CreatedAt: t0, UpdatedAt: t0}
	s.Agents["a1"] = &Agent{Name: "a1", Labels: map[string]string{"role": "db"}, EnrolledAt: t0, LastSeen: t0}
	s.Agents["a2"] = &Agent{Name: "a2", Labels: map[string]string{"role": "db"}, EnrolledAt: t0, LastSeen: t0, Revoked: true}
	s.Agents["w1"] = &Agent{Name: "w1", Labels: map[string]string{"role": "web"}, EnrolledAt: t0, LastSeen: t0}
	return s
}

// backupJob adds a finished backup job; a succeeded one with snap set
// also gets a catalog entry made at snap.
func backupJob(s *State, id, agent string, st JobState, finished, snap time.Time, errMsg string) {
	j := &Job{ID: id, Kind: KindBackup, Policy: "p", Agent: agent, State: st, FinishedAt: finished, Result: &Result{Error: errMsg}}
	if st == JobSucceeded && !snap.IsZero() {
		j.Result.SnapshotID = "snap-" + id
		s.Catalog[j.Result.SnapshotID] = &CatalogEntry{ID: j.Result.SnapshotID, Repository: "r", Policy: "p", Host: "host-" + agent, Time: snap, JobID: id}
	}
	s.Jobs[id] = j
}

func evalAt(s *State, now time.Time) []Condition {
	return EvaluateAlerts(s, EvalInput{Now: now, Config: AlertConfig{AgentUnseenAfter: -1}})
}

func condKeys(conds []Condition, kind AlertKind) []string {
	var out []string
	for _, c := range conds {
		if c.Kind == kind {
			out = append(out, c.Key)
		}
	}
	return out
}

func findCond(t *testing.T, conds []Condition, key string) Condition {
	t.Helper()
	for _, c := range conds {
		if c.Key == key {
			return c
		}
	}
	t.Fatalf("no condition %q in %+v", key, conds)
	return Condition{}
}

func TestEvaluateRPO(t *testing.T) {
	const key = "rpo_missed/p/a1"
	cases := []struct {
		name  string
		setup func(s *State)
		now   time.Time
		want  bool
		msg   string // substring of the message when it fires
	}{
		{"no backup yet, within RPO of the policy's creation", nil, t0.Add(time.Hour), false, ""},
		{"no backup yet, past RPO of the policy's creation", nil, t0.Add(time.Hour + time.Second), true, "no good snapshot yet"},
		{"snapshot just under the target", func(s *State) {
			backupJob(s, "j1", "a1", JobSucceeded, t0.Add(40*time.Minute), t0.Add(30*time.Minute), "")
		}, t0.Add(90 * time.Minute), false, ""},
		{"snapshot just over the target (snapshot time, not job end)", func(s *State) {
			backupJob(s, "j1", "a1", JobSucceeded, t0.Add(40*time.Minute), t0.Add(30*time.Minute), "")
		}, t0.Add(90*time.Minute + time.Second), true, "newest good snapshot is from 2030-01-02 03:30:00 UTC, older than the RPO target of 1h"},
		{"job end when the snapshot is not in the catalog", func(s *State) {
			backupJob(s, "j1", "a1", JobSucceeded, t0.Add(40*time.Minute), time.Time{}, "")
		}, t0.Add(100 * time.Minute), false, ""},
		{"a failed backup does not count as good", func(s *State) {
			backupJob(s, "j1", "a1", JobSucceeded, t0.Add(40*time.Minute), t0.Add(30*time.Minute), "")
			backupJob(s, "j2", "a1", JobFailed, t0.Add(80*time.Minute), time.Time{}, "boom")
		}, t0.Add(91 * time.Minute), true, "03:30:00"},
		{"catalog entry of a pruned job counts for the agent named like its host", func(s *State) {
			s.Catalog["old"] = &CatalogEntry{ID: "old", Policy: "p", Host: "a1", Time: t0.Add(50 * time.Minute), JobID: "gone"}
		}, t0.Add(110 * time.Minute), false, ""},
		{"no RPO target", func(s *State) { s.Policies["p"].Policy.Targets.RPO = 0 }, t0.Add(100 * time.Hour), false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := evalState()
			if tc.setup != nil {
				tc.setup(s)
			}
			conds := evalAt(s, tc.now)
			got := condKeys(conds, AlertRPOMissed)
			// a2 is revoked and w1 is not selected: never alerted.
			if slices.Contains(got, "rpo_missed/p/a2") || slices.Contains(got, "rpo_missed/p/w1") {
				t.Fatalf("revoked or unselected agent alerted: %v", got)
			}
			if (len(got) == 1) != tc.want {
				t.Fatalf("rpo conditions %v, want firing=%v", got, tc.want)
			}
			if tc.want {
				c := findCond(t, conds, key)
				if !strings.Contains(c.Message, tc.msg) || !strings.Contains(c.Message, "RPO target of 1h") {
					t.Errorf("message %q lacks %q", c.Message, tc.msg)
				}
				// The message does not change as time passes.
				if later := findCond(t, evalAt(s, tc.now.Add(time.Hour)), key); later.Message != c.Message {
					t.Errorf("message changed with time: %q -> %q", c.Message, later.Message)
				}
			}
		})
	}
}

func TestEvaluateBackupFailed(t *testing.T) {
	s := evalState()
	s.Policies["p"].Policy.Targets.RPO = 0
	const key = "backup_failed/p/a1"
	now := t0.Add(time.Hour)
	if c := evalAt(s, now); len(c) != 0 {
		t.Fatalf("conditions without jobs: %+v", c)
	}
	backupJob(s, "j1", "a1", JobFailed, t0.Add(10*time.Minute), time.Time{}, "disk full (attempt 3 of 3)")
	backupJob(s, "j2", "a2", JobFailed, t0.Add(10*time.Minute), time.Time{}, "revoked agents do not alert")
	c := findCond(t, evalAt(s, now), key)
	if !strings.Contains(c.Message, "disk full") || !strings.Contains(c.Message, "j1") || c.Subject != "p/a1" {
		t.Errorf("message %q subject %q", c.Message, c.Subject)
	}
	if got := condKeys(evalAt(s, now), AlertBackupFailed); len(got) != 1 {
		t.Errorf("backup_failed conditions %v, want only %s", got, key)
	}
	// A cancelled job is neither failure nor success.
	s.Jobs["j3"] = &Job{ID: "j3", Kind: KindBackup, Policy: "p", Agent: "a1", State: JobCancelled, FinishedAt: t0.Add(20 * time.Minute)}
	if got := condKeys(evalAt(s, now), AlertBackupFailed); len(got) != 1 {
		t.Errorf("after a cancelled job: %v", got)
	}
	// A newer success resolves it.
	backupJob(s, "j4", "a1", JobSucceeded, t0.Add(30*time.Minute), t0.Add(25*time.Minute), "")
	if got := condKeys(evalAt(s, now), AlertBackupFailed); len(got) != 0 {
		t.Errorf("after a newer success: %v", got)
	}
	// A still newer failure opens it again.
	backupJob(s, "j5", "a1", JobFailed, t0.Add(40*time.Minute), time.Time{}, "again")
	if c := findCond(t, evalAt(s, now), key); !strings.Contains(c.Message, "again") {
		t.Errorf("message %q", c.Message)
	}
	// A deleted policy does not alert.
	delete(s.Policies, "p")
	if got := condKeys(evalAt(s, now), AlertBackupFailed); len(got) != 0 {
		t.Errorf("deleted policy: %v", got)
	}
}

func TestEvaluateDrillFailed(t *testing.T) {
	s := evalState()
	s.Policies["p"].Policy.Targets.RPO = 0
	s.Policies["p"].Policy.Drill = &DrillSpec{Runner: map[string]string{"role": "db"}}
	s.Drills["d1"] = &DrillRecord{ID: "d1", Policy: "p", DrillReport: DrillReport{Passed: true, StartedAt: t0, FinishedAt: t0.Add(time.Minute)}}
	if c := evalAt(s, t0.Add(time.Hour)); len(c) != 0 {
		t.Fatalf("passed drill alerts: %+v", c)
	}
	s.Drills["d2"] = &DrillRecord{ID: "d2", Policy: "p", DrillReport: DrillReport{Passed: false, Reasons: []string{"rto", "verify"}, Summary: "2 checks failed",
		StartedAt: t0.Add(time.Hour), FinishedAt: t0.Add(time.Hour + 25*time.Minute), RTOSeconds: 1500}}
	c := findCond(t, evalAt(s, t0.Add(2*time.Hour)), "drill_failed/p")
	for _, want := range []string{"drill d2 of policy p failed", "over its RTO target: restore took 25m, target 10m", "verify", "2 checks failed"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q lacks %q", c.Message, want)
		}
	}
	s.Drills["d3"] = &DrillRecord{ID: "d3", Policy: "p", DrillReport: DrillReport{Passed: false, Reasons: []string{ReasonRunner}, Summary: "drill could not run: no runner",
		StartedAt: t0.Add(2 * time.Hour), FinishedAt: t0.Add(2 * time.Hour)}}
	if c := findCond(t, evalAt(s, t0.Add(3*time.Hour)), "drill_failed/p"); !strings.Contains(c.Message, "could not run") {
		t.Errorf("runner message %q", c.Message)
	}
	s.Drills["d4"] = &DrillRecord{ID: "d4", Policy: "p", DrillReport: DrillReport{Passed: true, StartedAt: t0.Add(3 * time.Hour), FinishedAt: t0.Add(3 * time.Hour)}}
	if c := evalAt(s, t0.Add(4*time.Hour)); len(c) != 0 {
		t.Errorf("a newer passed drill still alerts: %+v", c)
	}
}

// TestEvaluateDrillFailedAfterRunnerClockAhead: a drill that passed on a
// runner whose clock was a day ahead does not hide a drill that failed
// after it: the newest is the one whose job the log created last.
func TestEvaluateDrillFailedAfterRunnerClockAhead(t *testing.T) {
	s := evalState()
	s.Policies["p"].Policy.Targets.RPO = 0
	s.Policies["p"].Policy.Drill = &DrillSpec{Runner: map[string]string{"role": "db"}}
	ahead := t0.Add(24 * time.Hour)
	s.Drills["d1"] = &DrillRecord{ID: "d1", Policy: "p", CreatedIndex: 100,
		DrillReport: DrillReport{Passed: true, StartedAt: ahead, FinishedAt: ahead.Add(time.Minute)}}
	s.Drills["d2"] = &DrillRecord{ID: "d2", Policy: "p", CreatedIndex: 120,
		DrillReport: DrillReport{Passed: false, Reasons: []string{"verify"}, StartedAt: t0.Add(time.Hour), FinishedAt: t0.Add(time.Hour + time.Minute)}}
	c := findCond(t, evalAt(s, t0.Add(2*time.Hour)), "drill_failed/p")
	if !strings.Contains(c.Message, "drill d2") {
		t.Errorf("message %q: want the failed drill d2's", c.Message)
	}
	if got := s.LatestDrill("p"); got == nil || got.ID != "d2" {
		t.Errorf("latest drill %+v, want d2", got)
	}
}

func TestEvaluatePruneFailed(t *testing.T) {
	s := evalState()
	s.Policies["p"].Policy.Targets.RPO = 0
	prune := func(id string, st JobState, finished time.Time, errMsg string) {
		s.Jobs[id] = &Job{ID: id, Kind: KindPrune, Policy: "p", Agent: "a1", State: st, FinishedAt: finished, Result: &Result{Error: errMsg}}
	}
	prune("p1", JobSucceeded, t0.Add(time.Hour), "")
	if c := evalAt(s, t0.Add(2*time.Hour)); len(c) != 0 {
		t.Fatalf("a succeeded prune alerts: %+v", c)
	}
	prune("p2", JobFailed, t0.Add(2*time.Hour), "prune refused: index file index/ab12 is damaged (attempt 3 of 3)")
	prune("p3", JobCancelled, t0.Add(3*time.Hour), "")
	c := findCond(t, evalAt(s, t0.Add(4*time.Hour)), "prune_failed/p")
	for _, want := range []string{"prune of repository r (policy p) failed", "job p2", "index/ab12 is damaged", "not freed"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q lacks %q", c.Message, want)
		}
	}
	if c.Subject != "p" || c.Kind != AlertPruneFailed {
		t.Errorf("condition %+v", c)
	}
	prune("p4", JobSucceeded, t0.Add(5*time.Hour), "")
	if c := evalAt(s, t0.Add(6*time.Hour)); len(c) != 0 {
		t.Errorf("a newer succeeded prune still alerts: %+v", c)
	}
	// A prune schedule whose instants pass without a job (no runner):
	// prune_failed once one has waited PruneOverdue.
	// ("@every 6h" fires at 00:00, 06:00, 12:00 and 18:00 UTC; t0 is 03:00.)
	s.Policies["p"].Policy.Retention.Prune = "@every 6h"
	s.PruneFired["p"] = t0.Add(9 * time.Hour) // 12:00 fired; 18:00 is next
	if c := condKeys(evalAt(s, t0.Add(15*time.Hour+30*time.Minute)), AlertPruneFailed); len(c) != 0 {
		t.Errorf("a prune due for 30 minutes alerts: %v", c)
	}
	c = findCond(t, evalAt(s, t0.Add(16*time.Hour+time.Minute)), "prune_failed/p")
	if !strings.Contains(c.Message, "due since") || !strings.Contains(c.Message, "no connected drill runner") || !c.Since.Equal(t0.Add(15*time.Hour)) {
		t.Errorf("overdue prune: %+v", c)
	}
	s.PruneFired["p"] = t0.Add(15 * time.Hour) // a job was created
	if c := condKeys(evalAt(s, t0.Add(16*time.Hour+time.Minute)), AlertPruneFailed); len(c) != 0 {
		t.Errorf("after the due prune was planned: %v", c)
	}
	if v := (SyncAlerts{Open: []Condition{{Kind: AlertPruneFailed}}}).minVersion(); v != 5 {
		t.Errorf("a sync opening a prune_failed alert is version %d, want 5", v)
	}
}

func TestEvaluateVerifyDamage(t *testing.T) {
	s := evalState()
	s.Policies["p"].Policy.Targets.RPO = 0
	cov := newCoverage()
	cov.Packs[strings.Repeat("ff", 32)] = &PackState{Verified: t0}
	for i := range 7 {
		cov.Packs[fmt.Sprintf("%02x", i)+strings.Repeat("0", 62)] = &PackState{Damaged: "hash mismatch", FailedAt: t0.Add(time.Duration(i) * time.Minute)}
	}
	s.Coverage["r"] = cov
	c := findCond(t, evalAt(s, t0.Add(time.Hour)), "verify_damage/r")
	if !strings.Contains(c.Message, "7 damaged packs") || !strings.Contains(c.Message, "and 2 more") ||
		!strings.Contains(c.Message, "04"+strings.Repeat("0", 62)) || strings.Contains(c.Message, "05"+strings.Repeat("0", 62)) || !c.Since.Equal(t0) {
		t.Errorf("condition %+v", c)
	}
	for id := range cov.Packs {
		cov.Packs[id].Damaged = ""
	}
	if got := evalAt(s, t0.Add(time.Hour)); len(got) != 0 {
		t.Errorf("reverified packs still alert: %+v", got)
	}
}

func TestEvaluateAgentUnseen(t *testing.T) {
	s := evalState()
	s.Policies["p"].Policy.Targets.RPO = 0
	cfg := AlertConfig{AgentUnseenAfter: 10 * time.Minute}
	eval := func(now, started time.Time) []string {
		return condKeys(EvaluateAlerts(s, EvalInput{Now: now, Config: cfg, Started: started}), AlertAgentUnseen)
	}
	if got := eval(t0.Add(10*time.Minute), time.Time{}); len(got) != 0 {
		t.Errorf("at the threshold: %v", got)
	}
	// a2 is revoked: never unseen.
	if got := eval(t0.Add(10*time.Minute+time.Second), time.Time{}); !slices.Equal(got, []string{"agent_unseen/a1", "agent_unseen/w1"}) {
		t.Errorf("past the threshold: %v", got)
	}
	// A leader that just took over waits a threshold before it reports
	// an agent newly unseen, but keeps reporting one already open.
	started := t0.Add(time.Hour)
	s.Alerts["agent_unseen/w1"] = &Alert{Key: "agent_unseen/w1", Kind: AlertAgentUnseen, OpenedAt: t0}
	if got := eval(started.Add(time.Minute), started); !slices.Equal(got, []string{"agent_unseen/w1"}) {
		t.Errorf("just after a leader change: %v", got)
	}
	if got := eval(started.Add(11*time.Minute), started); len(got) != 2 {
		t.Errorf("a threshold after a leader change: %v", got)
	}
	c := findCond(t, EvaluateAlerts(s, EvalInput{Now: t0.Add(time.Hour), Config: cfg}), "agent_unseen/a1")
	if !strings.Contains(c.Message, "2030-01-02 03:00:00 UTC") || !strings.Contains(c.Message, "threshold 10m") {
		t.Errorf("message %q", c.Message)
	}
	if cfg.AgentUnseenAfter = -1; len(eval(t0.Add(100*time.Hour), time.Time{})) != 0 {
		t.Error("negative threshold still alerts")
	}
}

func TestDiffAlerts(t *testing.T) {
	s := evalState()
	now := t0.Add(time.Hour)
	s.Alerts["a/open-same"] = &Alert{Key: "a/open-same", Kind: AlertAgentUnseen, Message: "m", OpenedAt: t0}
	s.Alerts["a/open-changed"] = &Alert{Key: "a/open-changed", Kind: AlertAgentUnseen, Message: "old", OpenedAt: t0}
	s.Alerts["a/open-gone"] = &Alert{Key: "a/open-gone", Kind: AlertAgentUnseen, Message: "m", OpenedAt: t0}
	s.Alerts["a/resolved-back"] = &Alert{Key: "a/resolved-back", Kind: AlertAgentUnseen, Message: "m", OpenedAt: t0, ResolvedAt: t0.Add(time.Minute)}
	s.Alerts["a/resolved-old"] = &Alert{Key: "a/resolved-old", Kind: AlertAgentUnseen, Message: "m", OpenedAt: t0.Add(-9 * 24 * time.Hour), ResolvedAt: t0.Add(-8 * 24 * time.Hour)}
	conds := []Condition{
		{Key: "a/new", Kind: AlertAgentUnseen, Message: "m"},
		{Key: "a/open-changed", Kind: AlertAgentUnseen, Message: "new"},
		{Key: "a/open-same", Kind: AlertAgentUnseen, Message: "m"},
		{Key: "a/resolved-back", Kind: AlertAgentUnseen, Message: "m"},
	}
	sync, changed := DiffAlerts(s, conds, now, AlertHistory)
	keys := func(cs []Condition) (out []string) {
		for _, c := range cs {
			out = append(out, c.Key)
		}
		return out
	}
	if !changed || !slices.Equal(keys(sync.Open), []string{"a/new", "a/resolved-back"}) || !slices.Equal(keys(sync.Update), []string{"a/open-changed"}) ||
		!slices.Equal(sync.Resolve, []string{"a/open-gone"}) || !sync.PruneBefore.Equal(now.Add(-AlertHistory)) {
		t.Fatalf("diff: changed=%v %+v", changed, sync)
	}
	delete(s.Alerts, "a/resolved-old")
	s.Alerts["a/open-gone"].ResolvedAt = now
	if _, changed := DiffAlerts(s, []Condition{{Key: "a/open-same", Kind: AlertAgentUnseen, Message: "m"}, {Key: "a/open-changed", Kind: AlertAgentUnseen, Message: "old"}}, now, AlertHistory); changed {
		t.Error("no change reported as a change")
	}
}

// TestLatestDrillMixedIndexes: drill records from before jobs kept their
// Raft index (0) and after it are ordered the same way whatever order the
// map gives them: the indexed ones are newer. Before, d10 beat the old
// record by start, d20 beat d10 by index and the old one beat d20 by
// start: a cycle, and the newest changed with the iteration order.
func TestLatestDrillMixedIndexes(t *testing.T) {
	s := evalState()
	s.Drills["old"] = &DrillRecord{ID: "old", Policy: "p", DrillReport: DrillReport{Passed: true, StartedAt: t0.Add(2 * time.Hour)}}
	s.Drills["d10"] = &DrillRecord{ID: "d10", Policy: "p", CreatedIndex: 10, DrillReport: DrillReport{Passed: true, StartedAt: t0.Add(3 * time.Hour)}}
	s.Drills["d20"] = &DrillRecord{ID: "d20", Policy: "p", CreatedIndex: 20, DrillReport: DrillReport{Passed: false, StartedAt: t0.Add(time.Hour)}}
	for range 200 {
		if got := s.LatestDrill("p"); got == nil || got.ID != "d20" {
			t.Fatalf("latest drill %+v, want d20 (the last created)", got)
		}
	}
}
