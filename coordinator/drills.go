package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Restore drills, as the coordinator sees them. A drill is a job of kind
// drill, leased to one runner: an agent that announced CapDrill (it was
// started with --identity) and matches the policy's drill.runner selector.
// The runner restores a snapshot into scratch space, verifies it, runs the
// policy's verify commands and reports a verdict. The coordinator keeps the
// evidence as a DrillRecord, longer than job history, and never sees the
// identity or the restored data: only the report.
//
// Every drill job ends in exactly one record: the runner's verdict (passed
// or not; a failed verdict is final and not retried, since running it again
// would only hide the failure), or, when the drill could not run at all
// (no runner, lease lost on every attempt, repository unreachable), a
// record with reason "runner" and the error.

// MaxDrillResult bounds the drill result a runner may report (bytes of
// JSON). Verify command output is already cut to a tail by the runner.
const MaxDrillResult = 64 << 10

// MaxDrillsPerPolicy bounds the records kept per policy: the oldest go
// first (also after DrillHistory).
const MaxDrillsPerPolicy = 500

// DrillHistory is how long drill records are kept (audit evidence
// outlives job history).
const DrillHistory = 400 * 24 * time.Hour

// DrillParams is what a drill job needs beyond its policy.
type DrillParams struct {
	// Snapshot selects the snapshot: "latest", "random-within:30d" or an
	// ID (prefix). Empty: the policy's drill.snapshot, or latest.
	Snapshot string `json:"snapshot,omitempty"`
}

// DrillRecord is the evidence of one drill: who ran it and why, and the
// runner's report.
type DrillRecord struct {
	ID          string  `json:"id"` // the drill job's ID
	Policy      string  `json:"policy"`
	Runner      string  `json:"runner,omitempty"`
	Trigger     Trigger `json:"trigger"`
	TriggeredBy string  `json:"triggered_by,omitempty"` // the actor of a manual drill
	// CreatedIndex is the drill job's Job.CreatedIndex.
	CreatedIndex uint64 `json:"created_index,omitempty"`
	DrillReport
}

