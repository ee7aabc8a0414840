package coordinator

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// snapshotFormat versions the FSM snapshot encoding: the newest this
// binary reads. 2: a state with a policy whose retention has keep_tags
// (an older node would drop them on restore, and its agents would forget
// held snapshots); 3: a state with a join token or an agent whose labels
// are fixed (an older node would drop fixed_labels, and let the token's
// agents choose their labels again). Each state is written with the
// lowest format that encodes it.
const snapshotFormat = 3

// formatOf is the lowest snapshot format that encodes st faithfully.
func formatOf(st *State) int {
	for _, jt := range st.JoinTokens {
		if jt.FixedLabels {
			return 3
		}
	}
	for _, a := range st.Agents {
		if a.FixedLabels {
			return 3
		}
	}
	for _, p := range st.Policies {
		if len(p.Policy.Retention.KeepTags) > 0 {
			return 2
		}
	}
	return 1
}

// FSM is the coordinator's replicated state machine. Apply is a pure
// function of the state and the command: no clock, no randomness, no map
// order. Readers use View or State; they never see a half-applied command.
type FSM struct {
	mu      sync.RWMutex
	st      *State
	changed chan struct{} // closed and replaced after every apply and restore
}

// ApplyResult is what FSM.Apply returns for a command (raft hands it back
// to the proposer). Err is nil or wraps one of the package's sentinels.
type ApplyResult struct {
	Index uint64
	Value any
	Err   error
}

// NewFSM returns an FSM holding an empty state.
func NewFSM() *FSM {
	return &FSM{st: NewState(), changed: make(chan struct{})}
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	return f.ApplyBytes(l.Index, l.Data)
}

// ApplyBytes applies one encoded command as the log entry at index. A
// rejected command leaves the state exactly as it was.
func (f *FSM) ApplyBytes(index uint64, data []byte) *ApplyResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := &ApplyResult{Index: index}
	res.Value, res.Err = f.st.apply(index, data)
	if res.Err == nil {
		f.st.Index = index
		close(f.changed)
		f.changed = make(chan struct{})
	}
	return res
}

// View calls fn with the current state under a read lock. fn must not
// keep or modify anything it reaches through s.
func (f *FSM) View(fn func(s *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// State returns a deep copy of the current state.
func (f *FSM) State() *State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Clone()
}

// Changed returns a channel that is closed when the state next changes.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

type snapshotFile struct {
	Format int    `json:"format"`
	State  *State `json:"state"`
}

// SnapshotBytes encodes the whole state. Equal states give equal bytes.
func (f *FSM) SnapshotBytes() ([]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := json.Marshal(snapshotFile{Format: formatOf(f.st), State: f.st})
	if err != nil {
		return nil, fmt.Errorf("encode fsm snapshot: %w", err)
	}
	return b, nil
}

// Snapshot implements raft.FSM. The state is encoded at once, so Apply can
// continue while raft persists it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	b, err := f.SnapshotBytes()
	if err != nil {
		return nil, err
	}
	return fsmSnapshot(b), nil
}

// Restore implements raft.FSM: it replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read fsm snapshot: %w", err)
	}
	return f.RestoreBytes(b)
}

// RestoreBytes replaces the state with an encoded snapshot's.
func (f *FSM) RestoreBytes(b []byte) error {
	var sf snapshotFile
	if err := json.Unmarshal(b, &sf); err != nil {
		return fmt.Errorf("decode fsm snapshot: %w", err)
	}
	if sf.Format < 1 || sf.Format > snapshotFormat {
		return fmt.Errorf("fsm snapshot format %d: this binary reads up to %d; upgrade it", sf.Format, snapshotFormat)
	}
	if sf.State == nil {
		return fmt.Errorf("decode fsm snapshot: no state")
	}
	sf.State.fill()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = sf.State
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write fsm snapshot: %w", err)
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}

// outcome is what a transition returns besides an error.
type outcome struct {
	value  any
	target string // audit target
	noop   bool   // nothing changed: no audit entry
}

type transition func(s *State, c *Command, index uint64) (outcome, error)

// payload adapts a typed transition: it decodes the payload first, so a
// malformed one is rejected before anything changes.
func payload[P any](fn func(s *State, c *Command, index uint64, p *P) (outcome, error)) transition {
	return func(s *State, c *Command, index uint64) (outcome, error) {
		var p P
		raw := c.Payload
		if len(bytes.TrimSpace(raw)) == 0 {
			raw = []byte("{}")
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return outcome{}, fmt.Errorf("%w: %s payload: %v", ErrInvalidCommand, c.Type, err)
		}
		return fn(s, c, index, &p)
	}
}

// transitions maps each command type to its state change. Every one
// checks everything before it changes anything.
var transitions = map[CommandType]transition{
	CmdPutPolicy:        payload(putPolicy),
	CmdPutPolicies:      payload(putPolicies),
	CmdDeletePolicy:     payload(deletePolicy),
	CmdAddRepository:    payload(addRepository),
	CmdRemoveRepository: payload(removeRepository),
	CmdEnrollAgent:      payload(enrollAgent),
	CmdAgentSeen:        payload(agentSeen),
	CmdRevokeAgent:      payload(revokeAgent),
	CmdCreateJobs:       payload(createJobs),
	CmdLeaseJob:         payload(leaseJob),
	CmdRenewLease:       payload(renewLease),
	CmdCompleteJob:      payload(completeJob),
	CmdExpireLease:      payload(expireLease),
	CmdCancelJob:        payload(cancelJob),
	CmdPruneJobs:        payload(pruneJobs),
	CmdForgetSnapshot:   payload(forgetSnapshot),
	CmdCreateToken:      payload(createToken),
	CmdRevokeToken:      payload(revokeToken),
	CmdCreateJoinToken:  payload(createJoinToken),
	CmdRevokeJoinToken:  payload(revokeJoinToken),
	CmdRecordDrill:      payload(recordDrillCmd),
	CmdGrantAgent:       payload(grantAgent),

	CmdSyncAlerts:        payload(syncAlerts),
	CmdAlertDelivered:    payload(alertDelivered),
	CmdPutAlertTarget:    payload(putAlertTarget),
	CmdDeleteAlertTarget: payload(deleteAlertTarget),
}

