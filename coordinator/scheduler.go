package coordinator

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sort"
	"time"
)

// The scheduler is a pure function: Plan(PlanInput) returns the backup jobs
// that are due, computed only from its input. It reads no clock, draws no
// random numbers and never lets map iteration order reach its output, so two
// nodes (or one node twice) given the same input plan byte-identical jobs.
//
// Exactly-once works like this. Each policy has a watermark, LastFired: every
// instant of its schedule at or before the watermark has been turned into
// jobs. The leader loop calls Plan with the watermarks from replicated state,
// then proposes the returned jobs together with the advanced watermarks in
// one Raft command. If the leader dies before that command commits, the next
// leader sees the old watermark and plans the same instants again, getting
// the same job IDs (JobID is a hash of policy, instant and agent); if it
// died after, the watermark has moved and nothing is planned twice. Existing
// lets the caller drop IDs already in state, for belt and braces.
//
// Concurrency limits (Policy.MaxConcurrent, per-agent limits) are not applied
// here: they decide when a pending job may be leased, which the FSM does at
// lease time. Running and RunningByAgent are accepted so a caller can pass
// them, but Plan never withholds a job because of them — withholding would
// lose the instant.

// DefaultMaxCatchUp bounds how many missed instants of one policy a single
// Plan call fires when PlanInput.MaxCatchUp is 0.
const DefaultMaxCatchUp = 1000

// JobKindBackup is the Kind of scheduled backup jobs.
const JobKindBackup = "backup"

// AgentInfo is what the planner knows about an agent.
type AgentInfo struct {
	Name   string
	Labels map[string]string
	// Connected says the agent was seen within the leader's liveness
	// threshold. Disconnected agents get no jobs for the instants planned
	// while they are away; the runs are reported in PlanResult.Missed (and
	// show up as RPO misses), rather than queued up for when they return.
	Connected bool
	// Awaited marks a disconnected agent that may only have had no leader
	// to report to: the leader has led for less than the liveness
	// threshold (the whole cluster was down, or had no quorum, for longer
	// than that). Plan holds the instants of a policy that targets it —
	// they are neither fired nor missed, and the watermark stays — until it
	// is seen again or the leader has led for the threshold.
	Awaited bool
	Revoked bool // revoked agents never get jobs
}

// PlanInput is everything Plan looks at.
type PlanInput struct {
	Now      time.Time
	Policies []Policy
	Agents   []AgentInfo
	// LastFired is each policy's watermark: the latest instant already
	// turned into jobs (all earlier ones are done too).
	LastFired map[string]time.Time
	// PolicyCreated is when each policy was first applied (not last
	// updated: an update must not drop instants); a policy never fires for
	// instants at or before it. A policy with neither a watermark nor a
	// creation time starts at Now (and Plan returns Now as its watermark).
	PolicyCreated map[string]time.Time
	// Existing reports job IDs already present in state (optional).
	Existing func(jobID string) bool
	// Running and RunningByAgent count running jobs per policy and per
	// agent. Informational: limits are applied at lease time (see above).
	Running        map[string]int
	RunningByAgent map[string]int
	// MaxCatchUp bounds the instants of one policy fired per call
	// (0: DefaultMaxCatchUp). When more are due, the oldest are skipped
	// and reported in PlanResult.Skipped.
	MaxCatchUp int
	// MaxJobs bounds the jobs returned per call (0: no bound) so a caller
	// can keep Raft commands small. Instants are never split: all agents'
	// jobs of one instant come in the same call, so a call may return up
	// to (agents - 1) more than MaxJobs. PlanResult.More says whether due
	// instants are left for the next call.
	MaxJobs int
}

// PlannedJob is one backup run to create.
type PlannedJob struct {
	ID          string
	Policy      string
	Agent       string
	Kind        string    // JobKindBackup
	ScheduledAt time.Time // the schedule instant (UTC)
	NotBefore   time.Time // ScheduledAt plus the agent's deterministic jitter
}

// SkippedInstant reports instants of a policy that were due but not fired
// because more than MaxCatchUp were missed (e.g. the whole cluster was down
// for a long time). Count instants from First to Last inclusive were skipped.
type SkippedInstant struct {
	Policy      string
	First, Last time.Time
	Count       int
}

