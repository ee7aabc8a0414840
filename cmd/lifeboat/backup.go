package main

import (
	"bufio"
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
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type backupFlags struct {
	host         string
	tags         []string
	excludes     []string
	excludeFiles []string
	parallelism  int
}

func newBackupCmd(g *globals) *cobra.Command {
	var f backupFlags
	cmd := &cobra.Command{
		Use:   "backup [flags] PATH...",
		Short: "Back up paths into a new snapshot",
		Long: `Back up the given files and directories into a new snapshot.

Works with the writer key (--key) or the identity. Files whose size, times and
inode are unchanged since the last backup of the same paths from this host are
not read again (the files cache lives under --cache-dir).

Entries that cannot be read are skipped with a warning; the snapshot is then
saved but marked partial and lifeboat exits with code 3.

Exclude patterns: a pattern without a slash matches any single path element
("*.tmp", "node_modules"); a pattern with a slash matches the whole absolute
path ("/home/*/.cache"). An excluded directory is not descended into.

Memory grows with the workers: by default every core gets a reader and a
sealer, up to 8 of each, each holding buffers of up to the maximum chunk size
(8 MiB), for about 40 MiB per core beside the packs in flight (a live heap of
about 135 MiB on 2 cores, 380 MiB on 8 or more). --parallelism N sets the
files read, blobs sealed and packs uploaded at once, and with them the
memory; above 8 it lets a large machine use more cores.`,
		Example: `  lifeboat backup --repo /srv/backup --key writer.key /etc /home
  lifeboat backup --tag nightly --exclude '*.tmp' --exclude-file excludes.txt /srv`,
		Args: argsBetween(1, -1, "PATH to back up"),
		RunE: func(cmd *cobra.Command, args []string) error { return runBackup(cmd.Context(), g, f, args) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.host, "host", "", "host name recorded in the snapshot (default: this machine's host name)")
	fl.StringArrayVar(&f.tags, "tag", nil, "tag the snapshot (repeatable)")
	fl.StringArrayVarP(&f.excludes, "exclude", "e", nil, "skip paths matching this pattern (repeatable)")
	fl.StringArrayVar(&f.excludeFiles, "exclude-file", nil, "read exclude patterns from a file, one per line; # starts a comment (repeatable)")
	fl.IntVar(&f.parallelism, "parallelism", 0, "files read, blobs sealed and packs uploaded at once; 0 = a reader and a sealer per core (at most 8 each), 2 uploaders")
	return cmd
}

type backupOutput struct {
	SnapshotID      string      `json:"snapshot_id"`
	FilesNew        uint64      `json:"files_new"`
	FilesChanged    uint64      `json:"files_changed"`
	FilesUnmodified uint64      `json:"files_unmodified"`
	Dirs            uint64      `json:"dirs"`
	BytesProcessed  uint64      `json:"bytes_processed"`
	BytesAdded      uint64      `json:"bytes_added"`
	DurationSeconds float64     `json:"duration_seconds"`
	Errors          []pathError `json:"errors"`
	Partial         bool        `json:"partial"`
}

func runBackup(ctx context.Context, g *globals, f backupFlags, args []string) error {
	if err := checkParallelism(f.parallelism); err != nil {
		return err
	}
	paths := make([]string, 0, len(args))
	for _, a := range args {
		p, err := filepath.Abs(a)
		if err != nil {
			return fmt.Errorf("path %s: %w", a, err)
		}
		paths = append(paths, p)
	}
	excludes := slices.Clone(f.excludes)
	for _, ef := range f.excludeFiles {
		pats, err := readExcludeFile(ef)
		if err != nil {
			return usageError("--exclude-file: %v", err)
		}
		excludes = append(excludes, pats...)
	}
	if _, err := snapshot.NewExcluder(excludes); err != nil {
		return usageError("--exclude: %v", err)
	}
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

	repo, err := g.openRepo(ctx, "backup", anyAccess)
	if err != nil {
		return err
	}

	var cachePath string
	cache := snapshot.NewFilesCache(repo.Config().ID)
	if !g.noCache && g.cacheDir != "" {
		cachePath = filesCachePath(g.cacheDir, repo.Config().ID, host, paths)
		c, err := snapshot.LoadFilesCache(cachePath, repo.Config().ID)
		if err != nil {
			warnf(g.stderr, "files cache: %v (all files will be read again)", err)
		}
		if c != nil {
			cache = c
		}
	}

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
	setMemoryLimit(ctx, repo.Store())
	res, err := snapshot.Backup(ctx, repo, snapshot.BackupOptions{
		Readers:        f.parallelism, // 0: the defaults
		Sealers:        f.parallelism,
		Writer:         chunkstore.WriterOptions{Uploaders: f.parallelism},
		Paths:          paths,
		Host:           host,
		Username:       username,
		Tags:           f.tags,
		Excludes:       excludes,
		FilesCache:     cache,
		Logger:         g.pkgLogger(),
		Progress:       prog,
		ProgramVersion: "lifeboat " + versionString(),
	})
	bar.Stop()
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("backup interrupted; no snapshot was written (the next backup reuses what was uploaded)")
		}
		return fmt.Errorf("backup failed; no snapshot was written: %w", storeError(g.repo, err))
	}
	elapsed := time.Since(start)
	if cachePath != "" {
		if err := os.MkdirAll(filepath.Dir(cachePath), 0o700); err == nil {
			err = cache.Save(cachePath)
		}
		if err != nil {
			warnf(g.stderr, "save files cache %s: %v (the next backup will read all files again)", cachePath, err)
		}
	}

	for _, w := range res.Warnings {
		warnf(g.stderr, "could not back up %s: %v", w.Path, w.Err)
	}
	s := res.Manifest.Summary
	if g.json {
		out := backupOutput{
			SnapshotID:      res.ID.String(),
			FilesNew:        s.FilesNew,
			FilesChanged:    s.FilesChanged,
			FilesUnmodified: s.FilesUnmodified,
			Dirs:            s.Dirs,
			BytesProcessed:  s.BytesProcessed,
			BytesAdded:      s.BytesAdded,
			DurationSeconds: elapsed.Seconds(),
			Errors:          []pathError{},
			Partial:         len(res.Warnings) > 0,
		}
		for _, w := range res.Warnings {
			out.Errors = append(out.Errors, pathError{Path: w.Path, Error: w.Err.Error()})
		}
		if err := printJSON(g.stdout, out); err != nil {
			return err
		}
	} else if !g.quiet {
		w := g.stdout
		fmt.Fprintf(w, "Files:       %d new, %d changed, %d unmodified\n", s.FilesNew, s.FilesChanged, s.FilesUnmodified)
		fmt.Fprintf(w, "Dirs:        %d\n", s.Dirs)
		fmt.Fprintf(w, "Processed:   %s (%s read)\n", formatBytes(int64(s.BytesProcessed)), formatBytes(int64(s.BytesRead)))
		fmt.Fprintf(w, "Added:       %s\n", formatBytes(int64(s.BytesAdded)))
		fmt.Fprintf(w, "Duration:    %s\n", formatDuration(elapsed))
		fmt.Fprintf(w, "snapshot %s saved\n", res.ID.Short())
	} else {
		fmt.Fprintln(g.stdout, res.ID.String())
	}
	if n := len(res.Warnings); n > 0 {
		return withCode(exitPartial, fmt.Errorf("snapshot %s is partial: %d %s could not be read (listed above)",
			res.ID.Short(), n, plural(n, "entry", "entries")))
	}
	return nil
}

// filesCachePath names the files cache of one backup source set: the same
// host and paths reuse the same cache, a different set gets its own.
func filesCachePath(cacheDir, repoID, host string, absPaths []string) string {
	sorted := slices.Clone(absPaths)
	slices.Sort(sorted)
	sum := sha256.Sum256([]byte(host + "\x00" + strings.Join(sorted, "\x00")))
	return filepath.Join(cacheDir, repoID, "files", hex.EncodeToString(sum[:])[:16])
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
