package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Clock is the time source of a Node: the leader loop's ticks and the time
// stamped on every command. Tests drive it by hand.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// SystemClock is the wall clock.
var SystemClock Clock = systemClock{}

// Config configures a Node.
type Config struct {
	Raft   RaftConfig
	Clock  Clock        // default SystemClock
	Logger *slog.Logger // default: discard

	// TickInterval is how often the leader plans and expires leases
	// (default 1s; schedules finer than this fire late, never twice).
	TickInterval time.Duration
	// AgentTimeout: an agent not seen for longer gets no new scheduled
	// jobs (default 2m).
	AgentTimeout time.Duration
	// MaxJobsPerCommand bounds one jobs.create command (default 500).
	MaxJobsPerCommand int
	// RetryBackoff gives the wait before attempt+1 of a job that failed
	// or whose lease expired (default RetryDelay).
	RetryBackoff func(attempt int) time.Duration
	// JobHistory is how long finished jobs are kept (default 30 days;
	// negative: forever). The leader prunes older ones every 10 minutes.
	JobHistory time.Duration
	// LeaseGrace is how long past its deadline the leader waits before it
	// takes a lease back, and how long after gaining leadership it takes
	// none back at all (default 15s). Deadlines were stamped by whichever
	// node led when the lease was granted or renewed; the grace absorbs the
	// skew between that node's clock and this one's. Renewals and
	// completions are still refused from the deadline on.
	LeaseGrace time.Duration
	// VerifySchedule is when repository verify jobs run (default
	// DefaultVerifySchedule; "off" disables them).
	VerifySchedule string
	// Alerts holds the thresholds of alert evaluation and Notify the
	// delivery of alerts to targets (alert.go, notify.go).
	Alerts AlertConfig
	Notify NotifyConfig
}

// Node is one coordinator server: Raft, the FSM, and — while it leads —
// the leader loop that turns schedules into jobs and takes back expired
// leases. Reads are served from the local FSM on any node; writes must go
// to the leader (the others answer with *NotLeaderError or ErrNoLeader).
type Node struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	fsm   *FSM
	raft  *Raft

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	lastPrune   time.Time // leader loop only
	leaderSince time.Time // leader loop only: when this node's loop got past its barrier
	alerting    alertLoop // leader loop only (alert.go)
	// pruneWarned is the last "no runner" reason logged per policy, so a
	// prune that waits for a runner is logged once, not every tick.
	pruneWarned map[string]string // leader loop only
	// deliveries counts the alert messages this node posted (notify.go).
	deliveries deliveryCounts
}

// NewNode opens the data dir, starts Raft and the leadership watcher.
func NewNode(cfg Config) (*Node, error) {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = time.Second
	}
	if cfg.AgentTimeout <= 0 {
		cfg.AgentTimeout = 2 * time.Minute
	}
	if cfg.MaxJobsPerCommand <= 0 {
		cfg.MaxJobsPerCommand = 500
	}
	if cfg.RetryBackoff == nil {
		cfg.RetryBackoff = RetryDelay
	}
	if cfg.LeaseGrace <= 0 {
		cfg.LeaseGrace = 15 * time.Second
	}
	if cfg.JobHistory == 0 {
		cfg.JobHistory = 30 * 24 * time.Hour
	}
	if cfg.VerifySchedule == "" {
		cfg.VerifySchedule = DefaultVerifySchedule
	}
	if cfg.VerifySchedule != "off" {
		if _, err := ParseSchedule(cfg.VerifySchedule); err != nil {
			return nil, fmt.Errorf("verify schedule: %w", err)
		}
	}
	if cfg.Raft.Logger == nil {
		cfg.Raft.Logger = cfg.Logger
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.Raft.ID), clock: cfg.Clock, fsm: NewFSM(), stop: make(chan struct{})}
	r, err := OpenRaft(cfg.Raft, n.fsm)
	if err != nil {
		return nil, err
	}
	n.raft = r
	n.wg.Add(1)
	go n.watch(r.LeadershipChanges())
	return n, nil
}