// MissedRun is a (policy, instant, agent) that got no job because the agent
// was not connected at planning time.
type MissedRun struct {
	Policy      string
	Agent       string
	ScheduledAt time.Time
}

// PolicyError reports a policy Plan could not schedule (its schedule does
// not parse, e.g. a CRON_TZ zone unknown to this node). Its watermark does
// not move, so it catches up once the problem is fixed.
type PolicyError struct {
	Policy string
	Err    string
}

// PlanResult is what the leader should propose.
type PlanResult struct {
	Jobs []PlannedJob
	// LastFired holds the new watermark of every policy whose watermark
	// moved in this call (only those): persist them with the jobs.
	LastFired map[string]time.Time
	Skipped   []SkippedInstant
	Missed    []MissedRun
	Errors    []PolicyError
	// More is true when MaxJobs stopped the plan before all due instants
	// were processed: call Plan again after proposing this result.
	More bool
}

// JobID is the deterministic ID of the backup job of policy for agent at
// the scheduled instant: "bk-" and the first 16 hex digits of SHA-256 over
// policy, the instant in RFC 3339 UTC with nanoseconds, and agent, separated
// by NUL bytes.
func JobID(policy string, instant time.Time, agent string) string {
	h := sha256.New()
	h.Write([]byte(policy))
	h.Write([]byte{0})
	h.Write([]byte(instant.UTC().Format(time.RFC3339Nano)))
	h.Write([]byte{0})
	h.Write([]byte(agent))
	return "bk-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// JitterFor returns the deterministic delay in [0, max) of an agent's runs
// of a policy. It depends only on the policy and agent names, so each agent
// keeps the same slot from run to run while the fleet is spread over max.
func JitterFor(policy, agent string, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	h := sha256.New()
	h.Write([]byte("jitter\x00"))
	h.Write([]byte(policy))
	h.Write([]byte{0})
	h.Write([]byte(agent))
	v := binary.BigEndian.Uint64(h.Sum(nil)[:8])
	return time.Duration(v % uint64(max))
}

// SelectorMatches reports whether labels satisfy selector: every selector
// key must be present with an equal value. The empty selector matches all.
func SelectorMatches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// RetryDelay is how long a failed or expired job waits before its next
// attempt: 30s after the first failure, doubling, capped at 30 minutes.
func RetryDelay(attempt int) time.Duration {
	const (
		base = 30 * time.Second
		max  = 30 * time.Minute
	)
	if attempt < 1 {
		attempt = 1
	}
	d := base
	for i := 1; i < attempt; i++ {
		d *= 2
		if d >= max {
			return max
		}
	}
	return d
}

// Plan returns the jobs due at in.Now. See the comment at the top of this
// file for the exactly-once contract.
func Plan(in PlanInput) PlanResult {
	res := PlanResult{LastFired: map[string]time.Time{}}
	maxCatchUp := in.MaxCatchUp
	if maxCatchUp <= 0 {
		maxCatchUp = DefaultMaxCatchUp
	}
	agents := planAgentOrder(in.Agents)

	seen := map[string]bool{}
	for _, p := range planPolicyOrder(in.Policies) {
		if seen[p.Name] {
			res.Errors = append(res.Errors, PolicyError{Policy: p.Name, Err: "duplicate policy name: only the first is scheduled"})
			continue
		}
		seen[p.Name] = true
		start, known := watermark(p.Name, in)
		if !known {
			res.LastFired[p.Name] = start
		}
		sched, err := ParseSchedule(p.Schedule)
		if err != nil {
			res.Errors = append(res.Errors, PolicyError{Policy: p.Name, Err: err.Error()})
			continue
		}
		if in.MaxJobs > 0 && len(res.Jobs) >= in.MaxJobs {
			if t := sched.Next(start); !t.IsZero() && !t.After(in.Now) {
				res.More = true
			}
			continue
		}
		due, skipped := dueInstants(sched, start, in.Now, maxCatchUp)
		if skipped.Count > 0 {
			skipped.Policy = p.Name
			res.Skipped = append(res.Skipped, skipped)
			// The skipped instants are done with, even if MaxJobs stops us
			// before the first kept one.
			res.LastFired[p.Name] = skipped.Last
		}
		var targets []AgentInfo
		for _, a := range agents {
			if !a.Revoked && SelectorMatches(p.Agents, a.Labels) {
				targets = append(targets, a)
			}
		}
		awaited := false
		for _, a := range targets {
			awaited = awaited || (a.Awaited && !a.Connected)
		}
		for i, inst := range due {
			if in.MaxJobs > 0 && len(res.Jobs) >= in.MaxJobs {
				res.More = true
				break
			}
			if awaited {
				break // planned once the agent is seen or given up on
			}
			for _, a := range targets {
				if !a.Connected {
					res.Missed = append(res.Missed, MissedRun{Policy: p.Name, Agent: a.Name, ScheduledAt: inst})
					continue
				}
				id := JobID(p.Name, inst, a.Name)
				if in.Existing != nil && in.Existing(id) {
					continue
				}
				res.Jobs = append(res.Jobs, PlannedJob{
					ID:          id,
					Policy:      p.Name,
					Agent:       a.Name,
					Kind:        JobKindBackup,
					ScheduledAt: inst,
					NotBefore:   inst.Add(JitterFor(p.Name, a.Name, time.Duration(p.Jitter))),
				})
			}
			res.LastFired[p.Name] = due[i]
		}
	}
	return res
}

// NextDue returns when Plan will next have something to do: the earliest
// next instant over all policies (or in.Now if an instant is already due),
// so the leader loop can sleep until then. It returns the zero time when no
// policy will ever fire.
func NextDue(in PlanInput) time.Time {
	var next time.Time
	for _, p := range in.Policies {
		sched, err := ParseSchedule(p.Schedule)
		if err != nil {
			continue
		}
		start, _ := watermark(p.Name, in)
		t := sched.Next(start)
		if t.IsZero() {
			continue
		}
		if !t.After(in.Now) {
			return in.Now.UTC()
		}
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}

// watermark is where planning of policy resumes: the later of its
// LastFired and creation time, or Now if neither is known (known=false).
func watermark(policy string, in PlanInput) (t time.Time, known bool) {
	lf, okL := in.LastFired[policy]
	cr, okC := in.PolicyCreated[policy]
	switch {
	case okL && okC:
		if cr.After(lf) {
			return cr.UTC(), true
		}
		return lf.UTC(), true
	case okL:
		return lf.UTC(), true
	case okC:
		return cr.UTC(), true
	}
	return in.Now.UTC(), false
}

// dueInstants returns the newest max instants in (start, now], oldest
// first, and a summary of the older ones it left out. The walk is linear in
// the number of due instants; for "@every" the skipped ones are counted
// arithmetically.
func dueInstants(s Schedule, start, now time.Time, max int) ([]time.Time, SkippedInstant) {
	var skipped SkippedInstant
	if !now.After(start) {
		return nil, skipped
	}
	if s.every > 0 {
		first := s.Next(start)
		if first.After(now) {
			return nil, skipped
		}
		n := int64(now.Sub(first)/s.every) + 1 // instants in [first, now]
		if now.Sub(first) < 0 {
			n = 0
		}
		if n > int64(max) {
			skip := n - int64(max)
			skipped = SkippedInstant{First: first, Last: first.Add(time.Duration(skip-1) * s.every), Count: int(skip)}
			start = skipped.Last
		}
		return Instants(s, start, now, max), skipped
	}
	var ring []time.Time
	head := 0 // index of the oldest kept instant once the ring is full
	for t := s.Next(start); !t.IsZero() && !t.After(now); t = s.Next(t) {
		if len(ring) < max {
			ring = append(ring, t)
			continue
		}
		if skipped.Count == 0 {
			skipped.First = ring[head]
		}
		skipped.Last = ring[head]
		skipped.Count++
		ring[head] = t
		head = (head + 1) % max
	}
	out := make([]time.Time, 0, len(ring))
	out = append(out, ring[head:]...)
	out = append(out, ring[:head]...)
	return out, skipped
}

func planPolicyOrder(ps []Policy) []Policy {
	out := append([]Policy(nil), ps...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func planAgentOrder(as []AgentInfo) []AgentInfo {
	out := append([]AgentInfo(nil), as...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
