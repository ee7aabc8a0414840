package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type backupFlags struct {
	host         string
	tags         []string
	excludes     []string
	changing     []string
	ignoreInode  bool
	readAll      bool // --read-all: trust no files cache entry
	excludeFiles []string
	parallelism  int
	time         string // --time: the snapshot's date, as of a filesystem snapshot

	oneFileSystem     bool     // -x: do not enter other filesystems
	excludeIfPresent  []string // NAME[:HEADER]: leave out the content of directories holding NAME
	excludeCaches     bool     // --exclude-if-present CACHEDIR.TAG with its signature
	excludeLargerThan string   // a size: leave out larger files
	filesFrom         []string // files of paths, one per line
	filesFromRaw      []string // files of paths, NUL-separated
	dryRun            bool     // walk and count, read and write nothing

	stdin        bool   // back up standard input
	stdinCommand bool   // back up the output of the command in the arguments
	stdinName    string // the file name the stream gets in the snapshot
}

func newBackupCmd(g *globals) *cobra.Command {
	var f backupFlags
	cmd := &cobra.Command{
		Use:   "backup [flags] PATH...",
		Short: "Back up paths into a new snapshot",
		Long: `Back up the given files and directories into a new snapshot.

Works with the writer key (--key) or the identity. Files whose size, times and
inode are unchanged since the last backup of the same paths from this host are
not read again (the files cache lives under --cache-dir). On filesystems whose
inode or device numbers change from one mount to the next (CIFS with
noserverino, FUSE without use_ino, a remounted NFS share or filesystem
snapshot), --ignore-inode leaves them out of the comparison. On filesystems
whose change time is only the modification time (FAT, exFAT, sshfs), a file
rewritten at its old size with its modification time set back looks unchanged:
--read-all reads every file (and saves the cache anew).

Entries that cannot be read are skipped with a warning; the snapshot is then
saved but marked partial and lifeboat exits with code 3.

Exclude patterns: a pattern without a slash matches any single path element
("*.tmp", "node_modules"); a pattern with a slash matches the whole absolute
path ("/home/*/.cache"). ** as a whole element matches any number of
elements: "/home/**/.cache" at any depth below /home, "**/node_modules/*.js"
anywhere, "/srv/tmp/**" everything below /srv/tmp (not /srv/tmp itself). A
trailing slash matches directories only ("node_modules/"). An excluded
directory is not descended into.

-x (--one-file-system) stays on the filesystems of the backup paths: a mount
point below them (/proc, /sys, a mounted share) is saved as an empty
directory. Back up / with it, and name each filesystem wanted as a path of its
own. --exclude-caches leaves out the content of directories tagged with a
CACHEDIR.TAG file, --exclude-if-present NAME of those holding NAME (both keep
the directory and the marker); --exclude-larger-than SIZE leaves out larger
files. --files-from FILE (one path per line) and --files-from-raw FILE (NUL-
separated, as find -print0 writes) read more paths to back up. -n (--dry-run)
walks with all of these and says what a backup would read, reading and writing
nothing.

A file that changes while it is read is saved as read and named in a
warning (exit 3): it may mix old and new content. Files expected to change
(logs being appended to) are named with --changing, in the syntax of
exclude patterns; a pattern matching a directory covers everything below it.
As excludes, they do not match the directories above a backup path.
They are saved as read too, but without a warning, and counted in
files_changed_while_read. Either way the next backup reads them again.
Sockets are left out.

A backup of a filesystem snapshot (LVM, ZFS, btrfs, a cloud volume's
snapshot) should be dated when that was taken: --time gives it ("2026-11-28
03:00:00" in local time, or RFC 3339). The snapshot is then listed, kept and
chosen as "latest" by that time, and files changed in the three seconds before
it are read again by the next backup, whose stat could otherwise miss a second
change within one timestamp tick.

Memory grows with the workers: by default every core gets a reader and a
sealer, up to 8 of each, each holding buffers of up to the maximum chunk size
(8 MiB), for about 40 MiB per core beside the packs in flight (a live heap of
about 135 MiB on 2 cores, 380 MiB on 8 or more). --parallelism N sets the
directories walked, files read, blobs sealed and packs uploaded at once, and
with them the memory; above 8 it lets a large machine use more cores. By
default a directory per core (at least 2) is walked at once.

Streams: --stdin backs up standard input, --stdin-from-command the output of
the command given after "--", as one file named by --stdin-filename (the
snapshot's path is /NAME; restore it, or 'lifeboat dump SNAPSHOT NAME' writes
it to stdout). Prefer --stdin-from-command: the backup then fails, and saves no
snapshot, when the command exits with an error, whereas a pipe into --stdin
cannot tell a failed dump from a short one. Either way, a read error fails
the backup and no snapshot is saved.`,
		Example: `  lifeboat backup --repo /srv/backup --key writer.key /etc /home
  lifeboat backup --tag nightly --exclude '*.tmp' --exclude-file excludes.txt /srv
  lifeboat backup --changing /var/log/ --changing '*.journal' /etc /var
  lifeboat backup -x --exclude-caches --exclude-larger-than 4G / /home
  lifeboat backup --files-from /etc/lifeboat/paths.txt
  lifeboat backup --time "$(date -d @"$SNAP_EPOCH" '+%F %T')" /mnt/snap/home
  lifeboat backup --stdin-from-command --stdin-filename app.sql -- pg_dump app
  mysqldump --all-databases | lifeboat backup --stdin --stdin-filename all.sql`,
		Args: func(cmd *cobra.Command, args []string) error { return checkBackupArgs(cmd, f, args) },
		RunE: func(cmd *cobra.Command, args []string) error { return runBackup(cmd.Context(), g, f, args) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.host, "host", "", "host name recorded in the snapshot (default: this machine's host name)")
	fl.StringArrayVar(&f.tags, "tag", nil, "tag the snapshot (repeatable)")
	fl.StringArrayVarP(&f.excludes, "exclude", "e", nil, "skip paths matching this pattern: '*.tmp', '/home/*/.cache', '**/node_modules/' (repeatable)")
	fl.StringArrayVar(&f.excludeFiles, "exclude-file", nil, "read exclude patterns from a file, one per line; # starts a comment (repeatable)")
	fl.BoolVar(&f.ignoreInode, "ignore-inode", false, "files cache: trust a file whose size and times are unchanged even if its inode or device number changed (CIFS with noserverino, FUSE without use_ino, remounted shares and snapshots)")
	fl.BoolVar(&f.readAll, "read-all", false, "files cache: read every file, trusting no entry, and save what was read for the next backup (FAT, exFAT and sshfs, where setting a file's modification time back hides a change)")
	fl.StringArrayVar(&f.changing, "changing", nil, "files matching this pattern (or below a directory it matches) are expected to change while read: saved as read without a warning (repeatable)")
	fl.BoolVarP(&f.oneFileSystem, "one-file-system", "x", false, "stay on the filesystems of the backup paths: a mount point below them (/proc, /sys, a mounted share) is saved as an empty directory")
	fl.StringArrayVar(&f.excludeIfPresent, "exclude-if-present", nil, "leave out the content of directories that hold a file of this name, all but that file; NAME:HEADER only if the file begins with HEADER (repeatable)")
	fl.BoolVar(&f.excludeCaches, "exclude-caches", false, "leave out the content of cache directories marked with a CACHEDIR.TAG file (bford.info/cachedir), all but the tag")
	fl.StringVar(&f.excludeLargerThan, "exclude-larger-than", "", "leave out files larger than this size: 500M, 2GiB (K, M, G, T, KiB... are powers of 1024; kB, MB, GB, TB of 1000)")
	fl.StringArrayVar(&f.filesFrom, "files-from", nil, "read paths to back up from this file (- for standard input), one per line; empty lines and lines starting with # are skipped (repeatable)")
	fl.StringArrayVar(&f.filesFromRaw, "files-from-raw", nil, "read paths to back up from this file (- for standard input), separated by NUL bytes, as find -print0 writes them (repeatable)")
	fl.BoolVarP(&f.dryRun, "dry-run", "n", false, "walk the paths with every exclude and say what would be read and left unread, reading no file and writing nothing (with -v, each file that would be read)")
	fl.StringVar(&f.time, "time", "", `date the snapshot at this time instead of now: when the filesystem snapshot backed up was taken ("2006-01-02 15:04:05" local, or RFC 3339)`)
	fl.IntVar(&f.parallelism, "parallelism", 0, "directories walked, files read, blobs sealed and packs uploaded at once; 0 = a walker, a reader and a sealer per core (at least 2 walkers, at most 8 each), 2 uploaders")
	fl.BoolVar(&f.stdin, "stdin", false, "back up standard input as one file (see --stdin-filename); takes no PATH")
	fl.BoolVar(&f.stdinCommand, "stdin-from-command", false, "run the command given after -- and back up its output; a non-zero exit fails the backup")
	fl.StringVar(&f.stdinName, "stdin-filename", "stdin", "file name of the stream in the snapshot (with --stdin or --stdin-from-command)")
	return cmd
}

// pathOnlyFlags are backup's flags that choose among files, which a
// stream has none of.
var pathOnlyFlags = []string{"exclude", "exclude-file", "changing", "one-file-system", "exclude-if-present", "exclude-caches",
	"exclude-larger-than", "files-from", "files-from-raw", "dry-run"}

// checkBackupArgs checks the arguments against the source flags: paths,
// nothing (--stdin) or a command (--stdin-from-command).
func checkBackupArgs(cmd *cobra.Command, f backupFlags, args []string) error {
	switch {
	case f.stdin && f.stdinCommand:
		return usageError("backup: --stdin and --stdin-from-command exclude each other")
	case f.stdin && len(args) > 0:
		return usageError("backup: --stdin takes no PATH (got %q); the data comes from standard input", strings.Join(args, " "))
	case f.stdinCommand && len(args) == 0:
		return usageError("backup: --stdin-from-command needs the command after --: lifeboat backup --stdin-from-command -- pg_dump app")
	case !f.stdin && !f.stdinCommand && cmd.Flags().Changed("stdin-filename"):
		return usageError("backup: --stdin-filename needs --stdin or --stdin-from-command")
	case f.stdin || f.stdinCommand:
		var given []string
		for _, name := range pathOnlyFlags {
			if cmd.Flags().Changed(name) {
				given = append(given, "--"+name)
			}
		}
		if len(given) > 0 {
			return usageError("backup: %s %s not apply to a stream (--stdin, --stdin-from-command)", strings.Join(given, ", "), plural(len(given), "does", "do"))
		}
		if !snapshot.ValidName(f.stdinName) {
			return usageError("backup: --stdin-filename %q: give one file name, without '/' (not empty, '.' or '..')", f.stdinName)
		}
		return nil
	}
	if f.time != "" {
		if _, err := parseSnapshotTime(f.time, time.Now()); err != nil {
			return usageError("backup: --time: %v", err)
		}
	}
	for _, p := range f.changing {
		if _, err := snapshot.NewPattern(p); err != nil || p == "" {
			return usageError("backup: --changing %q: not a pattern (%v): use the syntax of --exclude", p, cmp.Or(err, errors.New("empty")))
		}
	}
	if f.excludeLargerThan != "" {
		if _, err := coordinator.ParseExcludeLargerThan(f.excludeLargerThan); err != nil {
			return usageError("backup: --exclude-larger-than: %v", err)
		}
	}
	for _, spec := range f.excludeIfPresent {
		if name, _, _ := strings.Cut(spec, ":"); !snapshot.ValidName(name) {
			return usageError("backup: --exclude-if-present %q: give a file name, without '/' (not empty, '.' or '..'), optionally followed by ':' and the bytes the file must begin with", spec)
		}
	}
	if len(f.filesFrom) > 0 || len(f.filesFromRaw) > 0 {
		return nil // the paths are checked once read (runBackup)
	}
	return argsBetween(1, -1, "PATH to back up")(cmd, args)
}

// dryRunOutput reports a backup's dry run: what it would read, in the
// shape of a backup's output (no snapshot ID; dry_run set).
func dryRunOutput(g *globals, res *snapshot.Result, elapsed time.Duration) error {
	for _, w := range res.Warnings {
		warnf(g.stderr, "could not back up %s: %v", w.Path, w.Err)
	}
	s := res.Manifest.Summary
	if g.json {
		out := backupOutput{
			DryRun: true, FilesNew: s.FilesNew, FilesChanged: s.FilesChanged, FilesUnmodified: s.FilesUnmodified,
			Dirs: s.Dirs, BytesProcessed: s.BytesProcessed, BytesToRead: s.BytesRead, DurationSeconds: elapsed.Seconds(),
			Errors: warningErrors(res.Warnings), Partial: len(res.Warnings) > 0,
		}
		if err := printJSON(g.stdout, out); err != nil {
			return err
		}
	} else if !g.quiet {
		w := g.stdout
		fmt.Fprintf(w, "Dry run: no file was read and nothing was written.\n")
		fmt.Fprintf(w, "Files:       %d new, %d changed, %d unmodified\n", s.FilesNew, s.FilesChanged, s.FilesUnmodified)
		fmt.Fprintf(w, "Dirs:        %d\n", s.Dirs)
		fmt.Fprintf(w, "Would read:  %s of %s\n", formatBytes(int64(s.BytesRead)), formatBytes(int64(s.BytesProcessed)))
	}
	if n := len(res.Warnings); n > 0 {
		return withCode(exitPartial, fmt.Errorf("dry run: %d %s could not be read (listed above); a backup would be partial", n, plural(n, "entry", "entries")))
	}
	return nil
}

// warningErrors is a backup's warnings as --json lists them (errors).
func warningErrors(ws []snapshot.Warning) []pathError {
	out := make([]pathError, 0, len(ws))
	for _, w := range ws {
		out = append(out, newPathError(w.Path, w.Err))
	}
	return out
}

type backupOutput struct {
	SnapshotID      string  `json:"snapshot_id"` // empty in a dry run
	DryRun          bool    `json:"dry_run,omitempty"`
	BytesToRead     uint64  `json:"bytes_to_read,omitempty"` // dry run: of the files that would be read
	FilesNew        uint64  `json:"files_new"`
	FilesChanged    uint64  `json:"files_changed"`
	FilesUnmodified uint64  `json:"files_unmodified"`
	Dirs            uint64  `json:"dirs"`
	BytesProcessed  uint64  `json:"bytes_processed"`
	BytesAdded      uint64  `json:"bytes_added"`
	DurationSeconds float64 `json:"duration_seconds"`
	// FilesChangedWhileRead counts the files saved as read while they
	// changed: those in Errors, and FilesChangedAsExpected (--changing).
	FilesChangedWhileRead  uint64      `json:"files_changed_while_read"`
	FilesChangedAsExpected uint64      `json:"files_changed_as_expected"`
	Errors                 []pathError `json:"errors"`
	Partial                bool        `json:"partial"`
}

func runBackup(ctx context.Context, g *globals, f backupFlags, args []string) error {
	if err := checkParallelism(f.parallelism); err != nil {
		return err
	}
	for _, t := range f.tags {
		if err := checkTag("--tag", t); err != nil {
			return err
		}
	}
	streaming := f.stdin || f.stdinCommand
	if !streaming {
		listed, err := readPathLists(f.filesFrom, f.filesFromRaw)
		if err != nil {
			return err
		}
		args = append(slices.Clone(args), listed...)
		if len(args) == 0 {
			return usageError("backup: --files-from and --files-from-raw listed no path, and none was given: nothing to back up")
		}
	}
	var largerThan int64
	if f.excludeLargerThan != "" {
		var err error
		if largerThan, err = coordinator.ParseExcludeLargerThan(f.excludeLargerThan); err != nil {
			return usageError("backup: --exclude-larger-than: %v", err)
		}
	}
	ifPresent := slices.Clone(f.excludeIfPresent)
	if f.excludeCaches {
		ifPresent = append(ifPresent, snapshot.CacheDirTag)
	}
	paths := make([]string, 0, len(args))
	for _, a := range args {
		if streaming {
			break // args are the command's
		}
		p, err := filepath.Abs(a)
		if err != nil {
			return fmt.Errorf("path %s: %w", a, err)
		}
		if asksForDirectory(a) && p != "/" {
			// Abs drops the slash, which asks for the directory a
			// symlink points to (snapshot.BackupOptions.Paths).
			p += "/"
		}
		paths = append(paths, p)
	}
	excludes, err := excludePatterns(g, f.excludes, f.excludeFiles)
	if err != nil {
		return err
	}
	warnRelativePatterns(g, f.changing)
	host := f.host
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("cannot determine the host name (%w): pass --host", err)
		}
		host = h
	}
	username := ""
	if u, err := user.Current(); err == nil {
		username = u.Username
	}

	var stream *snapshot.Stream
	if f.stdin {
		r, abort, done, err := stdinSource()
		if err != nil {
			return err
		}
		defer done()
		stream = &snapshot.Stream{Name: f.stdinName, Reader: r, Abort: abort}
	}

	repo, err := g.openRepo(ctx, "backup", anyAccess)
	if err != nil {
		return err
	}
	if f.stdinCommand {
		// Started only now that the repository is open, so a wrong key
		// or an unreachable store does not run a dump for nothing.
		src, err := startCommand(args, g.stderr)
		if err != nil {
			return err
		}
		defer src.Stop()
		stream = &snapshot.Stream{Name: f.stdinName, Reader: src, Abort: src.Abort}
	}

	var cachePath string
	cache := snapshot.NewFilesCacheDiscarding(repo.Config().ID)
	if !g.noCache && g.cacheDir != "" && !streaming {
		cachePath = filesCachePath(g.cacheDir, repo.Config().ID, host, paths)
		c, err := snapshot.LoadFilesCache(cachePath, repo.Config().ID)
		if err != nil {
			warnf(g.stderr, "%v (all files will be read again)", err) // it names the files cache
		}
		if c != nil {
			cache = c
		}
	}
	defer cache.Discard()
	cache.IgnoreInode = f.ignoreInode

	prog := &snapshot.Progress{}
	bar := g.startProgress(func(el time.Duration) string {
		// Processed counts finished files only; while big new files are
		// read, the bytes read are the better measure.
		done := max(prog.BytesProcessed.Load(), prog.BytesRead.Load())
		return fmt.Sprintf("[%s] %d files, %s processed, %s, %s added, %d errors",
			formatClock(el), prog.Files.Load(), formatBytes(done),
			formatRate(done, el), formatBytes(prog.BytesAdded.Load()), prog.Errors.Load())
	})
	start := time.Now()
	var asOf time.Time
	if f.time != "" {
		if asOf, err = parseSnapshotTime(f.time, start); err != nil {
			return usageError("backup: --time: %v", err)
		}
	}
	setMemoryLimit(ctx, repo.Store())
	res, err := snapshot.Backup(ctx, repo, snapshot.BackupOptions{
		Time:              asOf,
		Stream:            stream,
		Readers:           f.parallelism, // 0: the defaults
		Sealers:           f.parallelism,
		Walkers:           f.parallelism,
		Writer:            chunkstore.WriterOptions{Uploaders: f.parallelism},
		Paths:             paths,
		Host:              host,
		Username:          username,
		Tags:              f.tags,
		Excludes:          excludes,
		Changing:          f.changing,
		OneFileSystem:     f.oneFileSystem,
		ExcludeIfPresent:  ifPresent,
		ExcludeLargerThan: largerThan,
		FilesCache:        cache,
		ReadAll:           f.readAll,
		Logger:            g.pkgLogger(),
		Progress:          prog,
		ProgramVersion:    "lifeboat " + versionString(),
		DryRun:            f.dryRun,
	})
	bar.Stop()
	if err == nil && f.dryRun {
		return dryRunOutput(g, res, time.Since(start))
	}
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("backup interrupted; no snapshot was written (the next backup reuses what was uploaded)")
		}
		return fmt.Errorf("backup failed; no snapshot was written: %w", storeError(g.repo, err))
	}
	elapsed := time.Since(start)
	if bad := cache.Damaged(); len(bad) > 0 {
		shown := strings.Join(bad[:min(len(bad), 3)], ", ")
		if len(bad) > 3 {
			shown += fmt.Sprintf(" and %d more", len(bad)-3)
		}
		warnf(g.stderr, "files cache %s: the entries of %d %s were damaged (%s); their files were read again, and the cache this backup saves replaces them", cachePath, len(bad), plural(len(bad), "directory", "directories"), shown)
	}
	if cachePath != "" {
		err := os.MkdirAll(filepath.Dir(cachePath), 0o700)
		if err == nil {
			err = cache.Save(cachePath)
		}
		if err != nil {
			warnf(g.stderr, "save files cache %s: %v (the next backup uses the cache of an earlier one, and reads again what changed since)", cachePath, err)
		}
	}

	for _, w := range res.Warnings {
		warnf(g.stderr, "could not back up %s: %v", w.Path, w.Err)
	}
	s := res.Manifest.Summary
	if streaming && s.BytesProcessed == 0 {
		warnf(g.stderr, "the stream was empty: snapshot %s holds /%s with 0 bytes (did the command or pipe write anything?)", res.ID.Short(), f.stdinName)
	}
	if g.json {
		out := backupOutput{
			SnapshotID:             res.ID.String(),
			FilesNew:               s.FilesNew,
			FilesChanged:           s.FilesChanged,
			FilesUnmodified:        s.FilesUnmodified,
			Dirs:                   s.Dirs,
			BytesProcessed:         s.BytesProcessed,
			BytesAdded:             s.BytesAdded,
			DurationSeconds:        elapsed.Seconds(),
			FilesChangedWhileRead:  s.FilesChangedWhileRead,
			FilesChangedAsExpected: res.ExpectedChanges,
			Errors:                 warningErrors(res.Warnings),
			Partial:                len(res.Warnings) > 0,
		}
		if err := printJSON(g.stdout, out); err != nil {
			return err
		}
	} else if !g.quiet {
		w := g.stdout
		fmt.Fprintf(w, "Files:       %d new, %d changed, %d unmodified\n", s.FilesNew, s.FilesChanged, s.FilesUnmodified)
		if n := res.ExpectedChanges; n > 0 {
			fmt.Fprintf(w, "Changing:    %d %s saved as read while %s changed, as expected (--changing)\n", n, plural(int(n), "file", "files"), plural(int(n), "it", "they"))
		}
		fmt.Fprintf(w, "Dirs:        %d\n", s.Dirs)
		fmt.Fprintf(w, "Processed:   %s (%s read)\n", formatBytes(int64(s.BytesProcessed)), formatBytes(int64(s.BytesRead)))
		fmt.Fprintf(w, "Added:       %s\n", formatBytes(int64(s.BytesAdded)))
		fmt.Fprintf(w, "Duration:    %s\n", formatDuration(elapsed))
		fmt.Fprintf(w, "snapshot %s saved\n", res.ID.Short())
	} else {
		fmt.Fprintln(g.stdout, res.ID.String())
	}
	hintOldCaches(g, repo.Config().ID)
	if n := len(res.Warnings); n > 0 {
		return withCode(exitPartial, fmt.Errorf("snapshot %s is partial: %d %s could not be read (listed above)",
			res.ID.Short(), n, plural(n, "entry", "entries")))
	}
	return nil
}

