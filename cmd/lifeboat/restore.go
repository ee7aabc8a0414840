package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/restore"
)

type restoreFlags struct {
	filterFlags
	target      string
	includes    []string
	keepCache   bool
	directIO    bool
	sync        bool
	parallelism int
}

func newRestoreCmd(g *globals) *cobra.Command {
	var f restoreFlags
	cmd := &cobra.Command{
		Use:   "restore [flags] SNAPSHOT --target DIR",
		Short: "Restore a snapshot into a directory",
		Long: `Restore a snapshot into --target (created if missing).

SNAPSHOT is a snapshot ID, a unique prefix of one, or "latest" (the newest
snapshot matching --host/--tag/--path). Files are restored below the target
with their backed-up paths: /home/u/x is restored to DIR/home/u/x.

Every block is authenticated before it is written. A file that cannot be read
or verified is reported and left out; everything else is still restored and
lifeboat exits with code 1. Files already identical in the target are kept, so
an interrupted restore can simply be run again.

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
the filesystem supports it); each such write then waits for the disk.

--parallelism N sets how many pack ranges are downloaded at once (default 8).
Each holds up to about 16 MiB of buffers. More can help when the storage is
far away, since each request's latency is then paid N at a time; on a local
MinIO 12 and 16 were no faster than 8.

Needs the identity: backups are encrypted so that writer keys cannot read them.`,
		Example: `  lifeboat restore latest --target /srv/restore
  lifeboat restore 3f2a91c0 --target /tmp/r --include 'home/u/*'`,
		Args: argsBetween(1, 1, "SNAPSHOT (an ID, a unique ID prefix, or latest)"),
		RunE: func(cmd *cobra.Command, args []string) error { return runRestore(cmd.Context(), g, f, args[0]) },
	}
	f.register(cmd, "consider snapshots")
	cmd.Flags().StringVarP(&f.target, "target", "t", "", "directory to restore into (required)")
	cmd.Flags().StringArrayVarP(&f.includes, "include", "i", nil, "restore only paths matching this pattern, snapshot-relative like home/u/*.txt (repeatable)")
	cmd.Flags().IntVar(&f.parallelism, "parallelism", 0, "pack ranges downloaded at once; 0 = 8")
	cmd.Flags().BoolVar(&f.keepCache, "keep-cache", false, "leave all restored data in the page cache instead of writing back and dropping what exceeds the window")
	cmd.Flags().BoolVar(&f.directIO, "direct-io", false, "write the bulk of files of 1 MiB and more with direct I/O (O_DIRECT), bypassing the page cache")
	cmd.Flags().BoolVar(&f.sync, "sync", false, "flush the restored data to disk before exiting (syncfs on the target's filesystem)")
	return cmd
}

type restoreOutput struct {
	SnapshotID      string      `json:"snapshot_id"`
	Target          string      `json:"target"`
	Files           int64       `json:"files"`
	Dirs            int64       `json:"dirs"`
	Symlinks        int64       `json:"symlinks"`
	Other           int64       `json:"other"`
	Bytes           int64       `json:"bytes"`
	BytesWritten    int64       `json:"bytes_written"`
	BytesDirect     int64       `json:"bytes_direct"` // of bytes_written, written with direct I/O
	FilesSkipped    int64       `json:"files_skipped"`
	DurationSeconds float64     `json:"duration_seconds"`
	Failures        []pathError `json:"failures"`
	// Entries whose data was restored but whose owner, mode or times
	// could not all be set, and the first few of them.
	MetadataErrors  int64       `json:"metadata_errors"`
	MetadataSamples []pathError `json:"metadata_error_samples"`
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
		if _, err := filepath.Match(p, ""); err != nil {
			return usageError("--include %q: %v", p, err)
		}
		for len(p) > 0 && p[0] == '/' {
			p = p[1:]
		}
		includes[i] = p
	}

	repo, err := g.openRepo(ctx, "restore", readAccess)
	if err != nil {
		return err
	}
	snap, err := findSnapshot(ctx, g, repo, ref, f.filter())
	if err != nil {
		return err
	}

	prog := &restore.Progress{}
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
	res, err := restore.Restore(ctx, repo, snap, restore.Options{
		Target:      target,
		Include:     includes,
		Logger:      g.pkgLogger(),
		Progress:    prog,
		WriteBehind: writeBehind(f.keepCache),
		DirectIO:    f.directIO,
		Sync:        f.sync,
		Packs:       f.parallelism,
	})
	bar.Stop()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("restore of snapshot %s into %s interrupted; run the same command again to resume", snap.ID.Short(), target)
		}
		return fmt.Errorf("restore snapshot %s into %s: %w", snap.ID.Short(), target, storeError(g.repo, err))
	}
	elapsed := time.Since(start)

	if g.json {
		out := restoreOutput{
			SnapshotID: snap.ID.String(), Target: target,
			Files: res.Files, Dirs: res.Dirs, Symlinks: res.Symlinks, Other: res.Other,
			Bytes: res.Bytes, BytesWritten: res.BytesWritten, BytesDirect: res.BytesDirect, FilesSkipped: res.FilesSkipped,
			DurationSeconds: elapsed.Seconds(), Failures: pathErrors(res.Failures),
			MetadataErrors: res.MetadataErrors, MetadataSamples: pathErrors(res.MetadataSamples),
		}
		if err := printJSON(g.stdout, out); err != nil {
			return err
		}
	} else {
		for _, fl := range res.Failures {
			warnf(g.stderr, "could not restore /%s: %v", fl.Path, fl.Err)
		}
		warnMetadata(g.stderr, res)
		if !g.quiet {
			w := g.stdout
			fmt.Fprintf(w, "restored snapshot %s into %s\n", snap.ID.Short(), target)
			fmt.Fprintf(w, "Files:       %d (%d already identical), %d dirs, %d symlinks, %d other\n",
				res.Files, res.FilesSkipped, res.Dirs, res.Symlinks, res.Other)
			fmt.Fprintf(w, "Size:        %s (%s written)\n", formatBytes(res.Bytes), formatBytes(res.BytesWritten))
			fmt.Fprintf(w, "Duration:    %s (%s)\n", formatDuration(elapsed), formatRate(res.BytesWritten, elapsed))
		}
	}
	if n := len(res.Failures); n > 0 {
		return fmt.Errorf("%d %s of snapshot %s could not be restored (see above); everything else was restored into %s; run 'lifeboat check --read-data' to inspect the repository",
			n, plural(n, "path", "paths"), snap.ID.Short(), target)
	}
	return nil
}

// pathErrors lists failures for JSON output, with absolute snapshot
// paths; never nil, so that the field is [] rather than null.
func pathErrors(fs []restore.Failure) []pathError {
	out := []pathError{}
	for _, f := range fs {
		out = append(out, pathError{Path: "/" + f.Path, Error: f.Err.Error()})
	}
	return out
}

// warnMetadata names the entries whose metadata could not all be set
// (the first few) and how many there were in all. They do not change the
// exit code: the data was restored.
func warnMetadata(w io.Writer, res *restore.Result) {
	for _, fl := range res.MetadataSamples {
		warnf(w, "restored /%s, but not all of its metadata (owner, mode, times): %v", fl.Path, fl.Err)
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