// unaudited commands are frequent and change nothing an operator asked
// for; neither does the leader's own bookkeeping (ActorScheduler).
var unaudited = map[CommandType]bool{CmdAgentSeen: true, CmdRenewLease: true}

// ActorScheduler is the actor of commands the leader loop proposes.
const ActorScheduler = "scheduler"

func (s *State) apply(index uint64, data []byte) (v any, err error) {
	c, err := DecodeCommand(data)
	if err != nil {
		return nil, err
	}
	if c.Version < 1 || c.Version > CommandVersion {
		return nil, fmt.Errorf("%w: %s version %d (this node applies up to %d): upgrade this node", ErrUnsupportedCommand, c.Type, c.Version, CommandVersion)
	}
	tr, ok := transitions[c.Type]
	if !ok {
		return nil, fmt.Errorf("%w: unknown type %q (written by a newer node?)", ErrUnsupportedCommand, c.Type)
	}
	if c.Time.IsZero() {
		return nil, fmt.Errorf("%w: %s without a time", ErrInvalidCommand, c.Type)
	}
	c.Time = c.Time.UTC()
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("apply %s at index %d: internal error: %v", c.Type, index, r)
		}
	}()
	out, err := tr(s, &c, index)
	if err != nil {
		return nil, err
	}
	if !out.noop && !unaudited[c.Type] && c.Actor != ActorScheduler {
		s.audit(index, &c, out.target)
	}
	return out.value, nil
}

func (s *State) audit(index uint64, c *Command, target string) {
	s.AuditSeq++
	if len(s.Audit) >= AuditLimit {
		n := copy(s.Audit, s.Audit[len(s.Audit)-AuditLimit+1:])
		s.Audit = s.Audit[:n]
	}
	s.Audit = append(s.Audit, AuditEntry{Seq: s.AuditSeq, Index: index, Time: c.Time, Actor: c.Actor, Action: string(c.Type), Target: target})
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidCommand, fmt.Sprintf(format, args...))
}

func notFound(what, name string) error { return fmt.Errorf("%s %q: %w", what, name, ErrNotFound) }

func conflict(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConflict, fmt.Sprintf(format, args...))
}

// --- policies and repositories ---

func putPolicy(s *State, c *Command, index uint64, p *PutPolicy) (outcome, error) {
	if err := checkPutPolicy(s, p.Policy); err != nil {
		return outcome{}, err
	}
	if p.CheckIndex != nil {
		if err := checkPolicyIndex(s, p.Policy.Name, *p.CheckIndex); err != nil {
			return outcome{}, err
		}
	}
	storePolicy(s, c, index, p.Policy)
	return outcome{value: index, target: "policy/" + p.Policy.Name}, nil
}

// putPolicies stores a batch of policies (a policy file) as one entry:
// every policy is checked as putPolicy checks one before any is stored,
// so the batch is applied whole or not at all. Every policy gets the
// entry's index as its version. One audit entry names them all, in the
// batch's order.
func putPolicies(s *State, c *Command, index uint64, p *PutPolicies) (outcome, error) {
	if len(p.Policies) == 0 {
		return outcome{}, invalid("policy batch without policies")
	}
	seen := make(map[string]bool, len(p.Policies))
	for _, pol := range p.Policies {
		if err := checkPutPolicy(s, pol); err != nil {
			return outcome{}, err
		}
		if seen[pol.Name] {
			return outcome{}, invalid("policy %q is twice in the batch", pol.Name)
		}
		seen[pol.Name] = true
	}
	targets := make([]string, 0, len(p.Policies))
	for _, pol := range p.Policies {
		storePolicy(s, c, index, pol)
		targets = append(targets, "policy/"+pol.Name)
	}
	return outcome{value: index, target: strings.Join(targets, ",")}, nil
}

// checkPutPolicy is what applying a policy re-checks against the state.
func checkPutPolicy(s *State, pol Policy) error {
	// Policies are validated (Policy.Validate, schedule parsing) by the
	// node before proposing. Apply must not repeat that: validation rules
	// and time-zone data can differ between versions and hosts, and every
	// node must reach the same state from the same log.
	if pol.Name == "" {
		return invalid("policy without a name")
	}
	if _, ok := s.Repositories[pol.Repository]; !ok {
		return fmt.Errorf("policy %q: repository %q is not registered (add it with 'lifeboat repo add'): %w", pol.Name, pol.Repository, ErrNotFound)
	}
	return nil
}

// checkPolicyIndex refuses, with ErrConflict naming the current version, a
// change to policy name made from version want (0: from its absence).
func checkPolicyIndex(s *State, name string, want uint64) error {
	var cur uint64
	if pr := s.Policies[name]; pr != nil {
		cur = pr.Version
	}
	switch {
	case cur == want:
		return nil
	case cur == 0:
		return conflict("policy %q does not exist (check index %d): it was deleted since it was read", name, want)
	case want == 0:
		return conflict("policy %q already exists, at index %d (check index 0 only creates)", name, cur)
	}
	return conflict("policy %q is at index %d, not %d: it was changed since it was read; "+
		"read it again ('lifeboat policy show %s'), and apply with --check-index %d if the change still holds", name, cur, want, name, cur)
}

// storePolicy stores a checked policy as version index.
func storePolicy(s *State, c *Command, index uint64, pol Policy) {
	rec := &PolicyRecord{Policy: clonePolicy(pol), Version: index, CreatedAt: c.Time, CreatedIndex: index, UpdatedAt: c.Time, UpdatedBy: c.Actor}
	old := s.Policies[pol.Name]
	if old != nil {
		rec.CreatedAt, rec.CreatedIndex = old.CreatedAt, old.CreatedIndex
	}
	// A new policy, or a new schedule, starts firing from now: instants of
	// the new schedule before the change were never promised.
	if old == nil || old.Policy.Schedule != pol.Schedule {
		if lf, ok := s.LastFired[pol.Name]; !ok || lf.Before(c.Time) {
			s.LastFired[pol.Name] = c.Time
		}
	}
	// Likewise a new prune schedule ('lifeboat policy prune' runs one now).
	if pol.Retention.Prune != "" && (old == nil || old.Policy.Retention.Prune != pol.Retention.Prune) {
		if lf, ok := s.PruneFired[pol.Name]; !ok || lf.Before(c.Time) {
			s.PruneFired[pol.Name] = c.Time
		}
	}
	s.Policies[pol.Name] = rec
}

