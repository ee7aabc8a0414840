package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/s3"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/atomicfile"
	"github.com/lifeboat-backup/lifeboat/internal/streamcmd"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// outcome is how a job ended on this agent.
type outcome struct {
	snap     *coordinator.SnapshotInfo
	err      error
	partial  bool     // committed, but some entries could not be read
	warnings []string // reported with a successful job
	// forgotten are the snapshots the policy's retention removed after a
	// successful backup.
	forgotten []string
	// verify and drill are the reports of maintenance jobs; they are
	// sent with a failed job too (damage found, a drill that failed).
	verify *coordinator.VerifyReport
	drill  *coordinator.DrillReport
	prune  *coordinator.PruneSummary
}

// execute runs a leased job of any kind.
func (a *Agent) execute(ctx context.Context, job *runningJob) outcome {
	switch k := job.item.Job.Kind; k {
	case coordinator.KindBackup:
		return a.executeBackup(ctx, job)
	case coordinator.KindVerify:
		return a.verify(ctx, job)
	case coordinator.KindDrill:
		return a.drill(ctx, job)
	case coordinator.KindPrune:
		return a.prune(ctx, job)
	default:
		return outcome{err: fmt.Errorf("agent %s does not know %q jobs (upgrade it)", a.cfg.Name, k)}
	}
}

// executeBackup runs a backup job: pre-hook, the backup, post-hook. The
// post-hook runs whatever happened before it, with its own timeout, even
// when the job's context is cancelled.
func (a *Agent) executeBackup(ctx context.Context, job *runningJob) outcome {
	item := job.item
	if item.Policy == nil {
		return outcome{err: fmt.Errorf("job %s came without its policy %q (deleted meanwhile?)", item.Job.ID, item.Job.Policy)}
	}
	hooks := a.cfg.Hooks.For(item.Policy.Name)
	env := []string{
		"LIFEBOAT_POLICY=" + item.Policy.Name,
		"LIFEBOAT_JOB_ID=" + item.Job.ID,
		"LIFEBOAT_AGENT=" + a.cfg.Name,
		"LIFEBOAT_PATHS=" + strings.Join(item.Policy.Paths, ":"),
	}
	var (
		out       outcome
		asOf      time.Time // when the data was frozen, if a pre-hook does it
		hookWarns []string
	)
	if hooks.Pre != nil {
		if hooks.Pre.TakesSnapshot {
			asOf = time.Now()
		}
		hout, warn, err := a.runHook(ctx, item.Job.ID, "pre", *hooks.Pre, env)
		if err != nil {
			out.err = fmt.Errorf("pre-hook failed, backup not started: %w%s", err, formatOutput(hout))
		}
		if warn != "" {
			hookWarns = append(hookWarns, warn)
		}
	}
	if out.err == nil {
		out = a.backup(ctx, job, asOf)
	}
	if hooks.Post != nil {
		penv := append(env, "LIFEBOAT_JOB_STATUS="+status(out.err))
		if out.snap != nil {
			penv = append(penv, "LIFEBOAT_SNAPSHOT_ID="+out.snap.ID)
		}
		if out.err != nil {
			penv = append(penv, "LIFEBOAT_ERROR="+out.err.Error())
		}
		// The backup's outcome stands: a snapshot that was committed is
		// reported whatever the post-hook does.
		hout, warn, err := a.runHook(context.WithoutCancel(ctx), item.Job.ID, "post", *hooks.Post, penv)
		if err != nil {
			a.log.Warn("post-hook failed", "job", item.Job.ID, "policy", item.Policy.Name, "err", err, "output", tail(hout, 2048))
			if out.err != nil {
				out.err = fmt.Errorf("%w; post-hook also failed: %v%s", out.err, err, formatOutput(hout))
			} else {
				hookWarns = append(hookWarns, fmt.Sprintf("the backup succeeded, but the post-hook failed: %v%s", err, formatOutput(tail(hout, 256))))
			}
		}
		if warn != "" {
			hookWarns = append(hookWarns, warn)
		}
	}
	out.warnings = append(hookWarns, out.warnings...)
	return out
}

func status(err error) string {
	if err != nil {
		return "failed"
	}
	return "succeeded"
}

