package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/drill"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// drill runs a drill job with the agent's identity (see package drill)
// and reports its verdict. A verdict is final, passed or not: a failed
// drill is reported as a failed job with the verdict, which the
// coordinator records without a retry. A drill that could not run at all
// (no identity, bad settings, repository unreachable at open, cancelled)
// is reported without a verdict and retried.
func (a *Agent) drill(ctx context.Context, job *runningJob) outcome {
	item := job.item
	if err := a.checkRunnerJob(item); err != nil {
		return outcome{err: err}
	}
	opts, err := a.drillOptions(item)
	if err != nil {
		return outcome{err: fmt.Errorf("drill %s of policy %q: %w", item.Job.ID, item.Policy.Name, err)}
	}
	prog := &restore.Progress{}
	opts.Progress = prog
	job.restored.Store(prog)
	repo, err := a.openRepoWith(ctx, item.Repository, item.Policy.Name, chunkstore.Credentials{Identities: a.cfg.Identity})
	if err != nil {
		return outcome{err: fmt.Errorf("drill could not start: %w", err)}
	}
	res, err := drill.Run(ctx, repo, opts)
	if err != nil {
		return outcome{err: fmt.Errorf("drill could not run: %w", err)}
	}
	res.Runner, res.JobID, res.Trigger, res.TriggeredBy = a.cfg.Name, item.Job.ID, string(item.Job.Trigger), item.Job.CreatedBy
	rep := drillReport(res)
	out := outcome{drill: rep}
	if !res.Passed {
		out.err = errors.New("drill " + rep.Summary)
	}
	return out
}

// checkRunnerJob checks that a drill runner's job (drill, prune) can run
// here: the agent holds an identity, and the job came with its policy and
// its repository's access.
func (a *Agent) checkRunnerJob(item *coordinator.WorkItem) error {
	kind := item.Job.Kind
	switch {
	case len(a.cfg.Identity) == 0:
		return fmt.Errorf("agent %s holds no identity and cannot run %s %s: start it with --identity FILE to make it a drill runner", a.cfg.Name, kind, item.Job.ID)
	case item.Policy == nil:
		return fmt.Errorf("%s %s came without its policy %q (deleted meanwhile?)", kind, item.Job.ID, item.Job.Policy)
	case item.Repository == nil || item.Repository.URL == "":
		return fmt.Errorf("%s %s came without access to repository %q (not registered?)", kind, item.Job.ID, coordinator.JobRepository(&item.Job, item.Policy))
	}
	return nil
}

// drillOptions turns a drill job and its policy into drill options.
func (a *Agent) drillOptions(item *coordinator.WorkItem) (drill.Options, error) {
	p := item.Policy
	spec := coordinator.DrillSpec{}
	if p.Drill != nil {
		spec = *p.Drill
	}
	o := drill.Options{ID: item.Job.ID, Policy: p.Name, Snapshot: "latest", KeepOnFailure: spec.KeepOnFailure,
		Targets: drill.Targets{RTO: time.Duration(p.Targets.RTO), RPO: time.Duration(p.Targets.RPO)},
		Now:     a.clock.Now, Logger: a.log.With("job", item.Job.ID),
		Env: []string{"LIFEBOAT_POLICY=" + p.Name, "LIFEBOAT_JOB_ID=" + item.Job.ID, "LIFEBOAT_AGENT=" + a.cfg.Name}}
	switch {
	case item.Job.Drill != nil && item.Job.Drill.Snapshot != "":
		o.Snapshot = item.Job.Drill.Snapshot
	case spec.Snapshot != "":
		o.Snapshot = spec.Snapshot
	}
	// Only this policy's snapshots: its paths and exactly its tags (a
	// recent manual backup of the same paths must not stand in for the
	// policy's, nor meet its RPO). Not its hosts: each agent records its
	// own host name, and any of them will do.
	o.Filter = snapshot.Filter{Tags: p.Tags, ExactTags: true, Paths: topPaths(p.Paths)}
	var err error
	if o.SamplePercent, err = coordinator.ParseSample(spec.Sample); err != nil {
		return o, err
	}
	for _, c := range spec.Verify {
		t := time.Duration(c.Timeout)
		if t <= 0 {
			t = drill.DefaultCheckTimeout
		}
		o.Verify = append(o.Verify, drill.Command{Command: c.Command, Timeout: t})
	}
	o.AllowCommand = a.allowCommand
	o.Scratch = spec.Scratch
	if o.Scratch == "" {
		dir, err := filepath.Abs(a.cfg.DataDir)
		if err != nil {
			return o, fmt.Errorf("scratch directory: %w", err)
		}
		o.Scratch = filepath.Join(dir, "drill-scratch")
	}
	if spec.ScratchLimit != "" {
		if o.ScratchLimit, err = coordinator.ParseSize(spec.ScratchLimit); err != nil {
			return o, fmt.Errorf("scratch_limit: %w", err)
		}
	}
	return o, nil
}

