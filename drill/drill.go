package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// Command is an owner's verify command, run with /bin/sh -c in the
// restored tree.
type Command struct {
	Command string        `json:"command"`
	Timeout time.Duration `json:"timeout,omitempty"` // 0 = DefaultCheckTimeout
}

// DefaultCheckTimeout bounds a verify command that sets no timeout.
const DefaultCheckTimeout = 10 * time.Minute

// Targets are the recovery objectives a drill is measured against. Zero
// means no target.
type Targets struct {
	RTO, RPO time.Duration
}

// Options configure one drill.
type Options struct {
	// ID names the drill: the scratch subdirectory, the sample and the
	// random-within choice derive from it, and verify commands see it as
	// LIFEBOAT_DRILL_ID. Required; letters, digits, '.', '_' and '-'.
	ID string
	// Policy is informational: copied to the result and exported to
	// verify commands as LIFEBOAT_POLICY.
	Policy string
	// Snapshot selects what to restore: a snapshot ID, a unique ID
	// prefix, "latest" (the default) or "random-within:30d" (also
	// "random-within 30d"): one of the snapshots newer than now-30d,
	// chosen uniformly but reproducibly from ID.
	Snapshot string
	// Filter restricts the snapshots "latest" and "random-within"
	// consider (and an ID must match it too).
	Filter snapshot.Filter
	// SamplePercent: 0 or 100 restores and verifies every file;
	// otherwise about that percentage of the regular files, chosen
	// deterministically from ID.
	SamplePercent float64
	Verify        []Command
	// AllowCommand, if set, decides on this runner whether a verify
	// command may run: a command it refuses (its error says why) is
	// not run and fails the drill with reason "check". Nil allows every
	// command (a local drill, whose user typed them). A runner that
	// takes commands from elsewhere (an agent: from the coordinator's
	// policy) sets it so that whoever controls that source cannot run
	// anything else where the identity is.
	AllowCommand func(command string) error
	// Scratch is the parent directory of the restore (absolute). The
	// drill restores into Scratch/lifeboat-drill-<ID> and removes it
	// afterwards. It is created (mode 0700) if missing, and must be a
	// directory, not a symlink, owned by this user and not group- or
	// world-writable.
	Scratch string
	// ScratchLimit, if > 0, refuses a drill whose restore would need
	// more bytes. A drill also refuses when the scratch filesystem has
	// less free space than the bytes to restore.
	ScratchLimit int64
	// KeepOnFailure leaves the restored tree of a failed drill in place
	// (Result.KeptAt). Before it restores, every drill removes the
	// lifeboat-drill-* trees in Scratch beyond the newest KeptTrees, so
	// kept trees do not pile up.
	KeepOnFailure bool
	Targets       Targets
	Now           func() time.Time // default time.Now
	Logger        *slog.Logger
	Progress      *restore.Progress // optional; updated by the restore
	// Env is extra KEY=value for verify commands. They inherit only
	// PATH, HOME, USER, LOGNAME, SHELL, LANG, LC_*, TZ, TMPDIR and TERM
	// from this process, never its other variables (credentials).
	Env []string
}

// Failure reasons.
const (
	ReasonSnapshot = "snapshot" // the snapshot could not be found or loaded
	ReasonScratch  = "scratch"  // not enough scratch space, or scratch unusable
	ReasonMissing  = "missing"  // a pack the snapshot needs is not in the repository
	ReasonCorrupt  = "corrupt"  // stored data is damaged: a pack or blob failed its check or authentication
	ReasonRestore  = "restore"  // the restore could not run, or a file could not be restored (other causes)
	ReasonContent  = "content"  // a restored entry differs from the snapshot
	ReasonCheck    = "check"    // a verify command failed or timed out
	ReasonRTO      = "rto"      // the drill took longer than the RTO target
	ReasonRPO      = "rpo"      // the latest snapshot is older than the RPO target
)

// Failure is one reason a drill failed.
type Failure struct {
	Reason  string `json:"reason"`
	Path    string `json:"path,omitempty"` // snapshot-relative, when a file is concerned
	Message string `json:"message"`
}

