package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type rewriteFlags struct {
	filterFlags
	excludes, excludeFiles []string
	dryRun, forget         bool
}

func newRewriteCmd(g *globals) *cobra.Command {
	var f rewriteFlags
	cmd := &cobra.Command{
		Use:   "rewrite [SNAPSHOT...] --exclude PATTERN [--forget]",
		Short: "Remove files from snapshots: a secret backed up by mistake, data that must be erased",
		Long: `Remove the paths --exclude matches from snapshots: every snapshot, or those
named (IDs, unique ID prefixes or latest), narrowed by --host, --tag and
--path. Patterns are backup's: without a slash one matches any single path
element ("*.pem", ".env"), with a slash the whole path as it was backed up
("/home/*/.aws"), ** as a whole element any number of elements
("/home/**/.aws", "**/secrets/*.pem"); an excluded directory goes with
everything in it. As in a backup, they apply at and below the backed-up
paths, never to the directories above them ("**/tmp/" leaves /tmp in a
backup of /tmp/app).

Each snapshot that holds such a path is saved again as a copy without them:
same time, host, paths, other tags and summary (the original backup's), the
tag "rewritten", and the snapshot it replaces named ("original" in
'snapshots --json'). Snapshots that hold none are left alone. Each removed
path is listed; run with --dry-run first.

With --forget the originals are removed once their copies are saved; the
data only they used is then deleted by 'lifeboat prune --max-unused 0%'
(a plain prune leaves up to 10% unused data inside packs that also hold
data that stays: a small file backed up with others stays). Until both
have run, the data is still in the repository. Add the pattern to
the backups' excludes too, or the next backup stores the files again.

Only directory listings are written. Rewrite holds the prune session (it
refuses to start while a prune runs; a prune started meanwhile exits 1
naming it) and writes under a backup session, so backups may run meanwhile.
Running it again finds the copies it saved. It needs the identity.`,
		Example: `  lifeboat rewrite --dry-run --exclude '*.pem' --exclude /home/ci/.aws
  lifeboat rewrite --exclude '*.pem' --exclude /home/ci/.aws --forget && lifeboat prune --max-unused 0%
  lifeboat rewrite --host db1 --exclude /var/lib/app/secrets.env --forget`,
		RunE: func(cmd *cobra.Command, args []string) error { return runRewrite(cmd.Context(), g, f, args) },
	}
	f.register(cmd, "rewrite snapshots")
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.excludes, "exclude", "e", nil, "remove paths matching this pattern (repeatable)")
	fl.StringArrayVar(&f.excludeFiles, "exclude-file", nil, "read patterns from this file, one per line (repeatable)")
	fl.BoolVarP(&f.dryRun, "dry-run", "n", false, "list what would be removed, change nothing")
	fl.BoolVar(&f.forget, "forget", false, "remove each original once its rewritten copy is saved")
	return cmd
}

func runRewrite(ctx context.Context, g *globals, f rewriteFlags, args []string) error {
	excludes, err := excludePatterns(g, f.excludes, f.excludeFiles)
	if err != nil {
		return err
	}
	if len(excludes) == 0 {
		return usageError("rewrite needs --exclude PATTERN (or --exclude-file): what to remove")
	}
	if slices.Contains(excludes, "") {
		return usageError("--exclude: an empty pattern matches nothing")
	}
	repo, err := g.openRepo(ctx, "rewrite", readAccess)
	if err != nil {
		return err
	}
	opts := snapshot.RewriteOptions{Exclude: excludes, DryRun: f.dryRun, Forget: f.forget, Logger: g.pkgLogger()}
	filter := f.filter()
	if len(args) > 0 || !filter.IsZero() {
		snaps, err := pickSnapshots(ctx, g, repo, args, filter)
		if err != nil {
			return err
		}
		for _, s := range snaps {
			opts.IDs = append(opts.IDs, s.ID)
		}
	}
	res, err := snapshot.RewriteSnapshots(ctx, repo, opts)
	return report(g, "rewrite", res, err, printRewrite)
}

func printRewrite(w io.Writer, r *snapshot.RewriteResult) {
	for _, d := range r.Rewritten {
		head := fmt.Sprintf("snapshot %s (%s, %s)", d.Original.Short(), d.Host, d.Time.Local().Format(time.DateTime))
		n := fmt.Sprintf("%d %s", len(d.Removed), plural(len(d.Removed), "path", "paths"))
		switch {
		case d.AlreadyRewritten:
			fmt.Fprintf(w, "%s: already rewritten as %s, without %s:\n", head, d.Rewritten.Short(), n)
		case r.DryRun:
			fmt.Fprintf(w, "%s: would remove %s:\n", head, n)
		case d.Rewritten.IsNull(): // stopped before this one
			fmt.Fprintf(w, "%s: not rewritten (stopped before it); would remove %s:\n", head, n)
		default:
			fmt.Fprintf(w, "%s: rewritten as %s, without %s:\n", head, d.Rewritten.Short(), n)
		}
		for _, p := range d.Removed {
			fmt.Fprintf(w, "  %s\n", p)
		}
		if d.Forgotten {
			fmt.Fprintf(w, "  original %s forgotten\n", d.Original.Short())
		}
	}
	n := len(r.Rewritten)
	fmt.Fprintf(w, "%d %s looked at, %d held paths to remove\n", r.Snapshots, plural(r.Snapshots, "snapshot", "snapshots"), n)
	switch {
	case r.DryRun && n > 0:
		fmt.Fprintln(w, "dry run: nothing changed")
	case n > 0 && !anyForgotten(r):
		fmt.Fprintln(w, "the originals still hold the data: forget them ('lifeboat rewrite ... --forget' or 'lifeboat forget'), then run 'lifeboat prune --max-unused 0%'")
	case n > 0:
		// A plain prune leaves unused data inside packs that also hold
		// data that stays, up to --max-unused (10%): a small secret backed
		// up with the rest of its directory would stay.
		fmt.Fprintln(w, "run 'lifeboat prune --max-unused 0%' to delete the data only the originals used (0% also repacks the packs it shares with data that stays)")
	}
}

func anyForgotten(r *snapshot.RewriteResult) bool {
	for _, d := range r.Rewritten {
		if d.Forgotten {
			return true
		}
	}
	return false
}