func deletePolicy(s *State, c *Command, _ uint64, p *DeletePolicy) (outcome, error) {
	if _, ok := s.Policies[p.Name]; !ok {
		return outcome{}, notFound("policy", p.Name)
	}
	delete(s.Policies, p.Name)
	delete(s.LastFired, p.Name)
	for _, id := range sortedKeys(s.Jobs) {
		if j := s.Jobs[id]; j.Policy == p.Name && j.State == JobPending {
			s.setJobState(j, JobCancelled)
			j.FinishedAt = c.Time
			j.Result = &Result{Error: "cancelled: policy deleted"}
		}
	}
	return outcome{target: "policy/" + p.Name}, nil
}

// IsIdentity reports whether b looks like an age identity (plain,
// post-quantum, or passphrase-encrypted): the credential the coordinator
// must never hold.
func IsIdentity(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "AGE-SECRET-KEY-") || strings.HasPrefix(line, "age-encryption.org/") ||
			strings.HasPrefix(line, "-----BEGIN AGE ENCRYPTED FILE-----") {
			return true
		}
	}
	return false
}

// CheckWriterKey returns an error unless b is a writer key file. An age
// identity gets an error that says why it is refused.
func CheckWriterKey(b []byte) error {
	if IsIdentity(b) {
		return fmt.Errorf("this is an age identity, which can read every backup; the coordinator only holds writer keys: pass the repository's writer key file instead")
	}
	if _, err := chunkstore.ParseWriterKey(b); err != nil {
		return fmt.Errorf("writer key: %w", err)
	}
	return nil
}

func addRepository(s *State, c *Command, _ uint64, p *AddRepository) (outcome, error) {
	if p.Name == "" || p.URL == "" {
		return outcome{}, invalid("repository needs a name and a URL")
	}
	if err := CheckWriterKey(p.WriterKey); err != nil {
		return outcome{}, invalid("repository %q: %v", p.Name, err)
	}
	if _, ok := s.Repositories[p.Name]; ok && !p.Replace {
		return outcome{}, conflict("repository %q is already registered", p.Name)
	}
	s.Repositories[p.Name] = &Repository{Name: p.Name, URL: p.URL, WriterKey: slices.Clone(p.WriterKey),
		Env: cloneMap(p.Env), AddedAt: c.Time, AddedBy: c.Actor}
	return outcome{target: "repo/" + p.Name}, nil
}

func removeRepository(s *State, c *Command, _ uint64, p *RemoveRepository) (outcome, error) {
	if _, ok := s.Repositories[p.Name]; !ok {
		return outcome{}, notFound("repository", p.Name)
	}
	for _, name := range sortedKeys(s.Policies) {
		if s.Policies[name].Policy.Repository == p.Name {
			return outcome{}, conflict("repository %q is used by policy %q: delete or change the policy first", p.Name, name)
		}
	}
	for _, id := range sortedKeys(s.Jobs) {
		if j := s.Jobs[id]; c.Version >= 6 && !j.State.Final() && j.Repository == p.Name {
			return outcome{}, conflict("repository %q has a %s job %s %s: wait for it to finish or cancel it first", p.Name, j.Kind, id, j.State)
		}
	}
	delete(s.Repositories, p.Name)
	return outcome{target: "repo/" + p.Name}, nil
}

func forgetSnapshot(s *State, _ *Command, _ uint64, p *ForgetSnapshot) (outcome, error) {
	if _, ok := s.Catalog[p.ID]; !ok {
		return outcome{}, notFound("snapshot", p.ID)
	}
	delete(s.Catalog, p.ID)
	return outcome{target: "snapshot/" + p.ID}, nil
}

// --- agents and tokens ---

func checkHash(h string) error {
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
		return fmt.Errorf("hash must be 64 hex digits (SHA-256)")
	}
	return nil
}

func enrollAgent(s *State, c *Command, _ uint64, p *EnrollAgent) (outcome, error) {
	if p.Name == "" {
		return outcome{}, invalid("agent without a name")
	}
	if err := checkHash(p.CredentialHash); err != nil {
		return outcome{}, invalid("agent %q: credential %v", p.Name, err)
	}
	old := s.Agents[p.Name]
	if old != nil && old.Revoked {
		return outcome{}, fmt.Errorf("agent %q: %w: enroll it under a new name", p.Name, ErrRevoked)
	}
	if old != nil && !p.Replace {
		return outcome{}, conflict("agent %q is already enrolled; an admin can re-enroll it (replacing its credential) or revoke it", p.Name)
	}
	var jt *JoinToken
	if p.JoinToken != "" {
		jt = s.JoinTokens[p.JoinToken]
		switch {
		case jt == nil:
			return outcome{}, notFound("join token", p.JoinToken)
		case !jt.Expires.IsZero() && !c.Time.Before(jt.Expires):
			return outcome{}, conflict("join token %q expired at %s", jt.ID, jt.Expires.Format(time.RFC3339))
		case jt.MaxUses > 0 && jt.Uses >= jt.MaxUses:
			return outcome{}, conflict("join token %q has been used %d times, its limit", jt.ID, jt.Uses)
		}
	}
	// A join token with fixed labels decides the agent's labels, and an
	// agent enrolled with one keeps them when an admin re-enrolls it:
	// otherwise a machine holding the token could ask for the labels of
	// another policy's agents and be given that repository's writer key.
	var fixed map[string]string
	isFixed := (jt != nil && jt.FixedLabels) || (old != nil && old.FixedLabels)
	switch {
	case jt != nil && jt.FixedLabels:
		fixed = jt.Labels
		if bad := labelsOutside(p.Labels, fixed); bad != "" {
			return outcome{}, conflict("join token %q fixes the labels of the agents it enrolls to {%s}: agent %q may not set %s; "+
				"start the agent without --label (or with only those labels), or have an admin create a token with the labels it should have", jt.ID, labelList(fixed), p.Name, bad)
		}
	case old != nil && old.FixedLabels:
		fixed = old.Labels
		if bad := labelsOutside(p.Labels, fixed); bad != "" {
			return outcome{}, conflict("agent %q was enrolled with fixed labels {%s}: re-enrolling it may not set %s; "+
				"re-enroll it without labels (it keeps its own), or revoke it and enroll it under a new name with a join token that has the labels it should have", p.Name, labelList(fixed), bad)
		}
	}
	labels := cloneMap(p.Labels)
	if isFixed {
		labels = cloneMap(fixed)
	}
	if jt != nil {
		jt.Uses++
		for k, v := range jt.Labels {
			if labels == nil {
				labels = map[string]string{}
			}
			labels[k] = v
		}
	}
	grants := sortedStrings(p.Grants)
	if jt != nil {
		grants = sortedStrings(append(grants, jt.Grants...))
	}
	a := &Agent{Name: p.Name, Labels: labels, Version: p.Version, CredentialHash: p.CredentialHash,
		EnrolledAt: c.Time, LastSeen: c.Time, MaxConcurrent: p.MaxConcurrent, Grants: grants,
		Capabilities: granted(p.Capabilities, grants), FixedLabels: isFixed}
	if old != nil {
		a.Running = old.Running
	}
	s.Agents[p.Name] = a
	return outcome{value: a.Name, target: "agent/" + p.Name}, nil
}

