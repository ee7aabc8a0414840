package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type restoreFlags struct {
	filterFlags
	target       string
	includes     []string
	excludes     []string
	excludeFiles []string
	dryRun       bool
	delete       bool
	verify       bool
	noXAttrs     bool
	overwrite    string
	keepCache    bool
	directIO     bool
	sync         bool
	parallelism  int
}

func newRestoreCmd(g *globals) *cobra.Command {
	var f restoreFlags
	cmd := &cobra.Command{
		Use:   "restore [flags] SNAPSHOT --target DIR",
		Short: "Restore a snapshot into a directory",
		Long: `Restore a snapshot into --target (created if missing).

SNAPSHOT is a snapshot ID, a unique prefix of one, or "latest" (the newest
snapshot matching --host/--tag/--path; refused while a snapshot cannot be
read, which may be newer). Files are restored below the target
with their backed-up paths: /home/u/x is restored to DIR/home/u/x.

Every block is authenticated before it is written. A file that cannot be read
or verified is reported and left out (a copy the target already held is left
as it was: replacements are renamed into place once complete); everything else
is still restored and lifeboat exits with code 1. Files already identical in the target are kept, so
an interrupted restore can simply be run again; it also removes the temporary
files (.lifeboat-restore-PID-N) a killed one left in the directories it
restores into.

Restored data goes through the page cache. Up to the kernel's background
write-back threshold (vm.dirty_background_bytes or _ratio: 10 % of the
available memory by default; of a container's memory limit if lower) lifeboat
leaves the write-back of its data to the kernel, as any program writing files
does. Beyond that it starts the write-back of its own oldest data, and beyond
twice that (its window: 64 MiB to 4 GiB) it waits for it and drops that data
from the cache, so a restore larger than memory does not push the host's
working set out or pile up dirty pages. --sync flushes the target's
filesystem before lifeboat exits, so that the restored data is on disk (and a
write-back error fails the restore; without --sync an error writing the last
data back after lifeboat exits is not reported); it also starts writing large
files back as soon as their data is written. --keep-cache turns the window
off: everything stays cached (useful when the restored files are read again
right away and fit in memory). --direct-io
writes the bulk of files of 1 MiB and more straight to disk (O_DIRECT, where
the filesystem supports it); each such write then waits for the disk, so at
most a quarter of the parallel downloads write direct at once and the rest
goes through the page cache.

--include and --exclude choose what is restored. An include pattern is
matched against the snapshot-relative path (home/u/*.txt) and takes
everything below a matching directory; ** as a whole element matches any
number of elements (var/lib/**/*.db, **/app.conf); one ending in / matches
directories only, as in excludes and find (**/cache/); it is cleaned as a
path (./home/u is home/u, and / the whole snapshot). Exclude patterns are
backup's: one without a slash matches any element of a path ('*.log',
'node_modules'), one with a slash the whole path as it was backed up
('/home/*/.cache', '/home/**/.cache'), never the directories above a
backed-up path, as in a backup. What an
exclude pattern matches is left out, with all it holds, even if an include
pattern matches it too (one that matches a backed-up path itself leaves out
all of it, with a warning).

--overwrite says what happens to a file, symlink or device the target
already holds where the snapshot has one: if-changed (the default) replaces it
unless it is a file with the snapshot's content, whose owner, mode, times and
extended attributes are then set as the snapshot's (user.* ones it lacks are
removed); never leaves it as it is, so only what is
missing is restored; if-newer replaces it only if the snapshot's modification
time is later than its. A directory the target holds where the snapshot has
one is kept and given the snapshot's metadata. A directory holding entries
where the snapshot has a file (symlink, device) is never removed without
--delete, in any mode: that path is reported as not restored (exit code 1),
or counted as kept where the mode keeps it; an empty one is replaced. A file where the snapshot has a directory is
replaced by it (if-changed), or kept (never; if-newer where it is newer),
and then nothing below that directory is restored and it is reported. A
directory that cannot be created (a parent not writable) is reported the
same way; everything else is restored.

--dry-run restores nothing: it plans the restore, reads the files already in
the target to tell identical ones from those that would be replaced, checks
that every pack it would read is in the repository, and prints what a restore
would write, download, keep, replace and remove, and what it would not
restore (exit code 1). Run it
before restoring into a directory that is in use.

--delete removes what the target holds and the snapshot does not, once
everything is restored, so that the backed-up paths in the target (or, with
--include/--exclude, the part of them they select) hold exactly the
snapshot: restoring /etc after a bad change also removes the files that
change added. Only at or below the paths the snapshot backed up: a snapshot
of /etc restored with --target / leaves /usr alone. Entries that
--include/--exclude leave out are never removed, nor anything below a
directory whose listing in the snapshot could not be read. Everything else
there goes, including what the backup itself excluded: pass the backup's
--exclude patterns to the restore too, and try it with --dry-run first. Every
removal is listed with --verbose (and in --json output).

--verify reads every restored file back and checks each chunk's keyed ID
again, so the files on the target are proven to hold the snapshot's bytes (as
the kernel returns them: data written moments ago is read from the page
cache). A file that differs is reported and removed, like one whose data could
not be read.

Extended attributes are restored after the owner (chown clears file
capabilities): ACLs (system.posix_acl_*), file capabilities
(security.capability), SELinux labels and user.* attributes. A file kept as
identical and a directory the target held lose the user.* attributes and
ACLs the snapshot lacks; security.* and trusted.* ones stay. As a user
other than root the security.* and trusted.* ones are left out.
--no-xattrs leaves them all unset, for a target filesystem without them or
a system with another SELinux policy.

A setuid or setgid file that could not be given the snapshot's owner or
group (as a user other than root, who does not set owners, or where the
target refuses them) is restored without that bit, with a warning: it must
not run as the restoring user, or root, instead.

--parallelism N sets how many pack ranges are downloaded at once (default 8).
Each holds up to about 16 MiB of buffers. More can help when the storage is
far away, since each request's latency is then paid N at a time; on a local
MinIO 12 and 16 were no faster than 8.

Needs the identity: backups are encrypted so that writer keys cannot read them.`,
		Example: `  lifeboat restore latest --target /srv/restore
  lifeboat restore 3f2a91c0 --target /tmp/r --include 'home/u/*'
  lifeboat restore latest --target / --include etc --delete --dry-run
  lifeboat restore latest --target /srv/restore --exclude '*.log' --verify`,
		Args: argsBetween(1, 1, "SNAPSHOT (an ID, a unique ID prefix, or latest)"),
		RunE: func(cmd *cobra.Command, args []string) error { return runRestore(cmd.Context(), g, f, args[0]) },
	}
	f.register(cmd, "consider snapshots")
	cmd.Flags().StringVarP(&f.target, "target", "t", "", "directory to restore into (required)")
	cmd.Flags().StringArrayVarP(&f.includes, "include", "i", nil, "restore only paths matching this pattern, and all below them; snapshot-relative like home/u/*.txt, ** for any number of elements: var/lib/**/*.db (repeatable)")
	cmd.Flags().StringArrayVarP(&f.excludes, "exclude", "e", nil, "leave out paths matching this pattern, as backup's --exclude: '*.log', '/home/*/.cache', '/home/**/.cache' (repeatable)")
	cmd.Flags().StringArrayVar(&f.excludeFiles, "exclude-file", nil, "read exclude patterns from a file, one per line; # starts a comment (repeatable)")
	cmd.Flags().BoolVarP(&f.dryRun, "dry-run", "n", false, "write nothing: show what a restore would write, download, replace and remove")
	cmd.Flags().BoolVar(&f.delete, "delete", false, "remove what the target holds and the snapshot does not (within --include/--exclude)")
	cmd.Flags().StringVar(&f.overwrite, "overwrite", "if-changed", "what to do with an entry the target already holds: if-changed, if-newer or never")
	cmd.Flags().BoolVar(&f.verify, "verify", false, "read every restored file back and check it against the snapshot")
	cmd.Flags().BoolVar(&f.noXAttrs, "no-xattrs", false, "leave extended attributes (ACLs, file capabilities, SELinux labels) unset")
	cmd.Flags().IntVar(&f.parallelism, "parallelism", 0, "pack ranges downloaded at once; 0 = 8")
	cmd.Flags().BoolVar(&f.keepCache, "keep-cache", false, "leave all restored data in the page cache instead of writing back and dropping what exceeds the window")
	cmd.Flags().BoolVar(&f.directIO, "direct-io", false, "write the bulk of files of 1 MiB and more with direct I/O (O_DIRECT), bypassing the page cache")
	cmd.Flags().BoolVar(&f.sync, "sync", false, "flush the restored data to disk before exiting (syncfs on the target's filesystem)")
	return cmd
}

