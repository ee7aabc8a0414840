package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

func newRepairCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Repair a damaged repository: its index, damaged packs, snapshots whose data is lost",
		Args:  noArgs,
	}
	cmd.AddCommand(newRepairIndexCmd(g), newRepairPacksCmd(g), newRepairSnapshotsCmd(g))
	return cmd
}

func newRepairIndexCmd(g *globals) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "index",
		Short: "Rebuild the index from the packs the repository holds",
		Long: `Make the index describe exactly the packs the repository holds.

Run it when 'lifeboat check' reports a damaged index file (prune refuses to
run while one exists) or packs that the index lists but the store no
longer holds (deleted by hand or by a bucket lifecycle rule):

  - index files that cannot be read are removed, and the packs they
    listed are described again from the packs themselves;
  - entries of missing packs are dropped (after asking the store for each
    one), so backups started after the repair stop deduplicating against
    data that is gone and store it again when they meet it;
  - packs that no readable index file lists are read whole, verified
    (hash, structure, trailer) and indexed.

New index files are written before old ones are removed, so an
interrupted repair leaves a usable index; run it again to finish. Backups
may run meanwhile; a prune may not (repair holds the prune session, and a
prune started meanwhile exits 1 naming it). A writer key is enough, with
storage credentials that may delete (old index files are removed). Index
files are read from the store, never from the local cache.

Nothing but index files is deleted. Data in missing packs is lost:
snapshots that reference it stay damaged, and 'lifeboat check' names
their files (restore skips them and restores the rest); prune refuses to
delete anything until they are whole again (a new backup stores again
what its hosts still have) or rewritten by 'lifeboat repair snapshots'.
Packs that fail verification stay unindexed and are reported; prune
deletes them then. Packs whose size differs from the index are reported
and kept indexed (every blob read from them is still verified), and the
repair exits 1 naming them: 'lifeboat check --read-data' tells what is
left of them, and 'lifeboat repair packs' salvages it.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRepairIndex(cmd.Context(), g, dryRun) },
	}
	cmd.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "report what is wrong, change nothing")
	return cmd
}

func runRepairIndex(ctx context.Context, g *globals, dryRun bool) error {
	// Index files are read from the store, not the local cache: a cached
	// copy would hide the damage this command is for.
	g.noCache = true
	repo, err := g.openRepo(ctx, "repair index", anyAccess)
	if err != nil {
		return err
	}
	res, err := snapshot.RepairIndex(ctx, repo, snapshot.RepairOptions{DryRun: dryRun, Logger: g.log})
	if err != nil {
		return fmt.Errorf("repair index: %w", storeError(g.repo, err))
	}
	if g.json {
		if err := printJSON(g.stdout, res); err != nil {
			return err
		}
	} else {
		printRepairIndex(g.stdout, res)
	}
	// A pack of the wrong size is kept, not mended: a problem remains,
	// and the exit code says so.
	if n := len(res.WrongSize); n > 0 {
		return fmt.Errorf("%d %s of the wrong size kept in the index (%s among them): 'lifeboat check --read-data' names what is left of them, and 'lifeboat repair packs %s' salvages their intact blobs", n, plural(n, "pack", "packs"), res.WrongSize[0], strings.Join(res.WrongSize, " "))
	}
	return nil
}

func printRepairIndex(w io.Writer, r *chunkstore.IndexRepair) {
	fmt.Fprintf(w, "%d index files, %d packs (%s)\n", r.IndexFiles, r.Packs, formatBytes(r.PackBytes))
	verb := func(done, dry string) string {
		if r.DryRun {
			return dry
		}
		return done
	}
	for _, name := range r.DamagedIndex {
		fmt.Fprintf(w, "damaged index file %s: %s\n", name, verb("removed", "would be removed"))
	}
	if n := len(r.MissingPacks); n > 0 {
		fmt.Fprintf(w, "%d %s listed in the index %s missing from the repository (%d blobs lost): %s from the index\n", n, plural(n, "pack", "packs"), plural(n, "is", "are"), r.MissingBlobs, verb("dropped", "would be dropped"))
		for _, name := range r.MissingPacks {
			fmt.Fprintf(w, "  missing: %s\n", name)
		}
		fmt.Fprintln(w, "  snapshots that reference their data stay damaged: 'lifeboat check' names the files; the next backup stores again what it still finds")
	}
	if r.Reindexed > 0 {
		fmt.Fprintf(w, "%d %s that no readable index file listed (%s): %s\n", r.Reindexed, plural(r.Reindexed, "pack", "packs"), formatBytes(r.ReindexedBytes), verb("verified and indexed", "would be indexed (verified)"))
	}
	for _, name := range r.WrongSize {
		fmt.Fprintf(w, "pack %s has another size than the index records (truncated or replaced): kept in the index, since every blob read from it is verified; 'lifeboat repair packs %s' salvages what is intact in it\n", name, name)
	}
	for _, name := range r.DamagedPacks {
		fmt.Fprintf(w, "pack %s failed verification: left unindexed (a prune deletes it)\n", name)
	}
	switch {
	case !r.Changed() && len(r.WrongSize) > 0:
		fmt.Fprintln(w, "the index lists every pack the repository holds; the packs above remain damaged")
	case !r.Changed():
		fmt.Fprintln(w, "the index matches the packs: nothing to repair")
	case r.DryRun:
		fmt.Fprintln(w, "dry run: nothing changed")
	default:
		fmt.Fprintf(w, "index rewritten: %d files written, %d removed\n", r.IndexWritten, r.IndexRemoved)
	}
}

func newRepairSnapshotsCmd(g *globals) *cobra.Command {
	var dryRun, forget bool
	cmd := &cobra.Command{
		Use:   "snapshots [SNAPSHOT ...]",
		Short: "Rewrite snapshots without the files whose data is lost",
		Long: `Rewrite snapshots that reference data the repository no longer has (a
pack lost, and dropped from the index by 'lifeboat repair index') into new
snapshots without the damaged parts, so that they check clean and prune can
run again. Without arguments every snapshot is looked at; SNAPSHOT is an
ID, a unique ID prefix or 'latest'.

  - a file with a lost chunk is left out;
  - a directory whose listing is lost (not indexed, or failing
    verification) is kept, empty;
  - everything else — other files, metadata, host, paths, tags, time —
    is kept. The new snapshot gets the tag "repaired" and names the
    snapshot it replaces ("original" in 'snapshots --json').

