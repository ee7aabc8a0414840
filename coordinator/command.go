package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CommandVersion is the newest command format this binary applies. A
// command with a higher version was written by a newer node; it is rejected
// with ErrUnsupportedCommand and changes nothing. Bump it whenever the
// meaning of an existing command type changes; adding a type does not need
// a bump (an older node rejects the unknown type the same clean way).
//
// Version history: 1, the first; 2, drills and verification — a
// jobs.create with drill or verify jobs or their watermarks, and a
// job.complete carrying a drill verdict or a verify report (both end the
// job where a version-1 node would retry it); 3, retention — a
// job.complete carrying the snapshots the agent forgot (a version-2 node
// would keep them in the catalog); 4, catalog reconciliation — a
// job.complete whose verify report lists the repository's snapshots (a
// version-3 node would keep the catalog entries of forgotten ones); 5,
// scheduled prune — a jobs.create with prune jobs or prune watermarks,
// and a job.complete carrying a prune summary; 6, a jobs.create with a
// prune job naming its repository (a version-5 node would take its
// policy's) and a repo.remove, refused while a verify or prune job of the
// repository is pending or running (a version-5 node would remove it); 7,
// a policy.put whose retention has keep_tags (a version-6 node would drop
// them, and its agents would forget the snapshots they hold; it refuses
// the command and keeps the policy as it was, so such a policy is applied
// again once every node is upgraded, see docs/operations.md); 8, a
// token.revoke with checked_at, refused if it would revoke the last admin
// token unexpired then (a version-7 node would revoke it); 9, an
// alerts.sync keeping an earlier opening of a key that opens again (a
// version-8 node would replace it); 10, a policy.put with check_index,
// refused unless the policy is at that version (a version-9 node would
// store it whatever changed in between); 11, a jointoken.create with
// fixed_labels (a version-10 node would store a token whose agents choose
// their own labels); 12, a job.complete with check_claims, refused if its
// catalog change is not the job's own (a version-11 node would apply it). A
// node applies an entry by the rules of the entry's version, so replaying
// a log written before an upgrade gives the state it gave then. Each command is stamped
// with the lowest version that gives it its meaning (see versioned), so a
// cluster part-way through an upgrade keeps applying everything else.
const CommandVersion = 12

// versioned is implemented by payloads whose meaning needs a version
// above 1 in some cases.
type versioned interface{ minVersion() int }

func (p CreateJobs) minVersion() int {
	for _, j := range p.Jobs {
		if j.Kind == KindPrune && j.Repository != "" {
			return 6
		}
	}
	if len(p.PruneFired) > 0 {
		return 5
	}
	for _, j := range p.Jobs {
		if j.Kind == KindPrune {
			return 5
		}
	}
	if len(p.DrillFired) > 0 || len(p.VerifyFired) > 0 {
		return 2
	}
	for _, j := range p.Jobs {
		if j.Kind != KindBackup || j.Drill != nil || j.Verify != nil || j.Repository != "" {
			return 2
		}
	}
	return 1
}

func (p CompleteJob) minVersion() int {
	switch {
	case p.CheckClaims:
		return 12
	case p.Prune != nil:
		return 5
	case p.Verify != nil && p.Verify.SnapshotsListed:
		return 4
	case len(p.Forgotten) > 0:
		return 3
	case p.Drill != nil || p.Verify != nil:
		return 2
	}
	return 1
}

// CommandType names a state transition.
type CommandType string

// Command types. The string values are stored in the Raft log: never
// rename one.
const (
	CmdPutPolicy        CommandType = "policy.put"
	CmdPutPolicies      CommandType = "policies.put"
	CmdDeletePolicy     CommandType = "policy.delete"
	CmdAddRepository    CommandType = "repo.add"
	CmdRemoveRepository CommandType = "repo.remove"
	CmdEnrollAgent      CommandType = "agent.enroll"
	CmdAgentSeen        CommandType = "agent.seen"
	CmdRevokeAgent      CommandType = "agent.revoke"
	CmdCreateJobs       CommandType = "jobs.create"
	CmdLeaseJob         CommandType = "job.lease"
	CmdRenewLease       CommandType = "job.renew"
	CmdCompleteJob      CommandType = "job.complete"
	CmdExpireLease      CommandType = "job.expire"
	CmdCancelJob        CommandType = "job.cancel"
	CmdPruneJobs        CommandType = "jobs.prune"
	CmdForgetSnapshot   CommandType = "catalog.forget"
	CmdCreateToken      CommandType = "token.create"
	CmdRevokeToken      CommandType = "token.revoke"
	CmdCreateJoinToken  CommandType = "jointoken.create"
	CmdRevokeJoinToken  CommandType = "jointoken.revoke"
	CmdRecordDrill      CommandType = "drill.record"
	CmdGrantAgent       CommandType = "agent.grant"

	// Alerts (alert.go).
	CmdSyncAlerts        CommandType = "alerts.sync"
	CmdAlertDelivered    CommandType = "alert.delivered"
	CmdPutAlertTarget    CommandType = "alerttarget.put"
	CmdDeleteAlertTarget CommandType = "alerttarget.delete"
)

