package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/atomicfile"
	"github.com/lifeboat-backup/lifeboat/internal/procgroup"
)

// Crash recovery. Before a job starts, the agent records it (ID, policy,
// fencing token) in DATA_DIR/state.json, and removes the record once the
// coordinator has its outcome. A record found at start therefore means
// the previous process died with the job running (kill -9, power loss,
// OOM). The agent reports each such job as failed with the token it had:
// the coordinator puts it back to pending (with its retry backoff) instead
// of waiting for the lease to expire, and frees the agent's slot. If the
// lease already expired, the report is refused as stale, which is just as
// good: the job was retried already. A backup that had committed its
// snapshot before the process died (during retention or the post-hook) is
// reported as succeeded with that snapshot, with a warning: it is not run
// again, and raises no failure alert.
//
// The repository needs no repair: a backup commits with its manifest, so
// a killed one left at most packs and indexes. The retry's backup adopts
// the packs no index lists (chunkstore's AdoptOrphans) and deduplicates
// against the indexed ones, so what was uploaded is not uploaded again.

const stateFileName = "state.json"

// record is a job that was running.
type record struct {
	JobID   string    `json:"job_id"`
	Policy  string    `json:"policy"`
	Token   uint64    `json:"token"`
	Started time.Time `json:"started"`
	// Snapshot is set once a backup committed: a process that dies
	// after that (during retention or the post-hook) left a snapshot,
	// which the next start reports instead of a failure.
	Snapshot *coordinator.SnapshotInfo `json:"snapshot,omitempty"`
	Partial  bool                      `json:"partial,omitempty"`
	// Commands are the job's hook or stream commands running: a process
	// that dies leaves what they started running (tied.Start ends only
	// the shell), which the next start ends (endLeftovers).
	Commands []command `json:"commands,omitempty"`
}

// command is a hook or stream command running in a process group of its
// own.
type command struct {
	What    string `json:"what"` // "pre-hook", "post-hook", "stream"
	Command string `json:"command"`
	procgroup.Group
}

// stateFile is the set of running jobs, written through on every change.
type stateFile struct {
	path string

	mu      sync.Mutex
	Running []record `json:"running"`
	// interrupted are records found at start, not yet reported.
	interrupted []record
}