// backup runs the policy's backup with the writer key the coordinator
// handed out for this job. A non-zero asOf dates the snapshot: when a
// pre-hook began freezing the data.
func (a *Agent) backup(ctx context.Context, job *runningJob, asOf time.Time) outcome {
	item, p := job.item, job.item.Policy
	if item.Repository == nil || item.Repository.URL == "" {
		return outcome{err: fmt.Errorf("job %s came without access to repository %q (not registered?)", item.Job.ID, p.Repository)}
	}
	stream := a.cfg.Hooks.For(p.Name).Stream
	if len(p.Paths) == 0 {
		return outcome{err: fmt.Errorf("policy %q has no paths", p.Name)}
	}
	if stream != nil {
		if len(p.Exclude) > 0 || len(p.Changing) > 0 || p.OneFileSystem || p.ExcludeCaches || len(p.ExcludeIfPresent) > 0 || p.ExcludeLargerThan != "" {
			return outcome{err: fmt.Errorf("policy %q: agent %s backs it up as the output of %q (its hooks file); exclude, changing, one_file_system, exclude_caches, exclude_if_present and exclude_larger_than do not apply to a stream: remove them from the policy", p.Name, a.cfg.Name, stream.Command)}
		}
		if want := "/" + stream.Filename; len(p.Paths) != 1 || p.Paths[0] != want {
			return outcome{err: fmt.Errorf("policy %q: agent %s backs it up as the output of %q (its hooks file), stored as %s, so the policy's paths must be [%s], not %q",
				p.Name, a.cfg.Name, stream.Command, want, want, p.Paths)}
		}
	}
	// A missing top-level path would only be a warning in a partial
	// snapshot; for a scheduled job it is a configuration error.
	for _, path := range p.Paths {
		if stream != nil {
			break
		}
		if !filepath.IsAbs(path) {
			return outcome{err: fmt.Errorf("policy %q: path %q is not absolute", p.Name, path)}
		}
		if _, err := os.Lstat(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return outcome{err: fmt.Errorf("policy %q: path %s does not exist on agent %s", p.Name, path, a.cfg.Name)}
			}
			return outcome{err: fmt.Errorf("policy %q: path %s: %w", p.Name, path, err)}
		}
	}
	repo, err := a.openRepo(ctx, item.Repository, p.Name)
	if err != nil {
		return outcome{err: fmt.Errorf("%w%s", err, staleKeyHint(item.Repository, err))}
	}
	cacheDir := filepath.Join(a.cfg.DataDir, "cache", p.Name)
	cachePath := filepath.Join(cacheDir, "files")
	cache, err := snapshot.LoadFilesCache(cachePath, repo.Config().ID)
	if err != nil {
		a.log.Warn("files cache discarded: every file is read again", "policy", p.Name, "err", err)
	}
	if cache == nil {
		cache = snapshot.NewFilesCache(repo.Config().ID)
	}
	defer cache.Discard()
	cache.IgnoreInode = p.IgnoreInode
	job.expect.Store(readLastSize(cacheDir))
	paths := p.Paths
	var streamOpt *snapshot.Stream
	streamErr := &tailBuffer{max: maxHookOutput} // a stream command's stderr
	if stream != nil {
		// Started only now that the repository is open: a dump is not
		// run for nothing.
		cmd := exec.Command("/bin/sh", "-c", stream.Command)
		cmd.Env = append(os.Environ(), "LIFEBOAT_POLICY="+p.Name, "LIFEBOAT_JOB_ID="+item.Job.ID, "LIFEBOAT_AGENT="+a.cfg.Name)
		cmd.Dir = a.cfg.DataDir
		cmd.Stderr = streamErr
		src, err := streamcmd.StartGroup(cmd, strconv.Quote(stream.Command))
		if err != nil {
			return outcome{err: fmt.Errorf("policy %q: stream: %w", p.Name, err)}
		}
		if pgid, ok := src.Group(); ok {
			defer a.noteCommand(item.Job.ID, "stream", stream.Command, pgid)()
		}
		defer src.Stop()
		streamOpt = &snapshot.Stream{Name: stream.Filename, Reader: src, Abort: src.Abort}
		paths = nil
	}
	var largerThan int64
	if p.ExcludeLargerThan != "" {
		var err error
		if largerThan, err = coordinator.ParseExcludeLargerThan(p.ExcludeLargerThan); err != nil {
			return outcome{err: fmt.Errorf("policy %q: exclude_larger_than: %w", p.Name, err)}
		}
	}
	ifPresent := p.ExcludeIfPresent
	if p.ExcludeCaches {
		ifPresent = append(slices.Clone(ifPresent), snapshot.CacheDirTag)
	}
	par := a.parallelism(p.Name)
	res, err := snapshot.Backup(ctx, repo, snapshot.BackupOptions{
		Time:              asOf,
		Readers:           par, // 0: the defaults
		Sealers:           par,
		Walkers:           par,
		Writer:            chunkstore.WriterOptions{Uploaders: par},
		Paths:             paths,
		Stream:            streamOpt,
		Host:              a.cfg.Host,
		Tags:              p.Tags,
		Excludes:          p.Exclude,
		Changing:          p.Changing,
		OneFileSystem:     p.OneFileSystem,
		ExcludeIfPresent:  ifPresent,
		ExcludeLargerThan: largerThan,
		FilesCache:        cache,
		Progress:          job.prog,
		Logger:            a.log.With("job", item.Job.ID),
		ProgramVersion:    "lifeboat " + a.cfg.Version,
		CommitDeadline: func() (time.Time, error) {
			// Commit only while the lease surely holds, and finish the
			// manifest upload before it could lapse. The local lease
			// state is up to a third of the TTL old: the job may have
			// been cancelled or taken back since, so ask the
			// coordinator once more, synchronously, before committing.
			if lost := job.lostErr(); lost != nil {
				return time.Time{}, fmt.Errorf("%w: %v", errLeaseLost, lost)
			}
			margin := a.cfg.LeaseTTL / 6
			left := job.leaseDeadline().Add(-margin).Sub(a.clock.Now())
			if left <= 0 {
				return time.Time{}, fmt.Errorf("%w: the lease may lapse before the snapshot is saved", errLeaseLost)
			}
			if err := a.renewOnce(ctx, job, min(left, 10*time.Second)); err != nil {
				if ae, ok := errors.AsType[*apiError](err); ok && !ae.Retryable {
					// Refused for good: the job is no longer ours.
					a.leaseLost(job, err, nil)
					return time.Time{}, fmt.Errorf("%w: the coordinator refused the renewal before commit: %v", errLeaseLost, err)
				}
				return time.Time{}, fmt.Errorf("%w: could not confirm the lease with the coordinator before commit: %v", errLeaseLost, err)
			}
			left = job.leaseDeadline().Add(-margin).Sub(a.clock.Now())
			if left <= 0 {
				return time.Time{}, fmt.Errorf("%w: the lease may lapse before the snapshot is saved", errLeaseLost)
			}
			return time.Now().Add(left), nil // a wall-clock deadline for the upload
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return outcome{err: fmt.Errorf("backup cancelled, no snapshot written (the retry reuses what was uploaded): %w", context.Cause(ctx))}
		}
		if out := strings.TrimRight(streamErr.String(), "\n"); out != "" {
			err = fmt.Errorf("%w\n--- stream command's standard error ---\n%s", err, tail(out, 4096))
		}
		return outcome{err: fmt.Errorf("backup failed, no snapshot written: %w%s", err, staleKeyHint(item.Repository, err))}
	}
	if out := strings.TrimSpace(streamErr.String()); out != "" {
		a.log.Info("stream command's standard error", "job", item.Job.ID, "policy", p.Name, "output", tail(out, 2048))
	}
	// The manifest is committed: nothing below may fail the job, but what
	// went wrong is reported with it.
	info := &coordinator.SnapshotInfo{ID: res.ID.String(), Host: res.Manifest.Host, Time: res.Manifest.Time,
		Size: int64(res.Manifest.Summary.BytesProcessed)}
	if err := a.state.committed(item.Job.ID, info, len(res.Warnings) > 0); err != nil {
		a.log.Warn("record committed snapshot (a crash before the report would report the job as failed)", "job", item.Job.ID, "err", err)
	}
	var warnings []string
	emptyStream := stream != nil && res.Manifest.Summary.BytesProcessed == 0
	if emptyStream {
		a.log.Warn("the stream command wrote nothing", "job", item.Job.ID, "policy", p.Name)
		warnings = append(warnings, fmt.Sprintf("the stream command %q wrote nothing: the snapshot holds /%s with 0 bytes", stream.Command, stream.Filename))
	}
	if bad := cache.Damaged(); len(bad) > 0 {
		a.log.Warn("files cache: damaged entries, their files were read again", "policy", p.Name, "directories", len(bad), "first", bad[0])
	}
	cacheErr := os.MkdirAll(cacheDir, 0o700)
	if cacheErr == nil {
		cacheErr = cache.Save(cachePath)
	}
	if cacheErr == nil {
		writeLastSize(cacheDir, int64(res.Manifest.Summary.BytesProcessed))
	} else {
		a.log.Warn("save files cache (the next backup uses the cache of an earlier one, and reads again what changed since)", "policy", p.Name, "err", cacheErr)
		warnings = append(warnings, fmt.Sprintf("files cache not saved, the next backup uses the cache of an earlier one and reads again what changed since: %v", cacheErr))
	}
	for _, w := range res.Warnings {
		a.log.Warn("could not back up", "job", item.Job.ID, "path", w.Path, "err", w.Err)
		warnings = append(warnings, fmt.Sprintf("not backed up: %s: %v", w.Path, w.Err))
	}
	if res.Adopted > 0 {
		a.log.Info("reused packs uploaded by an interrupted backup", "job", item.Job.ID, "packs", res.Adopted)
	}
	var forgotten []string
	warn := "retention not applied after a partial snapshot: the snapshots it would replace are complete"
	if emptyStream {
		// An empty dump is no replacement for the dumps retention
		// would forget: keep them until a dump writes something.
		warn = "retention not applied after an empty stream: the snapshots it would replace hold data"
	} else if len(res.Warnings) == 0 {
		now, skew := a.retentionNow(job)
		if skew != "" {
			a.log.Warn(skew, "job", item.Job.ID, "policy", p.Name)
			warnings = append(warnings, skew)
		}
		forgotten, warn = a.applyRetention(ctx, repo, *p, res.ID, now)
	}
	if warn != "" && !p.Retention.Rules().IsZero() {
		a.log.Warn(warn, "job", item.Job.ID, "policy", p.Name)
		warnings = append(warnings, warn)
	}
	return outcome{snap: info, partial: len(res.Warnings) > 0, warnings: warnings, forgotten: forgotten}
}