// labelsOutside lists, sorted as "k=v, ...", the labels of asked that
// fixed does not have with the same value ("" if none).
func labelsOutside(asked, fixed map[string]string) string {
	var bad []string
	for _, k := range sortedKeys(asked) {
		if v, ok := fixed[k]; !ok || v != asked[k] {
			bad = append(bad, k+"="+asked[k])
		}
	}
	return strings.Join(bad, ", ")
}

// labelList is m as "k=v, ..." in key order.
func labelList(m map[string]string) string {
	var kv []string
	for _, k := range sortedKeys(m) {
		kv = append(kv, k+"="+m[k])
	}
	return strings.Join(kv, ", ")
}

func agentSeen(s *State, c *Command, _ uint64, p *AgentSeen) (outcome, error) {
	a := s.Agents[p.Name]
	if a == nil {
		return outcome{}, notFound("agent", p.Name)
	}
	if c.Time.After(a.LastSeen) {
		a.LastSeen = c.Time
	}
	if p.Version != "" {
		a.Version = p.Version
	}
	if p.Capabilities != nil {
		a.Capabilities = granted(p.Capabilities, a.Grants)
	}
	return outcome{target: "agent/" + p.Name}, nil
}

func revokeAgent(s *State, _ *Command, _ uint64, p *RevokeAgent) (outcome, error) {
	a := s.Agents[p.Name]
	if a == nil {
		return outcome{}, notFound("agent", p.Name)
	}
	a.Revoked = true
	return outcome{target: "agent/" + p.Name}, nil
}

func createToken(s *State, c *Command, _ uint64, p *CreateToken) (outcome, error) {
	if p.ID == "" || !p.Role.Valid() {
		return outcome{}, invalid("token needs an ID and a role (admin, operator, agent, read-only)")
	}
	if err := checkHash(p.Hash); err != nil {
		return outcome{}, invalid("token %q: %v", p.ID, err)
	}
	if _, ok := s.Tokens[p.ID]; ok {
		return outcome{}, conflict("token %q exists", p.ID)
	}
	s.Tokens[p.ID] = &APIToken{ID: p.ID, Hash: p.Hash, Role: p.Role, Name: p.Name, Expires: p.Expires.UTC(),
		CreatedAt: c.Time, CreatedBy: c.Actor}
	return outcome{target: "token/" + p.ID}, nil
}

func revokeToken(s *State, _ *Command, _ uint64, p *RevokeToken) (outcome, error) {
	if _, ok := s.Tokens[p.ID]; !ok {
		return outcome{}, notFound("token", p.ID)
	}
	// Without an admin token that works, nobody may create tokens, change
	// membership or approve drill.verify commands again. Judged here, in
	// log order, so that two revokes racing through the API cannot both
	// pass; at the instant the command carries, so that a replay judges
	// expiry as it was judged then. An entry without one (written before
	// the rule) is applied as it was: allowed.
	if !p.CheckedAt.IsZero() && lastAdminToken(s, p.ID, p.CheckedAt) {
		return outcome{}, conflict("token %s is the last admin token that has not expired: revoking it would leave nobody who may create tokens or change membership; "+
			"create another first ('lifeboat token create --role admin'), then revoke this one", p.ID)
	}
	delete(s.Tokens, p.ID)
	return outcome{target: "token/" + p.ID}, nil
}

// lastAdminToken reports whether id is an admin token unexpired at t and
// no other admin token is.
func lastAdminToken(s *State, id string, t time.Time) bool {
	tk := s.Tokens[id]
	if tk == nil || tk.Role != RoleAdmin || tk.Expired(t) {
		return false
	}
	for oid, o := range s.Tokens {
		if oid != id && o.Role == RoleAdmin && !o.Expired(t) {
			return false
		}
	}
	return true
}

func createJoinToken(s *State, c *Command, _ uint64, p *CreateJoinToken) (outcome, error) {
	if p.ID == "" {
		return outcome{}, invalid("join token without an ID")
	}
	if err := checkHash(p.Hash); err != nil {
		return outcome{}, invalid("join token %q: %v", p.ID, err)
	}
	if _, ok := s.JoinTokens[p.ID]; ok {
		return outcome{}, conflict("join token %q exists", p.ID)
	}
	s.JoinTokens[p.ID] = &JoinToken{ID: p.ID, Hash: p.Hash, Labels: cloneMap(p.Labels), Expires: p.Expires.UTC(),
		MaxUses: p.MaxUses, CreatedAt: c.Time, CreatedBy: c.Actor, Grants: sortedStrings(p.Grants), FixedLabels: p.FixedLabels}
	return outcome{target: "jointoken/" + p.ID}, nil
}