func (f Failure) Error() string {
	if f.Path != "" {
		return fmt.Sprintf("%s: %s: %s", f.Reason, f.Path, f.Message)
	}
	return f.Reason + ": " + f.Message
}

// CheckResult is the outcome of one verify command.
type CheckResult struct {
	Command  string  `json:"command"`
	ExitCode int     `json:"exit_code"` // -1: killed, not started or skipped
	Seconds  float64 `json:"seconds"`
	TimedOut bool    `json:"timed_out,omitempty"`
	Signal   string  `json:"signal,omitempty"`  // the signal that killed it, other than on timeout ("killed", "segmentation fault")
	Skipped  bool    `json:"skipped,omitempty"` // not run: the restore or its verification had already failed
	Output   string  `json:"output,omitempty"`  // last 4 KiB of combined stdout and stderr
	Passed   bool    `json:"passed"`
}

// Result is the evidence a drill leaves, whether it passed or not.
type Result struct {
	ID          string `json:"id"`
	Policy      string `json:"policy,omitempty"`
	Trigger     string `json:"trigger,omitempty"`      // set by callers: schedule, manual, ...
	TriggeredBy string `json:"triggered_by,omitempty"` // set by callers
	Runner      string `json:"runner,omitempty"`       // defaults to the hostname
	JobID       string `json:"job_id,omitempty"`       // set by callers

	Passed bool `json:"passed"`

	SnapshotID   string    `json:"snapshot_id,omitempty"`
	SnapshotTime time.Time `json:"snapshot_time,omitzero"`
	Host         string    `json:"host,omitempty"`
	Paths        []string  `json:"paths,omitempty"`

	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// RTOSeconds runs from the drill's start until the restored tree
	// was verified and the verify commands passed (for a drill that
	// failed earlier: until it stopped).
	RTOSeconds float64 `json:"rto_seconds"`
	// RPOSeconds is the snapshot's age when the drill started.
	RPOSeconds     float64 `json:"rpo_seconds"`
	RestoreSeconds float64 `json:"restore_seconds"`
	VerifySeconds  float64 `json:"verify_seconds"`
	ChecksSeconds  float64 `json:"checks_seconds"`

	Files         int64   `json:"files"` // regular files restored and verified (every hard-link name counts)
	Bytes         int64   `json:"bytes"` // their content (each inode once)
	SnapshotFiles int64   `json:"snapshot_files"`
	SnapshotBytes int64   `json:"snapshot_bytes"`
	SamplePercent float64 `json:"sample_percent,omitempty"`

	ThroughputBytesPerSecond float64 `json:"throughput_bytes_per_second"` // Bytes / RestoreSeconds

	TargetRTOSeconds float64 `json:"target_rto_seconds,omitempty"`
	TargetRPOSeconds float64 `json:"target_rpo_seconds,omitempty"`
	RTOMet           *bool   `json:"rto_met,omitempty"`
	RPOMet           *bool   `json:"rpo_met,omitempty"`

	Checks   []CheckResult `json:"checks,omitempty"`
	Failures []Failure     `json:"failures"`
	// MetadataErrors counts restored entries whose data was restored
	// but whose owner, mode or times the drill's restore could not all
	// set (a scratch filesystem that refuses them, say). They do not
	// fail the drill on their own: the data came back. A wrong mode is
	// still caught by the verification (ReasonContent); times and
	// owners are not compared, so this is the only word of them.
	// MetadataSamples holds the first few (Reason "metadata").
	MetadataErrors  int64     `json:"metadata_errors,omitempty"`
	MetadataSamples []Failure `json:"metadata_error_samples,omitempty"`
	// DamagedPacks names the packs that were missing or damaged where
	// the restore found another copy of what it needed from them: the
	// data came back, so the drill can pass, but the repository needs
	// 'lifeboat check --read-data' and 'lifeboat repair packs'.
	// BlobsFromCopies counts the chunks read from another copy, also
	// those whose first pack the storage failed to serve (an outage,
	// with DamagedPacks empty).
	DamagedPacks    []string `json:"damaged_packs,omitempty"`
	BlobsFromCopies int64    `json:"blobs_from_copies,omitempty"`
	KeptAt          string   `json:"kept_at,omitempty"`
	// CleanupError says why the scratch directory could not be removed.
	CleanupError string `json:"cleanup_error,omitempty"`
}

