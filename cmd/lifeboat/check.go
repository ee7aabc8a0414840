package main

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type checkFlags struct {
	readData       bool
	readDataSubset string
}

func newCheckCmd(g *globals) *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify the repository's structure and, optionally, its data",
		Long: `Verify the repository: every index file decrypts and parses, every indexed
pack exists with the recorded size, every snapshot's metadata decrypts and,
with the identity, every snapshot's directory trees decrypt and reference only
indexed data.

--read-data also downloads packs and checks their hashes and structure and,
with the identity, authenticates every blob. --read-data-subset checks a random
share of the packs: "10%" or "0.1"; or the n-th of t fixed groups of them,
"n/t", so that t checks (1/7, 2/7, ... 7/7: one a night) read every pack once.

Exits with code 1 if any problem is found.`,
		Example: `  lifeboat check
  lifeboat check --read-data-subset 5%
  lifeboat check --read-data-subset "$(date +%u)/7"   # a seventh a day
  lifeboat check --read-data --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCheck(cmd, g, f) },
	}
	cmd.Flags().BoolVar(&f.readData, "read-data", false, "download and verify all pack data")
	cmd.Flags().StringVar(&f.readDataSubset, "read-data-subset", "", "download and verify a subset of packs: N% or a fraction in (0,1] (random), or n/t (the n-th of t fixed groups)")
	cmd.MarkFlagsMutuallyExclusive("read-data", "read-data-subset")
	return cmd
}

type checkOutput struct {
	Packs          int         `json:"packs"`
	IndexFiles     int         `json:"index_files"`
	Blobs          int         `json:"blobs"`
	UnindexedPacks int         `json:"unindexed_packs"`
	PacksRead      int         `json:"packs_read"`
	BytesRead      int64       `json:"bytes_read"`
	BlobsVerified  int         `json:"blobs_verified"`
	Snapshots      int         `json:"snapshots"`
	Decrypted      bool        `json:"trees_decrypted"`
	GCMarks        int         `json:"gc_marks"`
	GCMarkedPacks  int         `json:"gc_marked_packs"`
	BackupSessions int         `json:"backup_sessions"`
	PruneSessions  int         `json:"prune_sessions"`
	StaleKey       bool        `json:"stale_key,omitempty"`
	Problems       []objectErr `json:"problems"`
}

type objectErr struct {
	Object string `json:"object"`
	Error  string `json:"error"`
}

// parseGroup parses "n/t", the n-th of t groups of packs; ok is false
// for anything without a slash.
func parseGroup(s string) (n, t int, ok bool, err error) {
	ns, ts, found := strings.Cut(strings.TrimSpace(s), "/")
	if !found {
		return 0, 0, false, nil
	}
	n, nerr := strconv.Atoi(strings.TrimSpace(ns))
	t, terr := strconv.Atoi(strings.TrimSpace(ts))
	if nerr != nil || terr != nil || t < 1 || n < 1 || n > t {
		return 0, 0, true, fmt.Errorf("invalid group %q: want n/t with 1 <= n <= t, such as 3/7", s)
	}
	return n, t, true, nil
}

// parseFraction accepts "10%", "10.5%" or a fraction such as "0.1".
func parseFraction(s string) (float64, error) {
	s = strings.TrimSpace(s)
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("invalid share %q: want N%% or a fraction like 0.1", s)
	}
	if pct {
		v /= 100
	}
	if !pct && v > 1 && v <= 100 {
		return 0, fmt.Errorf("invalid share %q: a fraction must be at most 1; did you mean %s%%?", s, s)
	}
	if !(v > 0 && v <= 1) {
		return 0, fmt.Errorf("invalid share %q: must be more than 0 and at most 100%%", s)
	}
	return v, nil
}

// checkMemoryLimit is the floor of check --read-data's soft memory
// limit (setMemoryLimit), beyond what the index needs: four packs in
// flight and room to spare. On the bench repository (53 packs of about
// 16 MiB) the peak RSS was 197-215 MiB with a fresh buffer per pack and
// no limit, 172-179 MiB with reused buffers under backup's limit, 137-148
// MiB with this one; restic check --read-data's was 146-159 MiB.
const checkMemoryLimit = 96 << 20

func runCheck(cmd *cobra.Command, g *globals, f checkFlags) error {
	ctx := cmd.Context()
	opts := chunkstore.CheckOptions{ReadData: f.readData}
	if cmd.Flags().Changed("read-data-subset") {
		opts.ReadData = true
		if n, t, ok, err := parseGroup(f.readDataSubset); ok || err != nil {
			if err != nil {
				return usageError("--read-data-subset: %v", err)
			}
			opts.ReadDataGroup, opts.ReadDataGroups = n, t
		} else if opts.ReadDataFraction, err = parseFraction(f.readDataSubset); err != nil {
			return usageError("--read-data-subset: %v", err)
		}
	}
	// Check what is on storage, not a local copy: the metadata cache
	// would hide an index or snapshot damaged after it was cached.
	g.noCache = true
	repo, err := g.openRepo(ctx, "check", anyAccess)
	if err != nil {
		return err
	}
	// An index file of a newer lifeboat is one of the problems reported
	// (with the advice to upgrade); the rest is checked as far as it goes.
	if err := repo.LoadIndex(ctx); err != nil && !errors.Is(err, chunkstore.ErrNewerFormat) {
		return storeError(g.repo, err)
	}
	var done, total atomic.Int64
	opts.Progress = func(d, t int) { done.Store(int64(d)); total.Store(int64(t)) }
	var bar *progressLine
	if opts.ReadData {
		// Four whole packs are live while the data is read (64 MiB
		// for packs of the default size); without a limit the heap
		// doubles that between collections.
		setMemoryLimitFrom(ctx, repo.Store(), checkMemoryLimit)
		bar = g.startProgress(func(el time.Duration) string {
			return fmt.Sprintf("[%s] checked %d/%d packs", formatClock(el), done.Load(), total.Load())
		})
	}
	rep, err := repo.Check(ctx, opts)
	bar.Stop()
	if err != nil {
		return stoppedUnreachable(g, fmt.Errorf("check: %w", storeError(g.repo, err)), "run the check again")
	}
	snapProblems, err := snapshot.Check(ctx, repo)
	if err != nil {
		return stoppedUnreachable(g, fmt.Errorf("check snapshots: %w", storeError(g.repo, err)), "run the check again")
	}
	problems := append(rep.Problems, snapProblems...)
	snaps, _ := repo.ListMeta(ctx, chunkstore.KindSnapshot)
	// Garbage collection in progress: marks waiting for prune, and the
	// sessions of running (or killed) backups.
	marks, err := repo.GCMarks(ctx)
	if errors.Is(err, chunkstore.ErrNewerFormat) {
		// Reported like an index file of a newer lifeboat.
		problems = append(problems, chunkstore.Problem{Object: chunkstore.GCPrefix, Err: err})
	} else if err != nil {
		return stoppedUnreachable(g, fmt.Errorf("check: %w", storeError(g.repo, err)), "run the check again")
	}
	all, err := repo.Sessions(ctx)
	if err != nil {
		return stoppedUnreachable(g, fmt.Errorf("check: %w", storeError(g.repo, err)), "run the check again")
	}
	var sessions, prunes []chunkstore.SessionState
	for _, s := range all {
		if s.Info.Prune {
			prunes = append(prunes, s)
		} else {
			sessions = append(sessions, s)
		}
	}
	// A credential of an older generation checks fine but can no longer
	// back up: say so rather than a bare "no problems found".
	curGen, err := repo.KeyGeneration(ctx)
	if err != nil {
		return stoppedUnreachable(g, fmt.Errorf("check: %w", storeError(g.repo, err)), "run the check again")
	}
	stale := repo.Secrets().Generation < curGen
	marked := 0
	for _, m := range marks {
		marked += len(m.Packs)
	}

	if g.json {
		out := checkOutput{
			Packs: rep.Packs, IndexFiles: rep.IndexFiles, Blobs: rep.Blobs, UnindexedPacks: rep.UnindexedPacks,
			PacksRead: rep.PacksRead, BytesRead: rep.BytesRead, BlobsVerified: rep.BlobsVerified,
			Snapshots: len(snaps), Decrypted: repo.CanRead(), Problems: []objectErr{},
			GCMarks: len(marks), GCMarkedPacks: marked, BackupSessions: len(sessions), PruneSessions: len(prunes),
			StaleKey: stale,
		}
		for _, p := range problems {
			out.Problems = append(out.Problems, objectErr{Object: p.Object, Error: p.Err.Error()})
		}
		if err := printJSON(g.stdout, out); err != nil {
			return err
		}
	} else {
		w := g.stdout
		for _, p := range problems {
			fmt.Fprintf(w, "problem: %s: %v\n", p.Object, p.Err)
		}
		if newerFormat(problems) {
			fmt.Fprintln(w, "hint: objects written by a newer lifeboat: upgrade this lifeboat to read them (do not delete them; 'lifeboat repair index' refuses to run meanwhile)")
		}
		if indexDamaged(problems) {
			fmt.Fprintln(w, "hint: 'lifeboat repair index' replaces damaged index files and drops the entries of missing packs (see its --help)")
		}
		if names := damagedPacks(problems); len(names) > 0 {
			fmt.Fprintf(w, "hint: 'lifeboat repair packs %s' copies what is intact in the damaged packs into new ones and drops them from the index\n", strings.Join(names, " "))
		}
		if names := unreadablePacks(problems); len(names) > 0 {
			fmt.Fprintf(w, "hint: this user may not read %s (not a sign of damage, and no reason for 'repair packs'): give it read access (see the owner and mode of the files and directories of the repository), then run 'lifeboat check --read-data' again\n", strings.Join(names, " "))
		}
		if !opts.ReadData && treesDamaged(problems) {
			fmt.Fprintln(w, "hint: directory listings failed to read back intact: 'lifeboat check --read-data' names the damaged packs that hold them, and 'lifeboat repair packs' salvages what is intact in those")
		}
		if dataLost(problems) && !newerFormat(problems) { // the data may be in the newer index
			fmt.Fprintln(w, "hint: snapshots reference data the index does not have; after 'lifeboat repair index' (and a new backup, which stores again what its hosts still have), 'lifeboat repair snapshots' rewrites them without what is still lost")
		}
		if !g.quiet {
			fmt.Fprintf(w, "%d snapshots, %d index files, %d packs, %d blobs\n", len(snaps), rep.IndexFiles, rep.Packs, rep.Blobs)
			if opts.ReadData {
				fmt.Fprintf(w, "read %d packs (%s), verified %d blobs\n", rep.PacksRead, formatBytes(rep.BytesRead), rep.BlobsVerified)
			}
			if rep.UnindexedPacks > 0 {
				why := "left by interrupted backups or prunes (harmless; reused by the next backup or deleted by the next prune)"
				switch {
				case indexDamaged(problems):
					why = "(the damaged index files may have listed them; 'lifeboat repair index' indexes them again)"
				case dataLost(problems):
					// An index file that is gone (deleted, or missed
					// by a copy of the bucket) is no problem of its
					// own: its packs are all that is left of the data
					// the snapshots miss, not garbage.
					why = "(they may hold the data the snapshots miss, listed by an index file that is gone; 'lifeboat repair index' indexes them again)"
				case repo.Secrets().Generation > 0:
					// Whom their keys are wrapped to is not recorded
					// in them (AdoptOrphans).
					why = "left by interrupted backups or prunes: since the recipients were changed, backups no longer reuse them, prune keeps those that hold data snapshots use, and 'key remove' is refused while they are there; 'lifeboat repair index', then 'lifeboat prune --rewrap', takes care of them"
				}
				fmt.Fprintf(w, "%d unindexed packs %s\n", rep.UnindexedPacks, why)
			}
			if len(marks) > 0 {
				fmt.Fprintf(w, "%d %s %d packs for deletion, waiting for 'lifeboat prune'\n", len(marks), plural(len(marks), "GC mark lists", "GC marks list"), marked)
			}
			if len(sessions) > 0 {
				fmt.Fprintf(w, "%d backup %s (running, or left by a killed backup until prune removes it)\n", len(sessions), plural(len(sessions), "session", "sessions"))
			}
			if len(prunes) > 0 {
				fmt.Fprintf(w, "%d prune %s (running, or left by a killed prune: stale 30 minutes after its last renewal)\n", len(prunes), plural(len(prunes), "session", "sessions"))
			}
			if stale {
				who := "identity"
				if !repo.CanRead() {
					who = "writer key"
				}
				fmt.Fprintf(w, "note: this %s is out of date (generation %d; the recipients were changed since, generation %d): backups with it are refused; 'lifeboat key writer-key' writes a current writer key\n", who, repo.Secrets().Generation, curGen)
			}
			if !repo.CanRead() {
				fmt.Fprintln(w, "note: opened with the writer key: directory trees and blob contents were not decrypted; use --identity for a full check")
			}
		}
	}
	if n := len(problems); n > 0 {
		return fmt.Errorf("check found %d %s in %s", n, plural(n, "problem", "problems"), repo.Store().Location())
	}
	if !g.json && !g.quiet {
		fmt.Fprintln(g.stdout, "no problems found")
	}
	return nil
}

// indexDamaged reports whether problems include a damaged index file or
// a pack the index lists and the store does not hold: what 'repair
// index' mends.
func indexDamaged(problems []chunkstore.Problem) bool {
	for _, p := range problems {
		if errors.Is(p.Err, chunkstore.ErrNewerFormat) || errors.Is(p.Err, chunkstore.ErrUnexpectedObject) {
			continue // not damaged, and repair index leaves it alone
		}
		if strings.HasPrefix(p.Object, chunkstore.IndexPrefix) || errors.Is(p.Err, chunkstore.ErrPackMissing) {
			return true
		}
	}
	return false
}

// newerFormat reports whether problems include an object written by a
// newer lifeboat.
func newerFormat(problems []chunkstore.Problem) bool {
	for _, p := range problems {
		if errors.Is(p.Err, chunkstore.ErrNewerFormat) {
			return true
		}
	}
	return false
}

// dataLost reports whether snapshots reference data the index lacks.
func dataLost(problems []chunkstore.Problem) bool {
	for _, p := range problems {
		if errors.Is(p.Err, snapshot.ErrNotIndexed) {
			return true
		}
	}
	return false
}

// treesDamaged reports whether a snapshot's directory listing was found
// in the index but could not be read back intact: a damaged pack, which
// only --read-data names.
func treesDamaged(problems []chunkstore.Problem) bool {
	for _, p := range problems {
		if strings.HasPrefix(p.Object, "snapshot ") && errors.Is(p.Err, chunkstore.ErrCorrupt) {
			return true
		}
	}
	return false
}

// damagedPacks names the packs that are present but damaged: what
// 'repair packs' salvages.
func damagedPacks(problems []chunkstore.Problem) []string {
	var names []string
	for _, p := range problems {
		// A pack only other recipients can open is intact: not one to
		// salvage; nor is one this user may not read (unreadablePacks).
		if _, ok := chunkstore.ParsePackName(p.Object); ok && !errors.Is(p.Err, chunkstore.ErrPackMissing) && !errors.Is(p.Err, chunkstore.ErrNotRecipient) &&
			!errors.Is(p.Err, fs.ErrPermission) && !slices.Contains(names, p.Object) {
			names = append(names, p.Object)
		}
	}
	return names
}

// unreadablePacks names the packs that could not be read for lack of
// permission: their permissions need fixing, not their data.
func unreadablePacks(problems []chunkstore.Problem) []string {
	var names []string
	for _, p := range problems {
		if _, ok := chunkstore.ParsePackName(p.Object); ok && errors.Is(p.Err, fs.ErrPermission) && !slices.Contains(names, p.Object) {
			names = append(names, p.Object)
		}
	}
	return names
}
