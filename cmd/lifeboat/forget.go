package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type forgetFlags struct {
	f                                            filterFlags
	last, hourly, daily, weekly, monthly, yearly int
	within                                       string
	keepTags                                     []string
	dryRun, prune                                bool
}

func newForgetCmd(g *globals) *cobra.Command {
	var ff forgetFlags
	cmd := &cobra.Command{
		Use:   "forget [SNAPSHOT ...] [--keep-* N ...]",
		Short: "Remove snapshots, by ID or by retention rules",
		Long: `Remove snapshots from the repository: the ones named (an ID, a unique ID
prefix, or "latest"), or every snapshot the --keep-* rules do not keep.

Rules are applied to each group of snapshots with the same host and paths,
newest first; a snapshot is kept if any rule keeps it:
  --keep-last N       the N newest
  --keep-hourly N     the newest of each of the N newest hours with a snapshot
  --keep-daily N      ... days, --keep-weekly (ISO weeks), --keep-monthly,
  --keep-yearly N     ... years (periods in UTC)
  --keep-within D     every snapshot within D of the group's newest one
                      ("36h", "30d", "2w"): backups that stop running never
                      age the last good ones out; m is minutes, not
                      months, so a bare "6m" is refused
  --keep-tag T        every snapshot tagged T (a legal hold: 'lifeboat tag
                      --add hold ID'); it protects, it is not a rule by
                      itself, and it also protects snapshots named by ID
A snapshot newer than now (a skewed clock) is always kept, and the rules
leave it out: "newest" means the newest not after now. --host, --tag and
--path choose which snapshots the rules look at; others are not touched.

forget removes only snapshot manifests. Their data stays until 'lifeboat
prune' (or --prune here, with prune's defaults) removes what no snapshot
references any more.
Works with the writer key or the identity; the storage credentials must
allow deletes. Use --dry-run first.`,
		RunE: func(cmd *cobra.Command, args []string) error { return runForget(cmd.Context(), g, ff, args) },
	}
	fl := cmd.Flags()
	ff.f.register(cmd, "snapshots")
	fl.IntVar(&ff.last, "keep-last", 0, "keep the N newest snapshots")
	fl.IntVar(&ff.hourly, "keep-hourly", 0, "keep the newest snapshot of each of the N newest hours")
	fl.IntVar(&ff.daily, "keep-daily", 0, "keep the newest snapshot of each of the N newest days")
	fl.IntVar(&ff.weekly, "keep-weekly", 0, "keep the newest snapshot of each of the N newest ISO weeks")
	fl.IntVar(&ff.monthly, "keep-monthly", 0, "keep the newest snapshot of each of the N newest months")
	fl.IntVar(&ff.yearly, "keep-yearly", 0, "keep the newest snapshot of each of the N newest years")
	fl.StringVar(&ff.within, "keep-within", "", "keep snapshots within this duration of the newest (36h, 30d, 2w)")
	fl.StringArrayVar(&ff.keepTags, "keep-tag", nil, "never remove snapshots with this tag (repeatable)")
	fl.BoolVarP(&ff.dryRun, "dry-run", "n", false, "show what would be removed, remove nothing")
	fl.BoolVar(&ff.prune, "prune", false, "run 'lifeboat prune' afterwards (needs the identity)")
	return cmd
}

type forgetItem struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Reasons []string  `json:"reasons,omitempty"`
}

type forgetGroup struct {
	Host   string       `json:"host"`
	Paths  []string     `json:"paths"`
	Keep   []forgetItem `json:"keep"`
	Remove []forgetItem `json:"remove"`
}

type forgetReport struct {
	Groups  []forgetGroup         `json:"groups"`
	Removed int                   `json:"removed"`
	DryRun  bool                  `json:"dry_run,omitempty"`
	Prune   *snapshot.PruneResult `json:"prune,omitempty"`
}