// Reasons returns the distinct failure reasons, in order of appearance.
func (r *Result) Reasons() []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range r.Failures {
		if !seen[f.Reason] {
			seen[f.Reason] = true
			out = append(out, f.Reason)
		}
	}
	return out
}

// ScratchDir returns the directory a drill with this ID restores into.
func ScratchDir(scratch, id string) string {
	return filepath.Join(scratch, "lifeboat-drill-"+id)
}

// Validate reports options Run would reject.
func (o Options) Validate() error { return o.validate() }

func (o *Options) validate() error {
	if o.ID == "" {
		return errors.New("drill: no ID given")
	}
	for _, c := range o.ID {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') || o.ID[0] == '.' {
			return fmt.Errorf("drill: ID %q: use only letters, digits, '.', '_' and '-' (not leading '.')", o.ID)
		}
	}
	if o.Scratch == "" || !filepath.IsAbs(o.Scratch) {
		return fmt.Errorf("drill: scratch directory %q must be an absolute path", o.Scratch)
	}
	if o.SamplePercent < 0 || o.SamplePercent > 100 || math.IsNaN(o.SamplePercent) {
		return fmt.Errorf("drill: sample %v%% is outside 0–100", o.SamplePercent)
	}
	if o.ScratchLimit < 0 {
		return fmt.Errorf("drill: negative scratch limit %d", o.ScratchLimit)
	}
	if o.Targets.RTO < 0 || o.Targets.RPO < 0 {
		return errors.New("drill: negative RTO or RPO target")
	}
	for i, c := range o.Verify {
		if strings.TrimSpace(c.Command) == "" {
			return fmt.Errorf("drill: verify command %d is empty", i+1)
		}
		if c.Timeout < 0 {
			return fmt.Errorf("drill: verify command %q has a negative timeout", c.Command)
		}
	}
	if _, _, err := parseSnapshotRef(o.Snapshot); err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	return nil
}

// drill is one running drill.
type drill struct {
	repo *chunkstore.Repository
	opts Options
	log  *slog.Logger
	res  *Result
	now  func() time.Time
	// lock is this drill's restored tree, open and flock(2)ed while the
	// drill runs, so that other drills sharing the scratch directory
	// neither prune it nor take it over (see lockTree).
	lock *os.File
}

