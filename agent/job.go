package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// runningJob is a job this agent holds a lease on.
type runningJob struct {
	item    *coordinator.WorkItem
	started time.Time
	prog    *snapshot.Progress
	expect  atomic.Int64 // bytes expected: the previous run's for a backup (ETA), 0 if unknown
	// restored is a drill's restore progress (nil for other jobs).
	restored atomic.Pointer[restore.Progress]

	mu       sync.Mutex
	deadline time.Time // local: the lease surely holds until then
	lost     error     // why the lease was lost, nil while held
}

// errLeaseLost is the cancel cause of a job whose lease is gone.
var errLeaseLost = errors.New("lease lost")

func (j *runningJob) setDeadline(t time.Time) {
	j.mu.Lock()
	if t.After(j.deadline) {
		j.deadline = t
	}
	j.mu.Unlock()
}

func (j *runningJob) leaseDeadline() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.deadline
}

// markLost records why the lease was lost; it reports whether this was
// the first loss recorded (so that it is counted once).
func (j *runningJob) markLost(err error) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.lost == nil {
		j.lost = err
		return true
	}
	return false
}

func (j *runningJob) lostErr() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.lost
}

// progress is the job's progress as the coordinator shows it.
func (j *runningJob) progress(now time.Time) *coordinator.Progress {
	p := &coordinator.Progress{}
	if j.prog == nil {
		return p
	}
	done := max(j.prog.BytesProcessed.Load(), j.prog.BytesRead.Load())
	p.Files, p.Bytes = j.prog.Files.Load(), done
	expect := j.expect.Load()
	if rp := j.restored.Load(); rp != nil {
		done = rp.Bytes.Load()
		p.Files, p.Bytes, expect = rp.Files.Load(), done, rp.TotalBytes.Load()
	}
	if el := now.Sub(j.started); el >= time.Second {
		p.Rate = int64(float64(done) / el.Seconds())
	}
	if p.Rate > 0 && expect > done {
		p.ETASeconds = (expect - done) / p.Rate
	}
	return p
}

// runJob runs one leased job to its report. The job's context is
// cancelled when the lease is lost, so a backup whose lease is gone stops
// before its manifest is written; its report is then refused by the
// coordinator, which is logged and nothing more.
func (a *Agent) runJob(parent context.Context, item *coordinator.WorkItem) {
	job := &runningJob{item: item, started: a.clock.Now(), prog: &snapshot.Progress{}, deadline: item.Deadline}
	log := a.log.With("job", item.Job.ID, "policy", item.Job.Policy, "attempt", item.Job.Attempt, "token", item.Token)
	if err := a.state.add(record{JobID: item.Job.ID, Policy: item.Job.Policy, Token: item.Token, Started: job.started.UTC()}); err != nil {
		// Without the record a kill -9 would leave the job to lease
		// expiry instead of an immediate retry: worth a warning only.
		log.Warn("record running job", "err", err)
	}
	a.mu.Lock()
	a.running[item.Job.ID] = job
	a.mu.Unlock()
	a.m.running.Inc()
	defer func() {
		a.mu.Lock()
		delete(a.running, item.Job.ID)
		a.mu.Unlock()
		a.m.running.Dec()
	}()

	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	hbDone := make(chan struct{})
	hbStopped := make(chan struct{})
	go func() {
		defer close(hbStopped)
		a.heartbeats(ctx, job, cancel, hbDone)
	}()

	log.Info("job started", "kind", item.Job.Kind)
	out := a.execute(ctx, job)
	if lost := job.lostErr(); lost != nil && (out.snap == nil || out.err != nil) {
		// A backup that committed before the lease was given up (during
		// retention or the post-hook) is reported as what it is: the
		// coordinator takes it if it still holds the lease, and refuses
		// it as stale if not.
		out.err = fmt.Errorf("%w: %v", errLeaseLost, lost)
		out.snap, out.verify, out.drill, out.prune = nil, nil, nil, nil
	} else if cause := context.Cause(ctx); out.err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		out.err = fmt.Errorf("%v (%w)", cause, out.err)
	}

	rep := coordinator.CompleteRequest{Agent: a.cfg.Name, Token: item.Token, Success: out.err == nil,
		Verify: out.verify, Drill: out.drill}
	if out.err != nil {
		rep.Error = out.err.Error()
	} else {
		rep.Snapshot, rep.Partial, rep.Warnings, rep.Forgotten, rep.Prune = out.snap, out.partial, out.warnings, out.forgotten, out.prune
	}
	// Heartbeats go on while the report is sent: a slow report must not
	// let the lease lapse.
	err := a.complete(context.WithoutCancel(ctx), job, rep)
	close(hbDone)
	<-hbStopped
	switch {
	case err == nil:
		if rmErr := a.state.remove(item.Job.ID); rmErr != nil {
			log.Warn("clear running job record", "err", rmErr)
		}
	case statusOf(err) == http.StatusConflict || statusOf(err) == http.StatusForbidden || statusOf(err) == http.StatusNotFound:
		// Refused for good (stale token, revoked): nothing to retry.
		log.Warn("the coordinator refused the job's report", "err", err)
		_ = a.state.remove(item.Job.ID)
	default:
		// Unknown outcome: keep the record; the next start reports it
		// (with its snapshot, if the backup committed). Until then the
		// coordinator retries the job when its lease expires.
		log.Error("could not report the job's outcome", "err", err)
	}
	switch {
	case rep.Success:
		a.m.jobs.WithLabelValues("succeeded").Inc()
		a.m.lastSuccess.SetToCurrentTime()
		attrs := []any{"duration", a.clock.Now().Sub(job.started).Round(time.Millisecond).String()}
		if rep.Snapshot != nil {
			attrs = append(attrs, "snapshot", rep.Snapshot.ID, "bytes", rep.Snapshot.Size)
		}
		log.Info("job succeeded", attrs...)
	case errors.Is(out.err, errLeaseLost):
		a.m.jobs.WithLabelValues("lease_lost").Inc()
		log.Error("job aborted without committing: lease lost", "err", out.err)
	default:
		a.m.jobs.WithLabelValues("failed").Inc()
		log.Error("job failed", "err", out.err)
	}
}