// Close stops the leader loop and Raft. It does not leave the cluster.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		close(n.stop)
		err = n.raft.Shutdown()
		n.wg.Wait()
	})
	return err
}

// ID is this node's ID.
func (n *Node) ID() string { return n.cfg.Raft.ID }

// State returns a deep copy of the replicated state as this node has
// applied it.
func (n *Node) State() *State { return n.fsm.State() }

// View calls fn with the state under a read lock; fn must not keep or
// change anything it reaches.
func (n *Node) View(fn func(*State)) { n.fsm.View(fn) }

// Changed returns a channel closed at the next state change on this node
// (for long polls).
func (n *Node) Changed() <-chan struct{} { return n.fsm.Changed() }

// Snapshot returns the encoded state (what an FSM snapshot holds).
func (n *Node) Snapshot() ([]byte, error) { return n.fsm.SnapshotBytes() }

// Status reports this node's view of the cluster.
func (n *Node) Status() Status { return n.raft.Status() }

// IsLeader reports whether this node leads now.
func (n *Node) IsLeader() bool { return n.raft.IsLeader() }

// Leader returns the leader's ID and Raft address, empty if unknown.
func (n *Node) Leader() (id, addr string) { return n.raft.Leader() }

// LeadershipChanges returns a channel that receives true when this node
// becomes leader and false when it stops (latest value only).
func (n *Node) LeadershipChanges() <-chan bool { return n.raft.LeadershipChanges() }

// maxReadyLag is how far the applied index may trail the commit index for
// a node to count as caught up.
const maxReadyLag = 64

// Ready returns nil when this node can serve current reads: a leader is
// known and this node has applied all but at most a few committed
// entries. Otherwise it says why (for /readyz).
func (n *Node) Ready() error {
	st := n.raft.Status()
	if st.Leader == "" {
		return ErrNoLeader
	}
	if st.CommitIndex > st.AppliedIndex+maxReadyLag {
		return fmt.Errorf("catching up: applied %d of %d committed entries", st.AppliedIndex, st.CommitIndex)
	}
	return nil
}

// AddVoter adds a voting member (leader only).
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	return n.raft.AddVoter(ctx, id, addr)
}

// RemoveServer removes a member (leader only).
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	return n.raft.RemoveServer(ctx, id)
}

// TakeSnapshot snapshots the FSM and compacts the log now.
func (n *Node) TakeSnapshot(ctx context.Context) error { return n.raft.TakeSnapshot(ctx) }

// Apply proposes cmd and returns the FSM's result value. Leave cmd.Time
// zero: the node stamps it with its clock, so that on the leader every
// command carries the leader's time. Errors: the cluster's (ErrNotLeader,
// ErrNoLeader, ...) or the FSM's (ErrNotFound, ErrStaleLease, ...).
func (n *Node) Apply(ctx context.Context, cmd Command) (any, error) {
	if cmd.Version == 0 {
		cmd.Version = 1 // NewCommand stamps the version a payload needs
	}
	if cmd.Time.IsZero() {
		cmd.Time = n.clock.Now().UTC()
	}
	b, err := cmd.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", cmd.Type, err)
	}
	res, err := n.raft.Apply(ctx, b)
	if err != nil {
		return nil, err
	}
	return res.Value, res.Err
}

// Propose builds a command from a payload and applies it.
func (n *Node) Propose(ctx context.Context, typ CommandType, actor string, payload any) (any, error) {
	c, err := NewCommand(typ, actor, payload)
	if err != nil {
		return nil, err
	}
	return n.Apply(ctx, c)
}

// PutPolicy validates and stores a policy; it returns the policy's new
// version.
func (n *Node) PutPolicy(ctx context.Context, actor string, p Policy) (uint64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	v, err := n.Propose(ctx, CmdPutPolicy, actor, PutPolicy{Policy: p})
	if err != nil {
		return 0, err
	}
	ver, _ := v.(uint64)
	return ver, nil
}

