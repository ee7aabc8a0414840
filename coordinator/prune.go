package coordinator

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Scheduled prune. 'lifeboat prune' needs the identity, which the
// coordinator never holds; drill runners do. A policy whose retention sets
// a prune schedule has one of its drill runners (chosen as for its drills)
// prune the policy's repository at each instant of that schedule. The
// repository's garbage-collection protocol (docs/format.md) keeps it safe
// beside running backups and other prunes; the coordinator only schedules
// and records. Missed instants are not caught up (one prune does all the
// work there is), and a repository with a prune job pending or running
// gets no second one.

// DefaultMaxUnused is a scheduled prune's max_unused when the policy sets
// none, and the default of 'lifeboat prune --max-unused' and 'forget
// --prune': restic tolerates 5 %, which rewrites more; 10 % halves the
// repacking for a little more space.
const DefaultMaxUnused = 0.10

// ParseMaxUnused reads a prune's share of unused data tolerated, as a
// policy's retention.max_unused and 'lifeboat prune --max-unused' give it:
// "" (DefaultMaxUnused), a percentage under 100 ("10%"), a fraction under
// 1 ("0.1"), or "unlimited" (-1: nothing is repacked).
func ParseMaxUnused(s string) (float64, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return DefaultMaxUnused, nil
	case "unlimited":
		return -1, nil
	}
	num, pct := strings.CutSuffix(s, "%")
	num = strings.TrimSpace(num)
	v, err := strconv.ParseFloat(num, 64)
	switch {
	case err != nil || !(v >= 0):
		return 0, fmt.Errorf("%q: want a percentage under 100 like \"10%%\", a fraction like 0.1, or \"unlimited\"", s)
	case !pct && v >= 1 && v < 100:
		return 0, fmt.Errorf("%q: a fraction must be under 1; did you mean %s%%?", s, num)
	case pct && v >= 100 || !pct && v >= 1:
		return 0, fmt.Errorf("%q: must be under 100%% (\"unlimited\" repacks nothing)", s)
	}
	if pct {
		v /= 100
	}
	return v, nil
}

// PruneSummary is what a prune job reports and its result shows.
type PruneSummary struct {
	Snapshots     int   `json:"snapshots"`
	Packs         int   `json:"packs"`
	PackBytes     int64 `json:"pack_bytes"`
	MarkedPacks   int   `json:"marked_packs"`
	DeletedPacks  int   `json:"deleted_packs"`
	DeletedBytes  int64 `json:"deleted_bytes"`
	RepackedPacks int   `json:"repacked_packs"`
	RepackWritten int64 `json:"repack_written_bytes"`
	// PendingMarks wait for WaitingFor backups to end: the next prune
	// deletes their packs.
	PendingMarks int `json:"pending_marks"`
	WaitingFor   int `json:"waiting_for"`
}

func (p *PruneSummary) validate() error {
	for _, v := range []int64{int64(p.Snapshots), int64(p.Packs), p.PackBytes, int64(p.MarkedPacks), int64(p.DeletedPacks),
		p.DeletedBytes, int64(p.RepackedPacks), p.RepackWritten, int64(p.PendingMarks), int64(p.WaitingFor)} {
		if v < 0 {
			return invalid("prune summary: negative count %+v", *p)
		}
	}
	return nil
}

// PruneJobID is the deterministic ID of policy's scheduled prune at
// instant.
func PruneJobID(policy string, instant time.Time) string {
	return maintenanceJobID("pr-", "prune", policy, instant)
}

// PrunePlan is what PlanPrunes returns.
type PrunePlan struct {
	Jobs  []NewJob
	Fired map[string]time.Time // policy -> new watermark
	// Unassigned are the policies whose due prune found no drill runner
	// (their watermark does not move: the prune runs once one is back).
	Unassigned []PolicyError
	Errors     []PolicyError
}

// PlanPrunes plans the prune jobs due at now: for each policy whose
// retention sets a prune schedule, its newest due instant, on one of its
// drill runners. Pure, like Plan.
func PlanPrunes(s *State, now time.Time, agentTimeout time.Duration) PrunePlan {
	out := PrunePlan{Fired: map[string]time.Time{}}
	pruning := s.pruningRepos() // and those planned here
	for _, name := range s.PolicyNames() {
		pr := s.Policies[name]
		spec := pr.Policy.Retention.Prune
		if spec == "" {
			continue
		}
		inst, due, err := latestDue(spec, s.PruneFired, pr, now)
		if err != nil {
			out.Errors = append(out.Errors, PolicyError{Policy: name, Err: "retention.prune: " + err.Error()})
			continue
		}
		if !due {
			continue
		}
		out.Fired[name] = inst
		id := PruneJobID(name, inst)
		repo := pr.Policy.Repository
		if s.Jobs[id] != nil || pruning[repo] {
			continue
		}
		runners := s.DrillRunners(&pr.Policy, now, agentTimeout)
		if len(runners) == 0 {
			// Not fired: the next tick tries again, until a runner is back.
			delete(out.Fired, name)
			out.Unassigned = append(out.Unassigned, PolicyError{Policy: name, Err: noRunnerReason(&pr.Policy)})
			continue
		}
		pruning[repo] = true
		out.Jobs = append(out.Jobs, NewJob{ID: id, Kind: KindPrune, Trigger: TriggerSchedule, Policy: name, Repository: repo,
			Agent: pickAgent(runners, id), ScheduledAt: inst, NotBefore: inst})
	}
	return out
}

// pruningRepos returns the repositories that have a prune job pending or
// running: one pass over the jobs for every policy that asks.
func (s *State) pruningRepos() map[string]bool {
	repos := map[string]bool{}
	for _, j := range s.Jobs {
		if j.Kind != KindPrune || j.State.Final() {
			continue
		}
		if repo := s.jobRepository(j); repo != "" {
			repos[repo] = true
		}
	}
	return repos
}

// finishedPrunes are a policy's newest finished prune job and its newest
// successful one (nil if none).
type finishedPrunes struct{ last, good *Job }

// latestPrunes is finishedPrunes for each policy with a finished prune
// job (jobs in ID order, so equal finishing times resolve the same way
// every time).
func (s *State) latestPrunes() map[string]finishedPrunes {
	out := map[string]finishedPrunes{}
	for _, id := range sortedKeys(s.Jobs) {
		j := s.Jobs[id]
		if j.Kind != KindPrune || (j.State != JobSucceeded && j.State != JobFailed) {
			continue
		}
		f := out[j.Policy]
		if f.last == nil || j.FinishedAt.After(f.last.FinishedAt) {
			f.last = j
		}
		if j.State == JobSucceeded && (f.good == nil || j.FinishedAt.After(f.good.FinishedAt)) {
			f.good = j
		}
		out[j.Policy] = f
	}
	return out
}

// jobRepository is the repository job j works on (JobRepository, with
// the policy as the state holds it now).
func (s *State) jobRepository(j *Job) string {
	var p *Policy
	if pr := s.Policies[j.Policy]; pr != nil {
		p = &pr.Policy
	}
	return JobRepository(j, p)
}

// JobRepository is the repository job j works on: its own (verify and
// prune jobs record it), else its policy p's ("" if p is nil: the policy
// is gone).
func JobRepository(j *Job, p *Policy) string {
	if j.Repository != "" {
		return j.Repository
	}
	if p != nil {
		return p.Repository
	}
	return ""
}

// pruneRunning reports whether repo has a prune job pending or running.
func (s *State) pruneRunning(repo string) bool { return s.pruningRepos()[repo] }
