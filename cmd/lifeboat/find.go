package main

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type findFlags struct {
	filterFlags
	snapshots []string
}

func newFindCmd(g *globals) *cobra.Command {
	var f findFlags
	cmd := &cobra.Command{
		Use:   "find [flags] PATTERN...",
		Short: "Find files in snapshots by name or path",
		Long: `Search the snapshots, newest first, for entries matching any PATTERN, and list
them by snapshot with their mode, owner, size and modification time: which
snapshots still hold a file, and which version each holds.

A pattern without a slash matches an entry's name ("nginx.conf", "*.sql"); a
pattern with a slash matches its whole path from the snapshot root, with or
without the leading slash ("/etc/nginx/*.conf" or "etc/nginx/*.conf"); a
pattern ending in a slash matches directories only ("nginx/"). Patterns use
shell glob syntax (* ? [...]), where * does not cross a slash, and ** as a
whole element matches any number of elements ("/home/**/id_rsa",
"**/.ssh/*"), as in backup's --exclude; quote them.
--snapshot limits the search to the given snapshots; --host, --tag and
--path to the matching ones. Subtrees searched in an earlier snapshot
without a match are not read again, so searching many backups of one
machine is quick.

Needs the identity. With --json, prints one JSON object per line: the
entry as 'ls --json' shows it, with "snapshot", "snapshot_time" and "host".
Exits 1 if nothing matched (as for any error; the message says which). A
snapshot whose trees cannot be read is named in a warning, the others are
searched, and find exits 1 after listing what it found.`,
		Example: `  lifeboat find nginx.conf
  lifeboat find --host db1 '*.sql' '/etc/postgresql/*'
  lifeboat find --json --snapshot 3f2a91c0 --snapshot latest id_rsa`,
		Args: argsBetween(1, -1, "PATTERN to find"),
		RunE: func(cmd *cobra.Command, args []string) error { return runFind(cmd.Context(), g, f, args) },
	}
	f.register(cmd, "search snapshots")
	cmd.Flags().StringArrayVar(&f.snapshots, "snapshot", nil, "search only this snapshot: an ID, a unique prefix or latest (repeatable)")
	return cmd
}

type findJSON struct {
	Snapshot     string    `json:"snapshot"`
	SnapshotTime time.Time `json:"snapshot_time"`
	Host         string    `json:"host"`
	lsNodeJSON
}

// findPattern is one PATTERN of find.
type findPattern struct {
	glob    snapshot.Pattern
	full    bool // matched against the absolute path, not the name
	dirOnly bool // ended in "/": directories only
}

// parseFindPatterns reads find's patterns: a pattern with a slash is a
// path from the snapshot root, with or without its leading "/"
// ("etc/nginx/*" means "/etc/nginx/*", as for ls and restore --include);
// one ending in "/" matches directories only.
func parseFindPatterns(patterns []string) ([]findPattern, error) {
	out := make([]findPattern, 0, len(patterns))
	for _, p := range patterns {
		var fp findPattern
		glob := p
		if strings.HasSuffix(glob, "/") && glob != "/" {
			fp.dirOnly, glob = true, strings.TrimRight(glob, "/")
		}
		if strings.Contains(glob, "/") {
			// Cleaned as ls and dump clean a path: "./etc/*.conf" and
			// "etc//nginx" matched no path of a snapshot.
			fp.full, glob = true, path.Clean("/"+glob)
		}
		if glob == "" || glob == "/" {
			return nil, usageError("find: empty pattern %q: give a name (\"nginx.conf\", \"*.sql\") or a path (\"/etc/nginx/*\")", p)
		}
		var err error
		if fp.glob, err = snapshot.NewPattern(glob); err != nil {
			return nil, usageError("find: pattern %q: %v", p, err)
		}
		out = append(out, fp)
	}
	return out, nil
}

// matches reports whether the entry n at absolute path p matches any of
// the patterns.
func matches(patterns []findPattern, p string, n *snapshot.Node) bool {
	for _, fp := range patterns {
		if fp.dirOnly && n.Type != snapshot.TypeDir {
			continue
		}
		subject := n.Name
		if fp.full {
			subject = p
		}
		if fp.glob.Match(subject) {
			return true
		}
	}
	return false
}

func runFind(ctx context.Context, g *globals, f findFlags, args []string) error {
	patterns, err := parseFindPatterns(args)
	if err != nil {
		return err
	}
	repo, err := g.openRepo(ctx, "find", readAccess)
	if err != nil {
		return err
	}
	list, err := listSnapshots(ctx, g, repo)
	if err != nil {
		return err
	}
	snaps, err := list.pick(f.snapshots, f.filter())
	if err != nil {
		return err
	}
	// Newest first: the question is usually which recent backup still
	// has the file.
	slices.SortStableFunc(snaps, func(a, b *snapshot.Snapshot) int { return b.Time.Compare(a.Time) })
	if err := repo.LoadIndex(ctx); err != nil {
		return storeError(g.repo, err)
	}
	if len(snaps) == 0 {
		if f.filter().IsZero() {
			return errors.New("find: the repository has no snapshots")
		}
		return errors.New("find: no snapshot matches --host, --tag and --path; list them with 'lifeboat snapshots'")
	}
	finder := snapshot.NewFinder(repo, func(p string, n *snapshot.Node) bool { return matches(patterns, p, n) })
	total := 0
	var failed []string // snapshots whose trees could not all be read
	for _, s := range snaps {
		tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
		n := 0
		var outErr error // writing the output failed: no use going on
		err := finder.Find(ctx, s.Tree, func(found snapshot.Found) error {
			n++
			if g.json {
				outErr = printJSON(g.stdout, findJSON{Snapshot: s.ID.String(), SnapshotTime: s.Time, Host: s.Host, lsNodeJSON: nodeJSON(found.Path, found.Node)})
				return outErr
			}
			if n == 1 {
				if total > 0 {
					fmt.Fprintln(tw)
				}
				fmt.Fprintf(tw, "snapshot %s, %s, host %s:\n", s.ID.Short(), s.Time.Local().Format("2006-01-02 15:04:05"), displayPath(s.Host))
			}
			outErr = printNode(g, tw, true, found.Path, found.Node)
			return outErr
		})
		if ferr := tw.Flush(); outErr == nil {
			outErr = ferr
		}
		total += n
		switch {
		case outErr != nil:
			return outErr
		case err != nil && (ctx.Err() != nil || errors.Is(err, chunkstore.ErrUnreachable)):
			return fmt.Errorf("search snapshot %s: %w", s.ID.Short(), storeError(g.repo, err))
		case err != nil:
			// A damaged tree spoils this snapshot's answer, not the
			// others': the question is which snapshots hold the file.
			warnf(g.stderr, "search snapshot %s: %v", s.ID.Short(), err)
			failed = append(failed, s.ID.Short())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d %s could not be searched in full (%s; see above): what is listed is from the rest and from what could be read of them; run 'lifeboat check'",
			len(failed), len(snaps), plural(len(snaps), "snapshot", "snapshots"), strings.Join(failed, ", "))
	}
	if total == 0 {
		return fmt.Errorf("nothing matches %s in %d %s", strings.Join(args, " or "), len(snaps), plural(len(snaps), "snapshot", "snapshots"))
	}
	if !g.json && !g.quiet {
		fmt.Fprintf(g.stdout, "\n%d %s in %d %s searched\n", total, plural(total, "match", "matches"), len(snaps), plural(len(snaps), "snapshot", "snapshots"))
	}
	return nil
}