// PutPolicyAt is PutPolicy only if the policy is still at version index
// (0: does not exist yet); otherwise it changes nothing and returns an
// ErrConflict naming the current version.
func (n *Node) PutPolicyAt(ctx context.Context, actor string, p Policy, index uint64) (uint64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	v, err := n.Propose(ctx, CmdPutPolicy, actor, PutPolicy{Policy: p, CheckIndex: &index})
	if err != nil {
		return 0, err
	}
	ver, _ := v.(uint64)
	return ver, nil
}

// PutPolicies validates and stores policies as one log entry, so that
// either all of them are stored or none is; it returns their new version
// (the entry's index). A single policy is proposed as a PutPolicy, which
// nodes that predate PutPolicies apply too.
func (n *Node) PutPolicies(ctx context.Context, actor string, ps []Policy) (uint64, error) {
	if len(ps) == 1 {
		return n.PutPolicy(ctx, actor, ps[0])
	}
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			return 0, err
		}
	}
	v, err := n.Propose(ctx, CmdPutPolicies, actor, PutPolicies{Policies: ps})
	if err != nil {
		return 0, err
	}
	ver, _ := v.(uint64)
	return ver, nil
}

// AddRepository registers a repository; key must be a writer key.
func (n *Node) AddRepository(ctx context.Context, actor string, r AddRepository) error {
	if err := CheckWriterKey(r.WriterKey); err != nil {
		return fmt.Errorf("repository %q: %w", r.Name, err)
	}
	_, err := n.Propose(ctx, CmdAddRepository, actor, r)
	return err
}

// LeaseJob leases a job to agent for ttl: jobID, or with jobID empty the
// agent's next eligible job. It returns nil, nil when there is none.
func (n *Node) LeaseJob(ctx context.Context, agent, jobID string, ttl time.Duration) (*Job, error) {
	if jobID == "" {
		n.cancelSuperseded(ctx, agent)
	}
	v, err := n.Propose(ctx, CmdLeaseJob, "agent:"+agent, LeaseJob{Agent: agent, JobID: jobID, TTL: ttl})
	if err != nil {
		return nil, err
	}
	j, _ := v.(*Job)
	return j, nil
}

// RenewLease extends a lease and records progress; it returns the new
// deadline. ErrStaleLease means the agent must stop working on the job.
func (n *Node) RenewLease(ctx context.Context, r RenewLease) (time.Time, error) {
	v, err := n.Propose(ctx, CmdRenewLease, "agent:"+r.Agent, r)
	if err != nil {
		return time.Time{}, err
	}
	t, _ := v.(time.Time)
	return t, nil
}

// CompleteJob reports a job's outcome. A failure is retried with the
// configured backoff while attempts remain.
func (n *Node) CompleteJob(ctx context.Context, c CompleteJob) (*Job, error) {
	if !c.Success && c.Backoff == 0 {
		c.Backoff = n.backoffFor(c.JobID)
	}
	v, err := n.Propose(ctx, CmdCompleteJob, "agent:"+c.Agent, c)
	if err != nil {
		return nil, err
	}
	j, _ := v.(*Job)
	return j, nil
}

// CancelJob cancels a pending or running job.
func (n *Node) CancelJob(ctx context.Context, actor, jobID, reason string) (*Job, error) {
	v, err := n.Propose(ctx, CmdCancelJob, actor, CancelJob{JobID: jobID, Reason: reason})
	if err != nil {
		return nil, err
	}
	j, _ := v.(*Job)
	return j, nil
}

// RunPolicy creates a backup job now for every agent the policy selects
// (connected or not: the job waits for its agent). It returns the new job
// IDs.
func (n *Node) RunPolicy(ctx context.Context, actor, policy string) ([]string, error) {
	now := n.clock.Now().UTC()
	var jobs []NewJob
	var err error
	n.fsm.View(func(s *State) {
		pr := s.Policies[policy]
		if pr == nil {
			err = notFound("policy", policy)
			return
		}
		for _, name := range s.AgentNames() {
			a := s.Agents[name]
			if a.Revoked || !SelectorMatches(pr.Policy.Agents, a.Labels) {
				continue
			}
			jobs = append(jobs, NewJob{ID: manualJobID(policy, now, name), Kind: KindBackup, Trigger: TriggerManual,
				Policy: policy, Agent: name, ScheduledAt: now, NotBefore: now})
		}
	})
	if err != nil {
		return nil, err
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("policy %q selects no agent: %w", policy, ErrConflict)
	}
	c, err := NewCommand(CmdCreateJobs, actor, CreateJobs{Jobs: jobs})
	if err != nil {
		return nil, err
	}
	c.Time = now
	v, err := n.Apply(ctx, c)
	if err != nil {
		return nil, err
	}
	res, _ := v.(CreateJobsResult)
	return res.Created, nil
}

