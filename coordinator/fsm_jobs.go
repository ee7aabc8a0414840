// The state machine's transitions of jobs: creation, leases, completion,
// expiry, cancellation and pruning (see fsm.go).

package coordinator

import (
	"fmt"
	"slices"
	"time"
)

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