Each snapshot's removed paths are listed. With --forget the damaged
originals are removed once their repaired copies are saved; without it
both stay (forget the originals later). A snapshot whose root listing is
lost cannot be repaired and is reported: forget it.

What the index lacks counts as lost only when the index matches the
packs: repair snapshots refuses, changing nothing, while an index file is
damaged, an indexed pack is missing, or a pack no index file lists holds
needed data (run 'lifeboat repair index' first; a backup uploading right
then can cause the last: try again after it). Data that only packs marked
for deletion hold is not lost (a backup reused it after the mark): it is
kept, and the next prune keeps those packs for it. Every snapshot is
examined, and every new listing prepared, before anything is written; an
original that already has a repaired copy is not copied again (with
--forget it is forgotten). Damaged packs that are still indexed are not
looked at here: 'lifeboat check --read-data' finds them, 'lifeboat repair
packs' salvages them. It writes like a backup — under a backup session,
never into packs marked for deletion, committing each copy only while its
session is safely alive — so backups may run meanwhile; a prune may not
(repair holds the prune session, and a prune started meanwhile exits 1
naming it). It needs the identity, as it reads the listings.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepairSnapshots(cmd.Context(), g, args, dryRun, forget)
		},
	}
	cmd.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "list what would be removed, change nothing")
	cmd.Flags().BoolVar(&forget, "forget", false, "remove each damaged snapshot once its repaired copy is saved")
	return cmd
}

