package coordinator

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// ---- drills and verification coverage -------------------------------------------

// DrillRunRequest is the (optional) body of POST /v1/policies/{name}/drill.
type DrillRunRequest struct {
	// Snapshot selects the snapshot to drill ("latest", "random-within:30d",
	// an ID); empty: the policy's drill.snapshot.
	Snapshot string `json:"snapshot,omitempty"`
}

// DrillRunResult answers POST /v1/policies/{name}/drill: the drill's ID,
// which is also its job's ID.
type DrillRunResult struct {
	ID    string `json:"id"`
	Agent string `json:"agent"`
}

func (a *API) runDrill(w http.ResponseWriter, r *http.Request, c *call) error {
	var q DrillRunRequest
	if len(bytes.TrimSpace(c.body)) > 0 {
		if err := decodeJSON(c.body, &q); err != nil {
			return err
		}
	}
	if err := CheckSnapshotSelector(q.Snapshot); err != nil {
		return badRequest("snapshot: %v", err)
	}
	return a.createRunnerJob(w, r, func(ctx context.Context, policy string) (string, error) {
		return a.node.RunDrill(ctx, c.p.Actor, policy, q.Snapshot)
	})
}

// runPrune answers POST /v1/policies/{name}/prune: a prune job of the
// policy's repository on one of its drill runners.
func (a *API) runPrune(w http.ResponseWriter, r *http.Request, c *call) error {
	if len(bytes.TrimSpace(c.body)) > 0 {
		var none struct{}
		if err := decodeJSON(c.body, &none); err != nil {
			return err
		}
	}
	return a.createRunnerJob(w, r, func(ctx context.Context, policy string) (string, error) {
		return a.node.RunPrune(ctx, c.p.Actor, policy)
	})
}

// createRunnerJob creates a job of the policy named in the path on one
// of its drill runners (with create, on the leader) and answers with its
// ID and agent.
func (a *API) createRunnerJob(w http.ResponseWriter, r *http.Request, create func(ctx context.Context, policy string) (string, error)) error {
	name, err := pathName(r, "name")
	if err != nil {
		return err
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.syncLeader(ctx); err != nil {
		return err
	}
	var id string
	if err := a.apply(func() (err error) { id, err = create(ctx, name); return err }); err != nil {
		return err
	}
	res := DrillRunResult{ID: id}
	a.node.View(func(s *State) {
		if j := s.Jobs[id]; j != nil {
			res.Agent = j.Agent
		}
	})
	writeJSON(w, http.StatusOK, res)
	return nil
}

// DrillView is a drill as the API lists it: its record once it has one,
// else the state of its job.
type DrillView struct {
	DrillRecord
	// State is "pending" or "running" while the drill's job has not
	// finished, then "passed" or "failed".
	State string `json:"state"`
}

func (a *API) listDrills(w http.ResponseWriter, r *http.Request, c *call) error {
	q := r.URL.Query()
	since, err := querySince(q, a.clock.Now())
	if err != nil {
		return err
	}
	policy := q.Get("policy")
	out := []DrillView{}
	a.node.View(func(s *State) {
		for _, d := range s.DrillsFor(policy, since) {
			out = append(out, DrillView{DrillRecord: d, State: drillState(d.Passed)})
		}
		for _, j := range s.FindJobs(JobFilter{Kind: KindDrill, Policy: policy}) {
			if !j.State.Final() && s.Drills[j.ID] == nil {
				out = append(out, DrillView{DrillRecord: DrillRecord{ID: j.ID, Policy: j.Policy, Runner: j.Agent, Trigger: j.Trigger,
					TriggeredBy: j.CreatedBy, DrillReport: DrillReport{StartedAt: j.StartedAt}}, State: string(j.State)})
			}
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func drillState(passed bool) string {
	if passed {
		return "passed"
	}
	return "failed"
}

func (a *API) getDrill(w http.ResponseWriter, r *http.Request, c *call) error {
	d, err := lookup(a, r, "id", "drill", func(s *State, id string) (DrillView, bool) {
		if d := s.Drills[id]; d != nil {
			for _, rec := range s.DrillsFor(d.Policy, d.StartedAt) {
				if rec.ID == id {
					return DrillView{DrillRecord: rec, State: drillState(rec.Passed)}, true
				}
			}
		}
		if j := s.Jobs[id]; j != nil && j.Kind == KindDrill {
			return DrillView{DrillRecord: DrillRecord{ID: j.ID, Policy: j.Policy, Runner: j.Agent, Trigger: j.Trigger,
				TriggeredBy: j.CreatedBy, DrillReport: DrillReport{StartedAt: j.StartedAt}}, State: string(j.State)}, true
		}
		return DrillView{}, false
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// ParseSince reads a "since": a duration back from now ("30d") or an
// RFC 3339 time; "" means the beginning (the zero time).
func ParseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("since %q: want a duration such as 30d or an RFC 3339 time", v)
	}
	return now.Add(-time.Duration(d)), nil
}

// querySince reads ?since= (see ParseSince).
func querySince(q url.Values, now time.Time) (time.Time, error) {
	t, err := ParseSince(q.Get("since"), now)
	if err != nil {
		return t, badRequest("%v", err)
	}
	return t, nil
}

func (a *API) coverage(w http.ResponseWriter, r *http.Request, c *call) error {
	var out []CoverageReport
	a.node.View(func(s *State) { out = s.CoverageOf(a.clock.Now()) })
	if out == nil {
		out = []CoverageReport{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// VerifyRequest is the (optional) body of POST /v1/repos/{name}/verify.
type VerifyRequest struct {
	All bool `json:"all,omitempty"` // every pack, not just the shards due
}

func (a *API) verifyRepo(w http.ResponseWriter, r *http.Request, c *call) error {
	name, err := pathName(r, "name")
	if err != nil {
		return err
	}
	var q VerifyRequest
	if len(bytes.TrimSpace(c.body)) > 0 {
		if err := decodeJSON(c.body, &q); err != nil {
			return err
		}
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.syncLeader(ctx); err != nil {
		return err
	}
	var id string
	if err := a.apply(func() (err error) { id, err = a.node.VerifyRepository(ctx, c.p.Actor, name, q.All); return err }); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, RunResult{Jobs: []string{id}})
	return nil
}
