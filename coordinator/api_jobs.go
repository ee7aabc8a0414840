package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// ---- jobs ----------------------------------------------------------------------

func (a *API) listJobs(w http.ResponseWriter, r *http.Request, _ *call) error {
	q := r.URL.Query()
	f := JobFilter{Policy: q.Get("policy"), Agent: q.Get("agent"), State: JobState(q.Get("state")), Kind: JobKind(q.Get("kind"))}
	switch f.State {
	case "", JobPending, JobRunning, JobSucceeded, JobFailed, JobCancelled:
	default:
		return badRequest("state=%q: want pending, running, succeeded, failed or cancelled", f.State)
	}
	if f.Kind != "" && !validKind(f.Kind) {
		return badRequest("kind=%q: want backup, verify or drill", f.Kind)
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return badRequest("limit=%q: want a non-negative number", v)
		}
		limit = n
	}
	var jobs []Job
	a.node.View(func(s *State) { jobs = s.FindJobs(f) })
	if limit > 0 && len(jobs) > limit {
		jobs = jobs[len(jobs)-limit:] // the newest
	}
	if jobs == nil {
		jobs = []Job{}
	}
	writeJSON(w, http.StatusOK, jobs)
	return nil
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request, _ *call) error {
	id, err := pathName(r, "id")
	if err != nil {
		return err
	}
	var j *Job
	a.node.View(func(s *State) {
		if x := s.Jobs[id]; x != nil {
			c := x.clone()
			j = &c
		}
	})
	if j == nil {
		return notFound("job", id)
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

// CancelRequest is the (optional) body of POST /v1/jobs/{id}/cancel.
type CancelRequest struct {
	Reason string `json:"reason,omitempty"`
}

func (a *API) cancelJob(w http.ResponseWriter, r *http.Request, c *call) error {
	id, err := pathName(r, "id")
	if err != nil {
		return err
	}
	var q CancelRequest
	if len(bytes.TrimSpace(c.body)) > 0 {
		if err := decodeJSON(c.body, &q); err != nil {
			return err
		}
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	var j *Job
	if err := a.apply(func() (err error) { j, err = a.node.CancelJob(ctx, c.p.Actor, id, q.Reason); return err }); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

// HeartbeatRequest is the body of POST /v1/jobs/{id}/heartbeat.
type HeartbeatRequest struct {
	Agent    string    `json:"agent"`
	Token    uint64    `json:"token"`
	TTL      Duration  `json:"ttl,omitempty"` // default: the API's lease TTL
	Progress *Progress `json:"progress,omitempty"`
}

// HeartbeatResult is the response to a heartbeat.
type HeartbeatResult struct {
	Deadline time.Time `json:"deadline"`
}

// CompleteRequest is the body of POST /v1/jobs/{id}/complete.
type CompleteRequest struct {
	Agent    string        `json:"agent"`
	Token    uint64        `json:"token"`
	Success  bool          `json:"success"`
	Error    string        `json:"error,omitempty"`
	Snapshot *SnapshotInfo `json:"snapshot,omitempty"`
}

// actAs checks that c may act for agent name.
func actAs(c *call, name string) error {
	if name == "" {
		return badRequest("agent is required")
	}
	if c.p.Agent != "" && c.p.Agent != name {
		return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf("agent %q may not act for agent %q", c.p.Agent, name)}
	}
	return nil
}

func (a *API) heartbeat(w http.ResponseWriter, r *http.Request, c *call) error {
	id, err := pathName(r, "id")
	if err != nil {
		return err
	}
	var q HeartbeatRequest
	if err := decodeJSON(c.body, &q); err != nil {
		return err
	}
	if err := actAs(c, q.Agent); err != nil {
		return err
	}
	ttl := time.Duration(q.TTL)
	if ttl <= 0 {
		ttl = a.cfg.LeaseTTL
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	var dl time.Time
	if err := a.apply(func() (err error) {
		dl, err = a.node.RenewLease(ctx, RenewLease{JobID: id, Agent: q.Agent, Token: q.Token, TTL: ttl, Progress: q.Progress})
		return err
	}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, HeartbeatResult{Deadline: dl})
	return nil
}

func (a *API) completeJob(w http.ResponseWriter, r *http.Request, c *call) error {
	id, err := pathName(r, "id")
	if err != nil {
		return err
	}
	var q CompleteRequest
	if err := decodeJSON(c.body, &q); err != nil {
		return err
	}
	if err := actAs(c, q.Agent); err != nil {
		return err
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	var j *Job
	if err := a.apply(func() (err error) {
		j, err = a.node.CompleteJob(ctx, CompleteJob{JobID: id, Agent: q.Agent, Token: q.Token, Success: q.Success, Error: q.Error, Snapshot: q.Snapshot})
		return err
	}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

// ---- agents --------------------------------------------------------------------

// EnrollRequest is the body of POST /v1/agents.
type EnrollRequest struct {
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels,omitempty"`
	Version       string            `json:"version,omitempty"`
	MaxConcurrent int               `json:"max_concurrent,omitempty"`
}

// EnrollResult carries the agent's credential, shown this once.
type EnrollResult struct {
	Name       string `json:"name"`
	Credential string `json:"credential"`
}

func (a *API) enrollAgent(w http.ResponseWriter, r *http.Request, c *call) error {
	var q EnrollRequest
	if err := decodeJSON(c.body, &q); err != nil {
		return err
	}
	if !repoNameRE.MatchString(q.Name) {
		return badRequest("agent name %q: want 1-63 letters, digits, '.', '_' or '-'", q.Name)
	}
	if q.MaxConcurrent < 0 || q.MaxConcurrent > 1000 {
		return badRequest("max_concurrent %d: want 0..1000", q.MaxConcurrent)
	}
	cred, hash := newAgentCredential(q.Name)
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.apply(func() error {
		_, err := a.node.Propose(ctx, CmdEnrollAgent, c.p.Actor, EnrollAgent{Name: q.Name, Labels: q.Labels, Version: q.Version,
			CredentialHash: hash, MaxConcurrent: q.MaxConcurrent, JoinToken: c.p.Join})
		return err
	}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, EnrollResult{Name: q.Name, Credential: cred})
	return nil
}

// AgentView is an agent as the API shows it (without its credential hash).
type AgentView struct {
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels,omitempty"`
	Version       string            `json:"version,omitempty"`
	EnrolledAt    time.Time         `json:"enrolled_at"`
	LastSeen      time.Time         `json:"last_seen"`
	Connected     bool              `json:"connected"`
	Revoked       bool              `json:"revoked,omitempty"`
	MaxConcurrent int               `json:"max_concurrent,omitempty"`
	Running       []string          `json:"running,omitempty"`
}

func (a *API) agentView(ag *Agent, now time.Time) AgentView {
	return AgentView{Name: ag.Name, Labels: cloneMap(ag.Labels), Version: ag.Version, EnrolledAt: ag.EnrolledAt, LastSeen: ag.LastSeen,
		Connected: !ag.Revoked && now.Sub(ag.LastSeen) <= a.node.cfg.AgentTimeout, Revoked: ag.Revoked,
		MaxConcurrent: ag.MaxConcurrent, Running: append([]string(nil), ag.Running...)}
}

func (a *API) listAgents(w http.ResponseWriter, _ *http.Request, _ *call) error {
	now := a.clock.Now()
	out := []AgentView{}
	a.node.View(func(s *State) {
		for _, name := range s.AgentNames() {
			out = append(out, a.agentView(s.Agents[name], now))
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getAgent(w http.ResponseWriter, r *http.Request, _ *call) error {
	name, err := pathName(r, "name")
	if err != nil {
		return err
	}
	var out *AgentView
	a.node.View(func(s *State) {
		if ag := s.Agents[name]; ag != nil {
			v := a.agentView(ag, a.clock.Now())
			out = &v
		}
	})
	if out == nil {
		return notFound("agent", name)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) revokeAgent(w http.ResponseWriter, r *http.Request, c *call) error {
	name, err := pathName(r, "name")
	if err != nil {
		return err
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.apply(func() error {
		_, err := a.node.Propose(ctx, CmdRevokeAgent, c.p.Actor, RevokeAgent{Name: name})
		return err
	}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"revoked": name})
	return nil
}

func (a *API) seen(w http.ResponseWriter, r *http.Request, c *call) error {
	name, err := pathName(r, "name")
	if err != nil {
		return err
	}
	if err := actAs(c, name); err != nil {
		return err
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	if _, err := a.node.Propose(ctx, CmdAgentSeen, "agent:"+name, AgentSeen{Name: name}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- dispatch ------------------------------------------------------------------

// WorkItem is a leased job with what the agent needs to run it.
type WorkItem struct {
	Job        Job               `json:"job"`
	Token      uint64            `json:"token"`    // fencing token: present it on heartbeat and complete
	Deadline   time.Time         `json:"deadline"` // heartbeat before it
	Policy     *Policy           `json:"policy,omitempty"`
	Repository *RepoCredentials  `json:"repository,omitempty"`
	Extra      map[string]string `json:"extra,omitempty"`
}

// RepoCredentials is what an agent needs to write to a repository: never
// an identity.
type RepoCredentials struct {
	Name      string            `json:"name"`
	URL       string            `json:"url"`
	WriterKey string            `json:"writer_key"`
	Env       map[string]string `json:"env,omitempty"`
}

// LeaseRequest is the (optional) body of POST /v1/agents/{name}/lease.
type LeaseRequest struct {
	JobID string   `json:"job_id,omitempty"`
	TTL   Duration `json:"ttl,omitempty"`
}

// lease leases the agent's next job now: 200 with a WorkItem, or 204.
func (a *API) lease(w http.ResponseWriter, r *http.Request, c *call) error {
	name, err := pathName(r, "name")
	if err != nil {
		return err
	}
	if err := actAs(c, name); err != nil {
		return err
	}
	var q LeaseRequest
	if len(bytes.TrimSpace(c.body)) > 0 {
		if err := decodeJSON(c.body, &q); err != nil {
			return err
		}
	}
	ttl := time.Duration(q.TTL)
	if ttl <= 0 {
		ttl = a.cfg.LeaseTTL
	}
	item, err := a.leaseLocal(r.Context(), name, q.JobID, ttl)
	if err != nil {
		return err
	}
	if item == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeJSON(w, http.StatusOK, item)
	return nil
}

// leaseLocal leases on this node, which must lead.
func (a *API) leaseLocal(ctx context.Context, agent, jobID string, ttl time.Duration) (*WorkItem, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var j *Job
	if err := a.apply(func() (err error) { j, err = a.node.LeaseJob(ctx, agent, jobID, ttl); return err }); err != nil {
		return nil, err
	}
	if j == nil {
		return nil, nil
	}
	item := &WorkItem{Job: *j}
	if j.Lease != nil {
		item.Token, item.Deadline = j.Lease.Token, j.Lease.Deadline
	}
	a.node.View(func(s *State) {
		if pr := s.Policies[j.Policy]; pr != nil {
			p := clonePolicy(pr.Policy)
			item.Policy = &p
			if rp := s.Repositories[p.Repository]; rp != nil {
				item.Repository = &RepoCredentials{Name: rp.Name, URL: rp.URL, WriterKey: string(rp.WriterKey), Env: cloneMap(rp.Env)}
			}
		}
	})
	a.metrics.leased.Inc()
	return item, nil
}

// work is the agents' long poll: it answers as soon as the agent has a job
// (leased to it, 200) or after ?wait= (204). Any node may be polled: the
// wait happens on that node's replicated state, the lease on the leader.
func (a *API) work(w http.ResponseWriter, r *http.Request, c *call) error {
	name, err := pathName(r, "name")
	if err != nil {
		return err
	}
	if err := actAs(c, name); err != nil {
		return err
	}
	wait, err := queryDuration(r, "wait", 30*time.Second, a.cfg.MaxWait)
	if err != nil {
		return err
	}
	ttl, err := queryDuration(r, "ttl", a.cfg.LeaseTTL, 24*time.Hour)
	if err != nil {
		return err
	}
	if ttl <= 0 {
		ttl = a.cfg.LeaseTTL
	}
	a.waiting.Add(1)
	defer a.waiting.Add(-1)
	ctx := r.Context()
	deadline := time.Now().Add(wait)
	touched := false
	// After a lease that found nothing (a policy at its limit, a race with
	// another poll) wait a little before the next attempt: a lease that
	// finds nothing is itself a log entry, and its own state change would
	// otherwise wake this loop at once.
	const retryGap = 200 * time.Millisecond
	var triedAt time.Time
	for {
		changed := a.node.Changed()
		var known, revoked, has, stale bool
		a.node.View(func(s *State) {
			ag := s.Agents[name]
			if ag == nil {
				return
			}
			known, revoked = true, ag.Revoked
			now := a.clock.Now()
			has = s.HasWork(name, now)
			stale = now.Sub(ag.LastSeen) > a.node.cfg.AgentTimeout/4
		})
		switch {
		case !known:
			return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("agent %q is not enrolled: enroll it first (POST /v1/agents)", name)}
		case revoked:
			return fmt.Errorf("agent %q: %w", name, ErrRevoked)
		}
		if stale && !touched && !has {
			touched = true
			go a.touch(r.Header.Get("Authorization"), name)
		}
		nap := time.Second // wake at least this often for jobs whose not-before passes
		if has {
			if gap := retryGap - time.Since(triedAt); gap > 0 {
				nap = gap
			} else {
				item, err := a.leaseAnywhere(ctx, r, name, ttl)
				switch {
				case err != nil && !isRetryableErr(err):
					return err
				case item != nil:
					writeJSON(w, http.StatusOK, item)
					return nil
				}
				triedAt = time.Now()
				nap = retryGap
			}
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		t := time.NewTimer(min(remaining, nap))
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		t.Stop()
	}
}

func isRetryableErr(err error) bool {
	_, retry := errorStatus(err)
	return retry
}

// leaseAnywhere leases here if this node leads, else through the leader.
func (a *API) leaseAnywhere(ctx context.Context, r *http.Request, agent string, ttl time.Duration) (*WorkItem, error) {
	if a.node.IsLeader() {
		return a.leaseLocal(ctx, agent, "", ttl)
	}
	base, err := a.leaderURL()
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(LeaseRequest{TTL: Duration(ttl)})
	resp, err := a.leaderCall(ctx, http.MethodPost, base+"/v1/agents/"+agent+"/lease", r.Header.Get("Authorization"), body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		return nil, nil
	case http.StatusOK:
		var item WorkItem
		if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&item); err != nil {
			return nil, fmt.Errorf("lease through the leader: %w", err)
		}
		return &item, nil
	}
	return nil, relayError(resp)
}

// touch records that the agent is in touch (best effort).
func (a *API) touch(auth, agent string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if a.node.IsLeader() {
		_, _ = a.node.Propose(ctx, CmdAgentSeen, "agent:"+agent, AgentSeen{Name: agent})
		return
	}
	base, err := a.leaderURL()
	if err != nil {
		return
	}
	if resp, err := a.leaderCall(ctx, http.MethodPost, base+"/v1/agents/"+agent+"/seen", auth, nil); err == nil {
		resp.Body.Close()
	}
}

// leaderCall makes a node-to-node call to the leader on behalf of a client.
func (a *API) leaderCall(ctx context.Context, method, url, auth string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set(headerForwarded, a.node.ID())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, retryable: true, msg: fmt.Sprintf("call the leader: %v", err)}
	}
	return resp, nil
}

// relayError turns another node's error response into an apiError.
func relayError(resp *http.Response) error {
	var eb ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
		eb.Error = fmt.Sprintf("leader answered %s", resp.Status)
		eb.Retryable = resp.StatusCode >= 500
	}
	return &apiError{status: resp.StatusCode, msg: eb.Error, retryable: eb.Retryable, problems: eb.Problems}
}