func runRepairSnapshots(ctx context.Context, g *globals, args []string, dryRun, forget bool) error {
	repo, err := g.openRepo(ctx, "repair snapshots", readAccess)
	if err != nil {
		return err
	}
	// Judged by the store's copies, as forget and prune judge (it may
	// forget originals): a manifest or listing that rotted there is
	// damaged even where the local cache holds a good copy.
	repo.DistrustCache()
	opts := snapshot.RepairSnapshotsOptions{DryRun: dryRun, Forget: forget, Logger: g.log}
	if len(args) > 0 {
		list, _, err := snapshot.List(ctx, repo)
		if err != nil {
			return fmt.Errorf("list snapshots: %w", storeError(g.repo, err))
		}
		for _, ref := range args {
			s, err := snapshot.Find(list, ref, snapshot.Filter{})
			if err != nil {
				return fmt.Errorf("repair snapshots: %w", err)
			}
			opts.IDs = append(opts.IDs, s.ID)
		}
	}
	res, err := snapshot.RepairSnapshots(ctx, repo, opts)
	if err := report(g, "repair snapshots", res, err, printRepairSnapshots); err != nil {
		return err
	}
	for _, d := range res.Damaged {
		if d.Unrepairable != "" {
			return fmt.Errorf("snapshot %s cannot be repaired: %s", d.Original.Short(), d.Unrepairable)
		}
	}
	for _, u := range res.Unreadable {
		if u.Newer {
			return fmt.Errorf("snapshot manifest %s%s was written by a newer lifeboat, so not repaired: upgrade lifeboat to repair snapshots (do not forget it: it is not damaged)", chunkstore.SnapshotsPrefix, u.ID)
		}
	}
	if len(res.Unreadable) > 0 {
		u := res.Unreadable[0]
		return fmt.Errorf("%d snapshot %s could not be read, so not repaired (%s%s among them): put %s back from a copy of the bucket (object versioning, a replica), or remove a damaged one with 'lifeboat forget %s' (the full ID)", len(res.Unreadable), plural(len(res.Unreadable), "manifest", "manifests"), chunkstore.SnapshotsPrefix, u.ID, plural(len(res.Unreadable), "it", "them"), u.ID)
	}
	return nil
}

func printRepairSnapshots(w io.Writer, r *snapshot.RepairSnapshotsResult) {
	for _, d := range r.Damaged {
		head := fmt.Sprintf("snapshot %s (%s, %s)", d.Original.Short(), d.Host, d.Time.Local().Format("2006-01-02 15:04:05"))
		if d.Unrepairable != "" {
			fmt.Fprintf(w, "%s: cannot be repaired: %s\n", head, d.Unrepairable)
			continue
		}
		switch {
		case d.AlreadyRepaired:
			fmt.Fprintf(w, "%s: already repaired as %s\n", head, d.Repaired.Short())
		case r.DryRun:
			fmt.Fprintf(w, "%s: would leave out %d %s:\n", head, len(d.Removed), plural(len(d.Removed), "path", "paths"))
		case d.Repaired.IsNull(): // the repair stopped before this one
			fmt.Fprintf(w, "%s: not repaired (stopped before it); would leave out %d %s:\n", head, len(d.Removed), plural(len(d.Removed), "path", "paths"))
		default:
			fmt.Fprintf(w, "%s: repaired as %s, leaving out %d %s:\n", head, d.Repaired.Short(), len(d.Removed), plural(len(d.Removed), "path", "paths"))
		}
		for _, p := range d.Removed {
			fmt.Fprintf(w, "  %s\n", p)
		}
		if d.Forgotten {
			fmt.Fprintf(w, "  original %s forgotten\n", d.Original.Short())
		}
	}
	for _, u := range r.Unreadable {
		fmt.Fprintf(w, "%s%s: unreadable, not repaired: %s\n", chunkstore.SnapshotsPrefix, u.ID, u.Error)
	}
	n := len(r.Damaged)
	fmt.Fprintf(w, "%d %s looked at, %d damaged\n", r.Snapshots, plural(r.Snapshots, "snapshot", "snapshots"), n)
	if r.DryRun && n > 0 {
		fmt.Fprintln(w, "dry run: nothing changed")
	}
}

