package coordinator

import (
	"net/http"
	"sort"
	"time"
)

// PolicyStatus is how a policy is doing against its recovery point
// objective.
type PolicyStatus struct {
	Name         string    `json:"name"`
	Repository   string    `json:"repository"`
	Schedule     string    `json:"schedule"`
	Agents       []string  `json:"agents"` // agents the selector matches
	LastSuccess  time.Time `json:"last_success,omitzero"`
	LastSnapshot string    `json:"last_snapshot,omitempty"`
	RPOTarget    Duration  `json:"rpo_target,omitempty"`
	RPOAchieved  Duration  `json:"rpo_achieved"` // age of the newest good snapshot (since creation if none)
	Overdue      bool      `json:"overdue"`
	Pending      int       `json:"pending"`
	Running      int       `json:"running"`
	Failed       int       `json:"failed"`
	LastFired    time.Time `json:"last_fired,omitzero"`
	NextRun      time.Time `json:"next_run,omitzero"`
	ScheduleLag  Duration  `json:"schedule_lag,omitempty"` // how late the next instant is
	RTOTarget    Duration  `json:"rto_target,omitempty"`
	// LastDrill is the policy's newest restore drill (nil: none yet).
	LastDrill *DrillBrief `json:"last_drill,omitempty"`
}

// DrillBrief is a drill in a status report.
type DrillBrief struct {
	ID         string    `json:"id"`
	Passed     bool      `json:"passed"`
	StartedAt  time.Time `json:"started_at"`
	RTOSeconds float64   `json:"rto_seconds"`
	RPOSeconds float64   `json:"rpo_seconds"`
	Reasons    []string  `json:"reasons,omitempty"`
}