// Errors returned by FSM.Apply (inside ApplyResult.Err) and so by Node
// writes. Apply returns them wrapped with details; test with errors.Is.
var (
	// ErrUnsupportedCommand: an unknown command type or a version newer
	// than CommandVersion. The state is unchanged.
	ErrUnsupportedCommand = errors.New("unsupported command")
	// ErrInvalidCommand: the command is malformed or its payload invalid.
	ErrInvalidCommand = errors.New("invalid command")
	// ErrNotFound: the command names something that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the command does not fit the current state (a job in
	// the wrong state, a repository still used by a policy, a limit).
	ErrConflict = errors.New("conflict")
	// ErrStaleLease: the presented fencing token is not the job's current
	// one, or the lease has expired. The caller must stop working on the
	// job; its result is not accepted.
	ErrStaleLease = errors.New("stale lease")
	// ErrRevoked: the agent has been revoked.
	ErrRevoked = errors.New("agent revoked")
	// ErrCatalogClaim: a job's completion would add or drop catalog
	// entries that are not its own (another job's snapshot ID, another
	// host's snapshot).
	ErrCatalogClaim = errors.New("catalog entry not the job's own")
)

// Command is one entry of the Raft log. Time, Actor and every ID are
// chosen by the proposer, so applying a command is a pure function of the
// state and the command.
type Command struct {
	Version int             `json:"version"`
	Type    CommandType     `json:"type"`
	Time    time.Time       `json:"time"`  // the proposer's clock; the only "now" Apply knows
	Actor   string          `json:"actor"` // who asked: "token:ID", "agent:NAME", "scheduler"
	Payload json.RawMessage `json:"payload,omitempty"`
}

// NewCommand builds a current-version command with the payload encoded.
// The time is left zero for Node to stamp when it proposes.
func NewCommand(typ CommandType, actor string, payload any) (Command, error) {
	c := Command{Version: 1, Type: typ, Actor: actor}
	if v, ok := payload.(versioned); ok {
		c.Version = v.minVersion()
	}
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return Command{}, fmt.Errorf("encode %s payload: %w", typ, err)
		}
		c.Payload = b
	}
	return c, nil
}

// Encode returns the bytes stored in the log.
func (c Command) Encode() ([]byte, error) { return json.Marshal(c) }

// DecodeCommand parses a log entry.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return Command{}, fmt.Errorf("%w: decode: %v", ErrInvalidCommand, err)
	}
	return c, nil
}

// Payloads. Durations are Go durations (nanoseconds in JSON).

// PutPolicy creates or replaces a policy. Its repository must exist.
type PutPolicy struct {
	Policy Policy `json:"policy"`
	// CheckIndex, when set, stores the policy only if its version is
	// still this (0: only if there is no such policy), else the command
	// is refused with ErrConflict: a check-and-set for an edit made from
	// what a client read.
	CheckIndex *uint64 `json:"check_index,omitempty"`
}

// minVersion: a policy that protects tagged snapshots is version 7, one
// that schedules prunes version 5 (an older node would drop
// retention.keep_tags, or retention.prune and retention.max_unused).
func (p PutPolicy) minVersion() int {
	if p.CheckIndex != nil {
		return 10
	}
	if len(p.Policy.Retention.KeepTags) > 0 {
		return 7
	}
	if p.Policy.Retention.Prune != "" || p.Policy.Retention.MaxUnused != "" {
		return 5
	}
	return 1
}

// PutPolicies creates or replaces several policies (one policy file) as
// one log entry: all of them, or none if any would be refused as
// PutPolicy refuses one. Names must be distinct. A node that predates
// this type refuses it whole (ErrUnsupportedCommand), so Node.PutPolicies
// proposes a single policy as a PutPolicy, which every node applies.
type PutPolicies struct {
	Policies []Policy `json:"policies"`
}

// minVersion is the highest a PutPolicy of any of the policies needs.
func (p PutPolicies) minVersion() int {
	v := 1
	for _, pol := range p.Policies {
		v = max(v, PutPolicy{Policy: pol}.minVersion())
	}
	return v
}

// DeletePolicy removes a policy and cancels its pending jobs.
type DeletePolicy struct {
	Name string `json:"name"`
}