func newRepairPacksCmd(g *globals) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "packs PACK ...",
		Short: "Salvage what is intact in damaged packs",
		Long: `Salvage damaged packs, as 'lifeboat check --read-data' names them
(data/xx/<ID>, or the bare ID): every blob of such a pack that still
authenticates and matches its ID is copied into a new pack, and the damaged
pack is dropped from the index. The blobs that could not be saved are
listed; 'lifeboat repair snapshots' then cuts the files that need them out
of the snapshots (a new backup first stores again what its hosts still
have). A pack that turns out intact is left alone. A blob that fails here
but that another pack also holds is not lost (that copy is not verified
here: 'lifeboat check --read-data' does); every blob that verifies is
copied even if another pack holds it (prune later keeps one copy).
Packs marked for deletion are refused: prune decides about them.

The damaged object itself is not deleted: it stays, unindexed, until a
prune deletes it (until then each backup reads it and warns once). prune
refuses to delete anything while snapshots still need the lost blobs:
back up again, or run 'lifeboat repair snapshots', first.

repair packs rewrites the index, so it holds the prune session (a prune
started meanwhile exits 1 naming it); backups may run. It needs the
identity: blobs are decrypted to be verified and copied.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("repair packs: name the damaged packs, as 'lifeboat check --read-data' reports them")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return runRepairPacks(cmd.Context(), g, args, dryRun) },
	}
	cmd.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "read and verify, report what would be salvaged, change nothing")
	return cmd
}

func runRepairPacks(ctx context.Context, g *globals, args []string, dryRun bool) error {
	var ids []chunkstore.ID
	for _, a := range args {
		id, ok := chunkstore.ParsePackName(a)
		if !ok {
			var err error
			if id, err = chunkstore.ParseID(strings.TrimPrefix(a, "data/")); err != nil {
				return usageError("repair packs: %q is not a pack name (data/xx/<64 hex digits>) or ID", a)
			}
		}
		ids = append(ids, id)
	}
	repo, err := g.openRepo(ctx, "repair packs", readAccess)
	if err != nil {
		return err
	}
	res, err := snapshot.RepairPacks(ctx, repo, ids, snapshot.RepairPacksOptions{DryRun: dryRun, Logger: g.log})
	if err != nil {
		if res != nil && !g.json {
			// A dry run changes nothing either way; say what a real
			// run would do, not what this one did not.
			printRepairedPacks(g.stdout, res)
			if dryRun {
				fmt.Fprintln(g.stdout, "dry run: nothing changed; a real run would stop at the same error, before rewriting the index (no pack dropped from it)")
			} else {
				fmt.Fprintln(g.stdout, "stopped before the index was rewritten: run 'lifeboat repair packs' again before 'lifeboat prune'")
			}
		}
		return fmt.Errorf("repair packs: %w", storeError(g.repo, err))
	}
	if g.json {
		return printJSON(g.stdout, res)
	}
	printRepairPacks(g.stdout, res)
	return nil
}

func printRepairPacks(w io.Writer, res *snapshot.RepairPacksResult) {
	lost := printRepairedPacks(w, res)
	switch {
	case res.DryRun:
		fmt.Fprintln(w, "dry run: nothing changed")
	case res.IndexWritten+res.IndexRemoved > 0:
		fmt.Fprintf(w, "%s of new packs written; index rewritten: %d files written, %d removed\n", formatBytes(res.Written), res.IndexWritten, res.IndexRemoved)
	}
	if lost > 0 && !res.DryRun {
		fmt.Fprintln(w, "the lost blobs are gone: back up again what the hosts still have, then run 'lifeboat repair snapshots'")
	}
}

// printRepairedPacks prints a line for each pack read and returns how
// many blobs are lost.
func printRepairedPacks(w io.Writer, res *snapshot.RepairPacksResult) int {
	lost := 0
	for _, p := range res.Packs {
		if p.Intact {
			fmt.Fprintf(w, "%s: intact (matches its name), left alone\n", p.Pack)
			continue
		}
		verb := "salvaged"
		if res.DryRun {
			verb = "can be salvaged"
		}
		fmt.Fprintf(w, "%s (%s): %d %s %s", p.Pack, p.Problem, p.Salvaged, plural(p.Salvaged, "blob", "blobs"), verb)
		if p.Elsewhere > 0 {
			fmt.Fprintf(w, ", %d also held by other packs (not verified here: 'lifeboat check --read-data')", p.Elsewhere)
		}
		fmt.Fprintf(w, ", %d lost\n", p.Lost)
		for _, id := range p.LostIDs {
			fmt.Fprintf(w, "  lost: blob %s\n", id)
		}
		lost += p.Lost
	}
	return lost
}
