package coordinator

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Condition is one problem EvaluateAlerts found: what an open alert says.
// Its Message depends only on the state, never on how much time passed, so
// a problem that merely goes on does not change its alert.
type Condition struct {
	Key     string    `json:"key"`
	Kind    AlertKind `json:"kind"`
	Subject string    `json:"subject"`
	Message string    `json:"message"`
	Since   time.Time `json:"since,omitzero"`
}

// EvalInput is what EvaluateAlerts needs besides the state.
type EvalInput struct {
	Now    time.Time
	Config AlertConfig
	// Started is when the evaluating leader took over (or its clock
	// last jumped forward). Agent contacts are replicated, but an agent
	// that was talking to a cluster without a leader could not record
	// them: no agent is newly reported unseen until AgentUnseenAfter has
	// passed since Started.
	Started time.Time
}

// EvaluateAlerts returns the problems that exist in s at in.Now, sorted by
// key. It is pure: the same state and input give the same conditions.
//
//   - backup_failed/POLICY/AGENT: the newest finished (succeeded or failed)
//     backup of the policy on the agent failed.
//   - rpo_missed/POLICY/AGENT: the policy has an RPO target and the agent's
//     newest good snapshot (its time, or the job's end) is older than it;
//     with none ever, the policy's creation (or the agent's enrollment, if
//     later) is the reference, so a new policy gets one RPO before it alerts.
//   - drill_failed/POLICY: the policy has a drill block and its newest
//     drill did not pass.
//   - verify_damage/REPO: verification found damaged packs that have not
//     verified since.
//   - agent_unseen/AGENT: a non-revoked agent not in touch for longer than
//     AgentUnseenAfter.
//   - prune_failed/POLICY: the newest finished prune job of the policy
//     failed (after its retries), or its scheduled prune has been due for
//     PruneOverdue without starting (no drill runner).
func EvaluateAlerts(s *State, in EvalInput) []Condition {
	cfg := in.Config.withDefaults()
	now := in.Now.UTC()
	var out []Condition
	out = append(out, backupConditions(s, now)...)
	out = append(out, drillConditions(s)...)
	out = append(out, pruneConditions(s, now)...)
	out = append(out, damageConditions(s)...)
	if cfg.AgentUnseenAfter > 0 {
		for _, name := range s.AgentNames() {
			a := s.Agents[name]
			key := string(AlertAgentUnseen) + "/" + name
			if a.Revoked || now.Sub(a.LastSeen) <= cfg.AgentUnseenAfter {
				continue
			}
			if open := s.Alerts[key]; (open == nil || !open.Firing()) && now.Sub(in.Started) <= cfg.AgentUnseenAfter {
				continue
			}
			out = append(out, Condition{Key: key, Kind: AlertAgentUnseen, Subject: name, Since: a.LastSeen,
				Message: fmt.Sprintf("agent %s has not been in touch since %s (threshold %s)", name, stamp(a.LastSeen), Duration(cfg.AgentUnseenAfter))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// backupConditions finds failed newest backups and RPO misses.
func backupConditions(s *State, now time.Time) []Condition {
	type pa struct{ policy, agent string }
	newest := map[pa]*Job{}    // newest finished backup (succeeded or failed)
	good := map[pa]time.Time{} // newest good snapshot time
	noteGood := func(k pa, t time.Time) {
		if t.After(good[k]) {
			good[k] = t
		}
	}
	for _, id := range sortedKeys(s.Jobs) {
		j := s.Jobs[id]
		if j.Kind != KindBackup || (j.State != JobSucceeded && j.State != JobFailed) {
			continue
		}
		k := pa{j.Policy, j.Agent}
		if cur := newest[k]; (cur == nil || j.FinishedAt.After(cur.FinishedAt)) && !beforePolicy(s, j.Policy, j.CreatedIndex) {
			newest[k] = j
		}
		if j.State == JobSucceeded {
			t := j.FinishedAt
			if j.Result != nil {
				if e := s.Catalog[j.Result.SnapshotID]; e != nil {
					t = e.Time
				}
			}
			noteGood(k, t)
		}
	}
	// Jobs are pruned after a while; the catalog stays. A snapshot whose
	// job is gone counts for the agent of the same name as its host.
	for _, id := range sortedKeys(s.Catalog) {
		e := s.Catalog[id]
		if e.Policy == "" {
			continue
		}
		agent := e.Host
		if j := s.Jobs[e.JobID]; j != nil {
			agent = j.Agent
		}
		noteGood(pa{e.Policy, agent}, e.Time)
	}

	var out []Condition
	for _, name := range s.PolicyNames() {
		pr := s.Policies[name]
		target := time.Duration(pr.Policy.Targets.RPO)
		for _, an := range s.AgentNames() {
			a := s.Agents[an]
			if a.Revoked || !SelectorMatches(pr.Policy.Agents, a.Labels) {
				continue
			}
			k := pa{name, an}
			subject := name + "/" + an
			if j := newest[k]; j != nil && j.State == JobFailed {
				why := "failed"
				if j.Result != nil && j.Result.Error != "" {
					why = j.Result.Error
				}
				out = append(out, Condition{Key: string(AlertBackupFailed) + "/" + subject, Kind: AlertBackupFailed, Subject: subject,
					Since: j.FinishedAt, Message: fmt.Sprintf("backup of policy %s on agent %s failed at %s (job %s): %s", name, an, stamp(j.FinishedAt), j.ID, why)})
			}
			if target <= 0 {
				continue
			}
			last, ok := good[k]
			ref := last
			if !ok {
				ref = pr.CreatedAt
				if a.EnrolledAt.After(ref) {
					ref = a.EnrolledAt
				}
			}
			if now.Sub(ref) <= target {
				continue
			}
			msg := fmt.Sprintf("policy %s on agent %s: newest good snapshot is from %s, older than the RPO target of %s", name, an, stamp(last), Duration(target))
			if !ok {
				msg = fmt.Sprintf("policy %s on agent %s: no good snapshot yet, counting from %s, longer than the RPO target of %s", name, an, stamp(ref), Duration(target))
			}
			out = append(out, Condition{Key: string(AlertRPOMissed) + "/" + subject, Kind: AlertRPOMissed, Subject: subject, Since: ref, Message: msg})
		}
	}
	return out
}

// beforePolicy reports whether a job (or drill) created at Raft index
// created is older than policy name: a failure of an earlier, deleted
// policy of the same name is not a problem of this one (its good
// snapshots still count for the RPO: they are real restore points).
// Raft indices, not times: a failure after the leader's clock stepped
// back before the policy's creation time is this policy's. Records from
// before indices were kept (0) count, unless the policy is newer.
func beforePolicy(s *State, name string, created uint64) bool {
	pr := s.Policies[name]
	return pr != nil && created < pr.CreatedIndex
}

// drillConditions finds policies whose newest drill did not pass. A
// policy without a drill block has no drill problem: its records stay for
// the evidence, but removing the block resolves the alert (a deleted
// policy's resolves as every alert of it does).
func drillConditions(s *State) []Condition {
	var out []Condition
	latest := s.LatestDrills()
	for _, name := range s.PolicyNames() {
		d := latest[name]
		if d == nil || d.Passed || s.Policies[name].Policy.Drill == nil || beforePolicy(s, name, d.CreatedIndex) {
			continue
		}
		var why []string
		for _, r := range d.Reasons {
			switch r {
			case "rto":
				w := "restore took longer than its RTO target"
				if rto := s.Policies[name].Policy.Targets.RTO; rto > 0 {
					w = fmt.Sprintf("over its RTO target: restore took %s, target %s", Duration(time.Duration(d.RTOSeconds*float64(time.Second)).Round(time.Second)), rto)
				}
				why = append(why, w)
			case ReasonRunner:
				why = append(why, "could not run")
			default:
				why = append(why, r)
			}
		}
		msg := fmt.Sprintf("drill %s of policy %s failed: %s", d.ID, name, strings.Join(why, "; "))
		if d.Summary != "" {
			msg += " — " + d.Summary
		}
		out = append(out, Condition{Key: string(AlertDrillFailed) + "/" + name, Kind: AlertDrillFailed, Subject: name, Since: d.FinishedAt, Message: msg})
	}
	return out
}

// PruneOverdue is how long a scheduled prune may wait for a drill runner
// before prune_failed fires.
const PruneOverdue = time.Hour

// pruneConditions finds policies whose newest finished prune job failed,
// or whose scheduled prune has waited PruneOverdue for a runner: their
// repository is not being cleaned up, and grows.
func pruneConditions(s *State, now time.Time) []Condition {
	newest := s.latestPrunes()
	var out []Condition
	pruning := s.pruningRepos()
	for _, name := range s.PolicyNames() {
		j := newest[name].last
		if j == nil || j.State != JobFailed || beforePolicy(s, name, j.CreatedIndex) {
			if c, ok := pruneOverdue(s, name, now, pruning); ok {
				out = append(out, c)
			}
			continue
		}
		why := "failed"
		if j.Result != nil && j.Result.Error != "" {
			why = j.Result.Error
		}
		out = append(out, Condition{Key: string(AlertPruneFailed) + "/" + name, Kind: AlertPruneFailed, Subject: name, Since: j.FinishedAt,
			Message: fmt.Sprintf("prune of repository %s (policy %s) failed at %s on %s (job %s): %s; unused data is not freed until a prune succeeds",
				s.jobRepository(j), name, stamp(j.FinishedAt), j.Agent, j.ID, why)})
	}
	return out
}

// pruneOverdue reports a scheduled prune of policy name that has been due
// for PruneOverdue without a job (its watermark stays while no drill
// runner is connected, see PlanPrunes, or while the leader cannot create
// the job); pruning is State.pruningRepos.
func pruneOverdue(s *State, name string, now time.Time, pruning map[string]bool) (Condition, bool) {
	pr := s.Policies[name]
	if pr.Policy.Retention.Prune == "" || pruning[pr.Policy.Repository] {
		return Condition{}, false
	}
	sched, err := ParseSchedule(pr.Policy.Retention.Prune)
	if err != nil {
		return Condition{}, false
	}
	due := sched.Next(scheduleStart(s.PruneFired, pr))
	if due.IsZero() || now.Sub(due) <= PruneOverdue {
		return Condition{}, false
	}
	return Condition{Key: string(AlertPruneFailed) + "/" + name, Kind: AlertPruneFailed, Subject: name, Since: due,
		Message: fmt.Sprintf("scheduled prune of repository %s (policy %s) due since %s has not started: %s (or the leader could not create the job: see its log for \"propose\")",
			pr.Policy.Repository, name, stamp(due), noRunnerReason(&pr.Policy))}, true
}

// damageConditions finds repositories with damaged packs.
func damageConditions(s *State) []Condition {
	const show = 5
	var out []Condition
	for _, repo := range sortedKeys(s.Coverage) {
		if s.Repositories[repo] == nil {
			continue
		}
		cov := s.Coverage[repo]
		var ids []string
		var since time.Time
		for id, ps := range cov.Packs { // sorted below: only the damaged ones
			if ps.Damaged != "" {
				ids = append(ids, id)
				if since.IsZero() || ps.FailedAt.Before(since) {
					since = ps.FailedAt
				}
			}
		}
		sort.Strings(ids)
		if len(ids) == 0 {
			continue
		}
		list := strings.Join(ids[:min(show, len(ids))], ", ")
		if len(ids) > show {
			list += fmt.Sprintf(" and %d more", len(ids)-show)
		}
		noun := "pack"
		if len(ids) > 1 {
			noun = "packs"
		}
		out = append(out, Condition{Key: string(AlertDamage) + "/" + repo, Kind: AlertDamage, Subject: repo, Since: since,
			Message: fmt.Sprintf("repository %s: verification found %d damaged %s: %s (run 'lifeboat check' with the identity to see which snapshots are affected; 'lifeboat repair packs' salvages what is intact in them, see docs/operations.md)", repo, len(ids), noun, list)})
	}
	return out
}

// DiffAlerts compares conds (EvaluateAlerts at now) with the alerts in s
// and returns the sync that brings them in line, and whether it changes
// anything.
func DiffAlerts(s *State, conds []Condition, now time.Time, history time.Duration) (SyncAlerts, bool) {
	var sync SyncAlerts
	present := map[string]bool{}
	for _, cd := range conds {
		present[cd.Key] = true
		a := s.Alerts[cd.Key]
		switch {
		case a == nil || !a.Firing():
			sync.Open = append(sync.Open, cd)
			if a != nil && owesMessage(s, a) {
				sync.Keep = append(sync.Keep, cd.Key)
			}
		case a.Subject != cd.Subject || a.Message != cd.Message || !a.Since.Equal(cd.Since.UTC()):
			sync.Update = append(sync.Update, cd)
		}
	}
	prune := false
	for _, key := range sortedKeys(s.Alerts) {
		a := s.Alerts[key]
		if a.Firing() && !present[key] {
			sync.Resolve = append(sync.Resolve, key)
		}
		if !a.Firing() && now.Sub(a.ResolvedAt) > history {
			prune = true
		}
	}
	if prune {
		sync.PruneBefore = now.Add(-history)
	}
	return sync, len(sync.Open)+len(sync.Update)+len(sync.Resolve) > 0 || prune
}

// owesMessage reports whether some target in s is still owed a message
// about a.
func owesMessage(s *State, a *Alert) bool {
	for _, t := range s.AlertTargets {
		if owedPhase(a, t) != "" {
			return true
		}
	}
	return false
}
