package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

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

// MaxLeaseTTL bounds the TTL an agent may ask for when it leases a job
// or renews a lease: a longer one is cut to it. A lease that outlives its
// holder keeps the job from everyone else until it expires.
const MaxLeaseTTL = 24 * time.Hour

// leaseTTL is the lease TTL for a request's ttl: the API's default when
// it is zero (not given), at most MaxLeaseTTL, and a 400 when negative.
func (a *API) leaseTTL(d Duration) (time.Duration, error) {
	ttl := time.Duration(d)
	switch {
	case ttl < 0:
		return 0, badRequest("ttl %s: want a positive duration", ttl)
	case ttl == 0:
		return a.cfg.LeaseTTL, nil
	case ttl > MaxLeaseTTL:
		return MaxLeaseTTL, nil
	}
	return ttl, nil
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
	ttl, err := a.leaseTTL(q.TTL)
	if err != nil {
		return err
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
		}
		if rp := s.Repositories[s.jobRepository(j)]; rp != nil {
			item.Repository = &RepoCredentials{Name: rp.Name, URL: rp.URL, WriterKey: string(rp.WriterKey), Env: cloneMap(rp.Env)}
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
	ttl, err := queryDuration(r, "ttl", a.cfg.LeaseTTL, MaxLeaseTTL)
	if err != nil {
		return err
	}
	if ttl <= 0 {
		ttl = a.cfg.LeaseTTL
	}
	// The answer comes after up to wait, and may be a lease taken on the
	// leader: the write deadline set for every request starts after it.
	a.writeDeadline(w, wait)
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