func revokeJoinToken(s *State, _ *Command, _ uint64, p *RevokeJoinToken) (outcome, error) {
	if _, ok := s.JoinTokens[p.ID]; !ok {
		return outcome{}, notFound("join token", p.ID)
	}
	delete(s.JoinTokens, p.ID)
	return outcome{target: "jointoken/" + p.ID}, nil
}

// --- jobs ---

func validKind(k JobKind) bool {
	return k == KindBackup || k == KindVerify || k == KindDrill || k == KindPrune
}

func createJobs(s *State, c *Command, index uint64, p *CreateJobs) (outcome, error) {
	seen := map[string]bool{}
	for _, nj := range p.Jobs {
		if err := s.checkNewJob(&nj); err != nil {
			return outcome{}, err
		}
		if seen[nj.ID] {
			return outcome{}, invalid("job %q twice in one command", nj.ID)
		}
		seen[nj.ID] = true
	}
	for _, name := range sortedKeys(p.Fired) {
		if s.Policies[name] == nil {
			return outcome{}, fmt.Errorf("fired: %w", notFound("policy", name))
		}
	}
	for _, name := range sortedKeys(p.DrillFired) {
		if s.Policies[name] == nil {
			return outcome{}, fmt.Errorf("drill fired: %w", notFound("policy", name))
		}
	}
	for _, name := range sortedKeys(p.PruneFired) {
		if s.Policies[name] == nil {
			return outcome{}, fmt.Errorf("prune fired: %w", notFound("policy", name))
		}
	}
	for _, name := range sortedKeys(p.VerifyFired) {
		if s.Repositories[name] == nil {
			return outcome{}, fmt.Errorf("verify fired: %w", notFound("repository", name))
		}
	}
	// One prune job per repository at a time: another prune would find
	// nothing the first does not, and two would only wait on each other.
	pruning := s.pruningRepos() // and those of this command's jobs
	for _, nj := range p.Jobs {
		if nj.Kind != KindPrune || s.Jobs[nj.ID] != nil {
			continue
		}
		repo := nj.Repository
		if repo == "" { // from a leader that did not record it
			repo = s.Policies[nj.Policy].Policy.Repository
		}
		if pruning[repo] {
			return outcome{}, conflict("repository %q already has a prune job pending or running", repo)
		}
		pruning[repo] = true
	}
	res := CreateJobsResult{}
	for _, nj := range p.Jobs {
		// An instant at or before the last fired one has had its jobs,
		// even if they were since pruned: never fire it again.
		lf, fired := s.LastFired[nj.Policy]
		if _, ok := s.Jobs[nj.ID]; ok || (nj.Kind == KindBackup && nj.Trigger == TriggerSchedule && fired && !nj.ScheduledAt.After(lf)) {
			res.Existed = append(res.Existed, nj.ID)
			continue
		}
		maxAttempts := nj.MaxAttempts
		if maxAttempts <= 0 && nj.Policy != "" {
			maxAttempts = s.Policies[nj.Policy].Policy.MaxAttempts
		}
		if maxAttempts <= 0 {
			maxAttempts = DefaultMaxAttempts
		}
		j := &Job{ID: nj.ID, Kind: nj.Kind, Trigger: nj.Trigger, Policy: nj.Policy, Agent: nj.Agent,
			ScheduledAt: nj.ScheduledAt.UTC(), MaxAttempts: maxAttempts,
			NotBefore: nj.NotBefore.UTC(), CreatedAt: c.Time, CreatedBy: c.Actor, CreatedIndex: index, Repository: nj.Repository}
		if nj.Drill != nil {
			d := *nj.Drill
			j.Drill = &d
		}
		if nj.Verify != nil {
			j.Verify = &VerifyParams{Shards: sortedInts(nj.Verify.Shards)}
		}
		s.Jobs[nj.ID] = j
		s.setJobState(j, JobPending)
		res.Created = append(res.Created, nj.ID)
	}
	advanced := advance(s.LastFired, p.Fired)
	advanced = advance(s.DrillFired, p.DrillFired) || advanced
	advanced = advance(s.VerifyFired, p.VerifyFired) || advanced
	advanced = advance(s.PruneFired, p.PruneFired) || advanced
	target := ""
	if len(res.Created) == 1 {
		target = "job/" + res.Created[0]
	} else if len(res.Created) > 1 {
		target = fmt.Sprintf("%d jobs", len(res.Created))
	}
	return outcome{value: res, target: target, noop: len(res.Created) == 0 && !advanced}, nil
}

// advance moves each watermark in to forward (never back) and reports
// whether any moved.
func advance(marks, to map[string]time.Time) bool {
	moved := false
	for _, name := range sortedKeys(to) {
		t := to[name].UTC()
		if lf, ok := marks[name]; !ok || t.After(lf) {
			marks[name] = t
			moved = true
		}
	}
	return moved
}

// checkNewJob validates one job of a jobs.create command.
func (s *State) checkNewJob(nj *NewJob) error {
	switch {
	case nj.ID == "":
		return invalid("job without an ID")
	case !validKind(nj.Kind):
		return invalid("job %q: kind %q (want backup, verify, drill or prune)", nj.ID, nj.Kind)
	case nj.Trigger != TriggerSchedule && nj.Trigger != TriggerManual:
		return invalid("job %q: trigger %q", nj.ID, nj.Trigger)
	case s.Agents[nj.Agent] == nil:
		return fmt.Errorf("job %q: %w", nj.ID, notFound("agent", nj.Agent))
	}
	if nj.Kind == KindVerify {
		switch {
		case s.Repositories[nj.Repository] == nil:
			return fmt.Errorf("job %q: %w", nj.ID, notFound("repository", nj.Repository))
		case nj.Verify == nil || len(nj.Verify.Shards) == 0:
			return invalid("verify job %q without shards", nj.ID)
		}
		for _, sh := range nj.Verify.Shards {
			if sh < 0 || sh >= VerifyShards {
				return invalid("verify job %q: shard %d out of range", nj.ID, sh)
			}
		}
		return nil
	}
	if s.Policies[nj.Policy] == nil {
		return fmt.Errorf("job %q: %w", nj.ID, notFound("policy", nj.Policy))
	}
	if nj.Kind == KindPrune && nj.Repository != "" && s.Repositories[nj.Repository] == nil {
		return fmt.Errorf("job %q: %w", nj.ID, notFound("repository", nj.Repository))
	}
	if (nj.Kind == KindDrill || nj.Kind == KindPrune) && !s.Agents[nj.Agent].Can(CapDrill) {
		return conflict("%s job %q: agent %q is no drill runner (it needs an admin's grant and an identity: --identity)", nj.Kind, nj.ID, nj.Agent)
	}
	return nil
}

