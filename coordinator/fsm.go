package coordinator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

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
	// A checksum that does not match is refused before the command is
	// proposed (CheckWriterKey, in the API and AddRepository), not
	// here: a release that did not check it may have logged the
	// command, and every node must apply it as that one did.
	if err := CheckWriterKey(p.WriterKey); err != nil && !errors.Is(err, chunkstore.ErrWriterKeyChecksum) {
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