// snapshotTimeLayouts are what --time accepts besides RFC 3339: dates
// and times in the local time zone, as date(1) prints them with '+%F %T'.
var snapshotTimeLayouts = []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04"}

// parseSnapshotTime reads backup's --time: RFC 3339, or a local date and
// time (snapshotTimeLayouts). A time after now is refused: a snapshot
// dated in the future would be "latest" until then.
func parseSnapshotTime(s string, now time.Time) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	for _, layout := range snapshotTimeLayouts {
		if err == nil {
			break
		}
		t, err = time.ParseInLocation(layout, s, time.Local)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a time: give \"2006-01-02 15:04:05\" (local time) or RFC 3339 (\"2006-01-02T15:04:05Z\")", s)
	}
	if t.After(now) {
		return time.Time{}, fmt.Errorf("%s is in the future (now is %s): give when the data backed up was as it is", t.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	return t, nil
}

// asksForDirectory reports whether a backup path, as given, names a
// directory rather than whatever its last element is: it ends in a slash
// or in ".". The kernel resolves "link/." and "link/" alike, through the
// symlink, so lifeboat does too; filepath.Abs cleans both to "link".
func asksForDirectory(arg string) bool {
	return strings.HasSuffix(arg, "/") || arg == "." || strings.HasSuffix(arg, "/.")
}

// filesCachePath names the files cache of one backup source set: the same
// host and paths reuse the same cache, a different set gets its own.
func filesCachePath(cacheDir, repoID, host string, absPaths []string) string {
	sorted := make([]string, len(absPaths))
	for i, p := range absPaths {
		sorted[i] = filepath.Clean(p) // "/data/" as "/data", as before the slash was kept
	}
	slices.Sort(sorted)
	sum := sha256.Sum256([]byte(host + "\x00" + strings.Join(sorted, "\x00")))
	return filepath.Join(cacheDir, repoID, "files", hex.EncodeToString(sum[:])[:16])
}

// excludePatterns gathers the patterns of --exclude and --exclude-file
// and checks them (snapshot.Excluder's syntax), warning of those that
// can match nothing: a pattern with a slash is matched against whole
// paths, which all start with one.
func excludePatterns(g *globals, patterns, files []string) ([]string, error) {
	out := slices.Clone(patterns)
	for _, ef := range files {
		pats, err := readExcludeFile(ef)
		if err != nil {
			return nil, usageError("--exclude-file: %v", err)
		}
		out = append(out, pats...)
	}
	if _, err := snapshot.NewExcluder(out); err != nil {
		return nil, usageError("--exclude: %v", err)
	}
	warnRelativePatterns(g, out)
	return out, nil
}

// warnRelativePatterns warns of the patterns (--exclude, --changing) that
// can match nothing (snapshot.MatchesNothing).
func warnRelativePatterns(g *globals, patterns []string) {
	for _, p := range patterns {
		if snapshot.MatchesNothing(p) {
			warnf(g.stderr, "pattern %q has a slash, so it is matched against whole paths, which all start with '/': it matches nothing (write /%s?)", p, p)
		}
	}
}

func readExcludeFile(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var pats []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pats = append(pats, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return pats, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