type restoreOutput struct {
	SnapshotID      string  `json:"snapshot_id"`
	Target          string  `json:"target"`
	Files           int64   `json:"files"`
	Dirs            int64   `json:"dirs"`
	Symlinks        int64   `json:"symlinks"`
	Other           int64   `json:"other"`
	Bytes           int64   `json:"bytes"`
	BytesWritten    int64   `json:"bytes_written"`
	BytesDirect     int64   `json:"bytes_direct"` // of bytes_written, written with direct I/O
	FilesSkipped    int64   `json:"files_skipped"`
	BytesDownloaded int64   `json:"bytes_downloaded"`  // pack bytes read (in a dry run, to be read)
	FilesVerified   int64   `json:"files_verified"`    // --verify: files read back intact
	Replaced        int64   `json:"replaced"`          // in a dry run, entries the restore would replace
	Deleted         int64   `json:"deleted"`           // --delete: entries removed (in a dry run, to be removed)
	Kept            int64   `json:"kept"`              // --overwrite never/if-newer: existing entries left as they were
	Leftovers       int64   `json:"leftovers_removed"` // temporary files and directories of killed restores, removed (in a dry run, to be removed)
	DryRun          bool    `json:"dry_run"`
	DurationSeconds float64 `json:"duration_seconds"`
	// Changes: what --delete removed and, in a dry run, every entry a
	// restore would replace or remove.
	Changes []changeOutput `json:"changes"`
	Spared  []pathError    `json:"spared"` // what --delete left although the snapshot lacks it, and why
	// Temporary files and directories of killed restores that were not
	// removed, and why (a mount point, an error).
	LeftoversKept []pathError `json:"leftovers_kept"`
	Failures      []pathError `json:"failures"`
	// Entries whose data was restored but whose owner, mode, times or extended attributes
	// could not all be set, and the first few of them.
	MetadataErrors  int64       `json:"metadata_errors"`
	MetadataSamples []pathError `json:"metadata_error_samples"`
	// --include patterns that matched nothing in the snapshot.
	UnmatchedIncludes []string `json:"unmatched_includes,omitempty"`
	ExcludedIncludes  []string `json:"excluded_includes,omitempty"`
	// Backed-up paths an --exclude pattern left out whole.
	ExcludedPaths []string `json:"excluded_paths,omitempty"`
	// Blobs restored from another copy because their pack failed them,
	// and those packs.
	BlobsFromCopies int64    `json:"blobs_from_copies"`
	DamagedPacks    []string `json:"damaged_packs"`
}

