package coordinator

import (
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"time"
)

// AuditLimit bounds the replicated audit log: once it holds this many
// entries, each new entry drops the oldest.
const AuditLimit = 10000

// DefaultMaxAttempts is used when a policy leaves MaxAttempts at zero.
const DefaultMaxAttempts = 3

// JobKind says what an agent is asked to do.
type JobKind string

// Job kinds.
const (
	KindBackup JobKind = "backup"
	KindVerify JobKind = "verify"
	KindDrill  JobKind = "drill"
	// KindPrune runs 'lifeboat prune' on a policy's repository, on one of
	// its drill runners (the agents that hold the identity).
	KindPrune JobKind = "prune"
)

// JobState is where a job is in its lifecycle. Pending jobs wait for a lease;
// running jobs hold one; the other three are final.
type JobState string

// Job states (the JSON field "state").
const (
	JobPending   JobState = "pending"
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// Final reports whether no further transition is possible.
func (s JobState) Final() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

// Trigger says why a job exists.
type Trigger string

// Job triggers.
const (
	TriggerSchedule Trigger = "schedule" // a scheduled instant of a policy
	TriggerManual   Trigger = "manual"   // 'lifeboat policy run' and the like
)

// Role is what an API token may do.
type Role string

// Token roles, from most to least privileged.
const (
	RoleAdmin    Role = "admin"
	RoleOperator Role = "operator"
	RoleAgent    Role = "agent"
	RoleReadOnly Role = "read-only"
)

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool {
	switch r {
	case RoleAdmin, RoleOperator, RoleAgent, RoleReadOnly:
		return true
	}
	return false
}

// State is the replicated state of the coordinator: everything the Raft log
// builds. Every node holds an identical copy once it has applied the same
// entries. It is changed only by FSM.Apply; readers get it through
// FSM.View or a Clone.
//
// Maps are keyed by name or ID. Code that walks a map to make a decision
// walks its sorted keys, so decisions never depend on map order; JSON
// encoding sorts map keys too, which makes snapshots byte-identical.
type State struct {
	// Index is the Raft index of the last applied command.
	Index uint64 `json:"index"`
	// LeaseSeq is the last fencing token handed out; the next lease gets
	// LeaseSeq+1, so tokens only grow.
	LeaseSeq uint64 `json:"lease_seq"`
	// AuditSeq numbers audit entries.
	AuditSeq uint64 `json:"audit_seq"`

	Policies     map[string]*PolicyRecord `json:"policies"`
	Repositories map[string]*Repository   `json:"repositories"`
	Agents       map[string]*Agent        `json:"agents"`
	Jobs         map[string]*Job          `json:"jobs"`
	Catalog      map[string]*CatalogEntry `json:"catalog"`
	LastFired    map[string]time.Time     `json:"last_fired"` // policy -> newest scheduled instant already turned into jobs
	Tokens       map[string]*APIToken     `json:"tokens"`
	JoinTokens   map[string]*JoinToken    `json:"join_tokens"`
	Audit        []AuditEntry             `json:"audit"`
	// Cluster is set once, by the first leader of a new cluster
	// (nodeinfo.go): its ID, the node secret and each node's HTTP address.
	Cluster *ClusterInfo `json:"cluster,omitempty"`

	// Drills holds the evidence of restore drills by drill ID (drill.go).
	Drills map[string]*DrillRecord `json:"drills"`
	// DrillFired is each policy's drill-schedule watermark, like LastFired.
	DrillFired map[string]time.Time `json:"drill_fired"`
	// Coverage tracks pack verification per repository (verify.go).
	Coverage map[string]*Coverage `json:"coverage"`
	// VerifyFired is each repository's verification-schedule watermark.
	VerifyFired map[string]time.Time `json:"verify_fired"`
	// PruneFired is each policy's prune-schedule watermark.
	PruneFired map[string]time.Time `json:"prune_fired,omitempty"`
	// Alerts are the open and recently resolved alerts by key, and
	// AlertTargets where they are sent (alert.go).
	Alerts       map[string]*Alert       `json:"alerts"`
	AlertTargets map[string]*AlertTarget `json:"alert_targets"`

	// pending indexes pending job IDs by agent. It is derived from Jobs
	// (never encoded), built whenever a State is made and kept current by
	// setJobState, so readers never write it.
	pending map[string]map[string]bool
}

// PolicyRecord is a policy as stored: the policy and when it last changed.
type PolicyRecord struct {
	Policy    Policy    `json:"policy"`
	Version   uint64    `json:"version"` // Raft index of the command that last wrote it
	CreatedAt time.Time `json:"created_at"`
	// CreatedIndex is the Raft index of the command that created the
	// policy (0 for policies created before it was recorded).
	CreatedIndex uint64    `json:"created_index,omitempty"`
	UpdatedAt    time.Time `json:"updated_at"`
	UpdatedBy    string    `json:"updated_by,omitempty"`
}

// Repository is a backup repository registered with the coordinator. It
// holds a writer key, never an identity: it can let agents write backups
// but cannot read them.
type Repository struct {
	Name      string            `json:"name"`
	URL       string            `json:"url"`
	WriterKey []byte            `json:"writer_key"`    // a chunkstore writer key file
	Env       map[string]string `json:"env,omitempty"` // AWS_* etc. captured at 'repo add'
	AddedAt   time.Time         `json:"added_at"`
	AddedBy   string            `json:"added_by,omitempty"`
}

// Public returns a copy without the writer key and with environment values
// blanked, fit for listing to any reader.
func (r *Repository) Public() Repository {
	c := *r
	c.WriterKey = nil
	if r.Env != nil {
		c.Env = make(map[string]string, len(r.Env))
		for k := range r.Env {
			c.Env[k] = "***"
		}
	}
	return c
}

// Agent is an enrolled node daemon.
type Agent struct {
	Name           string            `json:"name"`
	Labels         map[string]string `json:"labels,omitempty"`
	Version        string            `json:"version,omitempty"`
	CredentialHash string            `json:"credential_hash"` // hex SHA-256 of the agent's secret
	EnrolledAt     time.Time         `json:"enrolled_at"`
	LastSeen       time.Time         `json:"last_seen"`
	Revoked        bool              `json:"revoked,omitempty"`
	// MaxConcurrent is how many jobs the agent runs at once (0 = 1).
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// Running lists the IDs of jobs the agent holds a lease on, sorted.
	Running []string `json:"running,omitempty"`
	// Capabilities the agent announced: CapDrill when it holds an
	// identity and can run restore drills. Only capabilities in Grants
	// count: an admin decides which agents may run drills (a drill
	// runner's verdict is evidence; a node that merely backs up must not
	// be able to forge it).
	Capabilities []string `json:"capabilities,omitempty"`
	Grants       []string `json:"grants,omitempty"`
	// FixedLabels: the agent was enrolled with a join token that fixes
	// labels; Labels are the token's and the agent cannot change them.
	FixedLabels bool `json:"fixed_labels,omitempty"`
}

// CapDrill is the capability of an agent started with --identity.
const CapDrill = "drill"

// Can reports whether the agent announced capability c.
func (a *Agent) Can(c string) bool { return slices.Contains(a.Capabilities, c) }

// Limit is the agent's effective concurrency.
func (a *Agent) Limit() int {
	if a.MaxConcurrent <= 0 {
		return 1
	}
	return a.MaxConcurrent
}

// Job is one run of a policy on one agent.
type Job struct {
	ID          string    `json:"id"`
	Kind        JobKind   `json:"kind"`
	Trigger     Trigger   `json:"trigger"`
	Policy      string    `json:"policy"`
	Agent       string    `json:"agent"`
	ScheduledAt time.Time `json:"scheduled_at"` // the instant the job stands for
	State       JobState  `json:"state"`
	Attempt     int       `json:"attempt"` // leases handed out so far
	MaxAttempts int       `json:"max_attempts"`
	NotBefore   time.Time `json:"not_before,omitzero"` // no lease before this (jitter, retry backoff)
	Lease       *Lease    `json:"lease,omitempty"`
	Progress    *Progress `json:"progress,omitempty"`
	Result      *Result   `json:"result,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	CreatedBy   string    `json:"created_by,omitempty"`
	// CreatedIndex is the Raft index of the command that created the job
	// (0 for jobs created before it was recorded): unlike CreatedAt, it
	// orders the job against its policy's creation whatever the clocks
	// did (see beforePolicy).
	CreatedIndex uint64 `json:"created_index,omitempty"`
	// Repository is the repository of a verify job (which has no policy)
	// or of a prune job: the policy's when the job was created, so that a
	// policy moved to another repository meanwhile neither moves the
	// prune nor lets a second one start on the first repository. Prune
	// jobs created before it was recorded have none: their policy's is
	// taken (jobRepository).
	Repository string `json:"repository,omitempty"`
	// Drill and Verify carry what drill and verify jobs need.
	Drill  *DrillParams  `json:"drill,omitempty"`
	Verify *VerifyParams `json:"verify,omitempty"`
}

// Lease is an agent's claim on a running job. Only the holder of the
// current fencing token may renew or complete the job, and only before the
// deadline.
type Lease struct {
	Token    uint64    `json:"token"`
	Holder   string    `json:"holder"`
	Deadline time.Time `json:"deadline"`
	// Index is the Raft index of the lease: what a job does after
	// receiving it sees every state change up to there.
	Index uint64 `json:"index,omitempty"`
}

// Progress is what a running job last reported.
type Progress struct {
	Files      int64     `json:"files"`
	Bytes      int64     `json:"bytes"`
	Rate       int64     `json:"rate"`        // bytes per second
	ETASeconds int64     `json:"eta_seconds"` // 0 = unknown
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
}

// Result is how a job's last attempt ended.
type Result struct {
	SnapshotID string `json:"snapshot_id,omitempty"`
	Size       int64  `json:"size,omitempty"`
	Error      string `json:"error,omitempty"`
	// Partial marks a committed snapshot that misses entries the agent
	// could not read; Warnings say which, and anything else the operator
	// should know about a job that succeeded (e.g. a files cache that
	// could not be saved).
	Partial  bool     `json:"partial,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Drill is the ID of the drill record a drill job produced.
	Drill string `json:"drill,omitempty"`
	// Verify summarises what a verify job checked.
	Verify *VerifySummary `json:"verify,omitempty"`
	// Forgotten are the snapshots the policy's retention removed after
	// this backup (backup jobs).
	Forgotten []string `json:"forgotten,omitempty"`
	// Prune is what a prune job found and did.
	Prune *PruneSummary `json:"prune,omitempty"`
}

// CatalogEntry is a snapshot known to the coordinator, added when a backup
// job succeeds.
type CatalogEntry struct {
	ID         string    `json:"id"`
	Repository string    `json:"repository"`
	Policy     string    `json:"policy,omitempty"`
	Host       string    `json:"host"`
	Time       time.Time `json:"time"`
	Size       int64     `json:"size"`
	JobID      string    `json:"job_id,omitempty"`
	// AddedIndex is the Raft index of the job completion that added it
	// (zero for entries older than the field).
	AddedIndex uint64 `json:"added_index,omitempty"`
}

// APIToken is a bearer token. Only the SHA-256 of its secret is stored.
type APIToken struct {
	ID        string    `json:"id"`
	Hash      string    `json:"hash"` // hex SHA-256 of the secret
	Role      Role      `json:"role"`
	Name      string    `json:"name,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

// Expired reports whether the token is past its expiry at t.
func (tk *APIToken) Expired(t time.Time) bool {
	return !tk.Expires.IsZero() && !t.Before(tk.Expires)
}

// JoinToken lets an agent enroll. Only the SHA-256 of its secret is stored.
type JoinToken struct {
	ID      string            `json:"id"`
	Hash    string            `json:"hash"`
	Labels  map[string]string `json:"labels,omitempty"` // added to the enrolling agent's labels
	Expires time.Time         `json:"expires,omitzero"`
	MaxUses int               `json:"max_uses,omitempty"` // 0 = unlimited
	Uses    int               `json:"uses"`
	// Grants are the capabilities agents enrolled with it may announce
	// (CapDrill: it may become a drill runner).
	Grants    []string  `json:"grants,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	// FixedLabels: Labels are all the labels its agents get; an
	// enrolment asking for others is refused.
	FixedLabels bool `json:"fixed_labels,omitempty"`
}

// AuditEntry records one applied mutation: who did what to which target,
// and when (the command's time).
type AuditEntry struct {
	Seq    uint64    `json:"seq"`
	Index  uint64    `json:"index"` // Raft index
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"` // the command type
	Target string    `json:"target,omitempty"`
}

// NewState returns an empty state.
func NewState() *State {
	s := &State{}
	s.fill()
	return s
}

// fill makes every map non-nil (after decoding a snapshot, for instance).
func (s *State) fill() {
	if s.Policies == nil {
		s.Policies = map[string]*PolicyRecord{}
	}
	if s.Repositories == nil {
		s.Repositories = map[string]*Repository{}
	}
	if s.Agents == nil {
		s.Agents = map[string]*Agent{}
	}
	if s.Jobs == nil {
		s.Jobs = map[string]*Job{}
	}
	if s.Catalog == nil {
		s.Catalog = map[string]*CatalogEntry{}
	}
	if s.LastFired == nil {
		s.LastFired = map[string]time.Time{}
	}
	if s.Tokens == nil {
		s.Tokens = map[string]*APIToken{}
	}
	if s.JoinTokens == nil {
		s.JoinTokens = map[string]*JoinToken{}
	}
	if s.Drills == nil {
		s.Drills = map[string]*DrillRecord{}
	}
	if s.DrillFired == nil {
		s.DrillFired = map[string]time.Time{}
	}
	if s.Coverage == nil {
		s.Coverage = map[string]*Coverage{}
	}
	if s.PruneFired == nil {
		s.PruneFired = map[string]time.Time{}
	}
	if s.VerifyFired == nil {
		s.VerifyFired = map[string]time.Time{}
	}
	if s.Alerts == nil {
		s.Alerts = map[string]*Alert{}
	}
	if s.AlertTargets == nil {
		s.AlertTargets = map[string]*AlertTarget{}
	}
	s.buildPending()
}

func (s *State) buildPending() {
	s.pending = map[string]map[string]bool{}
	for id, j := range s.Jobs {
		if j.State == JobPending {
			s.addPending(j.Agent, id)
		}
	}
}

func (s *State) addPending(agent, id string) {
	m := s.pending[agent]
	if m == nil {
		m = map[string]bool{}
		s.pending[agent] = m
	}
	m[id] = true
}

// setJobState moves j to state st, keeping the pending index current.
// Every job state change goes through here.
func (s *State) setJobState(j *Job, st JobState) {
	if j.State == JobPending && st != JobPending {
		delete(s.pending[j.Agent], j.ID)
		if len(s.pending[j.Agent]) == 0 {
			delete(s.pending, j.Agent)
		}
	}
	if st == JobPending && j.State != JobPending {
		s.addPending(j.Agent, j.ID)
	}
	j.State = st
}

// PendingFor returns the IDs of agent's pending jobs, sorted: what a
// dispatcher checks before it proposes a lease.
func (s *State) PendingFor(agent string) []string { return sortedKeys(s.pending[agent]) }

// HasWork reports whether agent could lease a job at t: it has a pending
// job whose not-before has passed, and it is under its concurrency limit.
// (The policy's limit is checked by the lease itself.)
func (s *State) HasWork(agent string, t time.Time) bool {
	a := s.Agents[agent]
	if a == nil || a.Revoked {
		return false
	}
	for id := range s.pending[agent] {
		if j := s.Jobs[id]; !t.Before(j.NotBefore) && s.slotFree(a, j.Kind) {
			return true
		}
	}
	return false
}

// sortedKeys returns m's keys in order: the only way code in this package
// walks a map when the walk decides anything.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// PolicyNames returns the names of all policies, sorted.
func (s *State) PolicyNames() []string { return sortedKeys(s.Policies) }

// AgentNames returns the names of all agents, sorted.
func (s *State) AgentNames() []string { return sortedKeys(s.Agents) }

// JobFilter selects jobs; empty fields match everything.
type JobFilter struct {
	Policy string
	Agent  string
	State  JobState
	Kind   JobKind
}

// Match reports whether j passes the filter.
func (f JobFilter) Match(j *Job) bool {
	return (f.Policy == "" || j.Policy == f.Policy) &&
		(f.Agent == "" || j.Agent == f.Agent) &&
		(f.State == "" || j.State == f.State) &&
		(f.Kind == "" || j.Kind == f.Kind)
}

// FindJobs returns copies of the jobs passing f, oldest scheduled instant
// first (ties by ID).
func (s *State) FindJobs(f JobFilter) []Job {
	var out []Job
	for _, j := range s.Jobs {
		if f.Match(j) {
			out = append(out, j.clone())
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].ScheduledAt.Equal(out[b].ScheduledAt) {
			return out[a].ScheduledAt.Before(out[b].ScheduledAt)
		}
		return out[a].ID < out[b].ID
	})
	return out
}