// RunDrill creates a drill job of policy now, on one of its connected
// runners. snapshot selects the snapshot ("" = the policy's drill.snapshot).
func (n *Node) RunDrill(ctx context.Context, actor, policy, snapshot string) (string, error) {
	return n.createManualJob(ctx, actor, func(s *State, now time.Time) (NewJob, error) {
		pr := s.Policies[policy]
		if pr == nil {
			return NewJob{}, notFound("policy", policy)
		}
		runners := s.DrillRunners(&pr.Policy, now, n.cfg.AgentTimeout)
		if len(runners) == 0 {
			return NewJob{}, fmt.Errorf("policy %q: %s: %w", policy, noRunnerReason(&pr.Policy), ErrConflict)
		}
		id := manualJobID("drill\x00"+policy, now, "")
		return NewJob{ID: id, Kind: KindDrill, Policy: policy, Agent: pickAgent(runners, id),
			Drill: &DrillParams{Snapshot: snapshot}}, nil
	})
}

// RunPrune creates a prune job of policy's repository now, on one of the
// policy's connected drill runners.
func (n *Node) RunPrune(ctx context.Context, actor, policy string) (string, error) {
	return n.createManualJob(ctx, actor, func(s *State, now time.Time) (NewJob, error) {
		pr := s.Policies[policy]
		if pr == nil {
			return NewJob{}, notFound("policy", policy)
		}
		if s.pruneRunning(pr.Policy.Repository) {
			return NewJob{}, conflict("repository %q already has a prune job pending or running", pr.Policy.Repository)
		}
		runners := s.DrillRunners(&pr.Policy, now, n.cfg.AgentTimeout)
		if len(runners) == 0 {
			return NewJob{}, fmt.Errorf("policy %q: %s: %w", policy, noRunnerReason(&pr.Policy), ErrConflict)
		}
		id := manualJobID("prune\x00"+policy, now, "")
		return NewJob{ID: id, Kind: KindPrune, Policy: policy, Repository: pr.Policy.Repository, Agent: pickAgent(runners, id)}, nil
	})
}

// VerifyRepository creates a verify job of repo now: every shard when all
// is set, else the shards a scheduled run would take.
func (n *Node) VerifyRepository(ctx context.Context, actor, repo string, all bool) (string, error) {
	return n.createManualJob(ctx, actor, func(s *State, now time.Time) (NewJob, error) {
		switch {
		case s.Repositories[repo] == nil:
			return NewJob{}, notFound("repository", repo)
		case s.verifyRunning(repo):
			return NewJob{}, conflict("repository %q already has a verify job pending or running", repo)
		}
		agents := s.VerifyAgents(repo, now, n.cfg.AgentTimeout)
		if len(agents) == 0 {
			return NewJob{}, conflict("repository %q: no connected agent is selected by a policy that uses it", repo)
		}
		shards := AllShards()
		if !all {
			interval := 24 * time.Hour
			if sched, e := ParseSchedule(n.cfg.VerifySchedule); e == nil && sched.Interval() > 0 {
				interval = sched.Interval()
			}
			shards = s.Coverage[repo].DueShards(ShardsPerRun(s.VerifyEvery(repo), interval))
		}
		id := manualJobID("verify\x00"+repo, now, "")
		return NewJob{ID: id, Kind: KindVerify, Repository: repo, Agent: pickAgent(agents, id),
			Verify: &VerifyParams{Shards: shards}}, nil
	})
}