// Run performs a drill (see the package documentation). It returns a
// Result for every drill that started, passed or failed; the error is
// non-nil only for invalid options, a repository opened without an
// identity, or a cancelled ctx (then the Result, if any, is incomplete and
// the scratch directory has been removed).
func Run(ctx context.Context, repo *chunkstore.Repository, opts Options) (*Result, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if !repo.CanRead() {
		return nil, fmt.Errorf("drill %s: restoring needs the identity: %w", opts.ID, chunkstore.ErrNoIdentity)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &drill{repo: repo, opts: opts, log: opts.Logger.With("drill", opts.ID), now: opts.Now}
	start := d.now()
	d.res = &Result{ID: opts.ID, Policy: opts.Policy, StartedAt: start, Failures: []Failure{}}
	if opts.SamplePercent > 0 && opts.SamplePercent < 100 {
		d.res.SamplePercent = opts.SamplePercent
	}
	if h, err := os.Hostname(); err == nil {
		d.res.Runner = h
	}
	if t := opts.Targets.RTO; t > 0 {
		d.res.TargetRTOSeconds = t.Seconds()
	}
	if t := opts.Targets.RPO; t > 0 {
		d.res.TargetRPOSeconds = t.Seconds()
	}
	err := d.run(ctx, start)
	d.res.FinishedAt = d.now()
	sort.SliceStable(d.res.Failures, func(i, j int) bool {
		return reasonOrder(d.res.Failures[i].Reason) < reasonOrder(d.res.Failures[j].Reason)
	})
	d.res.Passed = len(d.res.Failures) == 0 && err == nil
	if err != nil {
		return d.res, err
	}
	d.log.Info("drill finished", "passed", d.res.Passed, "summary", d.res.Summary())
	return d.res, nil
}

func reasonOrder(r string) int {
	for i, x := range []string{ReasonSnapshot, ReasonScratch, ReasonMissing, ReasonCorrupt, ReasonRestore, ReasonContent, ReasonCheck, ReasonRTO, ReasonRPO} {
		if r == x {
			return i
		}
	}
	return 99
}

func (d *drill) fail(reason, p, format string, args ...any) {
	f := Failure{Reason: reason, Path: p, Message: fmt.Sprintf(format, args...)}
	d.res.Failures = append(d.res.Failures, f)
	d.log.Warn("drill failure", "reason", reason, "path", p, "message", f.Message)
}

func (d *drill) run(ctx context.Context, start time.Time) error {
	res := d.res
	snap, latest, err := d.selectSnapshot(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.fail(ReasonSnapshot, "", "%v", err)
		return nil
	}
	res.SnapshotID = snap.ID.String()
	res.SnapshotTime = snap.Time
	res.Host = snap.Host
	res.Paths = snap.Paths
	rpo := start.Sub(snap.Time)
	res.RPOSeconds = rpo.Seconds()
	if t := d.opts.Targets.RPO; t > 0 {
		met := rpo <= t && rpo >= -FutureSkew
		res.RPOMet = &met
		if rpo < -FutureSkew && latest {
			// A node whose clock ran ahead stamped it: it stays "latest"
			// whatever is backed up after it, and its negative age would
			// meet any target, hiding that backups stopped.
			d.fail(ReasonRPO, "", "the latest snapshot %s is dated %s, %s in the future of this runner's clock: the RPO cannot be measured (a backup node's clock runs ahead; fix it, then forget the snapshot or wait until it is in the past)",
				snap.ID.Short(), snap.Time.UTC().Format(time.RFC3339), fmtDuration(-rpo))
		} else if !met && latest {
			d.fail(ReasonRPO, "", "the latest snapshot %s (%s) is %s old, over the RPO target of %s",
				snap.ID.Short(), snap.Time.UTC().Format(time.RFC3339), fmtDuration(rpo), fmtDuration(t))
		}
	}

	if err := d.repo.EnsureIndex(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.fail(ReasonRestore, "", "load the repository index: %v", err)
		return nil
	}
	pl, err := buildPlan(ctx, d.repo, snap)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.fail(ReasonSnapshot, "", "read the trees of snapshot %s: %v", snap.ID.Short(), err)
		return nil
	}
	res.SnapshotFiles, res.SnapshotBytes = pl.files, pl.bytes
	include, need := pl.selectAll(), pl.bytes
	if p := d.opts.SamplePercent; p > 0 && p < 100 {
		include, need = pl.sample(d.opts.ID, p)
	}

	dir := ScratchDir(d.opts.Scratch, d.opts.ID)
	if !d.checkScratch(dir, need) {
		return nil
	}
	defer d.cleanup(dir)

	rstart := d.now()
	metaFailed := map[string]bool{}
	rres, err := restore.Restore(ctx, d.repo, snap, restore.Options{
		Target: dir, Include: include.patterns, Logger: d.opts.Logger, Progress: d.opts.Progress,
		OnMetadataError: func(p string, _ error) { metaFailed[p] = true },
	})
	res.RestoreSeconds = d.now().Sub(rstart).Seconds()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.fail(restoreReason(err), "", "restore snapshot %s into %s: %v", snap.ID.Short(), dir, err)
		res.RTOSeconds = d.now().Sub(start).Seconds()
		return nil
	}
	res.noteMetadata(rres)
	res.DamagedPacks, res.BlobsFromCopies = rres.DamagedPacks, rres.BlobsFromCopies
	skip := map[string]bool{}
	for _, f := range rres.Failures {
		skip[f.Path] = true
		d.fail(restoreReason(f.Err), f.Path, "%v", f.Err)
	}
	for _, u := range pl.unreadable {
		if !skip[u.path] {
			skip[u.path] = true
			d.fail(restoreReason(u.err), u.path, "%v", u.err)
		}
	}

	vstart := d.now()
	v, err := verifyTree(ctx, d.repo, dir, include.entries, skip, metaFailed, d.opts.Logger)
	res.VerifySeconds = d.now().Sub(vstart).Seconds()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.fail(ReasonContent, "", "verify the restored tree in %s: %v", dir, err)
	}
	res.Files, res.Bytes = v.files, v.bytes
	res.Failures = append(res.Failures, v.failures...)
	if res.RestoreSeconds > 0 {
		res.ThroughputBytesPerSecond = float64(res.Bytes) / res.RestoreSeconds
	}

	healthy := !hasReason(res.Failures, unhealthy...)
	cstart := d.now()
	for _, c := range d.opts.Verify {
		if allow := d.opts.AllowCommand; allow != nil {
			// Refused whether or not the tree is healthy: the command
			// would never run here.
			if err := allow(c.Command); err != nil {
				res.Checks = append(res.Checks, CheckResult{Command: c.Command, ExitCode: -1})
				d.fail(ReasonCheck, "", "verify command %q refused on this runner: %v", c.Command, err)
				continue
			}
		}
		if !healthy {
			res.Checks = append(res.Checks, CheckResult{Command: c.Command, ExitCode: -1, Skipped: true})
			continue
		}
		cr, err := runCheck(ctx, c, dir, d.checkEnv(dir, snap))
		if err != nil {
			return err
		}
		res.Checks = append(res.Checks, cr)
		if !cr.Passed {
			what := fmt.Sprintf("exited with code %d", cr.ExitCode)
			if cr.TimedOut {
				what = fmt.Sprintf("timed out after %s and was killed", fmtDuration(timeoutOf(c)))
			} else if cr.Signal != "" {
				what = "was killed by signal " + cr.Signal
			} else if cr.ExitCode < 0 {
				what = "could not run"
			}
			d.fail(ReasonCheck, "", "verify command %q %s%s", c.Command, what, lastLine(cr.Output))
		}
	}
	res.ChecksSeconds = d.now().Sub(cstart).Seconds()

	rto := d.now().Sub(start)
	res.RTOSeconds = rto.Seconds()
	if t := d.opts.Targets.RTO; t > 0 && !hasReason(res.Failures, slices.Concat(unhealthy, []string{ReasonCheck})...) {
		met := rto <= t
		// A sample restored in time says nothing of the whole snapshot;
		// one over the target does (the whole takes longer still).
		if !met || res.SamplePercent == 0 {
			res.RTOMet = &met
		}
		if !met {
			d.fail(ReasonRTO, "", "restore, verification and checks took %s, over the RTO target of %s", fmtDuration(rto), fmtDuration(t))
		}
	}
	return nil
}