func (ff forgetFlags) rules() (snapshot.Retention, error) {
	r := snapshot.Retention{KeepLast: ff.last, KeepHourly: ff.hourly, KeepDaily: ff.daily,
		KeepWeekly: ff.weekly, KeepMonthly: ff.monthly, KeepYearly: ff.yearly}
	for name, n := range map[string]int{"last": ff.last, "hourly": ff.hourly, "daily": ff.daily,
		"weekly": ff.weekly, "monthly": ff.monthly, "yearly": ff.yearly} {
		if n < 0 {
			return r, usageError("--keep-%s %d: must not be negative", name, n)
		}
	}
	if ff.within != "" {
		d, err := coordinator.ParseDuration(ff.within)
		if err != nil || d <= 0 {
			return r, usageError("--keep-within %q: want a positive duration such as 36h, 30d or 2w", ff.within)
		}
		// "6m" is 6 months to restic and would keep only what is
		// within 6 minutes of the newest snapshot here.
		if n, ok := strings.CutSuffix(ff.within, "m"); ok && n != "" && strings.Trim(n, "0123456789.") == "" {
			return r, usageError("--keep-within %q is %s: m means minutes, not months; for months give days (6 months: 183d), for minutes write %q", ff.within, time.Duration(d), "0h"+ff.within)
		}
		r.KeepWithin = time.Duration(d)
	}
	for _, t := range ff.keepTags {
		if strings.TrimSpace(t) == "" {
			return r, usageError("--keep-tag: empty tag")
		}
	}
	r.KeepTags = ff.keepTags
	return r, nil
}