func runRestore(ctx context.Context, g *globals, f restoreFlags, ref string) error {
	if f.target == "" {
		return usageError("restore needs --target DIR: the directory to restore into")
	}
	if err := checkParallelism(f.parallelism); err != nil {
		return err
	}
	if f.keepCache && f.directIO {
		return usageError("--keep-cache and --direct-io contradict each other: one keeps restored data in the page cache, the other bypasses it")
	}
	if f.dryRun && (f.verify || f.sync) {
		return usageError("--dry-run writes nothing, so --verify and --sync have nothing to read back or flush")
	}
	target, err := filepath.Abs(f.target)
	if err != nil {
		return fmt.Errorf("--target %s: %w", f.target, err)
	}
	if fi, err := os.Stat(target); err == nil && !fi.IsDir() {
		return fmt.Errorf("restore target %s exists and is not a directory; choose a directory with --target", target)
	}
	// Normalise include patterns to the snapshot-relative form.
	includes := make([]string, len(f.includes))
	for i, p := range f.includes {
		if _, err := snapshot.NewPattern(p); err != nil {
			return usageError("--include %q: %v", p, err)
		}
		for len(p) > 0 && p[0] == '/' {
			p = p[1:]
		}
		includes[i] = p
	}
	excludes, err := excludePatterns(g, f.excludes, f.excludeFiles)
	if err != nil {
		return err
	}
	overwrite, err := restore.ParseOverwrite(f.overwrite)
	if err != nil {
		return usageError("--overwrite: %v", err)
	}

	repo, err := g.openRepo(ctx, "restore", readAccess)
	if err != nil {
		return err
	}
	snap, err := findSnapshot(ctx, g, repo, ref, f.filter())
	if err != nil {
		return err
	}

	opts := restore.Options{
		Target:      target,
		Include:     includes,
		Exclude:     excludes,
		Logger:      g.pkgLogger(),
		WriteBehind: writeBehind(f.keepCache),
		DirectIO:    f.directIO,
		Sync:        f.sync,
		Packs:       f.parallelism,
		DryRun:      f.dryRun,
		Delete:      f.delete,
		Verify:      f.verify,
		NoXAttrs:    f.noXAttrs,
		Overwrite:   overwrite,
		Protect:     g.localPaths(),
	}
	if f.dryRun {
		return dryRunRestore(ctx, g, repo, snap, opts)
	}
	prog := &restore.Progress{}
	opts.Progress = prog
	bar := g.startProgress(func(el time.Duration) string {
		files, totalFiles := prog.Files.Load(), prog.TotalFiles.Load()
		bytes, totalBytes := prog.Bytes.Load(), prog.TotalBytes.Load()
		eta := "--:--"
		if bytes > 0 && totalBytes > bytes {
			eta = formatClock(time.Duration(float64(el) * float64(totalBytes-bytes) / float64(bytes)))
		}
		return fmt.Sprintf("[%s] %d/%d files, %s/%s, %s, ETA %s", formatClock(el), files, totalFiles,
			formatBytes(bytes), formatBytes(totalBytes), formatRate(bytes, el), eta)
	})
	start := time.Now()
	setMemoryLimit(ctx, repo.Store())
	defer oneMoreProc()()
	res, err := restore.Restore(ctx, repo, snap, opts)
	bar.Stop()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("restore of snapshot %s into %s interrupted; run the same command again to resume", snap.ID.Short(), target)
		}
		err = fmt.Errorf("restore snapshot %s into %s: %w", snap.ID.Short(), target, storeError(g.repo, err))
		return stoppedUnreachable(g, err, "run the same restore again: it resumes, keeping the files restored so far and skipping those already identical")
	}
	elapsed := time.Since(start)
	warnDamagedPacks(g.stderr, res)

	if g.json {
		out := newRestoreOutput(snap, target, res)
		out.DurationSeconds = elapsed.Seconds()
		if err := printJSON(g.stdout, out); err != nil {
			return err
		}
	} else {
		warnFailures(g.stderr, res.Failures, target, "could not restore")
		warnMetadata(g.stderr, res)
		warnSpared(g.stderr, res.Spared)
		warnLeftoversKept(g.stderr, res.LeftoversKept, target, "not removed")
		warnUnmatched(g.stderr, res, snap)
		if g.verbose {
			printChanges(g.stdout, res.Changes)
		}
		if !g.quiet {
			w := g.stdout
			fmt.Fprintf(w, "restored snapshot %s into %s\n", snap.ID.Short(), target)
			fmt.Fprintf(w, "Files:       %d (%d already identical), %d dirs, %d symlinks, %d other\n",
				res.Files, res.FilesSkipped, res.Dirs, res.Symlinks, res.Other)
			fmt.Fprintf(w, "Size:        %s (%s written)\n", formatBytes(res.Bytes), formatBytes(res.BytesWritten))
			if res.Kept > 0 {
				fmt.Fprintf(w, "Kept:        %d existing %s left as %s (--overwrite %s)\n", res.Kept, plural(int(res.Kept), "entry", "entries"), plural(int(res.Kept), "it was", "they were"), overwrite)
			}
			if f.verify {
				fmt.Fprintf(w, "Verified:    %d files read back intact\n", res.FilesVerified)
			}
			if f.delete {
				fmt.Fprintf(w, "Deleted:     %d %s the snapshot does not hold\n", res.Deleted, plural(int(res.Deleted), "entry", "entries"))
			}
			if res.Leftovers > 0 {
				fmt.Fprintf(w, "Cleaned up:  %d temporary %s a killed restore left (.lifeboat-restore-*)\n", res.Leftovers, plural(int(res.Leftovers), "file or directory", "files or directories"))
			}
			fmt.Fprintf(w, "Duration:    %s (%s)\n", formatDuration(elapsed), formatRate(res.BytesWritten, elapsed))
		}
	}
	hintOldCaches(g, repo.Config().ID)
	n, d := countFailures(res.Failures)
	switch {
	case n > 0:
		also := ""
		if d > 0 {
			also = fmt.Sprintf(", and %d %s of the target the snapshot does not hold could not be removed", d, plural(d, "entry", "entries"))
		}
		return fmt.Errorf("%d %s of snapshot %s could not be restored%s (see above); everything else was restored into %s; where the errors name packs or blobs, run 'lifeboat check --read-data' to inspect the repository",
			n, plural(n, "path", "paths"), snap.ID.Short(), also, target)
	case d > 0:
		return fmt.Errorf("snapshot %s was restored into %s, but %d %s of the target that it does not hold could not be removed (see above); fix what stops the removal (permissions, say) and run the same command again",
			snap.ID.Short(), target, d, plural(d, "entry", "entries"))
	}
	return nil
}

