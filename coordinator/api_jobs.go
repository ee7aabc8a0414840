package coordinator

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
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
		return badRequest("kind=%q: want backup, verify, drill or prune", f.Kind)
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
	j, err := lookup(a, r, "id", "job", func(s *State, id string) (Job, bool) {
		if x := s.Jobs[id]; x != nil {
			return x.clone(), true
		}
		return Job{}, false
	})
	if err != nil {
		return err
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
	TTL      Duration  `json:"ttl,omitempty"` // default: the API's lease TTL; at most MaxLeaseTTL
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
	Partial  bool          `json:"partial,omitempty"`
	Warnings []string      `json:"warnings,omitempty"` // at most MaxJobWarnings are kept, each cut to 500 bytes
	Drill    *DrillReport  `json:"drill,omitempty"`    // drill jobs: the verdict
	Verify   *VerifyReport `json:"verify,omitempty"`   // verify jobs: what was read
	// Forgotten: backup jobs, the snapshots the policy's retention removed.
	Forgotten []string `json:"forgotten,omitempty"`
	// Prune: prune jobs, what the prune found and did.
	Prune *PruneSummary `json:"prune,omitempty"`
}

// MaxJobWarnings bounds the warnings a job result keeps.
const MaxJobWarnings = 20

func boundWarnings(ws []string) []string {
	if len(ws) > MaxJobWarnings {
		ws = append(ws[:MaxJobWarnings-1:MaxJobWarnings-1], fmt.Sprintf("... and %d more", len(ws)-(MaxJobWarnings-1)))
	}
	out := make([]string, len(ws))
	for i, w := range ws {
		if len(w) > 500 {
			w = w[:500] + "…"
		}
		out[i] = w
	}
	return out
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
	ttl, err := a.leaseTTL(q.TTL)
	if err != nil {
		return err
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
	claims, err := a.checkCatalogClaims(ctx, id, &q)
	if err != nil {
		return err
	}
	var j *Job
	if err := a.apply(func() (err error) {
		j, err = a.node.CompleteJob(ctx, completion(id, &q, claims))
		return err
	}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

// completion is the command a completion request proposes; claims is
// checkCatalogClaims' answer.
func completion(jobID string, q *CompleteRequest, claims bool) CompleteJob {
	return CompleteJob{JobID: jobID, Agent: q.Agent, Token: q.Token, Success: q.Success, Error: q.Error, Snapshot: q.Snapshot,
		Partial: q.Partial, Warnings: boundWarnings(q.Warnings), Drill: q.Drill, Verify: q.Verify, Forgotten: q.Forgotten, Prune: q.Prune,
		CheckClaims: claims}
}

// checkCatalogClaims refuses a completion that would change catalog
// entries that are not the reporting job's (see State.catalogClaim). The
// FSM applies a completion as it comes, so without this an agent — one
// whose host was compromised — could overwrite or drop other hosts'
// entries, and with them what coverage, status and alerts go by. The
// check runs on the leader against its synced state; a completion for a
// job this node does not know is left to the FSM to refuse. claims says
// the completion changes a backup job's catalog entries: it is proposed
// with CheckClaims, so that the FSM checks again against the state it
// applies to (another completion may change the catalog in between).
func (a *API) checkCatalogClaims(ctx context.Context, jobID string, q *CompleteRequest) (claims bool, err error) {
	if !q.Success || (q.Snapshot == nil && len(q.Forgotten) == 0) {
		return false, nil // only a success changes the catalog
	}
	if q.Snapshot != nil {
		if err := plainText("snapshot id", q.Snapshot.ID); err != nil {
			return false, err
		}
		if err := plainText("snapshot host", q.Snapshot.Host); err != nil {
			return false, err
		}
	}
	if err := plainText("forgotten snapshot id", q.Forgotten...); err != nil {
		return false, err
	}
	if err := a.syncLeader(ctx); err != nil {
		return false, err
	}
	a.node.View(func(s *State) {
		j := s.Jobs[jobID]
		if j == nil {
			return
		}
		claims = j.Kind == KindBackup // the FSM changes the catalog for backups only
		if msg := s.catalogClaim(j, q.Snapshot, q.Forgotten); msg != "" {
			err = &apiError{status: http.StatusForbidden, msg: msg}
		}
	})
	return claims, err
}

// ---- agents --------------------------------------------------------------------

// EnrollRequest is the body of POST /v1/agents.
type EnrollRequest struct {
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels,omitempty"`
	Version       string            `json:"version,omitempty"`
	MaxConcurrent int               `json:"max_concurrent,omitempty"`
	Capabilities  []string          `json:"capabilities,omitempty"` // e.g. "drill": the agent holds an identity
}

// SeenRequest is the (optional) body of POST /v1/agents/{name}/seen: an
// agent announces its version and capabilities when it starts.
type SeenRequest struct {
	Version      string   `json:"version,omitempty"`
	Capabilities []string `json:"capabilities"`
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
	if err := plainLabels("labels", q.Labels); err != nil {
		return err
	}
	if err := plainText("version", q.Version); err != nil {
		return err
	}
	if err := checkCapabilities(q.Capabilities); err != nil {
		return err
	}
	cred, hash := newAgentCredential(q.Name)
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.apply(func() error {
		var grants []string
		if c.p.Role == RoleAdmin {
			grants = q.Capabilities // an admin enrolling an agent grants what it asks for
		}
		_, err := a.node.Propose(ctx, CmdEnrollAgent, c.p.Actor, EnrollAgent{Name: q.Name, Labels: q.Labels, Version: q.Version, Capabilities: q.Capabilities, Grants: grants,
			CredentialHash: hash, MaxConcurrent: q.MaxConcurrent, JoinToken: c.p.Join, Replace: c.p.Role == RoleAdmin})
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
	Capabilities  []string          `json:"capabilities,omitempty"` // "drill": it holds an identity
	Grants        []string          `json:"grants,omitempty"`       // what an admin allows it to announce
	FixedLabels   bool              `json:"fixed_labels,omitempty"` // its labels are its join token's; it cannot change them
}

func (a *API) agentView(ag *Agent, now time.Time) AgentView {
	return AgentView{Name: ag.Name, Labels: cloneMap(ag.Labels), Version: ag.Version, EnrolledAt: ag.EnrolledAt, LastSeen: ag.LastSeen,
		Capabilities: append([]string(nil), ag.Capabilities...), Grants: append([]string(nil), ag.Grants...),
		Connected: !ag.Revoked && now.Sub(ag.LastSeen) <= a.node.cfg.AgentTimeout, Revoked: ag.Revoked,
		MaxConcurrent: ag.MaxConcurrent, Running: append([]string(nil), ag.Running...), FixedLabels: ag.FixedLabels}
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
	out, err := lookup(a, r, "name", "agent", func(s *State, name string) (AgentView, bool) {
		if ag := s.Agents[name]; ag != nil {
			return a.agentView(ag, a.clock.Now()), true
		}
		return AgentView{}, false
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) revokeAgent(w http.ResponseWriter, r *http.Request, c *call) error {
	return a.proposeNamed(w, r, c, "name", "revoked", func(key string) (CommandType, any) {
		return CmdRevokeAgent, RevokeAgent{Name: key}
	})
}

func (a *API) seen(w http.ResponseWriter, r *http.Request, c *call) error {
	name, err := pathName(r, "name")
	if err != nil {
		return err
	}
	if err := actAs(c, name); err != nil {
		return err
	}
	seen := AgentSeen{Name: name}
	if len(bytes.TrimSpace(c.body)) > 0 {
		var q SeenRequest
		if err := decodeJSON(c.body, &q); err != nil {
			return err
		}
		if err := plainText("version", q.Version); err != nil {
			return err
		}
		seen.Version = q.Version
		seen.Capabilities = q.Capabilities
		if seen.Capabilities == nil {
			seen.Capabilities = []string{}
		}
		if err := checkCapabilities(seen.Capabilities); err != nil {
			return err
		}
		var grants []string
		a.node.View(func(s *State) {
			if ag := s.Agents[name]; ag != nil {
				grants = append(grants, ag.Grants...)
			}
		})
		for _, cp := range seen.Capabilities {
			if !slices.Contains(grants, cp) {
				return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf("agent %q may not announce %q: an admin grants it with 'lifeboat agent grant %s --drill-runner' "+
					"(or enrolls it with a join token made with 'lifeboat agent token create --drill-runner')", name, cp, name)}
			}
		}
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	if _, err := a.node.Propose(ctx, CmdAgentSeen, "agent:"+name, seen); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// checkCapabilities accepts the capabilities an agent may announce.
func checkCapabilities(caps []string) error {
	if len(caps) > 8 {
		return badRequest("%d capabilities: too many", len(caps))
	}
	for _, cp := range caps {
		if cp != CapDrill {
			return badRequest("capability %q: the only capability is %q", cp, CapDrill)
		}
	}
	return nil
}

// GrantRequest is the body of POST /v1/agents/{name}/grants.
type GrantRequest struct {
	Grants []string `json:"grants"` // e.g. ["drill"]; [] withdraws every grant
}

func (a *API) grantAgent(w http.ResponseWriter, r *http.Request, c *call) error {
	var q GrantRequest
	if err := decodeJSON(c.body, &q); err != nil {
		return err
	}
	if err := checkCapabilities(q.Grants); err != nil {
		return err
	}
	return a.proposeNamed(w, r, c, "name", "granted", func(key string) (CommandType, any) {
		return CmdGrantAgent, GrantAgent{Name: key, Grants: q.Grants}
	})
}