// FutureSkew is how far in the future of the runner's clock a snapshot
// may be dated (clock skew between nodes) and still meet an RPO target.
const FutureSkew = 5 * time.Minute

// unhealthy are the reasons that leave no trustworthy restored tree:
// verify commands are skipped, and RTO is not measured.
var unhealthy = []string{ReasonSnapshot, ReasonScratch, ReasonMissing, ReasonCorrupt, ReasonRestore, ReasonContent}

// ReasonMetadata marks a MetadataSamples entry: not a failure.
const ReasonMetadata = "metadata"

// noteMetadata copies the restore's metadata errors into r.
func (r *Result) noteMetadata(rres *restore.Result) {
	r.MetadataErrors = rres.MetadataErrors
	r.MetadataSamples = nil
	for _, f := range rres.MetadataSamples {
		r.MetadataSamples = append(r.MetadataSamples, Failure{Reason: ReasonMetadata, Path: f.Path, Message: f.Err.Error()})
	}
}

// restoreReason classifies a restore error: damaged stored data
// (chunkstore.ErrCorrupt, which failed authentication wraps too) is
// "corrupt", a pack that is not there (chunkstore.ErrNotFound) "missing",
// anything else "restore".
func restoreReason(err error) string {
	switch {
	case errors.Is(err, chunkstore.ErrCorrupt):
		return ReasonCorrupt
	case errors.Is(err, chunkstore.ErrNotFound):
		return ReasonMissing
	}
	return ReasonRestore
}