// heartbeats renews the lease every third of its TTL until done is
// closed. A refused renewal, or a deadline reached without one, cancels
// the job: from then on the coordinator may give it to someone else.
func (a *Agent) heartbeats(ctx context.Context, job *runningJob, cancel context.CancelCauseFunc, done <-chan struct{}) {
	ttl := a.cfg.LeaseTTL
	interval := ttl / 3
	// Stop this long before the deadline: covers the time to cancel the
	// backup and any skew between the two clocks' rates.
	margin := ttl / 6
	wait := time.Duration(0) // renew at once: the poll's deadline is a conservative guess
	for {
		if dl := job.leaseDeadline().Add(-margin).Sub(a.clock.Now()); wait > dl {
			wait = max(dl, 0)
		}
		select {
		case <-done:
			return
		case <-a.clock.After(wait):
		}
		now := a.clock.Now()
		left := job.leaseDeadline().Add(-margin).Sub(now)
		if left <= 0 {
			err := fmt.Errorf("no renewal reached the coordinator before the lease deadline %s", job.leaseDeadline().Format(time.RFC3339))
			a.leaseLost(job, err, cancel)
			return
		}
		err := a.renewOnce(ctx, job, min(left, 10*time.Second))
		if err == nil {
			wait = interval
			continue
		}
		if ae, ok := errors.AsType[*apiError](err); ok && !ae.Retryable {
			a.leaseLost(job, err, cancel)
			return
		}
		a.log.Warn("heartbeat failed; retrying", "job", job.item.Job.ID, "err", err)
		wait = min(interval, max(left/4, 100*time.Millisecond))
	}
}

// leaseLost marks the job's lease as lost, cancels the job (when cancel
// is not nil) and counts the loss once.
func (a *Agent) leaseLost(job *runningJob, err error, cancel context.CancelCauseFunc) {
	first := job.markLost(err)
	if cancel != nil {
		cancel(fmt.Errorf("%w: %v", errLeaseLost, err))
	}
	if first {
		a.m.leaseLost.Inc()
	}
}

// renewOnce sends one heartbeat for the job, waiting at most timeout. On
// success the local deadline moves to the send time plus the TTL: the
// coordinator's deadline, stamped later, can only be later than that
// (clock rates aside, which the callers' margin covers). The error is the
// call's: an *apiError that is not Retryable means the coordinator
// refused the renewal (cancelled, stale token, revoked).
func (a *Agent) renewOnce(ctx context.Context, job *runningJob, timeout time.Duration) error {
	ttl := a.cfg.LeaseTTL
	sent := a.clock.Now()
	req := coordinator.HeartbeatRequest{Agent: a.cfg.Name, Token: job.item.Token, TTL: coordinator.Duration(ttl), Progress: job.progress(sent)}
	var res coordinator.HeartbeatResult
	path := "/v1/jobs/" + job.item.Job.ID + "/heartbeat"
	if _, err := a.c.call(context.WithoutCancel(ctx), http.MethodPost, path, "", req, &res, timeout); err != nil {
		return err
	}
	job.setDeadline(sent.Add(ttl))
	a.contactOK()
	return nil
}

// complete reports the outcome, retrying what may succeed on another
// node or after an election, for as long as the lease holds.
func (a *Agent) complete(ctx context.Context, job *runningJob, rep coordinator.CompleteRequest) error {
	path := "/v1/jobs/" + job.item.Job.ID + "/complete"
	bo := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	for {
		var j coordinator.Job
		_, err := a.c.call(ctx, http.MethodPost, path, "", rep, &j, 15*time.Second)
		if err == nil {
			return nil
		}
		if ae, ok := errors.AsType[*apiError](err); ok && !ae.Retryable {
			return err
		}
		if a.clock.Now().After(job.leaseDeadline()) {
			return fmt.Errorf("report not delivered before the lease deadline: %w", err)
		}
		if !a.sleep(ctx, bo.next()) {
			return err
		}
	}
}