// warnFailures prints a warning for each failure: verb ("could not
// restore") and the snapshot path, or for a removal the target's path
// (the error says what could not be done).
func warnFailures(w io.Writer, failures []restore.Failure, target, verb string) {
	for _, fl := range failures {
		if fl.Removal {
			warnf(w, "%s: %v", filepath.Join(target, fl.Path), fl.Err)
			continue
		}
		warnf(w, "%s /%s: %v", verb, fl.Path, fl.Err)
	}
}

// countFailures counts the paths that were not restored (n) and the
// entries of the target that could not be removed or examined (d).
func countFailures(failures []restore.Failure) (n, d int) {
	for _, fl := range failures {
		if fl.Removal {
			d++
		} else {
			n++
		}
	}
	return n, d
}

func newRestoreOutput(snap *snapshot.Snapshot, target string, res *restore.Result) restoreOutput {
	out := restoreOutput{
		SnapshotID: snap.ID.String(), Target: target,
		Files: res.Files, Dirs: res.Dirs, Symlinks: res.Symlinks, Other: res.Other,
		Bytes: res.Bytes, BytesWritten: res.BytesWritten, BytesDirect: res.BytesDirect, FilesSkipped: res.FilesSkipped,
		BytesDownloaded: res.BytesDownloaded, FilesVerified: res.FilesVerified, Replaced: res.Replaced, Deleted: res.Deleted, Kept: res.Kept, Leftovers: res.Leftovers,
		Changes:           []changeOutput{},
		Failures:          pathErrors(res.Failures),
		Spared:            pathErrors(res.Spared),
		LeftoversKept:     pathErrors(res.LeftoversKept),
		UnmatchedIncludes: res.UnmatchedIncludes,
		ExcludedIncludes:  res.ExcludedIncludes,
		ExcludedPaths:     res.ExcludedPaths,
		BlobsFromCopies:   res.BlobsFromCopies, DamagedPacks: nonNil(res.DamagedPacks),
		MetadataErrors: res.MetadataErrors, MetadataSamples: pathErrors(res.MetadataSamples),
	}
	for _, c := range res.Changes {
		p := "/" + c.Path
		out.Changes = append(out.Changes, changeOutput{Path: p, PathB64: exactBytes(p), Action: c.Action, Dir: c.Dir})
	}
	return out
}