// RunningByPolicy counts running backup jobs per policy: what a policy's
// max_concurrent limits (a drill or verify job of the policy runs in its
// agent's maintenance slot and holds up no backup).
func (s *State) RunningByPolicy() map[string]int {
	n := map[string]int{}
	for _, a := range s.Agents {
		for _, id := range a.Running {
			if j := s.Jobs[id]; j != nil && j.Kind == KindBackup {
				n[j.Policy]++
			}
		}
	}
	return n
}

// RunningByAgent counts running jobs per agent.
func (s *State) RunningByAgent() map[string]int {
	n := map[string]int{}
	for name, a := range s.Agents {
		if len(a.Running) > 0 {
			n[name] = len(a.Running)
		}
	}
	return n
}

// Marshal encodes the state as JSON. Equal states give equal bytes.
func (s *State) Marshal() ([]byte, error) { return json.Marshal(s) }

// Clone returns a deep copy that shares nothing with s.
func (s *State) Clone() *State {
	c := &State{
		Index:        s.Index,
		LeaseSeq:     s.LeaseSeq,
		AuditSeq:     s.AuditSeq,
		Policies:     make(map[string]*PolicyRecord, len(s.Policies)),
		Repositories: make(map[string]*Repository, len(s.Repositories)),
		Agents:       make(map[string]*Agent, len(s.Agents)),
		Jobs:         make(map[string]*Job, len(s.Jobs)),
		Catalog:      make(map[string]*CatalogEntry, len(s.Catalog)),
		LastFired:    make(map[string]time.Time, len(s.LastFired)),
		Tokens:       make(map[string]*APIToken, len(s.Tokens)),
		JoinTokens:   make(map[string]*JoinToken, len(s.JoinTokens)),
		Audit:        slices.Clone(s.Audit),
		Cluster:      s.Cluster.clone(),
		Drills:       cloneJSON(s.Drills),
		DrillFired:   maps.Clone(s.DrillFired),
		Coverage:     cloneJSON(s.Coverage),
		VerifyFired:  maps.Clone(s.VerifyFired),
		PruneFired:   maps.Clone(s.PruneFired),
		Alerts:       cloneJSON(s.Alerts),
		AlertTargets: cloneJSON(s.AlertTargets),
	}
	for k, v := range s.Policies {
		r := *v
		r.Policy = clonePolicy(v.Policy)
		c.Policies[k] = &r
	}
	for k, v := range s.Repositories {
		r := *v
		r.WriterKey = slices.Clone(v.WriterKey)
		r.Env = cloneMap(v.Env)
		c.Repositories[k] = &r
	}
	for k, v := range s.Agents {
		a := *v
		a.Labels = cloneMap(v.Labels)
		a.Running = slices.Clone(v.Running)
		a.Capabilities = slices.Clone(v.Capabilities)
		a.Grants = slices.Clone(v.Grants)
		c.Agents[k] = &a
	}
	for k, v := range s.Jobs {
		j := v.clone()
		c.Jobs[k] = &j
	}
	for k, v := range s.Catalog {
		e := *v
		c.Catalog[k] = &e
	}
	for k, v := range s.LastFired {
		c.LastFired[k] = v
	}
	for k, v := range s.Tokens {
		t := *v
		c.Tokens[k] = &t
	}
	for k, v := range s.JoinTokens {
		t := *v
		t.Labels = cloneMap(v.Labels)
		t.Grants = slices.Clone(v.Grants)
		c.JoinTokens[k] = &t
	}
	c.fill()
	return c
}

