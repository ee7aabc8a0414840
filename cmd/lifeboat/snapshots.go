package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type filterFlags struct {
	hosts, tags, paths []string
}

func (f *filterFlags) register(cmd *cobra.Command, what string) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.hosts, "host", nil, "only "+what+" from this host (repeatable)")
	fl.StringArrayVar(&f.tags, "tag", nil, "only "+what+" with this tag (repeatable; all must match)")
	fl.StringArrayVar(&f.paths, "path", nil, "only "+what+" of exactly this backed-up path (a relative one is taken from the current directory, as backup does; repeatable)")
}

// filter returns the snapshot filter. A --path is made absolute and
// cleaned as backup records its paths: 'backup data' saves
// /current/dir/data, and '--path data' run there (or '--path
// /current/dir/data/') must select it, not quietly match nothing.
func (f *filterFlags) filter() snapshot.Filter {
	var paths []string
	for _, p := range f.paths {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		paths = append(paths, p)
	}
	return snapshot.Filter{Hosts: f.hosts, Tags: f.tags, Paths: paths}
}

func newSnapshotsCmd(g *globals) *cobra.Command {
	var f filterFlags
	var latest int
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "List snapshots",
		Long: `List the snapshots in the repository, oldest first.

Works with the writer key: snapshot metadata (time, host, paths, tags, sizes)
is readable without the identity. Snapshots that cannot be read are reported
on stderr and make the command exit with code 1 after listing the rest.

--latest N shows the N newest snapshots of each host and set of backed-up
paths (the groups 'forget' applies its rules to): --latest 1 is the last
backup of each machine and source.`,
		Example: `  lifeboat snapshots --latest 1
  lifeboat snapshots --host web-1 --tag daily --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if latest < 0 {
				return usageError("snapshots: --latest must not be negative (got %d)", latest)
			}
			return runSnapshots(cmd.Context(), g, f, latest)
		},
	}
	f.register(cmd, "snapshots")
	cmd.Flags().IntVar(&latest, "latest", 0, "only the N newest snapshots of each host and set of paths (0: all)")
	return cmd
}

// newestOfGroups returns the last n of each host's and set of paths'
// snapshots in list (oldest first), in list's order.
func newestOfGroups(list []*snapshot.Snapshot, n int) []*snapshot.Snapshot {
	left := map[string]int{}
	keep := make([]bool, len(list))
	for i := len(list) - 1; i >= 0; i-- {
		k := snapshot.GroupKey(list[i].Host, list[i].Paths)
		if left[k] < n {
			left[k]++
			keep[i] = true
		}
	}
	var out []*snapshot.Snapshot
	for i, s := range list {
		if keep[i] {
			out = append(out, s)
		}
	}
	return out
}

type snapshotJSON struct {
	ID       string           `json:"id"`
	ShortID  string           `json:"short_id"`
	Time     time.Time        `json:"time"`
	Host     string           `json:"host"`
	HostB64  string           `json:"host_b64,omitempty"` // see exactBytes
	Username string           `json:"username"`
	Paths    []string         `json:"paths"`
	PathsB64 []string         `json:"paths_b64,omitempty"` // every path's exact bytes, when one is not UTF-8
	Tags     []string         `json:"tags"`
	TagsB64  []string         `json:"tags_b64,omitempty"` // every tag's exact bytes, when one is not UTF-8
	Tree     string           `json:"tree"`
	Summary  snapshot.Summary `json:"summary"`
	Original string           `json:"original,omitempty"` // the snapshot this one repaired or rewrote
	// OriginalBy: "repair" or "rewrite" (empty on repairs before rewrite).
	OriginalBy string `json:"original_by,omitempty"`
	// CopiedFrom: the snapshot this one is a copy of ('lifeboat copy').
	CopiedFrom *snapshot.CopyOrigin `json:"copied_from,omitempty"`
}

func runSnapshots(ctx context.Context, g *globals, f filterFlags, latest int) error {
	repo, err := g.openRepo(ctx, "snapshots", anyAccess)
	if err != nil {
		return err
	}
	list, bad, err := snapshot.List(ctx, repo)
	if err != nil {
		return fmt.Errorf("list snapshots: %w", storeError(g.repo, err))
	}
	flt := f.filter()
	var shown []*snapshot.Snapshot
	for _, s := range list {
		if flt.Match(s) {
			shown = append(shown, s)
		}
	}
	if latest > 0 {
		shown = newestOfGroups(shown, latest)
	}
	if g.json {
		out := make([]snapshotJSON, 0, len(shown))
		for _, s := range shown {
			out = append(out, snapshotJSON{
				ID: s.ID.String(), ShortID: s.ID.Short(), Time: s.Time, Host: s.Host, HostB64: exactBytes(s.Host),
				Username: s.Username, Paths: nonNil(s.Paths), PathsB64: exactList(s.Paths),
				Tags: nonNil(s.Tags), TagsB64: exactList(s.Tags),
				Tree: s.Tree.String(), Summary: s.Summary, CopiedFrom: s.CopiedFrom,
			})
			if s.Original != nil {
				out[len(out)-1].Original = s.Original.String()
				out[len(out)-1].OriginalBy = s.OriginalBy
			}
		}
		if err := printJSON(g.stdout, out); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTime\tHost\tTags\tPaths\tSize\t")
		for _, s := range shown {
			size := formatBytes(int64(s.Summary.BytesProcessed))
			if s.Summary.Errors > 0 {
				size += " (partial)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", s.ID.Short(), s.Time.Local().Format("2006-01-02 15:04:05"),
				displayPath(s.Host), displayTags(s.Tags), displayPaths(s.Paths), size)
		}
		tw.Flush()
		if !g.quiet {
			fmt.Fprintf(g.stdout, "%d %s\n", len(shown), plural(len(shown), "snapshot", "snapshots"))
		}
	}
	for _, e := range bad {
		warnf(g.stderr, "unreadable snapshot: %v", e)
	}
	if n := len(bad); n > 0 {
		return fmt.Errorf("%d %s could not be read (see above); run 'lifeboat check'", n, plural(n, "snapshot", "snapshots"))
	}
	return nil
}

// exactList is every string of l in base64 when one is not UTF-8 (see
// exactBytes), so that a script can take the one it needs by its index;
// nil when all are.
func exactList(l []string) []string {
	if !slices.ContainsFunc(l, func(s string) bool { return exactBytes(s) != "" }) {
		return nil
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = base64.StdEncoding.EncodeToString([]byte(s))
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// openSnapshots opens the repository with the identity for command what,
// resolves the snapshot references (one listing of the manifests for
// all of them) and loads the index: what ls, dump and diff need before
// they read trees.
func openSnapshots(ctx context.Context, g *globals, what string, f snapshot.Filter, refs ...string) (*chunkstore.Repository, []*snapshot.Snapshot, error) {
	repo, err := g.openRepo(ctx, what, readAccess)
	if err != nil {
		return nil, nil, err
	}
	list, err := listSnapshots(ctx, g, repo)
	if err != nil {
		return nil, nil, err
	}
	snaps := make([]*snapshot.Snapshot, len(refs))
	for i, ref := range refs {
		if snaps[i], err = list.find(ref, f); err != nil {
			return nil, nil, err
		}
	}
	if err := repo.LoadIndex(ctx); err != nil {
		return nil, nil, storeError(g.repo, err)
	}
	return repo, snaps, nil
}

// snapshotList is one listing of the repository's snapshot manifests.
type snapshotList struct {
	all []*snapshot.Snapshot
	bad []error // manifests that could not be read
	// warn prints a warning on stderr; nil with --quiet.
	warn func(format string, args ...any)
}

// listSnapshots lists the snapshots, warning about each manifest that
// cannot be read.
func listSnapshots(ctx context.Context, g *globals, repo *chunkstore.Repository) (*snapshotList, error) {
	all, bad, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", storeError(g.repo, err))
	}
	for _, e := range bad {
		warnf(g.stderr, "unreadable snapshot: %v", e)
	}
	l := &snapshotList{all: all, bad: bad}
	if !g.quiet {
		l.warn = func(format string, args ...any) { warnf(g.stderr, format, args...) }
	}
	return l, nil
}

// find resolves a snapshot reference: an ID, a unique ID prefix or
// "latest" (narrowed by the filter).
func (l *snapshotList) find(ref string, f snapshot.Filter) (*snapshot.Snapshot, error) {
	s, err := snapshot.Find(l.all, ref, f)
	if err != nil {
		// A damaged manifest is not in the list; say so rather than
		// claiming the snapshot does not exist.
		for _, e := range l.bad {
			if len(ref) >= 4 && strings.Contains(e.Error(), chunkstore.SnapshotsPrefix+strings.ToLower(ref)) {
				return nil, fmt.Errorf("snapshot %s cannot be read: %w; run 'lifeboat check' and restore another snapshot", ref, e)
			}
		}
		return nil, err
	}
	if ref == "latest" {
		// An unreadable manifest's time is unknown: it may be the
		// newest, and 'latest' would silently be an older snapshot
		// (of another path, even), restored with exit 0.
		var unsure []string
		for _, e := range l.bad {
			var u *snapshot.UnreadableError
			if errors.As(e, &u) && !errors.Is(e, chunkstore.ErrNotFound) {
				unsure = append(unsure, u.ID.Short())
			}
		}
		if len(unsure) > 0 {
			return nil, fmt.Errorf("'latest' is not certain: %d %s (%s) cannot be read (see above) and may be newer than %s, the newest readable one%s; give the ID of the snapshot to use, and run 'lifeboat check'",
				len(unsure), plural(len(unsure), "snapshot", "snapshots"), strings.Join(unsure, ", "), s.ID.Short(), f.Describe())
		}
		l.noteLatest(s, f)
		return s, nil
	}
	// A prefix that an unreadable manifest's ID starts with too is not
	// unique: it may name that one.
	for _, e := range l.bad {
		var u *snapshot.UnreadableError
		if errors.As(e, &u) && u.ID != s.ID && strings.HasPrefix(u.ID.String(), strings.ToLower(ref)) {
			return nil, fmt.Errorf("snapshot ID prefix %q is ambiguous (%s, and %s, which cannot be read: see above): give more digits", ref, s.ID.Short(), u.ID.String())
		}
	}
	return s, nil
}

// noteLatest warns when 'latest' (s) was chosen among the snapshots of
// several hosts or sets of paths: it is the newest of them all, so
// 'restore latest' without --host restores whichever machine backed up
// last, and 'dump latest /etc/passwd' prints its file, with exit 0.
func (l *snapshotList) noteLatest(s *snapshot.Snapshot, f snapshot.Filter) {
	if l.warn == nil {
		return
	}
	groups := map[string]bool{}
	for _, c := range l.all {
		if f.Match(c) {
			groups[snapshot.GroupKey(c.Host, c.Paths)] = true
		}
	}
	if len(groups) > 1 {
		l.warn("'latest' is snapshot %s of host %s, paths %s (%s): the newest of the snapshots of %d hosts or sets of paths%s; narrow with --host and --path if another was meant",
			s.ID.Short(), displayPath(s.Host), displayPaths(s.Paths), s.Time.Local().Format(time.DateTime), len(groups), f.Describe())
	}
}

// pick returns the snapshots refs name (IDs, unique prefixes, latest,
// narrowed by f; each once, in the order named) or, without refs, every
// snapshot f matches (oldest first; none is not an error here).
func (l *snapshotList) pick(refs []string, f snapshot.Filter) ([]*snapshot.Snapshot, error) {
	var out []*snapshot.Snapshot
	if len(refs) == 0 {
		for _, s := range l.all {
			if f.Match(s) {
				out = append(out, s)
			}
		}
		return out, nil
	}
	for _, ref := range refs {
		s, err := l.find(ref, f)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(out, func(o *snapshot.Snapshot) bool { return o.ID == s.ID }) {
			out = append(out, s)
		}
	}
	return out, nil
}

// pickSnapshots lists the snapshots and resolves refs or the filter's
// matches (pick), for a command that needs at least one.
func pickSnapshots(ctx context.Context, g *globals, repo *chunkstore.Repository, refs []string, f snapshot.Filter) ([]*snapshot.Snapshot, error) {
	list, err := listSnapshots(ctx, g, repo)
	if err != nil {
		return nil, err
	}
	snaps, err := list.pick(refs, f)
	if err != nil {
		return nil, err
	}
	if len(snaps) == 0 {
		return nil, fmt.Errorf("%w%s", snapshot.ErrNoSnapshot, f.Describe())
	}
	return snaps, nil
}

// notInSnapshot adds to err, which ends in snapshot.ErrNotInSnapshot, the
// snapshot, what it holds and how to list it.
func notInSnapshot(err error, snap *snapshot.Snapshot) error {
	return fmt.Errorf("%w %s (paths: %s); list the snapshot with 'lifeboat ls %s'",
		err, snap.ID.Short(), strings.Join(snap.Paths, ", "), snap.ID.Short())
}

// findSnapshot resolves a snapshot reference: an ID, a unique ID prefix or
// "latest" (narrowed by the filter).
func findSnapshot(ctx context.Context, g *globals, repo *chunkstore.Repository, ref string, f snapshot.Filter) (*snapshot.Snapshot, error) {
	list, err := listSnapshots(ctx, g, repo)
	if err != nil {
		return nil, err
	}
	return list.find(ref, f)
}

// displayPaths is the paths column: each path as displayPath shows it,
// so that a stream named "a\nb" cannot break the table.
func displayPaths(paths []string) string {
	shown := make([]string, len(paths))
	for i, p := range paths {
		shown[i] = displayPath(p)
	}
	return strings.Join(shown, ", ")
}

// displayTags is the tags column: tags joined by commas, each quoted (Go
// syntax) if it could not be told apart or would break the table: one
// with a comma or space around it, an empty one (refused by 'tag' and
// 'backup --tag', but a manifest written by another program or an older
// lifeboat may hold one), or one with control characters or bytes that
// are not UTF-8. Paths and the host are shown as displayPath shows them.
func displayTags(tags []string) string {
	shown := make([]string, len(tags))
	for i, t := range tags {
		shown[i] = t
		if snapshot.TagProblem(t) != "" || !utf8.ValidString(t) {
			shown[i] = strconv.Quote(t)
		}
	}
	return strings.Join(shown, ",")
}