// createManualJob proposes the job build makes from the state at now, as
// a manual job due now, and returns its ID.
func (n *Node) createManualJob(ctx context.Context, actor string, build func(s *State, now time.Time) (NewJob, error)) (string, error) {
	now := n.clock.Now().UTC()
	var nj NewJob
	var err error
	n.fsm.View(func(s *State) { nj, err = build(s, now) })
	if err != nil {
		return "", err
	}
	nj.Trigger, nj.ScheduledAt, nj.NotBefore = TriggerManual, now, now
	if _, err := n.proposeAt(ctx, now, CmdCreateJobs, actor, CreateJobs{Jobs: []NewJob{nj}}); err != nil {
		return "", err
	}
	return nj.ID, nil
}

// manualJobID names a manually triggered run ("run-" + 16 hex digits).
func manualJobID(policy string, t time.Time, agent string) string {
	h := sha256.Sum256([]byte("manual\x00" + policy + "\x00" + t.UTC().Format(time.RFC3339Nano) + "\x00" + agent))
	return "run-" + hex.EncodeToString(h[:8])
}

func (n *Node) backoffFor(jobID string) time.Duration {
	attempt := 1
	n.fsm.View(func(s *State) {
		if j := s.Jobs[jobID]; j != nil && j.Attempt > 0 {
			attempt = j.Attempt
		}
	})
	return n.cfg.RetryBackoff(attempt)
}

// WaitLeader waits until some node is known to lead and returns its ID.
func (n *Node) WaitLeader(ctx context.Context) (string, error) {
	for {
		if id, _ := n.raft.Leader(); id != "" {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for a leader: %w", ErrNoLeader)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// watch starts the leader loop when this node gains leadership and stops
// it when it loses it.
func (n *Node) watch(changes <-chan bool) {
	defer n.wg.Done()
	var stopLoop func()
	defer func() {
		if stopLoop != nil {
			stopLoop()
		}
	}()
	for {
		select {
		case <-n.stop:
			return
		case leader := <-changes:
			if leader && stopLoop == nil {
				stopLoop = n.startLeaderLoop()
				n.log.Info("leadership gained: leader loop started")
			} else if !leader && stopLoop != nil {
				stopLoop()
				stopLoop = nil
				n.log.Info("leadership lost: leader loop stopped")
			}
		}
	}
}

// startLeaderLoop runs the leader loop until the returned function is
// called; that function returns once the loop has stopped.
func (n *Node) startLeaderLoop() func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.leaderLoop(ctx)
	}()
	notifierDone := n.startNotifier(ctx)
	return func() {
		cancel()
		<-done
		notifierDone()
	}
}

// leaderLoop runs while this node leads. It first waits until its FSM has
// applied everything committed before (so it plans from the latest
// watermarks), then ticks: plan due jobs, expire leases.
func (n *Node) leaderLoop(ctx context.Context) {
	for {
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.raft.Barrier(bctx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrShutdown) {
			return
		}
		n.log.Warn("leader barrier failed; retrying", "err", err)
	}
	n.leaderSince = n.clock.Now()
	for {
		started := n.clock.Now()
		n.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-n.clock.After(tickWait(n.cfg.TickInterval, started, n.clock.Now())):
		}
	}
}

// tickWait is how long the leader waits after a tick that started at
// started and ended at now. Ticks keep a fixed period from when each
// started, so a slow tick does not push every later one back, and one
// slower than the period is followed at once. A wall clock that stepped
// back during the tick (an NTP correction) makes the elapsed time
// negative: the next tick then waits its period, not the period plus the
// step (an hour without scheduling, lease expiry or alerts for a step of
// an hour).
func tickWait(period time.Duration, started, now time.Time) time.Duration {
	return max(period-max(now.Sub(started), 0), 0)
}