func (j *Job) clone() Job {
	c := *j
	if j.Lease != nil {
		l := *j.Lease
		c.Lease = &l
	}
	if j.Progress != nil {
		p := *j.Progress
		c.Progress = &p
	}
	if j.Result != nil {
		r := *j.Result
		r.Warnings = slices.Clone(j.Result.Warnings)
		r.Forgotten = slices.Clone(j.Result.Forgotten)
		if j.Result.Prune != nil {
			p := *j.Result.Prune
			r.Prune = &p
		}
		if j.Result.Verify != nil {
			v := *j.Result.Verify
			v.Damaged = slices.Clone(v.Damaged)
			v.CatalogDropped = slices.Clone(v.CatalogDropped)
			r.Verify = &v
		}
		c.Result = &r
	}
	if j.Drill != nil {
		d := *j.Drill
		c.Drill = &d
	}
	if j.Verify != nil {
		v := *j.Verify
		v.Shards = slices.Clone(j.Verify.Shards)
		c.Verify = &v
	}
	return c
}

// cloneJSON deep-copies v through JSON: for nested records where a
// hand-written copy would silently go stale as fields are added. Stored
// values always encode.
func cloneJSON[T any](v T) T {
	b, err := json.Marshal(v)
	if err != nil {
		panic("coordinator: stored state does not encode: " + err.Error())
	}
	var c T
	if err := json.Unmarshal(b, &c); err != nil {
		panic("coordinator: stored state does not decode: " + err.Error())
	}
	return c
}

// clonePolicy deep-copies a policy through JSON, which keeps working when
// fields are added to Policy. A policy that was stored always encodes.
func clonePolicy(p Policy) Policy {
	b, err := json.Marshal(p)
	if err != nil {
		panic("coordinator: stored policy does not encode: " + err.Error())
	}
	var c Policy
	if err := json.Unmarshal(b, &c); err != nil {
		panic("coordinator: stored policy does not decode: " + err.Error())
	}
	return c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