// AgentPolicy is one policy's state on one agent.
type AgentPolicy struct {
	Policy      string    `json:"policy"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	RPOAchieved Duration  `json:"rpo_achieved"`
	Overdue     bool      `json:"overdue"`
}

// AgentStatus is how an agent is doing across the policies that select it.
type AgentStatus struct {
	Name        string        `json:"name"`
	Connected   bool          `json:"connected"`
	Revoked     bool          `json:"revoked,omitempty"`
	LastSeen    time.Time     `json:"last_seen"`
	Running     int           `json:"running"`
	LastSuccess time.Time     `json:"last_success,omitzero"`
	Overdue     bool          `json:"overdue"`
	Policies    []AgentPolicy `json:"policies"`
}

// StatusReport is the response of GET /v1/status.
type StatusReport struct {
	Time     time.Time      `json:"time"`
	Node     string         `json:"node"`
	Leader   string         `json:"leader"`
	Policies []PolicyStatus `json:"policies"`
	Agents   []AgentStatus  `json:"agents"`
	Overdue  []string       `json:"overdue"` // policy or policy/agent that missed its RPO
	// Coverage is each repository's pack verification coverage.
	Coverage []CoverageReport `json:"coverage"`
}

// computeStatus derives the report from the state at now. A policy (or a
// policy on an agent) is overdue when it has an RPO target and its newest
// good snapshot — or, without one, its creation — is older than that.
func computeStatus(s *State, now time.Time, agentTimeout time.Duration) StatusReport {
	rep := StatusReport{Time: now, Policies: []PolicyStatus{}, Agents: []AgentStatus{}, Overdue: []string{}, Coverage: s.CoverageOf(now)}
	if rep.Coverage == nil {
		rep.Coverage = []CoverageReport{}
	}
	type key struct{ policy, agent string }
	last := map[key]time.Time{}
	lastSnap := map[string]string{}
	note := func(policy, agent string, t time.Time, snap string) {
		if k := (key{policy, agent}); t.After(last[k]) {
			last[k] = t
		}
		if k := (key{policy, ""}); t.After(last[k]) {
			last[k] = t
			lastSnap[policy] = snap
		}
	}
	counts := map[string]*PolicyStatus{}
	for _, name := range s.PolicyNames() {
		counts[name] = &PolicyStatus{}
	}
	for _, j := range s.Jobs {
		ps := counts[j.Policy]
		if ps != nil && j.Kind == KindBackup {
			switch j.State {
			case JobPending:
				ps.Pending++
			case JobRunning:
				ps.Running++
			case JobFailed:
				ps.Failed++
			}
		}
		if j.State == JobSucceeded && j.Kind == KindBackup {
			t, snap := j.FinishedAt, ""
			if j.Result != nil {
				snap = j.Result.SnapshotID
				if e := s.Catalog[snap]; e != nil {
					t = e.Time
				}
			}
			note(j.Policy, j.Agent, t, snap)
		}
	}
	for _, e := range s.Catalog { // jobs are pruned; the catalog stays
		agent := ""
		if j := s.Jobs[e.JobID]; j != nil {
			agent = j.Agent
		}
		if e.Policy != "" {
			note(e.Policy, agent, e.Time, e.ID)
		}
	}
	age := func(t, created time.Time) time.Duration {
		if t.IsZero() {
			t = created
		}
		return max(now.Sub(t), 0)
	}
	agentPolicies := map[string][]AgentPolicy{}
	latest := s.LatestDrills()
	for _, name := range s.PolicyNames() {
		pr := s.Policies[name]
		p := pr.Policy
		ps := counts[name]
		ps.Name, ps.Repository, ps.Schedule, ps.RPOTarget, ps.RTOTarget = p.Name, p.Repository, p.Schedule, p.Targets.RPO, p.Targets.RTO
		if d := latest[name]; d != nil {
			ps.LastDrill = &DrillBrief{ID: d.ID, Passed: d.Passed, StartedAt: d.StartedAt, RTOSeconds: d.RTOSeconds,
				RPOSeconds: d.RPOSeconds, Reasons: append([]string(nil), d.Reasons...)}
		}
		ps.Agents = []string{}
		ps.LastSuccess, ps.LastSnapshot = last[key{name, ""}], lastSnap[name]
		ps.RPOAchieved = Duration(age(ps.LastSuccess, pr.CreatedAt))
		target := time.Duration(p.Targets.RPO)
		ps.Overdue = target > 0 && time.Duration(ps.RPOAchieved) > target
		if lf, ok := s.LastFired[name]; ok {
			ps.LastFired = lf
			if sched, err := ParseSchedule(p.Schedule); err == nil {
				if next := sched.Next(lf); !next.IsZero() {
					ps.NextRun = next
					if lag := now.Sub(next); lag > 0 {
						ps.ScheduleLag = Duration(lag)
					}
				}
			}
		}
		if ps.Overdue {
			rep.Overdue = append(rep.Overdue, name)
		}
		for _, an := range s.AgentNames() {
			a := s.Agents[an]
			if a.Revoked || !SelectorMatches(p.Agents, a.Labels) {
				continue
			}
			ps.Agents = append(ps.Agents, an)
			t := last[key{name, an}]
			created := pr.CreatedAt
			if a.EnrolledAt.After(created) {
				created = a.EnrolledAt
			}
			ap := AgentPolicy{Policy: name, LastSuccess: t, RPOAchieved: Duration(age(t, created))}
			ap.Overdue = target > 0 && time.Duration(ap.RPOAchieved) > target
			if ap.Overdue {
				rep.Overdue = append(rep.Overdue, name+"/"+an)
			}
			agentPolicies[an] = append(agentPolicies[an], ap)
		}
		rep.Policies = append(rep.Policies, *ps)
	}
	for _, an := range s.AgentNames() {
		a := s.Agents[an]
		as := AgentStatus{Name: an, Revoked: a.Revoked, LastSeen: a.LastSeen, Running: len(a.Running),
			Connected: !a.Revoked && now.Sub(a.LastSeen) <= agentTimeout, Policies: agentPolicies[an]}
		if as.Policies == nil {
			as.Policies = []AgentPolicy{}
		}
		for _, ap := range as.Policies {
			if ap.LastSuccess.After(as.LastSuccess) {
				as.LastSuccess = ap.LastSuccess
			}
			as.Overdue = as.Overdue || ap.Overdue
		}
		rep.Agents = append(rep.Agents, as)
	}
	return rep
}

func (a *API) status(w http.ResponseWriter, _ *http.Request, _ *call) error {
	now := a.clock.Now().UTC()
	var rep StatusReport
	a.node.View(func(s *State) { rep = computeStatus(s, now, a.node.cfg.AgentTimeout) })
	rep.Node = a.node.ID()
	rep.Leader, _ = a.node.Leader()
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (a *API) listSnapshots(w http.ResponseWriter, r *http.Request, _ *call) error {
	q := r.URL.Query()
	policy, repo, host := q.Get("policy"), q.Get("repository"), q.Get("host")
	out := []CatalogEntry{}
	a.node.View(func(s *State) {
		for _, e := range s.Catalog {
			if (policy == "" || e.Policy == policy) && (repo == "" || e.Repository == repo) && (host == "" || e.Host == host) {
				out = append(out, *e)
			}
		}
	})
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID < out[j].ID
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}