// tick plans due jobs and expires leases once, as of the clock's now.
func (n *Node) tick(ctx context.Context) {
	for round := 0; ctx.Err() == nil; round++ {
		now := n.clock.Now().UTC()
		in := n.planInput(now)
		plan := Plan(in)
		for _, e := range plan.Errors {
			n.log.Warn("policy not scheduled", "policy", e.Policy, "err", e.Err)
		}
		for _, s := range plan.Skipped {
			n.log.Warn("missed instants skipped (more than the catch-up limit)", "policy", s.Policy, "count", s.Count, "first", s.First, "last", s.Last)
		}
		if len(plan.Missed) > 0 {
			n.log.Info("scheduled runs missed: agents not connected", "runs", len(plan.Missed))
		}
		if len(plan.Jobs) == 0 && len(plan.LastFired) == 0 {
			break
		}
		cj := CreateJobs{Fired: plan.LastFired}
		for _, pj := range plan.Jobs {
			cj.Jobs = append(cj.Jobs, NewJob{ID: pj.ID, Kind: JobKind(pj.Kind), Trigger: TriggerSchedule,
				Policy: pj.Policy, Agent: pj.Agent, ScheduledAt: pj.ScheduledAt, NotBefore: pj.NotBefore})
		}
		c, err := NewCommand(CmdCreateJobs, ActorScheduler, cj)
		if err == nil {
			c.Time = now
			_, err = n.Apply(ctx, c)
		}
		if err != nil {
			// The next tick plans again from the replicated watermarks;
			// if this command did commit, nothing is planned twice.
			if ctx.Err() == nil {
				n.log.Warn("propose scheduled jobs", "jobs", len(cj.Jobs), "err", err)
			}
			return
		}
		if !plan.More || round > 100 {
			break
		}
	}
	n.planMaintenance(ctx)
	n.cancelStranded(ctx)
	n.evaluateAlerts(ctx)
	n.expireLeases(ctx)
	n.pruneJobs(ctx)
}

// planMaintenance creates the drill and verify jobs that are due, and
// records scheduled drills that found no runner.
func (n *Node) planMaintenance(ctx context.Context) {
	now := n.clock.Now().UTC()
	var dp DrillPlan
	var vp VerifyPlan
	var pp PrunePlan
	n.fsm.View(func(s *State) {
		dp = PlanDrills(s, now, n.cfg.AgentTimeout)
		pp = PlanPrunes(s, now, n.cfg.AgentTimeout)
		if n.cfg.VerifySchedule != "off" {
			sched, err := ParseSchedule(n.cfg.VerifySchedule)
			if err == nil {
				vp = PlanVerify(s, sched, now, n.cfg.AgentTimeout)
			}
		}
	})
	for _, e := range dp.Errors {
		n.log.Warn("drill not scheduled", "policy", e.Policy, "err", e.Err)
	}
	for _, r := range dp.NotRun {
		n.log.Warn("scheduled drill not run", "policy", r.Policy, "drill", r.ID, "reason", r.Reason)
		if _, err := n.proposeAt(ctx, now, CmdRecordDrill, ActorScheduler, r); err != nil {
			if ctx.Err() == nil {
				n.log.Warn("record drill", "drill", r.ID, "err", err)
			}
			return
		}
		delete(dp.Fired, r.Policy)
	}
	for _, e := range pp.Errors {
		n.log.Warn("prune not scheduled", "policy", e.Policy, "err", e.Err)
	}
	if n.pruneWarned == nil {
		n.pruneWarned = map[string]string{}
	}
	for _, e := range pp.Unassigned {
		if n.pruneWarned[e.Policy] != e.Err {
			n.pruneWarned[e.Policy] = e.Err
			n.log.Warn("scheduled prune waits for a drill runner", "policy", e.Policy, "reason", e.Err)
		}
	}
	for _, j := range pp.Jobs {
		delete(n.pruneWarned, j.Policy)
	}
	for _, repo := range vp.Unassigned {
		n.log.Warn("repository not verified: no connected agent is selected by a policy that uses it", "repository", repo)
	}
	// Prune jobs and watermarks go in their own command: a cluster not yet
	// upgraded to them (command version 5) refuses it, and must not
	// refuse drills and verification with it.
	if len(dp.Jobs) > 0 || len(dp.Fired) > 0 || len(vp.Jobs) > 0 || len(vp.Fired) > 0 {
		cj := CreateJobs{Jobs: append(dp.Jobs, vp.Jobs...), DrillFired: dp.Fired, VerifyFired: vp.Fired}
		if _, err := n.proposeAt(ctx, now, CmdCreateJobs, ActorScheduler, cj); err != nil && ctx.Err() == nil {
			n.log.Warn("propose drill and verify jobs", "jobs", len(cj.Jobs), "err", err)
		}
	}
	if len(pp.Jobs) > 0 || len(pp.Fired) > 0 {
		cj := CreateJobs{Jobs: pp.Jobs, PruneFired: pp.Fired}
		if _, err := n.proposeAt(ctx, now, CmdCreateJobs, ActorScheduler, cj); err != nil && ctx.Err() == nil {
			n.log.Warn("propose prune jobs", "jobs", len(cj.Jobs), "err", err)
		}
	}
}