// maintenance reports whether jobs of kind k run in an agent's
// maintenance slot: verify, drill and prune jobs never take the slots of backups
// (verification never blocks a backup), and an agent runs at most one of
// them at a time.
func maintenance(k JobKind) bool { return k == KindVerify || k == KindDrill || k == KindPrune }

// slotFree reports whether agent a may start another job of kind k.
func (s *State) slotFree(a *Agent, k JobKind) bool {
	n := 0
	for _, id := range a.Running {
		if j := s.Jobs[id]; j != nil && maintenance(j.Kind) == maintenance(k) {
			n++
		}
	}
	if maintenance(k) {
		return n < 1
	}
	return n < a.Limit()
}

// eligible says why job j cannot be leased to agent a at t, or "".
func (s *State) eligible(j *Job, a *Agent, t time.Time, byPolicy map[string]int) string {
	switch {
	case j.State != JobPending:
		return fmt.Sprintf("job %q is %s", j.ID, j.State)
	case j.Agent != a.Name:
		return fmt.Sprintf("job %q belongs to agent %q", j.ID, j.Agent)
	case t.Before(j.NotBefore):
		return fmt.Sprintf("job %q may not start before %s", j.ID, j.NotBefore.Format(time.RFC3339))
	}
	if pr := s.Policies[j.Policy]; pr != nil && j.Kind == KindBackup && pr.Policy.MaxConcurrent > 0 && byPolicy[j.Policy] >= pr.Policy.MaxConcurrent {
		return fmt.Sprintf("policy %q already runs %d backups, its limit", j.Policy, byPolicy[j.Policy])
	}
	return ""
}

func leaseJob(s *State, c *Command, index uint64, p *LeaseJob) (outcome, error) {
	a := s.Agents[p.Agent]
	switch {
	case a == nil:
		return outcome{}, notFound("agent", p.Agent)
	case a.Revoked:
		return outcome{}, fmt.Errorf("agent %q: %w", p.Agent, ErrRevoked)
	case p.TTL <= 0:
		return outcome{}, invalid("lease without a TTL")
	}
	byPolicy := s.RunningByPolicy()
	var j *Job
	if p.JobID != "" {
		j = s.Jobs[p.JobID]
		if j == nil {
			return outcome{}, notFound("job", p.JobID)
		}
		if why := s.eligible(j, a, c.Time, byPolicy); why != "" {
			return outcome{}, conflict("%s", why)
		}
		if !s.slotFree(a, j.Kind) {
			if maintenance(j.Kind) {
				return outcome{}, conflict("agent %q already runs a maintenance job (verify, drill or prune)", a.Name)
			}
			return outcome{}, conflict("agent %q already runs %d jobs, its limit", a.Name, len(a.Running))
		}
	} else {
		if !s.slotFree(a, KindBackup) && !s.slotFree(a, KindDrill) {
			return outcome{value: (*Job)(nil), noop: true}, nil
		}
		for _, id := range sortedKeys(s.pending[a.Name]) {
			cand := s.Jobs[id]
			if s.eligible(cand, a, c.Time, byPolicy) != "" || !s.slotFree(a, cand.Kind) {
				continue
			}
			if j == nil || cand.NotBefore.Before(j.NotBefore) ||
				(cand.NotBefore.Equal(j.NotBefore) && cand.ScheduledAt.Before(j.ScheduledAt)) {
				j = cand
			}
		}
		if j == nil {
			return outcome{value: (*Job)(nil), noop: true}, nil
		}
	}
	s.LeaseSeq++
	s.setJobState(j, JobRunning)
	j.Attempt++
	j.Lease = &Lease{Token: s.LeaseSeq, Holder: a.Name, Deadline: c.Time.Add(p.TTL), Index: index}
	j.StartedAt = c.Time
	j.Progress, j.Result = nil, nil
	a.Running = insertSorted(a.Running, j.ID)
	if c.Time.After(a.LastSeen) {
		a.LastSeen = c.Time
	}
	out := j.clone()
	return outcome{value: &out, target: "job/" + j.ID}, nil
}

// checkLease verifies that agent holds job j's current lease at t.
func checkLease(j *Job, agent string, token uint64, t time.Time) error {
	switch {
	case j.State == JobCancelled:
		return fmt.Errorf("job %q was cancelled: %w", j.ID, ErrStaleLease)
	case j.State != JobRunning || j.Lease == nil:
		return fmt.Errorf("job %q is %s, not leased: %w", j.ID, j.State, ErrStaleLease)
	case j.Lease.Token != token || j.Lease.Holder != agent:
		return fmt.Errorf("job %q: token %d of %q is not the current lease: %w", j.ID, token, agent, ErrStaleLease)
	case t.After(j.Lease.Deadline):
		return fmt.Errorf("job %q: lease expired at %s: %w", j.ID, j.Lease.Deadline.Format(time.RFC3339Nano), ErrStaleLease)
	}
	return nil
}

func renewLease(s *State, c *Command, _ uint64, p *RenewLease) (outcome, error) {
	j := s.Jobs[p.JobID]
	if j == nil {
		return outcome{}, notFound("job", p.JobID)
	}
	if p.TTL <= 0 {
		return outcome{}, invalid("renew without a TTL")
	}
	if err := checkLease(j, p.Agent, p.Token, c.Time); err != nil {
		return outcome{}, err
	}
	if a := s.Agents[p.Agent]; a != nil && a.Revoked {
		return outcome{}, fmt.Errorf("agent %q: %w", p.Agent, ErrRevoked)
	}
	if d := c.Time.Add(p.TTL); d.After(j.Lease.Deadline) {
		j.Lease.Deadline = d
	}
	if p.Progress != nil {
		pr := *p.Progress
		pr.UpdatedAt = c.Time
		j.Progress = &pr
	}
	if a := s.Agents[p.Agent]; a != nil && c.Time.After(a.LastSeen) {
		a.LastSeen = c.Time
	}
	return outcome{value: j.Lease.Deadline, target: "job/" + j.ID}, nil
}