// minVersion: removing a repository is refused while a job of it is
// pending or running from version 6 on (see removeRepository).
func (RemoveRepository) minVersion() int { return 6 }

// AddRepository registers a repository with a writer key. An age identity
// is refused: the coordinator never holds one.
type AddRepository struct {
	Name      string            `json:"name"`
	URL       string            `json:"url"`
	WriterKey []byte            `json:"writer_key"`
	Env       map[string]string `json:"env,omitempty"`
	Replace   bool              `json:"replace,omitempty"` // allow overwriting an existing one
}

// RemoveRepository unregisters a repository no policy uses and no
// pending or running job names.
type RemoveRepository struct {
	Name string `json:"name"`
}

// EnrollAgent creates or re-enrolls an agent. With JoinToken set, the
// join token must exist, be unexpired and have uses left; one use is
// consumed and its labels are added (they replace those of the same
// keys). A token with fixed labels refuses Labels it does not set to the
// same values, and the agent gets exactly the token's labels; an admin's
// re-enrolment of such an agent keeps them (see enrollAgent).
type EnrollAgent struct {
	Name           string            `json:"name"`
	Labels         map[string]string `json:"labels,omitempty"`
	Version        string            `json:"version,omitempty"`
	CredentialHash string            `json:"credential_hash"`
	MaxConcurrent  int               `json:"max_concurrent,omitempty"`
	JoinToken      string            `json:"join_token,omitempty"` // join token ID
	Capabilities   []string          `json:"capabilities,omitempty"`
	// Grants are set by the API when an admin enrolls the agent directly
	// (a join token brings its own).
	Grants []string `json:"grants,omitempty"`
	// Replace allows enrolling over an existing, unrevoked agent of the
	// same name (its credential is replaced). Only admins may ask for it:
	// otherwise any join token could take over a live agent and receive
	// its jobs' writer keys.
	Replace bool `json:"replace,omitempty"`
}

// AgentSeen records that an agent was in touch.
type AgentSeen struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// Capabilities, when not nil, replaces the agent's announced
	// capabilities (an agent announces them each time it starts).
	Capabilities []string `json:"capabilities"`
}

// RevokeAgent revokes an agent: it gets no new leases and its reports are
// refused.
type RevokeAgent struct {
	Name string `json:"name"`
}

// NewJob is a job to create.
type NewJob struct {
	ID          string    `json:"id"`
	Kind        JobKind   `json:"kind"`
	Trigger     Trigger   `json:"trigger"`
	Policy      string    `json:"policy"`
	Agent       string    `json:"agent"`
	ScheduledAt time.Time `json:"scheduled_at"`
	NotBefore   time.Time `json:"not_before,omitzero"`
	MaxAttempts int       `json:"max_attempts,omitempty"` // 0 = the policy's, or DefaultMaxAttempts
	// Repository names a verify job's repository (verify jobs have no
	// policy) or a prune job's (its policy's, when it was planned; see
	// Job.Repository); Drill and Verify are the parameters of those kinds.
	Repository string        `json:"repository,omitempty"`
	Drill      *DrillParams  `json:"drill,omitempty"`
	Verify     *VerifyParams `json:"verify,omitempty"`
}

// CreateJobs creates jobs and advances policies' last fired instants.
// It is idempotent: a job whose ID exists is skipped, and a last fired
// instant never moves back. Re-proposing the same plan (after a failover
// whose outcome was unknown) therefore changes nothing.
type CreateJobs struct {
	Jobs  []NewJob             `json:"jobs"`
	Fired map[string]time.Time `json:"fired,omitempty"`
	// DrillFired and VerifyFired advance the drill watermarks of
	// policies and the verification watermarks of repositories.
	DrillFired  map[string]time.Time `json:"drill_fired,omitempty"`
	VerifyFired map[string]time.Time `json:"verify_fired,omitempty"`
	// PruneFired advances the prune watermarks of policies.
	PruneFired map[string]time.Time `json:"prune_fired,omitempty"`
}

// CreateJobsResult reports which jobs were created and which existed.
type CreateJobsResult struct {
	Created []string `json:"created"`
	Existed []string `json:"existed"`
}

// LeaseJob leases a pending job to an agent for TTL. With JobID empty the
// FSM picks the agent's eligible job with the earliest not-before (then
// scheduled instant, then ID); if none is eligible the result is a nil
// *Job and no error.
type LeaseJob struct {
	Agent string        `json:"agent"`
	JobID string        `json:"job_id,omitempty"`
	TTL   time.Duration `json:"ttl"`
}

// RenewLease extends a lease to command time + TTL and records progress.
type RenewLease struct {
	JobID    string        `json:"job_id"`
	Agent    string        `json:"agent"`
	Token    uint64        `json:"token"`
	TTL      time.Duration `json:"ttl"`
	Progress *Progress     `json:"progress,omitempty"`
}