// cancelStranded cancels the pending jobs that StrandedJobs finds.
func (n *Node) cancelStranded(ctx context.Context) {
	now := n.clock.Now().UTC()
	var stranded []CancelJob
	n.fsm.View(func(s *State) { stranded = StrandedJobs(s, now, n.cfg.AgentTimeout) })
	for _, c := range stranded {
		if _, err := n.proposeAt(ctx, now, CmdCancelJob, ActorScheduler, c); err != nil {
			if ctx.Err() == nil && !errors.Is(err, ErrConflict) {
				n.log.Warn("cancel stranded job", "job", c.JobID, "err", err)
			}
			return
		}
		n.log.Info("stranded job cancelled", "job", c.JobID, "reason", c.Reason)
	}
}

// cancelSuperseded cancels the agent's due scheduled backup jobs of a
// policy that has a due scheduled job of a later instant (manual runs are
// left alone): after an outage the missed instants each got a job, and
// running them back to back would make as many snapshots of the same data
// (with keep_last, forgetting as many older ones). The latest runs for
// them all. A job waiting to retry a failed attempt is not superseded: it
// runs to its verdict, or a policy scheduled more often than its retries
// take would never have a failed job (nor a backup_failed alert). A
// failure to cancel is left to the lease, which then runs the oldest.
func (n *Node) cancelSuperseded(ctx context.Context, agent string) {
	now := n.clock.Now().UTC()
	var cancels []CancelJob
	n.fsm.View(func(s *State) {
		latest := map[string]*Job{} // policy -> its due pending backup of the latest instant
		for _, id := range s.PendingFor(agent) {
			j := s.Jobs[id]
			if j.Kind != KindBackup || j.Trigger != TriggerSchedule || now.Before(j.NotBefore) {
				continue
			}
			if l := latest[j.Policy]; l == nil || j.ScheduledAt.After(l.ScheduledAt) {
				latest[j.Policy] = j
			}
		}
		for _, id := range s.PendingFor(agent) {
			j := s.Jobs[id]
			if l := latest[j.Policy]; j.Kind == KindBackup && j.Trigger == TriggerSchedule && j.Attempt == 0 && l != nil && j.ScheduledAt.Before(l.ScheduledAt) && !now.Before(j.NotBefore) {
				cancels = append(cancels, CancelJob{JobID: id, Reason: fmt.Sprintf("superseded by job %s of the later instant %s", l.ID, l.ScheduledAt.Format(time.RFC3339))})
			}
		}
	})
	for _, c := range cancels {
		if _, err := n.proposeAt(ctx, now, CmdCancelJob, ActorScheduler, c); err != nil {
			if ctx.Err() == nil && !errors.Is(err, ErrConflict) {
				n.log.Warn("cancel superseded job", "job", c.JobID, "err", err)
			}
			return
		}
		n.log.Info("superseded job cancelled", "job", c.JobID, "reason", c.Reason)
	}
}

// proposeAt proposes a command stamped with time t.
func (n *Node) proposeAt(ctx context.Context, t time.Time, typ CommandType, actor string, payload any) (any, error) {
	c, err := NewCommand(typ, actor, payload)
	if err != nil {
		return nil, err
	}
	c.Time = t
	return n.Apply(ctx, c)
}