// dryRunRestore runs restore.Restore with opts.DryRun and prints what a
// restore would do.
func dryRunRestore(ctx context.Context, g *globals, repo *chunkstore.Repository, snap *snapshot.Snapshot, opts restore.Options) error {
	res, err := restore.Restore(ctx, repo, snap, opts)
	if err != nil {
		return fmt.Errorf("dry run of a restore of snapshot %s into %s: %w", snap.ID.Short(), opts.Target, storeError(g.repo, err))
	}
	if g.json {
		out := newRestoreOutput(snap, opts.Target, res)
		out.DryRun = true
		if err := printJSON(g.stdout, out); err != nil {
			return err
		}
	} else {
		warnFailures(g.stderr, res.Failures, opts.Target, "would not restore")
		warnSpared(g.stderr, res.Spared)
		warnLeftoversKept(g.stderr, res.LeftoversKept, opts.Target, "would not remove")
		warnUnmatched(g.stderr, res, snap)
		w := g.stdout
		printChanges(w, res.Changes)
		fmt.Fprintf(w, "dry run: nothing was written. Restoring snapshot %s into %s would\n", snap.ID.Short(), opts.Target)
		fmt.Fprintf(w, "  restore   %d files (%s), %d dirs, %d symlinks, %d other\n", res.Files, formatBytes(res.Bytes), res.Dirs, res.Symlinks, res.Other)
		upTo := ""
		if res.BytesWritten > 0 {
			upTo = "up to " // the holes of sparse files are not written
		}
		fmt.Fprintf(w, "  write     %s%s; %d %s already identical and kept\n", upTo, formatBytes(res.BytesWritten), res.FilesSkipped, plural(int(res.FilesSkipped), "file is", "files are"))
		fmt.Fprintf(w, "  download  %s of pack data\n", formatBytes(res.BytesDownloaded))
		fmt.Fprintf(w, "  replace   %d %s the target holds\n", res.Replaced, plural(int(res.Replaced), "entry", "entries"))
		if res.Kept > 0 {
			fmt.Fprintf(w, "  keep      %d existing %s as %s (--overwrite %s)\n", res.Kept, plural(int(res.Kept), "entry", "entries"), plural(int(res.Kept), "it is", "they are"), opts.Overwrite)
		}
		if opts.Delete {
			fmt.Fprintf(w, "  delete    %d %s the snapshot does not hold\n", res.Deleted, plural(int(res.Deleted), "entry", "entries"))
		}
		if res.Leftovers > 0 {
			fmt.Fprintf(w, "  clean up  %d temporary %s a killed restore left (.lifeboat-restore-*)\n", res.Leftovers, plural(int(res.Leftovers), "file or directory", "files or directories"))
		}
	}
	n, d := countFailures(res.Failures)
	if n > 0 {
		return fmt.Errorf("%d %s of snapshot %s would not be restored (see above); where the errors name packs or blobs, run 'lifeboat check --read-data' to inspect the repository",
			n, plural(n, "path", "paths"), snap.ID.Short())
	}
	if d > 0 {
		return fmt.Errorf("%d %s of the target could not be examined, so what --delete would remove there is unknown (see above)", d, plural(d, "entry", "entries"))
	}
	return nil
}