// release ends j's lease on its agent's running list.
func (s *State) release(j *Job) {
	if j.Lease == nil {
		return
	}
	if a := s.Agents[j.Lease.Holder]; a != nil {
		if i, ok := slices.BinarySearch(a.Running, j.ID); ok {
			a.Running = slices.Delete(a.Running, i, i+1)
		}
		if len(a.Running) == 0 {
			a.Running = nil
		}
	}
}

// retryOrFail puts j back to pending after backoff while attempts remain,
// and fails it otherwise.
func (s *State) retryOrFail(j *Job, t time.Time, backoff time.Duration, reason string) {
	j.Result = &Result{Error: reason}
	if j.Attempt < j.MaxAttempts {
		s.setJobState(j, JobPending)
		j.Lease, j.NotBefore = nil, t.Add(backoff)
		return
	}
	s.setJobState(j, JobFailed)
	j.FinishedAt = t
	j.Result.Error = fmt.Sprintf("%s (attempt %d of %d)", reason, j.Attempt, j.MaxAttempts)
	if j.Kind == KindDrill {
		s.recordDrillNotRun(j, t, j.Result.Error)
		j.Result.Drill = j.ID
	}
}

func completeJob(s *State, c *Command, index uint64, p *CompleteJob) (outcome, error) {
	j := s.Jobs[p.JobID]
	if j == nil {
		return outcome{}, notFound("job", p.JobID)
	}
	// A repeated report of an outcome already recorded under the same
	// token (the agent retrying after a lost reply) succeeds and changes
	// nothing.
	if (j.State == JobSucceeded && p.Success || j.State == JobFailed && !p.Success) &&
		j.Lease != nil && j.Lease.Token == p.Token && j.Lease.Holder == p.Agent {
		out := j.clone()
		return outcome{value: &out, noop: true}, nil
	}
	if err := checkLease(j, p.Agent, p.Token, c.Time); err != nil {
		return outcome{}, err
	}
	if a := s.Agents[p.Agent]; a != nil && a.Revoked {
		return outcome{}, fmt.Errorf("agent %q: %w", p.Agent, ErrRevoked)
	}
	if p.Success && j.Kind == KindBackup && (p.Snapshot == nil || p.Snapshot.ID == "") {
		return outcome{}, invalid("job %q: a successful backup reports its snapshot", j.ID)
	}
	if p.Drill != nil {
		if j.Kind != KindDrill {
			return outcome{}, invalid("job %q is a %s job: it reports no drill", j.ID, j.Kind)
		}
		if err := p.Drill.validate(); err != nil {
			return outcome{}, fmt.Errorf("job %q: %w", j.ID, err)
		}
		if p.Drill.Passed != p.Success {
			return outcome{}, invalid("job %q: success %v but drill passed %v", j.ID, p.Success, p.Drill.Passed)
		}
	} else if p.Success && j.Kind == KindDrill {
		return outcome{}, invalid("job %q: a successful drill reports its result", j.ID)
	}
	if p.Verify != nil {
		if j.Kind != KindVerify {
			return outcome{}, invalid("job %q is a %s job: it reports no verification", j.ID, j.Kind)
		}
		if err := p.Verify.validate(j.Verify); err != nil {
			return outcome{}, fmt.Errorf("job %q: %w", j.ID, err)
		}
	} else if p.Success && j.Kind == KindVerify {
		return outcome{}, invalid("job %q: a successful verification reports what it read", j.ID)
	}
	if p.Prune != nil {
		if j.Kind != KindPrune {
			return outcome{}, invalid("job %q is a %s job: it reports no prune", j.ID, j.Kind)
		}
		if err := p.Prune.validate(); err != nil {
			return outcome{}, fmt.Errorf("job %q: %w", j.ID, err)
		}
	} else if p.Success && j.Kind == KindPrune {
		return outcome{}, invalid("job %q: a successful prune reports what it did", j.ID)
	}
	// The API checked the claims against the state it saw; from version
	// 12 they are checked again against the state they apply to.
	if c.Version >= 12 && p.CheckClaims && p.Success && j.Kind == KindBackup {
		if msg := s.catalogClaim(j, p.Snapshot, p.Forgotten); msg != "" {
			return outcome{}, fmt.Errorf("%w: %s", ErrCatalogClaim, msg)
		}
	}
	s.release(j)
	if p.Drill != nil {
		// A verdict is final, passed or not.
		s.recordDrill(j, p.Agent, *p.Drill)
		if p.Success {
			s.setJobState(j, JobSucceeded)
		} else {
			s.setJobState(j, JobFailed)
		}
		j.FinishedAt = c.Time
		j.Result = &Result{Drill: j.ID, Error: p.Error, Warnings: append([]string(nil), p.Warnings...)}
		out := j.clone()
		return outcome{value: &out, target: "job/" + j.ID}, nil
	}
	if p.Verify != nil {
		// Damage found is a result, not an error to retry: record it.
		listed := j.StartedAt
		if listed.IsZero() || listed.After(c.Time) {
			listed = c.Time
		}
		sum := s.applyVerify(j.Repository, p.Verify, listed, c.Time)
		if p.Verify.SnapshotsListed && j.Lease != nil {
			sum.CatalogDropped = s.reconcileCatalog(j.Repository, p.Verify.Snapshots, j.Lease.Index)
		}
		if p.Success {
			s.setJobState(j, JobSucceeded)
		} else {
			s.setJobState(j, JobFailed)
		}
		j.FinishedAt = c.Time
		j.Result = &Result{Verify: sum, Error: p.Error, Warnings: append([]string(nil), p.Warnings...)}
		out := j.clone()
		return outcome{value: &out, target: "job/" + j.ID}, nil
	}
	if !p.Success {
		reason := p.Error
		if reason == "" {
			reason = "failed"
		}
		s.retryOrFail(j, c.Time, p.Backoff, reason)
	} else {
		s.setJobState(j, JobSucceeded)
		j.FinishedAt = c.Time
		j.Result = &Result{Partial: p.Partial, Warnings: append([]string(nil), p.Warnings...)}
		if sn := p.Snapshot; sn != nil {
			j.Result.SnapshotID, j.Result.Size = sn.ID, sn.Size
			if j.Kind == KindBackup {
				repo := ""
				if pr := s.Policies[j.Policy]; pr != nil {
					repo = pr.Policy.Repository
				}
				s.Catalog[sn.ID] = &CatalogEntry{ID: sn.ID, Repository: repo, Policy: j.Policy, Host: sn.Host,
					Time: sn.Time.UTC(), Size: sn.Size, JobID: j.ID, AddedIndex: index}
			}
		}
		if j.Kind == KindPrune && p.Prune != nil {
			sum := *p.Prune
			j.Result.Prune = &sum
		}
		if j.Kind == KindBackup && len(p.Forgotten) > 0 {
			j.Result.Forgotten = append([]string(nil), p.Forgotten...)
			for _, id := range p.Forgotten {
				delete(s.Catalog, id)
			}
		}
	}
	out := j.clone()
	return outcome{value: &out, target: "job/" + j.ID}, nil
}