const pruneEvery = 10 * time.Minute

// pruneJobs deletes finished jobs older than JobHistory, at most every
// pruneEvery of clock time.
func (n *Node) pruneJobs(ctx context.Context) {
	now := n.clock.Now().UTC()
	if n.cfg.JobHistory < 0 || now.Sub(n.lastPrune) < pruneEvery {
		return
	}
	n.lastPrune = now
	cutoff := now.Add(-n.cfg.JobHistory)
	found := false
	n.fsm.View(func(s *State) {
		for _, j := range s.Jobs {
			if j.State.Final() && j.FinishedAt.Before(cutoff) {
				found = true
				return
			}
		}
	})
	if !found {
		return
	}
	c, err := NewCommand(CmdPruneJobs, ActorScheduler, PruneJobs{FinishedBefore: cutoff, DrillsBefore: now.Add(-DrillHistory)})
	if err != nil {
		return
	}
	c.Time = now
	v, err := n.Apply(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Warn("prune jobs", "err", err)
		}
		return
	}
	n.log.Info("pruned finished jobs", "jobs", v, "finished_before", cutoff)
}

func (n *Node) planInput(now time.Time) PlanInput {
	in := PlanInput{Now: now, LastFired: map[string]time.Time{}, PolicyCreated: map[string]time.Time{}, MaxJobs: n.cfg.MaxJobsPerCommand}
	n.fsm.View(func(s *State) {
		for _, name := range s.PolicyNames() {
			pr := s.Policies[name]
			in.Policies = append(in.Policies, pr.Policy)
			in.PolicyCreated[name] = pr.CreatedAt
		}
		for _, name := range s.AgentNames() {
			a := s.Agents[name]
			connected := now.Sub(a.LastSeen) <= n.cfg.AgentTimeout
			// Agents cannot be seen while there is no leader: after an
			// outage longer than the timeout every agent looks gone until
			// it polls again, and its runs due meanwhile would be missed.
			awaited := !connected && now.Sub(n.leaderSince) < n.cfg.AgentTimeout
			in.Agents = append(in.Agents, AgentInfo{Name: a.Name, Labels: cloneMap(a.Labels), Revoked: a.Revoked,
				Connected: connected, Awaited: awaited})
		}
		for k, v := range s.LastFired {
			in.LastFired[k] = v
		}
		in.Running = s.RunningByPolicy()
		in.RunningByAgent = s.RunningByAgent()
	})
	return in
}

// expireLeases proposes an expiry for every running job whose lease
// deadline has passed by more than LeaseGrace. The deadlines may have been
// stamped by a previous leader, with its clock: nothing is expired during
// the first LeaseGrace of this node's leadership, and a lease only once
// this clock is LeaseGrace past its deadline.
func (n *Node) expireLeases(ctx context.Context) {
	now := n.clock.Now().UTC()
	grace := n.cfg.LeaseGrace
	if now.Sub(n.leaderSince) < grace {
		return
	}
	var due []ExpireLease
	n.fsm.View(func(s *State) {
		for _, name := range s.AgentNames() {
			for _, id := range s.Agents[name].Running {
				j := s.Jobs[id]
				if j != nil && j.Lease != nil && now.After(j.Lease.Deadline.Add(grace)) {
					due = append(due, ExpireLease{JobID: id, Token: j.Lease.Token, Backoff: n.cfg.RetryBackoff(j.Attempt)})
				}
			}
		}
	})
	for _, e := range due {
		c, err := NewCommand(CmdExpireLease, ActorScheduler, e)
		if err != nil {
			continue
		}
		c.Time = now
		if _, err := n.Apply(ctx, c); err != nil {
			if errors.Is(err, ErrStaleLease) || errors.Is(err, ErrConflict) {
				continue // renewed or finished meanwhile
			}
			if ctx.Err() == nil {
				n.log.Warn("expire lease", "job", e.JobID, "err", err)
			}
			return
		}
		n.log.Info("lease expired", "job", e.JobID, "token", e.Token)
	}
}