// openRepo opens a repository with the writer key the coordinator sent,
// its uploads paced by the agent's and the policy's upload limits.
func (a *Agent) openRepo(ctx context.Context, rc *coordinator.RepoCredentials, policy string) (*chunkstore.Repository, error) {
	sec, err := chunkstore.ParseWriterKey([]byte(rc.WriterKey))
	if err != nil {
		return nil, fmt.Errorf("repository %q: writer key from the coordinator: %w", rc.Name, err)
	}
	return a.openRepoWith(ctx, rc, policy, chunkstore.Credentials{Writer: sec})
}

// openRepoWith opens the repository rc with creds. S3 credentials come
// from the coordinator's record of the repository, not from this
// process's environment.
func (a *Agent) openRepoWith(ctx context.Context, rc *coordinator.RepoCredentials, policy string, creds chunkstore.Credentials) (*chunkstore.Repository, error) {
	loc, err := location.Parse(rc.URL)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", rc.Name, err)
	}
	retry := chunkstore.DefaultRetryConfig()
	retry.Logger = a.log
	var st chunkstore.Store
	switch loc.Kind {
	case location.S3:
		err = retry.Do(ctx, "open", loc.String(), func(ctx context.Context) error {
			var err error
			st, err = s3.Open(ctx, s3.Config{Endpoint: loc.Endpoint, Secure: loc.Secure, Bucket: loc.Bucket, Prefix: loc.Prefix,
				Region: rc.Env["AWS_REGION"], AccessKey: rc.Env["AWS_ACCESS_KEY_ID"], SecretKey: rc.Env["AWS_SECRET_ACCESS_KEY"],
				SessionToken: rc.Env["AWS_SESSION_TOKEN"], BucketLookup: rc.Env[location.EnvBucketLookup]}, false)
			return err
		})
		if err == nil {
			st = chunkstore.WithRetry(st, retry)
		}
	default:
		st, err = location.OpenWithRetry(ctx, rc.URL, false, retry)
	}
	if err != nil {
		return nil, fmt.Errorf("repository %q at %s: %w", rc.Name, loc, err)
	}
	st = a.limitStore(policy, st)
	if a.cfg.wrapStore != nil {
		st = a.cfg.wrapStore(st)
	}
	repo, err := chunkstore.Open(ctx, st, creds,
		chunkstore.Options{CacheDir: filepath.Join(a.cfg.DataDir, "cache", "repo"), Logger: a.log})
	if err != nil {
		return nil, fmt.Errorf("repository %q at %s: %w", rc.Name, loc, err)
	}
	return repo, nil
}

// The size the previous backup of a policy processed, for the ETA.
const lastSizeFile = "last.json"

func readLastSize(dir string) int64 {
	var v struct {
		Bytes int64 `json:"bytes"`
	}
	b, err := os.ReadFile(filepath.Join(dir, lastSizeFile))
	if err != nil || json.Unmarshal(b, &v) != nil {
		return 0
	}
	return v.Bytes
}

func writeLastSize(dir string, n int64) {
	b, _ := json.Marshal(map[string]int64{"bytes": n})
	_ = atomicfile.Write(filepath.Join(dir, lastSizeFile), b, 0o600)
}

// staleKeyHint tells where an agent's stale writer key is replaced: the
// chunkstore's message speaks of key files, but agents get theirs from
// the coordinator with each job.
func staleKeyHint(rc *coordinator.RepoCredentials, err error) string {
	if !errors.Is(err, chunkstore.ErrStaleKey) {
		return ""
	}
	return fmt.Sprintf("; agents get the writer key from the coordinator: register the new one with 'lifeboat repo add %s --replace --repo URL --key NEW_WRITER_KEY' (and the repository's storage credentials, as when it was added), then every agent's next backup uses it", rc.Name)
}