// allowCommand lets a drill run only the verify commands of the
// runner's allow-list (Config.VerifyCommands), compared exactly.
func (a *Agent) allowCommand(command string) error {
	if slices.Contains(a.cfg.VerifyCommands, command) {
		return nil
	}
	src := "none: start the agent with --drill-commands FILE"
	switch {
	case a.cfg.VerifyCommandsFile != "":
		src = a.cfg.VerifyCommandsFile
	case len(a.cfg.VerifyCommands) > 0:
		src = "the agent's configuration"
	}
	return fmt.Errorf("not in this runner's allow-list (%s)", src)
}

// LoadVerifyCommands reads a drill runner's allow-list of verify
// commands: one command a line, exactly as the policy writes it (only
// the line's end of line and trailing carriage return are removed).
// Blank lines and lines whose first non-blank character is '#' are
// ignored.
func LoadVerifyCommands(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSuffix(l, "\r")
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// topPaths returns the paths a backup of paths records in its snapshot:
// cleaned, sorted, without those inside another.
func topPaths(paths []string) []string {
	var clean []string
	for _, p := range paths {
		clean = append(clean, filepath.Clean(p))
	}
	sort.Strings(clean)
	var out []string
	for _, p := range clean {
		if n := len(out); n > 0 && (p == out[n-1] || strings.HasPrefix(p, strings.TrimSuffix(out[n-1], "/")+"/")) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// drillReport is the verdict of res as the coordinator takes it.
func drillReport(res *drill.Result) *coordinator.DrillReport {
	rep := &coordinator.DrillReport{Passed: res.Passed, Summary: res.Summary(), SnapshotID: res.SnapshotID,
		StartedAt: res.StartedAt, FinishedAt: res.FinishedAt,
		// A snapshot stamped by a node whose clock runs ahead would give
		// a negative RPO: it is "now".
		RTOSeconds: max(0, res.RTOSeconds), RPOSeconds: max(0, res.RPOSeconds)}
	if !res.Passed {
		rep.Reasons = res.Reasons()
	}
	rep.Result = fitResult(res, coordinator.MaxDrillResult)
	return rep
}

// checkOutputKept is how much of each verify command's output a result
// cut to fit keeps.
const checkOutputKept = 1 << 10

// fitResult returns res as JSON of at most limit bytes. A result too
// large (thousands of failed files, long command output) is cut: command
// outputs to their last KiB, then the failure list to its first entries
// and a note saying how many were left out, then messages. The reasons
// and summary the report carries are those of the whole result. Nil if
// even that does not fit.
func fitResult(res *drill.Result, limit int) json.RawMessage {
	if b, err := json.Marshal(res); err == nil && len(b) <= limit {
		return b
	}
	c := *res
	c.Checks = slices.Clone(res.Checks)
	for i := range c.Checks {
		if o := c.Checks[i].Output; len(o) > checkOutputKept {
			c.Checks[i].Output = "…" + o[len(o)-checkOutputKept:]
		}
	}
	if b, err := json.Marshal(&c); err == nil && len(b) <= limit {
		return b
	}
	for n := len(res.Failures) / 2; n >= 1; n /= 2 {
		c.Failures = append(slices.Clone(res.Failures[:n]), drill.Failure{Reason: res.Failures[n].Reason,
			Message: fmt.Sprintf("… and %d more failures, left out to keep the result under %d KiB", len(res.Failures)-n, limit>>10)})
		if b, err := json.Marshal(&c); err == nil && len(b) <= limit {
			return b
		}
	}
	for i := range c.Failures {
		if m := c.Failures[i].Message; len(m) > 200 {
			c.Failures[i].Message = m[:200] + "…"
		}
	}
	for i := range c.Checks {
		c.Checks[i].Output = ""
	}
	if b, err := json.Marshal(&c); err == nil && len(b) <= limit {
		return b
	}
	return nil
}
