package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// parseMaxUnused reads --max-unused as a policy's retention.max_unused.
func parseMaxUnused(s string) (float64, error) {
	v, err := coordinator.ParseMaxUnused(s)
	if err != nil {
		return 0, usageError("--max-unused: %v", err)
	}
	return v, nil
}

func newPruneCmd(g *globals) *cobra.Command {
	var dryRun, rewrap bool
	var maxUnused string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete data that no snapshot references",
		Long: `Delete the packs that no snapshot references any more (after 'lifeboat
forget'), safely while backups run.

prune walks every snapshot's trees, so it needs the identity. It first
marks the unreferenced packs (a gc/ object that running and new backups
respect: they never reuse a marked pack), then deletes the packs of every
mark whose backups have all ended, after walking the snapshots again so
that data a running backup reused is kept. With no backup running, one
prune marks and deletes. If backups that started before a mark are still
running, prune names them and leaves the mark for the next run. A backup
whose session was not renewed for 30 minutes (killed, or its host gone)
no longer holds prune back, and a backup that could not renew its session
for 15 minutes does not commit.

Packs holding both referenced and unreferenced data are repacked, the
emptiest first, until what they hold unreferenced is within --max-unused of
all the packs that stay (default 10%): their referenced blobs are verified
and copied into new packs, and the old packs are marked like the others.

With --rewrap, every pack still in use that was written for the recipients
before the last 'lifeboat key add' or 'key remove' is repacked the same way,
into packs whose keys only the current recipients can unwrap. Until then an
added identity cannot read those packs, and a removed one still can (given
the storage credentials). It reads and writes all such data: plan for it as
for a full copy. An interrupted rewrap is resumed by the next one.

One prune runs at a time: a second one names the first (host, pid, start)
and exits 1 without changing anything. A killed prune stops counting at
once for the next prune on its host, after 30 minutes for other hosts, or
as soon as 'lifeboat unlock SESSION' removes its session (see 'lifeboat
sessions').

prune refuses to delete anything if a snapshot, a tree or an index file
cannot be read, or a snapshot references data no pack holds: run
'lifeboat check' first. Do not run 'check' while prune deletes (it may
report the packs being deleted as missing).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPrune(cmd.Context(), g, dryRun, rewrap, maxUnused)
		},
	}
	cmd.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "show what would be marked and repacked, change nothing")
	cmd.Flags().BoolVar(&rewrap, "rewrap", false, "also repack the packs written for recipients that 'lifeboat key' has since changed")
	cmd.Flags().StringVar(&maxUnused, "max-unused", fmt.Sprintf("%g%%", coordinator.DefaultMaxUnused*100), "unreferenced data tolerated inside partly used packs, as a share of the packs that stay (\"0%\" repacks all; \"unlimited\" none)")
	return cmd
}

func runPrune(ctx context.Context, g *globals, dryRun, rewrap bool, maxUnused string) error {
	mu, err := parseMaxUnused(maxUnused)
	if err != nil {
		return err
	}
	repo, err := g.openRepo(ctx, "prune", readAccess)
	if err != nil {
		return err
	}
	res, err := snapshot.Prune(ctx, repo, snapshot.PruneOptions{DryRun: dryRun, MaxUnused: mu, Rewrap: rewrap, Logger: g.log})
	if err != nil {
		return fmt.Errorf("prune: %w", storeError(g.repo, err))
	}
	if g.json {
		return printJSON(g.stdout, res)
	}
	printPrune(g.stdout, res)
	return nil
}

func printPrune(w io.Writer, r *snapshot.PruneResult) {
	fmt.Fprintf(w, "%d %s, %d trees, %d data blobs referenced\n", r.Snapshots, plural(r.Snapshots, "snapshot", "snapshots"), r.Trees, r.ReferencedData)
	fmt.Fprintf(w, "%d packs, %s\n", r.Packs, formatBytes(r.PackBytes))
	if r.DryRun {
		fmt.Fprintf(w, "would mark %d packs no snapshot needs (%s) for deletion (dry run: nothing changed)\n", r.MarkedPacks, formatBytes(r.MarkedBytes))
	} else {
		fmt.Fprintf(w, "marked %d packs no snapshot needs (%s)\n", r.MarkedPacks, formatBytes(r.MarkedBytes))
		fmt.Fprintf(w, "deleted %d packs (%s)", r.DeletedPacks, formatBytes(r.DeletedBytes))
		if r.ReusedPacks > 0 {
			fmt.Fprintf(w, "; kept %d marked packs that snapshots still need", r.ReusedPacks)
		}
		fmt.Fprintln(w)
		if r.IndexWritten+r.IndexRemoved > 0 {
			fmt.Fprintf(w, "index rewritten: %d files written, %d removed\n", r.IndexWritten, r.IndexRemoved)
		}
	}
	verb := "repacked"
	if r.DryRun {
		verb = "would repack"
	}
	if r.PartlyUsedPacks > 0 {
		fmt.Fprintf(w, "%d packs hold both referenced data and %s that nothing references; %s %d of them (%s)\n", r.PartlyUsedPacks, formatBytes(r.UnusedBytesInUsedPacks), verb, r.RepackedPacks-r.RewrappedPacks, formatBytes(r.RepackedBytes-r.RewrappedBytes))
	}
	switch {
	case r.RewrappedPacks > 0:
		fmt.Fprintf(w, "%s %d packs written for older recipients (%s) for the current ones\n", verb, r.RewrappedPacks, formatBytes(r.RewrappedBytes))
	case r.OldRecipientPacks > 0:
		fmt.Fprintf(w, "%d packs were written for older recipients ('lifeboat key'); run 'lifeboat prune --rewrap' to repack those in use for the current ones\n", r.OldRecipientPacks)
	}
	if r.RepackWritten > 0 {
		fmt.Fprintf(w, "repacking wrote %s of new packs\n", formatBytes(r.RepackWritten))
	}
	if r.UnindexedNeedRepair {
		fmt.Fprintf(w, "%d packs no index lists hold data snapshots use (left by an interrupted backup or rewrap); since the recipients were changed backups no longer reuse them: run 'lifeboat repair index', then 'lifeboat prune --rewrap'\n", r.KeptUnindexed)
	}
	if r.VerifiedCopies+r.DamagedCopies > 0 {
		fmt.Fprintf(w, "read and verified %d kept %s (%s) of data stored more than once before deleting the packs of the other copies", r.VerifiedCopies, plural(r.VerifiedCopies, "copy", "copies"), formatBytes(r.VerifiedCopyBytes))
		if r.DamagedCopies > 0 {
			fmt.Fprintf(w, "; %d %s damaged, so the packs holding %s copies are kept whole: run 'lifeboat check --read-data', then 'lifeboat repair packs'", r.DamagedCopies, plural(r.DamagedCopies, "was", "were"), plural(r.DamagedCopies, "its", "their"))
		}
		fmt.Fprintln(w)
	}
	if r.TempFiles > 0 {
		verb := "removed"
		if r.DryRun {
			verb = "would remove"
		}
		fmt.Fprintf(w, "%s %d temporary %s (%s) of writes that never finished, untouched for %s\n", verb, r.TempFiles, plural(r.TempFiles, "file", "files"), formatBytes(r.TempFileBytes), formatDuration(snapshot.TempFileAge))
	}
	if r.DamagedMarks > 0 {
		verb := "removed"
		if r.DryRun {
			verb = "would remove"
		}
		fmt.Fprintf(w, "%s %d damaged GC %s (unreadable, %s held nothing back)\n", verb, r.DamagedMarks, plural(r.DamagedMarks, "mark", "marks"), plural(r.DamagedMarks, "it", "they"))
	}
	if r.PendingMarks > 0 {
		fmt.Fprintf(w, "%d packs wait for %d %s that started before they were marked:\n", r.PendingPacks, len(r.Waiting), plural(len(r.Waiting), "backup", "backups"))
		for _, s := range r.Waiting {
			fmt.Fprintf(w, "  session %s host %s pid %d, started %s, last renewed %s\n", s.Session[:8], s.Host, s.PID,
				s.Started.Local().Format("2006-01-02 15:04:05"), s.LastBeat.Local().Format("15:04:05"))
		}
		fmt.Fprintln(w, "run 'lifeboat prune' again after they finish (or 30 minutes after they stop renewing)")
	}
}
