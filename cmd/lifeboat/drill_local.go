package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/drill"
	"github.com/lifeboat-backup/lifeboat/restore"
)

type drillLocalFlags struct {
	filterFlags
	snapshot      string
	id            string
	policy        string
	sample        string
	verify        []string
	verifyTimeout string
	scratch       string
	scratchLimit  string
	keepOnFailure bool
	rto, rpo      string
}

func newDrillLocalCmd(g *globals) *cobra.Command {
	var f drillLocalFlags
	cmd := &cobra.Command{
		Use:   "local [flags]",
		Short: "Run a restore drill now, on this machine",
		Long: `Run a restore drill on this machine, straight from the repository (no
coordinator needed): restore a snapshot into scratch space, verify every
restored file chunk by chunk against the snapshot, run the --verify commands
in the restored tree, measure RTO and RPO, then remove the scratch copy.

--snapshot is an ID, a unique ID prefix, latest (the default: the newest
snapshot matching --host/--tag/--path) or random-within:30d (a snapshot
newer than 30 days, chosen reproducibly from the drill ID).

Verify commands run with /bin/sh -c in the restored tree, which holds the
backed-up absolute paths: /srv/data is at $LIFEBOAT_DRILL_DIR/srv/data. They
also see LIFEBOAT_DRILL_ID, LIFEBOAT_SNAPSHOT_ID, LIFEBOAT_SNAPSHOT_TIME,
LIFEBOAT_SNAPSHOT_HOST and LIFEBOAT_POLICY. Of this shell's environment they
get only PATH, HOME, USER, LOGNAME, SHELL, LANG, LC_*, TZ, TMPDIR and TERM
(no credentials); a command that needs more sets it itself. A command that exits non-zero or
runs past --verify-timeout (its whole process group is killed) fails the drill.

RTO is the time from the start until the tree was verified and the commands
passed; RPO is the snapshot's age. A --rpo target fails the drill only when
the snapshot was selected as latest.

Exit codes: 0 the drill passed, 1 it failed (or could not run), 2 usage error.
Needs the identity.`,
		Example: `  lifeboat drill local --repo s3:https://s3.example.com/backups --identity id.txt
  lifeboat drill local --host db1 --sample 10% --rto 1h --rpo 24h \
      --verify 'pg_verifybackup "$LIFEBOAT_DRILL_DIR/var/lib/postgresql/backup"'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDrillLocal(cmd.Context(), g, f) },
	}
	f.register(cmd, "consider snapshots")
	fl := cmd.Flags()
	fl.StringVar(&f.snapshot, "snapshot", "latest", "snapshot to drill: an ID, a unique ID prefix, latest or random-within:DURATION")
	fl.StringVar(&f.id, "id", "", "drill ID (default: local-<time>-<random>); seeds --sample and random-within")
	fl.StringVar(&f.policy, "policy", "", "policy name to record and export as LIFEBOAT_POLICY")
	fl.StringVar(&f.sample, "sample", "", "restore and verify only about this percentage of the files, e.g. 10% (default: all)")
	fl.StringArrayVar(&f.verify, "verify", nil, "command run with /bin/sh -c in the restored tree; non-zero exit fails the drill (repeatable)")
	fl.StringVar(&f.verifyTimeout, "verify-timeout", "10m", "time limit of each --verify command")
	fl.StringVar(&f.scratch, "scratch", "", "directory to restore under (default: "+filepath.Join(os.TempDir(), "lifeboat-drills-UID")+", mode 0700)")
	fl.StringVar(&f.scratchLimit, "scratch-limit", "", "refuse to restore more than this, e.g. 50GiB")
	fl.BoolVar(&f.keepOnFailure, "keep-on-failure", false, "keep the restored tree when the drill fails, for inspection")
	fl.StringVar(&f.rto, "rto", "", "RTO target, e.g. 1h: fail when the drill takes longer")
	fl.StringVar(&f.rpo, "rpo", "", "RPO target, e.g. 24h: fail when the latest snapshot is older")
	return cmd
}

// parseDrillDuration reads a duration flag that may use d and w ("30d").
func parseDrillDuration(name, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := coordinator.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, usageError("--%s %q: want a duration like 90s, 45m, 4h or 30d", name, s)
	}
	return time.Duration(d), nil
}

func parsePercent(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || v <= 0 || v > 100 {
		return 0, usageError("--sample %q: want a percentage above 0 and at most 100, e.g. 10%%", s)
	}
	return v, nil
}

func (f drillLocalFlags) options() (drill.Options, error) {
	o := drill.Options{ID: f.id, Policy: f.policy, Snapshot: f.snapshot, Filter: f.filter(), KeepOnFailure: f.keepOnFailure}
	var err error
	if o.SamplePercent, err = parsePercent(f.sample); err != nil {
		return o, err
	}
	timeout, err := parseDrillDuration("verify-timeout", f.verifyTimeout)
	if err != nil {
		return o, err
	}
	for _, c := range f.verify {
		if strings.TrimSpace(c) == "" {
			return o, usageError("--verify: empty command")
		}
		o.Verify = append(o.Verify, drill.Command{Command: c, Timeout: timeout})
	}
	if o.Targets.RTO, err = parseDrillDuration("rto", f.rto); err != nil {
		return o, err
	}
	if o.Targets.RPO, err = parseDrillDuration("rpo", f.rpo); err != nil {
		return o, err
	}
	if f.scratchLimit != "" {
		if o.ScratchLimit, err = coordinator.ParseSize(f.scratchLimit); err != nil {
			return o, usageError("--scratch-limit %q: want a size like 500MiB or 20GiB", f.scratchLimit)
		}
	}
	if o.ID == "" {
		var b [3]byte
		_, _ = rand.Read(b[:])
		o.ID = "local-" + time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	}
	return o, nil
}

func runDrillLocal(ctx context.Context, g *globals, f drillLocalFlags) error {
	opts, err := f.options()
	if err != nil {
		return err
	}
	// Options the drill package rejects are usage errors: check them
	// before opening the repository.
	if f.scratch != "" {
		if opts.Scratch, err = filepath.Abs(f.scratch); err != nil {
			return usageError("--scratch %s: %v", f.scratch, err)
		}
	}
	check := opts
	if check.Scratch == "" {
		check.Scratch = os.TempDir()
	}
	if err := check.Validate(); err != nil {
		return usageError("%v", err)
	}
	repo, err := g.openRepo(ctx, "drill local", readAccess)
	if err != nil {
		return err
	}
	ownScratch := ""
	if f.scratch == "" {
		if opts.Scratch, ownScratch, err = defaultDrillScratch(g); err != nil {
			return err
		}
	}
	opts.Logger = g.pkgLogger()
	prog := &restore.Progress{}
	opts.Progress = prog
	bar := g.startProgress(func(el time.Duration) string {
		return fmt.Sprintf("[%s] drill: %d/%d files, %s/%s restored", formatClock(el),
			prog.Files.Load(), prog.TotalFiles.Load(), formatBytes(prog.Bytes.Load()), formatBytes(prog.TotalBytes.Load()))
	})
	setMemoryLimit(ctx, repo.Store())
	res, err := drill.Run(ctx, repo, opts)
	bar.Stop()
	if ownScratch != "" {
		// Removes only the empty directory; a kept tree stays.
		_ = os.Remove(ownScratch)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("drill %s interrupted; its scratch directory was removed", opts.ID)
		}
		return err
	}
	if g.json {
		if err := printJSON(g.stdout, res); err != nil {
			return err
		}
	} else {
		printDrillResult(g, res)
	}
	if !res.Passed {
		reasons := strings.Join(res.Reasons(), ", ")
		return withCode(exitError, fmt.Errorf("drill %s FAILED (%s)%s", res.ID, reasons, keptHint(res)))
	}
	return nil
}

// defaultDrillScratch is the scratch directory of a drill without
// --scratch: TMPDIR/lifeboat-drills-UID, the same for every drill of this
// user, so that a drill finds the trees earlier ones left behind (killed,
// or kept on failure) and removes those beyond the newest
// drill.KeptTrees: a fresh temporary directory per drill would leave the
// restored plaintext of every killed drill for good. When that directory
// is unfit (another user made it first), a fresh one is used, removed
// afterwards when empty (own).
func defaultDrillScratch(g *globals) (dir, own string, err error) {
	dir = filepath.Join(os.TempDir(), fmt.Sprintf("lifeboat-drills-%d", os.Geteuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		warnf(g.stderr, "scratch directory %s: %v; using a new temporary directory", dir, err)
	} else if err := drill.SafeScratch(dir); err != nil {
		warnf(g.stderr, "%v; using a new temporary directory", err)
	} else {
		return dir, "", nil
	}
	own, err = os.MkdirTemp("", "lifeboat-drill-")
	if err != nil {
		return "", "", fmt.Errorf("create a scratch directory (set --scratch): %w", err)
	}
	return own, own, nil
}

func keptHint(r *drill.Result) string {
	if r.KeptAt != "" {
		return "; the restored tree was kept at " + r.KeptAt
	}
	return ""
}

func printDrillResult(g *globals, r *drill.Result) {
	if r.Passed && g.quiet {
		return
	}
	fmt.Fprintf(g.stdout, "drill %s: %s\n", r.ID, r.Summary())
	printDrillDetails(g.stdout, r)
	if r.CleanupError != "" {
		warnf(g.stderr, "could not remove the scratch copy: %s", r.CleanupError)
	}
}

// printDrillDetails prints what a drill restored and verified, its
// timings against the targets, the verify commands (with the output of
// those that failed), the failures and where a failed drill's tree was
// kept: the body of 'drill local' and 'drill show'.
func printDrillDetails(w io.Writer, r *drill.Result) {
	if r.SnapshotID != "" {
		fmt.Fprintf(w, "Snapshot:    %s of %s at %s (%s)\n", shortID(r.SnapshotID), orDash(r.Host), r.SnapshotTime.Local().Format(time.RFC3339), strings.Join(r.Paths, ", "))
	}
	fmt.Fprintf(w, "Verified:    %d of %d files, %s of %s\n", r.Files, r.SnapshotFiles, formatBytes(r.Bytes), formatBytes(r.SnapshotBytes))
	fmt.Fprintf(w, "Timing:      restore %s, verify %s, checks %s\n",
		formatDuration(secs(r.RestoreSeconds)), formatDuration(secs(r.VerifySeconds)), formatDuration(secs(r.ChecksSeconds)))
	fmt.Fprintf(w, "RTO:         %s%s\n", formatDuration(secs(r.RTOSeconds)), targetSuffix(r.TargetRTOSeconds, r.RTOMet))
	fmt.Fprintf(w, "RPO:         %s%s\n", formatDuration(secs(r.RPOSeconds)), targetSuffix(r.TargetRPOSeconds, r.RPOMet))
	for _, c := range r.Checks {
		status := "passed"
		switch {
		case c.Skipped:
			status = "skipped (the restore or its verification failed)"
		case c.TimedOut:
			status = fmt.Sprintf("TIMED OUT after %s", formatDuration(secs(c.Seconds)))
		case c.Signal != "":
			status = "FAILED: killed by signal " + c.Signal
		case !c.Passed:
			status = fmt.Sprintf("FAILED with exit code %d", c.ExitCode)
		}
		fmt.Fprintf(w, "Check:       %s: %s\n", c.Command, status)
		if !c.Passed && !c.Skipped && strings.TrimSpace(c.Output) != "" {
			for _, l := range strings.Split(strings.TrimRight(c.Output, "\n"), "\n") {
				fmt.Fprintf(w, "    | %s\n", l)
			}
		}
	}
	for _, fl := range r.Failures {
		fmt.Fprintf(w, "Failure:     %s\n", fl.Error())
	}
	if r.KeptAt != "" {
		fmt.Fprintf(w, "Kept:        %s\n", r.KeptAt)
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
