package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type tagFlags struct {
	filterFlags
	add, remove, set []string
	clear            bool
}

func newTagCmd(g *globals) *cobra.Command {
	var f tagFlags
	cmd := &cobra.Command{
		Use:   "tag [SNAPSHOT...] --add T | --remove T | --set T",
		Short: "Change the tags of snapshots (a legal hold: --add hold, then forget --keep-tag hold)",
		Long: `Add tags to snapshots, remove tags, or replace them: the snapshots named
(IDs, unique ID prefixes or latest), or every snapshot --host, --tag and
--path select (one of them is needed, so a typo never retags a whole
repository).

A snapshot manifest is never modified: the snapshot is saved again with its
new tags and the old manifest removed, so its ID changes (the new one is
printed). Its data, time, host and paths stay. The coordinator's catalog
drops the old ID at its next verification, as for 'lifeboat forget', and
does not list the new one.

With 'lifeboat forget --keep-tag hold' (or a policy's retention.keep_tags)
a snapshot tagged hold is never removed by retention, nor by forget naming
it. Works with the writer key; the storage credentials must allow deletes.`,
		Example: `  lifeboat tag --add hold 3f2a9c1e                 # keep it whatever the retention
  lifeboat forget --keep-daily 7 --keep-tag hold --prune
  lifeboat tag --remove hold --tag hold             # lift every hold`,
		RunE: func(cmd *cobra.Command, args []string) error { return runTag(cmd.Context(), g, f, args) },
	}
	f.register(cmd, "retag snapshots")
	fl := cmd.Flags()
	fl.StringArrayVar(&f.add, "add", nil, "add this tag (repeatable)")
	fl.StringArrayVar(&f.remove, "remove", nil, "remove this tag (repeatable)")
	fl.StringArrayVar(&f.set, "set", nil, "replace the tags with these (repeatable)")
	fl.BoolVar(&f.clear, "clear", false, "remove every tag")
	return cmd
}

type tagJSON struct {
	Old  string   `json:"old"`
	New  string   `json:"new"`
	Tags []string `json:"tags"`
}

func runTag(ctx context.Context, g *globals, f tagFlags, args []string) error {
	switch {
	case len(f.add)+len(f.remove) > 0 && (len(f.set) > 0 || f.clear):
		return usageError("tag: --set and --clear replace every tag; they cannot be combined with --add or --remove")
	case len(f.set) > 0 && f.clear:
		return usageError("tag: --set and --clear exclude each other")
	case len(f.add)+len(f.remove)+len(f.set) == 0 && !f.clear:
		return usageError("tag: nothing to do: give --add, --remove, --set or --clear")
	}
	for _, t := range slices.Concat(f.add, f.set) {
		if err := checkTag("tag", t); err != nil {
			return err
		}
	}
	for _, t := range f.remove { // lenient: it may lift a tag saved before the check
		if strings.TrimSpace(t) == "" || strings.Contains(t, ",") {
			return usageError("tag: %q is not a tag (empty, or with a comma)", t)
		}
	}
	filter := f.filter()
	if len(args) == 0 && filter.IsZero() {
		return usageError("tag: name the snapshots, or select them with --host, --tag or --path")
	}
	repo, err := g.openRepo(ctx, "tag", anyAccess)
	if err != nil {
		return err
	}
	snaps, err := pickSnapshots(ctx, g, repo, args, filter)
	if err != nil {
		return err
	}
	out := []tagJSON{}
	changed := 0
	for _, s := range snaps {
		tags := slices.Clone(s.Tags)
		switch {
		case f.clear:
			tags = nil
		case len(f.set) > 0:
			tags = slices.Clone(f.set)
		default:
			tags = slices.DeleteFunc(tags, func(t string) bool { return slices.Contains(f.remove, t) })
			tags = append(tags, f.add...)
		}
		n, err := snapshot.Retag(ctx, repo, s, tags)
		if err != nil {
			if g.json && len(out) > 0 { // the snapshots retagged before it
				_ = printJSON(g.stdout, out)
			}
			return fmt.Errorf("tag: %w (%d retagged before it, listed above)", storeError(g.repo, err), changed)
		}
		out = append(out, tagJSON{Old: s.ID.String(), New: n.ID.String(), Tags: nonNil(n.Tags)})
		if n == s { // Retag returns s itself when the tags are already those
			if !g.json && !g.quiet {
				fmt.Fprintf(g.stdout, "snapshot %s (%s, %s): tags unchanged [%s]\n", s.ID.Short(), s.Host, s.Time.Local().Format(time.DateTime), strings.Join(s.Tags, ","))
			}
			continue
		}
		changed++
		if !g.json && !g.quiet {
			fmt.Fprintf(g.stdout, "snapshot %s (%s, %s): tags [%s] -> [%s], saved as %s\n", s.ID.Short(), s.Host, s.Time.Local().Format(time.DateTime),
				strings.Join(s.Tags, ","), strings.Join(n.Tags, ","), n.ID.Short())
		}
	}
	if g.json {
		return printJSON(g.stdout, out)
	}
	if !g.quiet {
		fmt.Fprintf(g.stdout, "%d of %d %s retagged\n", changed, len(snaps), plural(len(snaps), "snapshot", "snapshots"))
	}
	return nil
}

// checkTag refuses, as a usage error, a tag that could not be named
// again (snapshot.TagProblem).
func checkTag(cmd, t string) error {
	if bad := snapshot.TagProblem(t); bad != "" {
		return usageError("%s: %q is not a tag (%s)", cmd, t, bad)
	}
	return nil
}