// DrillReport is what a runner reports with a drill job (CompleteJob.Drill).
type DrillReport struct {
	Passed     bool      `json:"passed"`
	Reasons    []string  `json:"reasons,omitempty"` // failure reasons, sorted in a record
	Summary    string    `json:"summary,omitempty"`
	SnapshotID string    `json:"snapshot_id,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	RTOSeconds float64   `json:"rto_seconds"`
	RPOSeconds float64   `json:"rpo_seconds"`
	// Result is the runner's full result (the drill package's Result
	// as JSON): files, bytes, checks, failures. Empty for a drill that
	// could not run.
	Result json.RawMessage `json:"result,omitempty"`
}

// ReasonRunner is the failure reason of a drill that could not run.
const ReasonRunner = "runner"

func (r *DrillReport) validate() error {
	switch {
	case len(r.Result) > MaxDrillResult:
		return invalid("drill result of %d bytes exceeds %d", len(r.Result), MaxDrillResult)
	case len(r.Result) > 0 && !json.Valid(r.Result):
		return invalid("drill result is not valid JSON")
	case r.Passed && len(r.Reasons) > 0:
		return invalid("a passed drill reports failure reasons %v", r.Reasons)
	case !r.Passed && len(r.Reasons) == 0:
		return invalid("a failed drill reports no failure reason")
	case r.RTOSeconds < 0 || r.RPOSeconds < 0:
		return invalid("negative RTO or RPO")
	}
	return nil
}

// recordDrill stores the record of drill job j.
func (s *State) recordDrill(j *Job, runner string, r DrillReport) {
	r.Reasons = sortedStrings(r.Reasons)
	r.StartedAt, r.FinishedAt = r.StartedAt.UTC(), r.FinishedAt.UTC()
	r.Result = slices.Clone(r.Result)
	s.Drills[j.ID] = &DrillRecord{ID: j.ID, Policy: j.Policy, Runner: runner, Trigger: j.Trigger, TriggeredBy: j.CreatedBy, CreatedIndex: j.CreatedIndex, DrillReport: r}
	var mine []*DrillRecord
	for _, id := range sortedKeys(s.Drills) {
		if d := s.Drills[id]; d.Policy == j.Policy {
			mine = append(mine, d)
		}
	}
	if extra := len(mine) - MaxDrillsPerPolicy; extra > 0 {
		sort.SliceStable(mine, func(a, b int) bool { return mine[a].StartedAt.Before(mine[b].StartedAt) })
		for _, d := range mine[:extra] {
			delete(s.Drills, d.ID)
		}
	}
}

// recordDrillNotRun records a drill job that ended without a verdict.
func (s *State) recordDrillNotRun(j *Job, t time.Time, why string) {
	runner := j.Agent
	if j.Lease != nil {
		runner = j.Lease.Holder
	}
	started := j.StartedAt
	if started.IsZero() {
		started = t
	}
	s.recordDrill(j, runner, DrillReport{Reasons: []string{ReasonRunner}, Summary: "drill could not run: " + why,
		StartedAt: started, FinishedAt: t})
}

// DrillsFor returns the drill records of policy (all when empty) that
// started at or after since, oldest first.
func (s *State) DrillsFor(policy string, since time.Time) []DrillRecord {
	var out []DrillRecord
	for _, id := range sortedKeys(s.Drills) {
		d := s.Drills[id]
		if (policy == "" || d.Policy == policy) && !d.StartedAt.Before(since) {
			c := *d
			c.Reasons = slices.Clone(d.Reasons)
			c.Result = slices.Clone(d.Result)
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].StartedAt.Before(out[b].StartedAt) })
	return out
}

// LatestDrill returns policy's newest drill record, or nil.
func (s *State) LatestDrill(policy string) *DrillRecord { return s.LatestDrills()[policy] }

// LatestDrills returns each policy's newest drill record, in one pass over
// the records (callers that want every policy's use this, not a
// LatestDrill per policy). Not used by the FSM: what is newest may be
// judged differently by another release.
func (s *State) LatestDrills() map[string]*DrillRecord {
	out := map[string]*DrillRecord{}
	for _, d := range s.Drills {
		if best := out[d.Policy]; best == nil || newerDrill(d, best) {
			out[d.Policy] = d
		}
	}
	return out
}

// newerDrill reports whether drill record d is newer than b: by the Raft
// index of the job that ran it, which no clock can disturb, and by its
// start for records of jobs from before jobs kept that index. A record's
// times are the runner's clock's (or the leader's, for a drill that did
// not run): a runner whose clock was a day ahead made its drill the
// newest for a day, and a drill that failed after it raised no alert.
// A record with an index is newer than one without: its job was created
// after every job from before the index. Comparing such a pair by start
// could make the order cyclic (an old record started at 2:00, indexed
// ones at 3:00 and, created later, 1:00: each beats the one before), and
// the newest would then depend on the map's iteration order.
func newerDrill(d, b *DrillRecord) bool {
	if (d.CreatedIndex == 0) != (b.CreatedIndex == 0) {
		return d.CreatedIndex != 0
	}
	if d.CreatedIndex != b.CreatedIndex {
		return d.CreatedIndex > b.CreatedIndex
	}
	return d.StartedAt.After(b.StartedAt) || d.StartedAt.Equal(b.StartedAt) && d.ID > b.ID
}

// DrillRunners returns the names of the agents that may run policy's
// drills at t: connected (seen within timeout), not revoked, holding an
// identity, and matching the drill's runner selector. Sorted.
func (s *State) DrillRunners(p *Policy, t time.Time, timeout time.Duration) []string {
	var sel map[string]string
	if p.Drill != nil {
		sel = p.Drill.Runner
	}
	var out []string
	for _, name := range s.AgentNames() {
		a := s.Agents[name]
		if !a.Revoked && a.Can(CapDrill) && t.Sub(a.LastSeen) <= timeout && SelectorMatches(sel, a.Labels) {
			out = append(out, name)
		}
	}
	return out
}

// pickAgent chooses one of names (sorted) for key, deterministically and
// spread evenly over many keys.
func pickAgent(names []string, key string) string {
	if len(names) == 0 {
		return ""
	}
	h := sha256.Sum256([]byte("pick\x00" + key))
	var v uint64
	for _, b := range h[:8] {
		v = v<<8 | uint64(b)
	}
	return names[v%uint64(len(names))]
}

// DrillJobID is the deterministic ID of policy's scheduled drill at instant.
func DrillJobID(policy string, instant time.Time) string {
	return maintenanceJobID("dr-", "drill", policy, instant)
}

// maintenanceJobID is the deterministic ID of a scheduled maintenance
// job: prefix and 16 hex digits of a hash of (kind, subject, instant).
func maintenanceJobID(prefix, kind, subject string, instant time.Time) string {
	h := sha256.Sum256([]byte(kind + "\x00" + subject + "\x00" + instant.UTC().Format(time.RFC3339Nano)))
	return prefix + hex.EncodeToString(h[:8])
}

// RecordDrill stores a drill record the leader made for a drill that could
// not even be leased (no runner connected at its scheduled instant).
type RecordDrill struct {
	Policy      string    `json:"policy"`
	ID          string    `json:"id"`
	ScheduledAt time.Time `json:"scheduled_at"`
	Trigger     Trigger   `json:"trigger"`
	Reason      string    `json:"reason"`
	// Fired advances the policy's drill watermark with the record.
	Fired time.Time `json:"fired,omitzero"`
}

func recordDrillCmd(s *State, c *Command, index uint64, p *RecordDrill) (outcome, error) {
	switch {
	case p.ID == "" || p.Reason == "":
		return outcome{}, invalid("drill record without an ID or reason")
	case s.Policies[p.Policy] == nil:
		return outcome{}, notFound("policy", p.Policy)
	}
	advanced := false
	if !p.Fired.IsZero() && p.Fired.After(s.DrillFired[p.Policy]) {
		s.DrillFired[p.Policy] = p.Fired.UTC()
		advanced = true
	}
	if s.Drills[p.ID] != nil || s.Jobs[p.ID] != nil {
		return outcome{noop: !advanced}, nil
	}
	j := &Job{ID: p.ID, Kind: KindDrill, Trigger: p.Trigger, Policy: p.Policy, ScheduledAt: p.ScheduledAt.UTC(), CreatedIndex: index}
	if p.Trigger == TriggerManual {
		j.CreatedBy = c.Actor
	}
	s.recordDrillNotRun(j, c.Time, p.Reason)
	return outcome{target: "drill/" + p.ID}, nil
}

// pruneDrills deletes drill records that started before cutoff.
func (s *State) pruneDrills(cutoff time.Time) int {
	n := 0
	for _, id := range sortedKeys(s.Drills) {
		if s.Drills[id].StartedAt.Before(cutoff) {
			delete(s.Drills, id)
			n++
		}
	}
	return n
}

// ---- planning --------------------------------------------------------------

// DrillPlan is what PlanDrills returns for one call.
type DrillPlan struct {
	Jobs   []NewJob
	Fired  map[string]time.Time // policy -> new drill watermark
	NotRun []RecordDrill        // instants with no runner: recorded as failed drills
	Errors []PolicyError
}

// PlanDrills plans the drill jobs due at now: for each policy with a drill
// schedule, its newest due instant (older missed instants are not caught
// up: a drill is expensive and one is enough to prove the present state),
// leased to one runner chosen by a hash of (policy, instant). It is pure,
// like Plan: the same inputs give the same jobs.
func PlanDrills(s *State, now time.Time, agentTimeout time.Duration) DrillPlan {
	out := DrillPlan{Fired: map[string]time.Time{}}
	for _, name := range s.PolicyNames() {
		pr := s.Policies[name]
		d := pr.Policy.Drill
		if d == nil || d.Schedule == "" {
			continue
		}
		inst, due, err := latestDue(d.Schedule, s.DrillFired, pr, now)
		if err != nil {
			out.Errors = append(out.Errors, PolicyError{Policy: name, Err: "drill.schedule: " + err.Error()})
			continue
		}
		if !due {
			continue
		}
		out.Fired[name] = inst
		id := DrillJobID(name, inst)
		if s.Jobs[id] != nil || s.Drills[id] != nil {
			continue
		}
		runners := s.DrillRunners(&pr.Policy, now, agentTimeout)
		if len(runners) == 0 {
			out.NotRun = append(out.NotRun, RecordDrill{Policy: name, ID: id, ScheduledAt: inst, Trigger: TriggerSchedule,
				Reason: noRunnerReason(&pr.Policy), Fired: inst})
			continue
		}
		out.Jobs = append(out.Jobs, NewJob{ID: id, Kind: KindDrill, Trigger: TriggerSchedule, Policy: name,
			Agent: pickAgent(runners, id), ScheduledAt: inst, NotBefore: inst, Drill: &DrillParams{}})
	}
	return out
}

// latestDue parses a policy's maintenance schedule (drill, prune) and
// returns its newest instant after the policy's watermark in fired (or
// its creation) up to now, if there is one. Older missed instants are not
// caught up: one run proves, or cleans up, the present state.
func latestDue(spec string, fired map[string]time.Time, pr *PolicyRecord, now time.Time) (time.Time, bool, error) {
	sched, err := ParseSchedule(spec)
	if err != nil {
		return time.Time{}, false, err
	}
	due, _ := dueInstants(sched, scheduleStart(fired, pr).UTC(), now, 1)
	if len(due) == 0 {
		return time.Time{}, false, nil
	}
	return due[len(due)-1], true, nil
}

// scheduleStart is when a policy's drill or prune schedule counts from:
// its last fired instant, or the policy's creation if that is later (a
// schedule set anew does not fire for the time before).
func scheduleStart(fired map[string]time.Time, pr *PolicyRecord) time.Time {
	start, ok := fired[pr.Policy.Name]
	if !ok || pr.CreatedAt.After(start) {
		start = pr.CreatedAt
	}
	return start
}

func noRunnerReason(p *Policy) string {
	var sel map[string]string
	if p.Drill != nil {
		sel = p.Drill.Runner
	}
	desc := "any agent"
	if len(sel) > 0 {
		var kv []string
		for _, k := range policyKeys(sel) {
			kv = append(kv, k+"="+sel[k])
		}
		desc = "runner selector " + strings.Join(kv, ",")
	}
	return fmt.Sprintf("no connected drill runner matches %s (a runner is an agent an admin allowed to run drills — 'lifeboat agent grant NAME --drill-runner' — "+
		"started with 'lifeboat agent --identity FILE' and matching --label)", desc)
}

// StrandedJobs returns the pending jobs that would wait forever: every
// pending job of a revoked agent, and pending verify and drill jobs whose
// agent has not been in touch for longer than timeout (and that have
// waited that long). A backup job waits for its agent (it runs when the
// agent is back); a drill or verify job is the coordinator's to plan
// again: a cancelled drill job is recorded as not run, and the next
// verification run picks up the shards. Sorted by job ID.
func StrandedJobs(s *State, now time.Time, timeout time.Duration) []CancelJob {
	var out []CancelJob
	for _, id := range sortedKeys(s.Jobs) {
		j := s.Jobs[id]
		if j.State != JobPending {
			continue
		}
		a := s.Agents[j.Agent]
		switch {
		case a == nil || a.Revoked:
			out = append(out, CancelJob{JobID: id, Reason: fmt.Sprintf("agent %s was revoked", j.Agent)})
		case maintenance(j.Kind) && now.Sub(a.LastSeen) > timeout && now.Sub(j.CreatedAt) > timeout:
			out = append(out, CancelJob{JobID: id, Reason: fmt.Sprintf("agent %s has not been in touch since %s",
				j.Agent, a.LastSeen.UTC().Format(time.RFC3339))})
		}
	}
	return out
}