func runForget(ctx context.Context, g *globals, ff forgetFlags, args []string) error {
	rules, err := ff.rules()
	if err != nil {
		return err
	}
	switch {
	case len(args) > 0 && !rules.IsZero():
		return usageError("forget: give snapshot IDs or --keep-* rules, not both")
	case len(args) == 0 && rules.IsZero():
		return usageError("forget: nothing to do: give snapshot IDs or at least one --keep-* rule (forget never removes everything by default)")
	}
	need, name := anyAccess, "forget"
	if ff.prune {
		// prune needs the identity: fail before removing anything,
		// naming what needs it (forget alone does with a writer key).
		need, name = readAccess, "forget --prune"
	}
	repo, err := g.openRepo(ctx, name, need)
	if err != nil {
		return err
	}
	// Judged by the store's copies: one rotted there must not keep a
	// place (repo.DistrustCache).
	repo.DistrustCache()
	list, bad, err := snapshot.List(ctx, repo)
	if err != nil {
		return fmt.Errorf("list snapshots: %w", storeError(g.repo, err))
	}
	for _, e := range bad {
		warnf(g.stderr, "unreadable snapshot (not considered): %v", e)
	}
	rep := forgetReport{DryRun: ff.dryRun}
	var remove []*snapshot.Snapshot
	if len(args) > 0 {
		grp := forgetGroup{Paths: []string{}, Keep: []forgetItem{}}
		seen := map[chunkstore.ID]bool{}
		damaged := snapshot.Damaged(bad)
		for _, ref := range args {
			// A manifest that rotted cannot be read to match a prefix
			// or a filter: named in full, it is removed as it is.
			if id, err := chunkstore.ParseID(ref); err == nil && damaged[id] {
				if !seen[id] {
					seen[id] = true
					remove = append(remove, &snapshot.Snapshot{ID: id})
					grp.Remove = append(grp.Remove, forgetItem{ID: id.String()})
				}
				continue
			}
			s, err := snapshot.Find(list, ref, ff.f.filter())
			if err != nil {
				return fmt.Errorf("forget: %w", err)
			}
			if seen[s.ID] {
				continue
			}
			seen[s.ID] = true
			if held := heldBy(s, rules.KeepTags); held != "" {
				grp.Keep = append(grp.Keep, forgetItem{ID: s.ID.String(), Time: s.Time, Reasons: []string{"tagged " + held}})
				continue
			}
			remove = append(remove, s)
			grp.Remove = append(grp.Remove, forgetItem{ID: s.ID.String(), Time: s.Time})
		}
		rep.Groups = append(rep.Groups, grp)
	} else {
		now := time.Now()
		groups := snapshot.Groups(list, ff.f.filter())
		if len(groups) == 0 && len(list) > 0 {
			// A --path or --host that matches nothing (a typo) must not
			// pass for a retention run that found nothing to remove.
			warnf(g.stderr, "none of the repository's %d snapshots matches%s: the rules applied to none; list them with 'lifeboat snapshots'", len(list), ff.f.filter().Describe())
		}
		for _, g := range groups {
			byID := map[string]*snapshot.Snapshot{}
			for _, s := range g.Snapshots {
				byID[s.ID.String()] = s
			}
			keep, forget, reasons := snapshot.Keep(g.Refs(), rules, now)
			grp := forgetGroup{Host: g.Host, Paths: nonNil(g.Paths), Keep: []forgetItem{}, Remove: []forgetItem{}}
			for _, r := range keep {
				grp.Keep = append(grp.Keep, forgetItem{ID: r.ID, Time: r.Time, Reasons: reasons[r.ID]})
			}
			for _, r := range forget {
				grp.Remove = append(grp.Remove, forgetItem{ID: r.ID, Time: r.Time})
				remove = append(remove, byID[r.ID])
			}
			rep.Groups = append(rep.Groups, grp)
		}
	}
	if !ff.dryRun {
		var done []string
		for _, s := range remove {
			if err := snapshot.Forget(ctx, repo, s.ID); err != nil {
				// Which ones are gone: the report is not printed.
				removed := "no snapshot removed"
				if len(done) > 0 {
					removed = fmt.Sprintf("removed %d %s before it: %s", len(done), plural(len(done), "snapshot", "snapshots"), strings.Join(done, ", "))
				}
				return fmt.Errorf("%w (%s; run forget again)", storeError(g.repo, err), removed)
			}
			done = append(done, s.ID.Short())
			rep.Removed++
		}
	}
	if !g.json {
		printForget(g.stdout, rep, g.quiet)
	}
	if ff.prune && !ff.dryRun {
		res, err := snapshot.Prune(ctx, repo, snapshot.PruneOptions{MaxUnused: coordinator.DefaultMaxUnused, Logger: g.log})
		if err != nil {
			return fmt.Errorf("prune: %w", err)
		}
		rep.Prune = res
		if !g.json {
			printPrune(g.stdout, res)
		}
	}
	if g.json {
		return printJSON(g.stdout, rep)
	}
	return nil
}

// heldBy returns the first of tags that s carries, or "".
func heldBy(s *snapshot.Snapshot, tags []string) string {
	for _, t := range tags {
		if slices.Contains(s.Tags, t) {
			return t
		}
	}
	return ""
}

func printForget(w io.Writer, rep forgetReport, quiet bool) {
	verb, action := "removed", "remove"
	if rep.DryRun {
		verb, action = "would remove", "would remove"
	}
	total := 0
	for _, grp := range rep.Groups {
		total += len(grp.Remove)
		if quiet {
			continue
		}
		if grp.Host != "" || len(grp.Paths) > 0 {
			fmt.Fprintf(w, "host %s, paths %s:\n", displayPath(grp.Host), displayPaths(grp.Paths))
		}
		for _, k := range grp.Keep {
			fmt.Fprintf(w, "  keep    %s  %s  %s\n", k.ID[:8], k.Time.Local().Format("2006-01-02 15:04:05"), strings.Join(k.Reasons, "; "))
		}
		for _, r := range grp.Remove {
			when := r.Time.Local().Format("2006-01-02 15:04:05")
			if r.Time.IsZero() {
				when = "(damaged manifest)"
			}
			fmt.Fprintf(w, "  %s  %s  %s\n", action, r.ID[:8], when)
		}
	}
	fmt.Fprintf(w, "%s %d %s\n", verb, total, plural(total, "snapshot", "snapshots"))
}