func hasReason(fs []Failure, reasons ...string) bool {
	for _, f := range fs {
		for _, r := range reasons {
			if f.Reason == r {
				return true
			}
		}
	}
	return false
}

// lastLine returns ": <last non-empty line of out>" for a failure
// message, or "" if there is no output.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if l == "" {
		return ""
	}
	if len(l) > 200 {
		l = l[:200] + "…"
	}
	return ": " + l
}

// checkScratch prepares the scratch parent and refuses a restore that
// would not fit. It reports false (and a "scratch" failure) to stop.
func (d *drill) checkScratch(dir string, need int64) bool {
	if lim := d.opts.ScratchLimit; lim > 0 && need > lim {
		d.fail(ReasonScratch, "", "restoring needs %s but the scratch limit is %s; nothing was restored (raise the limit or sample a smaller percentage)",
			fmtBytes(need), fmtBytes(lim))
		return false
	}
	if err := os.MkdirAll(d.opts.Scratch, 0o700); err != nil {
		d.fail(ReasonScratch, "", "create scratch directory: %v", err)
		return false
	}
	if err := safeScratch(d.opts.Scratch); err != nil {
		d.fail(ReasonScratch, "", "%v", err)
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(d.opts.Scratch, &st); err != nil {
		d.fail(ReasonScratch, "", "scratch directory %s: %v", d.opts.Scratch, err)
		return false
	}
	if free := int64(st.Bavail) * int64(st.Bsize); need > free {
		d.fail(ReasonScratch, "", "restoring needs %s but the filesystem of %s has only %s free; nothing was restored",
			fmtBytes(need), d.opts.Scratch, fmtBytes(free))
		return false
	}
	d.pruneKept(dir)
	// The directory is this drill's alone: a leftover from an earlier
	// run with the same ID (kept on failure) is replaced, but not the
	// tree of a drill with this ID that is still running.
	if _, err := os.Lstat(dir); err == nil {
		f, err := lockTree(dir, unix.LOCK_EX)
		if errors.Is(err, errTreeBusy) {
			d.fail(ReasonScratch, "", "another drill with ID %s is running in %s; give this one another ID", d.opts.ID, dir)
			return false
		}
		d.log.Warn("removing a leftover scratch directory", "dir", dir)
		err = removeTree(dir)
		if f != nil {
			f.Close()
		}
		if err != nil {
			d.fail(ReasonScratch, "", "remove leftover scratch directory %s: %v", dir, err)
			return false
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		d.fail(ReasonScratch, "", "create %s: %v", dir, err)
		return false
	}
	f, err := lockTree(dir, unix.LOCK_SH)
	if err != nil {
		d.fail(ReasonScratch, "", "lock %s: %v", dir, err)
		return false
	}
	if fi, err := f.Stat(); err != nil || !sameFile(fi, dir) {
		f.Close()
		d.fail(ReasonScratch, "", "%s was removed or replaced while this drill created it (another drill's clean-up?)", dir)
		return false
	}
	d.lock = f
	return true
}

// errTreeBusy: another running drill holds the tree.
var errTreeBusy = errors.New("in use by a running drill")

// lockTree opens the directory dir (not following a symlink) and takes
// a flock(2) on it (how: unix.LOCK_EX or LOCK_SH) without waiting:
// errTreeBusy when a running drill holds it. A drill holds its own tree
// shared, as the restore does while it writes into it; removing a tree
// takes it exclusively. The lock goes with the returned file (and with
// the process, when it dies).
func lockTree(dir string, how int) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	if err := unix.Flock(fd, how|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errTreeBusy
		}
		return nil, &os.PathError{Op: "flock", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), dir), nil
}

func sameFile(fi os.FileInfo, p string) bool {
	li, err := os.Lstat(p)
	return err == nil && os.SameFile(fi, li)
}