// printChanges lists what a restore replaced or removed, or in a dry run
// would: "replace /etc/x", "delete /etc/y/" (a directory, with all it holds).
func printChanges(w io.Writer, changes []restore.Change) {
	for _, c := range changes {
		slash := ""
		if c.Dir {
			slash = "/"
		}
		fmt.Fprintf(w, "%-8s %s%s\n", c.Action, displayPath("/"+c.Path), slash)
	}
}

// warnDamagedPacks names the packs that failed blobs the restore then
// read from other copies: what was restored is intact, the repository is
// not.
func warnDamagedPacks(w io.Writer, res *restore.Result) {
	switch {
	case len(res.DamagedPacks) > 0:
		warnf(w, "%d %s could not be read from %s and %s restored from other copies the repository holds: %s; run 'lifeboat check --read-data', then 'lifeboat repair packs' on what it names",
			res.BlobsFromCopies, plural(int(res.BlobsFromCopies), "chunk", "chunks"), plural(len(res.DamagedPacks), "its pack", "their packs"), plural(int(res.BlobsFromCopies), "was", "were"), strings.Join(res.DamagedPacks, ", "))
	case res.BlobsFromCopies > 0:
		warnf(w, "%d %s could not be read from %s (not damage: the storage failed, or the identity cannot open the pack; see -v) and %s restored from other copies the repository holds",
			res.BlobsFromCopies, plural(int(res.BlobsFromCopies), "chunk", "chunks"), plural(int(res.BlobsFromCopies), "its pack", "their packs"), plural(int(res.BlobsFromCopies), "was", "were"))
	}
}

// warnUnmatched names the --include patterns that selected nothing, and
// the backed-up paths an --exclude pattern left out whole: a typo
// restores less than was asked for, and nothing else would say so.
func warnUnmatched(w io.Writer, res *restore.Result, snap *snapshot.Snapshot) {
	for _, p := range res.UnmatchedIncludes {
		if slices.Contains(res.ExcludedIncludes, p) {
			fmt.Fprintf(w, "warning: --include %q matches only paths of snapshot %s that an --exclude pattern leaves out, so it selects nothing\n", p, snap.ID.Short())
			continue
		}
		fmt.Fprintf(w, "warning: --include %q matches nothing in snapshot %s (patterns are snapshot-relative, like etc/nginx; 'lifeboat ls %s' lists what it holds)\n", p, snap.ID.Short(), snap.ID.Short())
	}
	for _, p := range res.ExcludedPaths {
		fmt.Fprintf(w, "warning: an --exclude pattern matches %s, a path snapshot %s backed up: nothing of it is restored\n", displayPath(p), snap.ID.Short())
	}
}