// catalogClaim says why a successful completion of job j may not
// make its catalog change, or "" if it may: its snapshot must not be an
// entry another job added, and every snapshot it reports forgotten that
// the catalog holds must be of the host its snapshot names. An agent's
// retention forgets only its own host's snapshots, but of every policy
// with the same paths and tags (its group is host, paths and tags), so
// the policy is not compared: an hourly and a daily policy of the same
// paths forget each other's snapshots, and their completions are honest.
// The API checks this before proposing, the FSM again when applying.
func (s *State) catalogClaim(j *Job, sn *SnapshotInfo, forgotten []string) string {
	if sn != nil {
		if e := s.Catalog[sn.ID]; e != nil && e.JobID != j.ID {
			return fmt.Sprintf("job %q: snapshot %q is in the catalog already, made by job %q (policy %q, host %q): "+
				"a job reports only the snapshot it made", j.ID, sn.ID, e.JobID, e.Policy, e.Host)
		}
	}
	host := ""
	if sn != nil {
		host = sn.Host
	}
	for _, fid := range forgotten {
		if e := s.Catalog[fid]; e != nil && e.Host != host {
			return fmt.Sprintf("job %q: forgotten snapshot %q is host %q's, not host %q's: "+
				"a job forgets only its own host's snapshots", j.ID, fid, e.Host, host)
		}
	}
	return ""
}

func expireLease(s *State, c *Command, _ uint64, p *ExpireLease) (outcome, error) {
	j := s.Jobs[p.JobID]
	switch {
	case j == nil:
		return outcome{}, notFound("job", p.JobID)
	case j.State != JobRunning || j.Lease == nil || j.Lease.Token != p.Token:
		return outcome{}, fmt.Errorf("job %q: token %d is no longer current: %w", p.JobID, p.Token, ErrStaleLease)
	case !c.Time.After(j.Lease.Deadline):
		return outcome{}, conflict("job %q: lease runs until %s", j.ID, j.Lease.Deadline.Format(time.RFC3339Nano))
	}
	holder := j.Lease.Holder
	s.release(j)
	s.retryOrFail(j, c.Time, p.Backoff, fmt.Sprintf("lease of %q expired", holder))
	out := j.clone()
	return outcome{value: &out, target: "job/" + j.ID}, nil
}

func cancelJob(s *State, c *Command, _ uint64, p *CancelJob) (outcome, error) {
	j := s.Jobs[p.JobID]
	if j == nil {
		return outcome{}, notFound("job", p.JobID)
	}
	if j.State.Final() {
		return outcome{}, conflict("job %q is already %s", j.ID, j.State)
	}
	s.release(j)
	s.setJobState(j, JobCancelled)
	j.FinishedAt = c.Time
	reason := "cancelled"
	if p.Reason != "" {
		reason += ": " + p.Reason
	}
	j.Result = &Result{Error: reason}
	if j.Kind == KindDrill && s.Drills[j.ID] == nil {
		// Every drill job ends in a record, a cancelled one too.
		s.recordDrillNotRun(j, c.Time, reason)
		j.Result.Drill = j.ID
	}
	out := j.clone()
	return outcome{value: &out, target: "job/" + j.ID}, nil
}

func pruneJobs(s *State, _ *Command, _ uint64, p *PruneJobs) (outcome, error) {
	if p.FinishedBefore.IsZero() {
		return outcome{}, invalid("prune without a cutoff")
	}
	n := 0
	for _, id := range sortedKeys(s.Jobs) {
		if j := s.Jobs[id]; j.State.Final() && j.FinishedAt.Before(p.FinishedBefore) {
			delete(s.Jobs, id)
			n++
		}
	}
	d := 0
	if !p.DrillsBefore.IsZero() {
		d = s.pruneDrills(p.DrillsBefore)
	}
	return outcome{value: n, target: fmt.Sprintf("%d jobs, %d drills", n, d), noop: n == 0 && d == 0}, nil
}

// granted returns the capabilities in caps that grants allow, sorted.
func granted(caps, grants []string) []string {
	var out []string
	for _, c := range sortedStrings(caps) {
		if slices.Contains(grants, c) {
			out = append(out, c)
		}
	}
	return out
}

func grantAgent(s *State, _ *Command, _ uint64, p *GrantAgent) (outcome, error) {
	a := s.Agents[p.Name]
	if a == nil {
		return outcome{}, notFound("agent", p.Name)
	}
	for _, g := range p.Grants {
		if g != CapDrill {
			return outcome{}, invalid("grant %q: the only capability is %q", g, CapDrill)
		}
	}
	a.Grants = sortedStrings(p.Grants)
	a.Capabilities = granted(a.Capabilities, a.Grants)
	return outcome{target: "agent/" + p.Name}, nil
}

func sortedStrings(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	c := slices.Clone(v)
	slices.Sort(c)
	return slices.Compact(c)
}

func insertSorted(list []string, id string) []string {
	i, ok := slices.BinarySearch(list, id)
	if ok {
		return list
	}
	return slices.Insert(list, i, id)
}