// SnapshotInfo describes the snapshot a successful backup made.
type SnapshotInfo struct {
	ID   string    `json:"id"`
	Host string    `json:"host"`
	Time time.Time `json:"time"`
	Size int64     `json:"size"`
}

// CompleteJob reports a job's outcome. The token must be current and the
// lease unexpired at command time. A failure is retried after Backoff
// while attempts remain.
type CompleteJob struct {
	JobID    string        `json:"job_id"`
	Agent    string        `json:"agent"`
	Token    uint64        `json:"token"`
	Success  bool          `json:"success"`
	Error    string        `json:"error,omitempty"`
	Snapshot *SnapshotInfo `json:"snapshot,omitempty"`
	Backoff  time.Duration `json:"backoff,omitempty"`
	Partial  bool          `json:"partial,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
	// Drill is a drill job's verdict. A drill that ran to a verdict
	// reports it whether it passed or not; a failed verdict ends the job
	// (no retry). Without it a failed drill job is retried like any other.
	Drill *DrillReport `json:"drill,omitempty"`
	// Verify is a verify job's report (required when it succeeds).
	Verify *VerifyReport `json:"verify,omitempty"`
	// Forgotten are the snapshots a successful backup job removed by the
	// policy's retention; they leave the catalog.
	Forgotten []string `json:"forgotten,omitempty"`
	// Prune is a successful prune job's summary.
	Prune *PruneSummary `json:"prune,omitempty"`
	// CheckClaims: the catalog change is checked when the command is
	// applied (State.catalogClaim), not only by the API before it is
	// proposed: another completion may have changed the catalog between.
	CheckClaims bool `json:"check_claims,omitempty"`
}

// ExpireLease takes back an expired lease. It only applies if the token is
// still current and the deadline has passed at command time; the job goes
// back to pending after Backoff, or fails if it has used its attempts.
type ExpireLease struct {
	JobID   string        `json:"job_id"`
	Token   uint64        `json:"token"`
	Backoff time.Duration `json:"backoff,omitempty"`
}

// CancelJob cancels a pending or running job.
type CancelJob struct {
	JobID  string `json:"job_id"`
	Reason string `json:"reason,omitempty"`
}

// PruneJobs deletes finished (succeeded, failed, cancelled) jobs that
// finished before the cutoff. Their instants stay fired: the watermark,
// not the job, is what keeps an instant from running twice.
type PruneJobs struct {
	FinishedBefore time.Time `json:"finished_before"`
	// DrillsBefore, if set, also deletes drill records that started
	// before it.
	DrillsBefore time.Time `json:"drills_before,omitzero"`
}

// ForgetSnapshot removes a snapshot from the catalog (after 'forget').
type ForgetSnapshot struct {
	ID string `json:"id"`
}

// CreateToken stores an API token's hash.
type CreateToken struct {
	ID      string    `json:"id"`
	Hash    string    `json:"hash"`
	Role    Role      `json:"role"`
	Name    string    `json:"name,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
}

// RevokeToken deletes an API token. With CheckedAt set (the API sets it
// to its clock when proposing), revoking the last admin token unexpired
// at that instant is refused; an entry without it is always applied.
type RevokeToken struct {
	ID        string    `json:"id"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
}

// minVersion: a revoke that may be refused is version 8 (a version-7
// node would apply it).
func (p RevokeToken) minVersion() int {
	if !p.CheckedAt.IsZero() {
		return 8
	}
	return 1
}

// CreateJoinToken stores a join token's hash.
type CreateJoinToken struct {
	ID      string            `json:"id"`
	Hash    string            `json:"hash"`
	Labels  map[string]string `json:"labels,omitempty"`
	Expires time.Time         `json:"expires,omitzero"`
	MaxUses int               `json:"max_uses,omitempty"`
	Grants  []string          `json:"grants,omitempty"` // capabilities its agents may announce
	// FixedLabels: the agents enrolled with it get exactly Labels, and
	// an enrolment that asks for any other label is refused.
	FixedLabels bool `json:"fixed_labels,omitempty"`
}

// minVersion: a token that fixes its agents' labels is version 11 (a
// version-10 node would drop fixed_labels and let its agents choose).
func (p CreateJoinToken) minVersion() int {
	if p.FixedLabels {
		return 11
	}
	return 1
}

// GrantAgent sets the capabilities an agent may announce (an admin's
// decision); announced capabilities outside them stop counting at once.
type GrantAgent struct {
	Name   string   `json:"name"`
	Grants []string `json:"grants"`
}

// RevokeJoinToken deletes a join token.
type RevokeJoinToken struct {
	ID string `json:"id"`
}