// warnLeftoversKept names what killed restores left in the target and
// the restore did not remove ("not removed") or would not ("would not
// remove").
func warnLeftoversKept(w io.Writer, kept []restore.Failure, target, verb string) {
	for _, l := range kept {
		warnf(w, "%s: %s, a temporary file or directory a killed restore left: %v", verb, displayPath(filepath.Join(target, l.Path)), l.Err)
	}
}

// warnSpared names what --delete left although the snapshot lacks it.
func warnSpared(w io.Writer, spared []restore.Failure) {
	for _, s := range spared {
		warnf(w, "not removed (--delete): %s: %v", displayPath("/"+s.Path), s.Err)
	}
}

// displayPath is p as printed in a list of paths: quoted (Go syntax) if
// it holds control characters or bytes that are not UTF-8, so that a
// name cannot forge a line of the list.
func displayPath(p string) string {
	if !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl) {
		return strconv.Quote(p)
	}
	return p
}

type changeOutput struct {
	Path    string `json:"path"`
	PathB64 string `json:"path_b64,omitempty"` // see exactBytes
	Action  string `json:"action"`             // replace or delete
	Dir     bool   `json:"dir"`                // a directory in the target, with all it holds
}

// pathErrors lists failures for JSON output, with absolute snapshot
// paths; never nil, so that the field is [] rather than null.
func pathErrors(fs []restore.Failure) []pathError {
	out := []pathError{}
	for _, f := range fs {
		pe := newPathError("/"+f.Path, f.Err)
		pe.Removal = f.Removal
		out = append(out, pe)
	}
	return out
}

// warnMetadata names the entries whose metadata could not all be set
// (the first few) and how many there were in all. They do not change the
// exit code: the data was restored.
func warnMetadata(w io.Writer, res *restore.Result) {
	for _, fl := range res.MetadataSamples {
		warnf(w, "restored /%s, but not all of its metadata (owner, mode, times, extended attributes): %v", fl.Path, fl.Err)
	}
	if more := res.MetadataErrors - int64(len(res.MetadataSamples)); more > 0 {
		warnf(w, "%d more %s restored without all of their metadata; --verbose lists every one",
			more, plural(int(more), "entry was", "entries were"))
	}
}

// writeBehind is restore.Options.WriteBehind for --keep-cache.
func writeBehind(keepCache bool) int64 {
	if keepCache {
		return -1
	}
	return 0
}

// oneMoreProc runs the restore with one more P (GOMAXPROCS) than the
// runtime's default and returns the function that puts the default back. A
// restore's workers block in file system calls: creating a file can wait
// for its directory's lock, a write for page-cache memory, and with
// --direct-io each direct write (one per chunk, about a thousand per GiB)
// waits for the disk. While a worker's thread is blocked,
// its P runs nothing until the runtime's monitor hands it to another
// thread, at least 20 µs later. With one P more than there are cores,
// another worker is already running when one blocks. On the bench dataset
// (two cores, direct I/O then the default) the cores were 88 % busy
// against 83.5 %, and restores 3-4.6 % faster on average, faster in 25 of
// 36 alternated pairs (docs/benchmarks.md); through the page cache the
// cores idled less with it too (0.28 against 0.50 core-seconds per
// restore) for no clear difference in time. Backups are not given the extra P: their pipelines
// are sized by GOMAXPROCS, so one more P is another reader and sealer,
// about 40 MiB more live heap (see setMemoryLimit): with GOMAXPROCS=3 on
// two cores, 173-178 MiB live and a peak RSS of 168-179 MiB against 142-162
// MiB, near restic's, for no clear gain in time (4.8-5.4 s against 5.2-6.5
// s, four alternated backups each). (They had also been slower, but under
// the former fixed memory limit, which that live heap exceeded.)
func oneMoreProc() (restoreDefault func()) {
	if !extraProc(runtime.GOMAXPROCS(0), runtime.NumCPU(), os.Getenv("GOMAXPROCS")) {
		return func() {}
	}
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	return runtime.SetDefaultGOMAXPROCS
}

// extraProc reports whether a restore may add a P: not when GOMAXPROCS
// is set in the environment (the operator's choice), nor when the
// default is below the number of usable cores, which means a CPU quota
// (a container's cgroup limit): one P over the quota would get the
// process throttled.
func extraProc(procs, cpus int, env string) bool {
	return env == "" && procs >= cpus
}