func openState(path string) (*stateFile, error) {
	s := &stateFile{path: path}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("agent: read %s: %w", path, err)
	}
	var v struct {
		Running []record `json:"running"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		// Losing it only means waiting for lease expiry instead of an
		// immediate retry; it must not keep the agent from starting.
		_ = os.Rename(path, path+".damaged")
		return s, nil
	}
	s.interrupted = v.Running
	s.Running = slices.Clone(v.Running)
	return s, nil
}

func (s *stateFile) saveLocked() error {
	b, err := json.MarshalIndent(struct {
		Running []record `json:"running"`
	}{s.Running}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, b, 0o600)
}

func (s *stateFile) add(r record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Running = append(s.Running, r)
	return s.saveLocked()
}

func (s *stateFile) remove(jobID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.Running)
	s.Running = slices.DeleteFunc(s.Running, func(r record) bool { return r.JobID == jobID })
	if len(s.Running) == n {
		return nil
	}
	return s.saveLocked()
}

// committed records the snapshot a running backup committed.
func (s *stateFile) committed(jobID string, snap *coordinator.SnapshotInfo, partial bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.Running {
		if s.Running[i].JobID == jobID {
			s.Running[i].Snapshot, s.Running[i].Partial = snap, partial
			return s.saveLocked()
		}
	}
	return nil
}

// commandStarted records a command a running job started.
func (s *stateFile) commandStarted(jobID string, c command) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.Running {
		if s.Running[i].JobID == jobID {
			s.Running[i].Commands = append(s.Running[i].Commands, c)
			return s.saveLocked()
		}
	}
	return nil
}

// commandEnded forgets a command of a running job once it has ended.
func (s *stateFile) commandEnded(jobID string, pgid int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.Running {
		r := &s.Running[i]
		if r.JobID == jobID {
			n := len(r.Commands)
			r.Commands = slices.DeleteFunc(r.Commands, func(c command) bool { return c.ID == pgid })
			if len(r.Commands) == n {
				return nil
			}
			return s.saveLocked()
		}
	}
	return nil
}

// pending returns the interrupted records not yet reported.
func (s *stateFile) pending() []record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.interrupted)
}

func (s *stateFile) reported(r record) error {
	s.mu.Lock()
	s.interrupted = slices.DeleteFunc(s.interrupted, func(x record) bool { return x.JobID == r.JobID && x.Token == r.Token })
	s.mu.Unlock()
	return s.remove(r.JobID)
}

// leftoverGrace is how long a command a previous process left running
// gets to end after SIGTERM before it is killed.
const leftoverGrace = 5 * time.Second

// endLeftovers ends the hook and stream commands of the jobs a previous
// process left running, before anything else: the job's retry would run
// them again beside them (a second dump of the same database into the
// same file).
func (a *Agent) endLeftovers() {
	if a.cfg.keepLeftovers {
		return
	}
	for _, r := range a.state.pending() {
		for _, c := range r.Commands {
			n, err := c.End(leftoverGrace)
			switch {
			case err != nil:
				a.log.Error("could not end a command the previous agent process left running; end it by hand (kill -- -PGID)",
					"job", r.JobID, "policy", r.Policy, "what", c.What, "command", c.Command, "pgid", c.ID, "err", err)
			case n > 0:
				a.log.Warn("ended a command the previous agent process left running when it died",
					"job", r.JobID, "policy", r.Policy, "what", c.What, "command", c.Command, "pgid", c.ID, "processes", n)
			}
		}
	}
}

// noteCommand records a command job started in process group pgid, so
// that a later process can end it if this one dies first. It returns
// the function to call once the command has ended.
func (a *Agent) noteCommand(jobID, what, cmdline string, pgid int) (ended func()) {
	g, err := procgroup.Of(pgid)
	if err == nil {
		err = a.state.commandStarted(jobID, command{What: what, Command: cmdline, Group: g})
	}
	if err != nil {
		a.log.Warn("could not record a running command in the state file; if the agent dies, it is not ended at the next start",
			"job", jobID, "what", what, "err", err)
		return func() {}
	}
	return func() {
		if err := a.state.commandEnded(jobID, pgid); err != nil {
			a.log.Warn("update state file", "err", err)
		}
	}
}

// reportInterrupted reports the jobs a previous process left running. It
// returns an error while the coordinator cannot be reached, so that the
// agent takes new work only once its slots are free again.
func (a *Agent) reportInterrupted(ctx context.Context) error {
	for _, r := range a.state.pending() {
		rep := coordinator.CompleteRequest{Agent: a.cfg.Name, Token: r.Token, Success: false,
			Error: fmt.Sprintf("interrupted: agent %s stopped while the job ran (started %s); no snapshot was committed, the retry reuses the uploaded data",
				a.cfg.Name, r.Started.Format(time.RFC3339))}
		if r.Snapshot != nil {
			// The backup had committed: its snapshot is the job's
			// outcome, whatever did not run after it.
			rep = coordinator.CompleteRequest{Agent: a.cfg.Name, Token: r.Token, Success: true, Snapshot: r.Snapshot, Partial: r.Partial,
				Warnings: []string{fmt.Sprintf("agent %s stopped after committing snapshot %s and before reporting it (started %s): the policy's retention and post-hook may not have run",
					a.cfg.Name, r.Snapshot.ID, r.Started.Format(time.RFC3339))}}
		}
		var j coordinator.Job
		_, err := a.c.call(ctx, http.MethodPost, "/v1/jobs/"+r.JobID+"/complete", "", rep, &j, 15*time.Second)
		switch st := statusOf(err); {
		case err == nil:
			a.log.Info("reported interrupted job; the coordinator retries it", "job", r.JobID, "policy", r.Policy, "token", r.Token, "state", j.State)
			a.m.interrupted.Inc()
		case st == http.StatusForbidden:
			return fmt.Errorf("%w: %v", ErrRevoked, err)
		case st == http.StatusConflict || st == http.StatusNotFound || st == http.StatusBadRequest:
			a.log.Info("interrupted job was already taken back by the coordinator", "job", r.JobID, "policy", r.Policy, "reason", err)
		default:
			return fmt.Errorf("report interrupted job %s: %w", r.JobID, err)
		}
		if err := a.state.reported(r); err != nil {
			a.log.Warn("update state file", "err", err)
		}
	}
	return nil
}
