package main

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type diffFlags struct {
	filterFlags
	metadata bool
}

func newDiffCmd(g *globals) *cobra.Command {
	var f diffFlags
	cmd := &cobra.Command{
		Use:   "diff [flags] SNAPSHOT1 SNAPSHOT2 [PATH]",
		Short: "Show what changed between two snapshots",
		Long: `List the entries that differ between two snapshots, or between what they
hold below PATH: one line each, "+" added in SNAPSHOT2, "-" removed, "M" a file
whose content changed, "T" an entry whose type changed (file, directory,
symlink, ...), and with --metadata "U" for the same content with another mode,
owner, modification time or hard link count. Everything below an added or
removed directory is listed. A summary follows; its file bytes count the
whole old and new size of each modified file (one changed byte of a 10 GiB
file counts 10 GiB each way).

Subtrees that did not change are not read, so comparing two backups of the
same machine is quick: use it to see what a ransomware attack or a bad deploy
touched, and which snapshot is the last good one.

SNAPSHOT is an ID, a unique prefix of one, or "latest" (the newest matching
--host/--tag/--path). Needs the identity. With --json, prints one JSON object
per line: {"message_type":"change","change":"M","path":...,"old":{...},"new":{...}}
for each entry, "old" and "new" as 'ls --json' shows the entry in each
snapshot, then {"message_type":"statistics",...}.`,
		Example: `  lifeboat diff 3f2a91c0 latest
  lifeboat diff --metadata 3f2a91c0 5b7e0d12 /etc
  lifeboat diff --json 3f2a91c0 latest /srv/www | jq -r 'select(.change=="M") | .path'`,
		Args: argsBetween(2, 3, "two snapshots (IDs, unique ID prefixes, or latest)"),
		RunE: func(cmd *cobra.Command, args []string) error { return runDiff(cmd.Context(), g, f, args) },
	}
	f.register(cmd, "consider snapshots")
	cmd.Flags().BoolVar(&f.metadata, "metadata", false, "also list entries whose content is the same but whose mode, owner or modification time differ (U)")
	return cmd
}

type diffChangeJSON struct {
	MessageType string      `json:"message_type"` // "change"
	Change      string      `json:"change"`       // +, -, M, T, U
	Path        string      `json:"path"`
	PathB64     string      `json:"path_b64,omitempty"` // see exactBytes
	Old         *lsNodeJSON `json:"old,omitempty"`      // the entry in SNAPSHOT1 as ls --json shows it (none for +)
	New         *lsNodeJSON `json:"new,omitempty"`      // the entry in SNAPSHOT2 (none for -)
}

type diffStatsJSON struct {
	MessageType  string `json:"message_type"` // "statistics"
	SnapshotOld  string `json:"snapshot_old"`
	SnapshotNew  string `json:"snapshot_new"`
	Added        int64  `json:"added"`
	Removed      int64  `json:"removed"`
	Modified     int64  `json:"modified"`
	TypeChanged  int64  `json:"type_changed"`
	Metadata     int64  `json:"metadata_changed"`
	BytesAdded   uint64 `json:"bytes_added"`
	BytesRemoved uint64 `json:"bytes_removed"`
}

func runDiff(ctx context.Context, g *globals, f diffFlags, args []string) error {
	repo, snaps, err := openSnapshots(ctx, g, "diff", f.filter(), args[0], args[1])
	if err != nil {
		return err
	}
	a, b := snaps[0], snaps[1]
	at := ""
	if len(args) == 3 {
		at = strings.Trim(path.Clean("/"+args[2]), "/")
	}
	an, err := lookupOrNil(ctx, repo, a, at)
	if err != nil {
		return err
	}
	bn, err := lookupOrNil(ctx, repo, b, at)
	if err != nil {
		return err
	}
	if an == nil && bn == nil {
		return fmt.Errorf("/%s is in neither snapshot %s (paths: %s) nor %s (paths: %s)",
			at, a.ID.Short(), strings.Join(a.Paths, ", "), b.ID.Short(), strings.Join(b.Paths, ", "))
	}
	st, err := snapshot.Diff(ctx, repo, at, an, bn, snapshot.DiffOptions{Metadata: f.metadata}, func(c snapshot.Change) error {
		n := c.New
		if n == nil {
			n = c.Old
		}
		if g.json {
			out := diffChangeJSON{MessageType: "change", Change: string(c.Kind), Path: "/" + c.Path, PathB64: exactBytes("/" + c.Path)}
			if c.Old != nil {
				o := nodeJSON(c.Path, c.Old)
				out.Old = &o
			}
			if c.New != nil {
				o := nodeJSON(c.Path, c.New)
				out.New = &o
			}
			return printJSON(g.stdout, out)
		}
		p := "/" + c.Path
		if n.Type == snapshot.TypeDir {
			p += "/"
		}
		_, err := fmt.Fprintf(g.stdout, "%-4s %s\n", c.Kind, displayPath(p))
		return err
	})
	if err != nil {
		return fmt.Errorf("diff of %s and %s: %w", a.ID.Short(), b.ID.Short(), storeError(g.repo, err))
	}
	if g.json {
		return printJSON(g.stdout, diffStatsJSON{MessageType: "statistics", SnapshotOld: a.ID.String(), SnapshotNew: b.ID.String(),
			Added: st.Added, Removed: st.Removed, Modified: st.Modified, TypeChanged: st.TypeChanged, Metadata: st.Metadata,
			BytesAdded: st.BytesAdded, BytesRemoved: st.BytesRemoved})
	}
	if g.quiet {
		return nil
	}
	fmt.Fprintf(g.stdout, "\n%s → %s: %d added, %d removed, %d modified, %d changed type", a.ID.Short(), b.ID.Short(),
		st.Added, st.Removed, st.Modified, st.TypeChanged)
	if f.metadata {
		fmt.Fprintf(g.stdout, ", %d metadata only", st.Metadata)
	}
	fmt.Fprintf(g.stdout, "\nFile bytes:  +%s, -%s\n", formatBytes(int64(st.BytesAdded)), formatBytes(int64(st.BytesRemoved)))
	return nil
}

// lookupOrNil returns the node at p in snap, or nil if snap has nothing
// there.
func lookupOrNil(ctx context.Context, repo *chunkstore.Repository, snap *snapshot.Snapshot, p string) (*snapshot.Node, error) {
	n, err := snapshot.Lookup(ctx, repo, snap.Tree, p)
	if errors.Is(err, snapshot.ErrNotInSnapshot) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", snap.ID.Short(), err)
	}
	return n, nil
}