// SafeScratch reports why p is unfit as a drill's scratch directory (see
// Options.Scratch), or nil.
func SafeScratch(p string) error { return safeScratch(p) }

// safeScratch refuses a scratch parent that someone else could swap or
// fill: the restored tree holds every backed-up secret in plaintext, and
// a link planted in a shared directory could redirect the restore (or
// its removal). The parent must be a real directory (not a symlink),
// owned by this user, and writable by nobody else.
func safeScratch(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("scratch directory %s: %w", p, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("scratch directory %s is a symlink; point the scratch setting at the real directory it names (or another directory of this user's, mode 0700)", p)
	}
	if !fi.IsDir() {
		return fmt.Errorf("scratch directory %s is not a directory; choose a directory of this user's, mode 0700", p)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("scratch directory %s is owned by uid %d, not by this user (uid %d); use a directory of this user's, mode 0700 (e.g. a subdirectory it creates)", p, st.Uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("scratch directory %s is writable by other users (mode %04o); run 'chmod go-w %s' or use a subdirectory of it with mode 0700", p, perm, p)
	}
	return nil
}

// KeptTrees is how many restored trees of earlier drills (kept on
// failure, or left by a runner that died) a drill leaves in the scratch
// directory: the newest ones, by modification time. Older ones are
// removed before the drill restores.
const KeptTrees = 2

// pruneKept removes the lifeboat-drill-* directories in the scratch
// directory, other than dir, beyond the newest KeptTrees.
func (d *drill) pruneKept(dir string) {
	ents, err := os.ReadDir(d.opts.Scratch)
	if err != nil {
		d.log.Warn("could not list the scratch directory for old drill trees", "dir", d.opts.Scratch, "err", err)
		return
	}
	type tree struct {
		path  string
		mtime time.Time
	}
	var trees []tree
	for _, e := range ents {
		p := filepath.Join(d.opts.Scratch, e.Name())
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "lifeboat-drill-") || p == dir {
			continue // symlinks are never followed, nor removed
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		trees = append(trees, tree{p, fi.ModTime()})
	}
	sort.Slice(trees, func(i, j int) bool { return trees[i].mtime.After(trees[j].mtime) })
	for _, t := range trees[min(KeptTrees, len(trees)):] {
		// A tree another drill is restoring or verifying right now is
		// neither kept nor old: leave it.
		f, err := lockTree(t.path, unix.LOCK_EX)
		if errors.Is(err, errTreeBusy) {
			d.log.Info("leaving the tree of a running drill", "dir", t.path)
			continue
		}
		err = removeTree(t.path)
		if f != nil {
			f.Close()
		}
		if err != nil {
			d.log.Warn("could not remove an old drill tree", "dir", t.path, "err", err)
			continue
		}
		d.log.Info("removed an old drill tree: only the newest kept ones stay", "dir", t.path,
			"modified", t.mtime.UTC().Format(time.RFC3339), "kept", KeptTrees)
	}
}

// cleanup removes the restored tree, or keeps it after a failure when
// asked to.
func (d *drill) cleanup(dir string) {
	if d.lock != nil {
		// Released after the removal (or once kept): a kept tree is
		// another drill's to prune.
		defer d.lock.Close()
	}
	if len(d.res.Failures) > 0 && d.opts.KeepOnFailure {
		if _, err := os.Lstat(dir); err == nil {
			// Its modification time says when it was kept: the restore
			// may have left the snapshot's there.
			now := time.Now()
			_ = os.Chtimes(dir, now, now)
			d.res.KeptAt = dir
			d.log.Info("keeping the restored tree of a failed drill", "dir", dir)
			return
		}
	}
	if err := removeTree(dir); err != nil {
		d.res.CleanupError = err.Error()
		d.log.Warn("could not remove the drill's scratch directory", "dir", dir, "err", err)
	}
}

// removeTree removes dir and everything below it, first making every
// directory writable (a restored tree may hold read-only directories).
// It never follows symlinks.
func removeTree(dir string) error {
	_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
