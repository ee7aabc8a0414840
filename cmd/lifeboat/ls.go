package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type lsFlags struct {
	filterFlags
	long      bool
	recursive bool
}

func newLsCmd(g *globals) *cobra.Command {
	var f lsFlags
	cmd := &cobra.Command{
		Use:   "ls [flags] SNAPSHOT [PATH]",
		Short: "List files in a snapshot",
		Long: `List the files in a snapshot, recursively, below PATH (default: everything).

SNAPSHOT is a snapshot ID, a unique prefix of one, or "latest" (the newest
snapshot matching --host/--tag/--path). PATH is the absolute path as it was
backed up ("/home/u/x"); "home/u/x" means the same.

Needs the identity: file names are encrypted so that writer keys cannot read
them. With --json, prints one JSON object per line (NDJSON).`,
		Example: `  lifeboat ls latest
  lifeboat ls -l 3f2a91c0 /etc
  lifeboat ls --json latest /home/u --recursive=false`,
		Args: argsBetween(1, 2, "SNAPSHOT (an ID, a unique ID prefix, or latest)"),
		RunE: func(cmd *cobra.Command, args []string) error { return runLs(cmd.Context(), g, f, args) },
	}
	f.register(cmd, "consider snapshots")
	cmd.Flags().BoolVarP(&f.long, "long", "l", false, "long listing: mode, owner, size, modification time")
	cmd.Flags().BoolVar(&f.recursive, "recursive", true, "list everything below PATH; --recursive=false lists PATH and its direct children")
	return cmd
}

// lsNodeJSON is an entry as ls --json prints it. The _b64 fields are
// there only for names and link targets that are not UTF-8 (exactBytes).
type lsNodeJSON struct {
	Name          string    `json:"name"`
	NameB64       string    `json:"name_b64,omitempty"`
	Type          string    `json:"type"`
	Path          string    `json:"path"`
	PathB64       string    `json:"path_b64,omitempty"`
	Size          uint64    `json:"size"`
	Mode          uint32    `json:"mode"`        // Unix permission bits, incl. setuid/setgid/sticky
	Permissions   string    `json:"permissions"` // as ls -l shows them
	MTime         time.Time `json:"mtime"`
	UID           uint32    `json:"uid"`
	GID           uint32    `json:"gid"`
	User          string    `json:"user,omitempty"`
	Group         string    `json:"group,omitempty"`
	LinkTarget    string    `json:"link_target,omitempty"`
	LinkTargetB64 string    `json:"link_target_b64,omitempty"`
}

// errFound stops a walk once the requested subtree is done.
var errFound = errors.New("subtree listed")

func runLs(ctx context.Context, g *globals, f lsFlags, args []string) error {
	target := ""
	if len(args) == 2 {
		target = strings.TrimPrefix(path.Clean("/"+args[1]), "/")
	}
	repo, snaps, err := openSnapshots(ctx, g, "ls", f.filter(), args[0])
	if err != nil {
		return err
	}
	snap := snaps[0]

	depth := func(p string) int {
		if p == "" {
			return 0
		}
		return strings.Count(p, "/") + 1
	}
	maxDepth := depth(target) + 1
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	found, inside := target == "", false
	// Walk reads a directory's listing right after fn returns nil for
	// it: a listing it cannot read is the last such directory's (or the
	// root's), and the error names it.
	listing := ""
	visit := func(p string, n *snapshot.Node) error {
		under := target == "" || p == target || strings.HasPrefix(p, target+"/")
		switch {
		case under:
			found, inside = true, true
		case strings.HasPrefix(target, p+"/"):
			return nil // an ancestor of the target: descend
		case inside:
			return errFound // walked past the target's subtree
		default:
			if n.Type == snapshot.TypeDir {
				return snapshot.SkipDir
			}
			return nil
		}
		if err := printNode(g, tw, f.long, p, n); err != nil {
			return err
		}
		if !f.recursive && n.Type == snapshot.TypeDir && depth(p) >= maxDepth {
			return snapshot.SkipDir
		}
		return nil
	}
	var fnErr error // an error of visit's own (the output failed), not a listing's
	err = snapshot.Walk(ctx, repo, snap.Tree, func(p string, n *snapshot.Node) error {
		err := visit(p, n)
		switch {
		case err == nil && n.Type == snapshot.TypeDir:
			listing = p
		case err != nil && !errors.Is(err, snapshot.SkipDir):
			fnErr = err
		}
		return err
	})
	if err != nil && !errors.Is(err, errFound) {
		if fnErr == nil && ctx.Err() == nil {
			err = fmt.Errorf("listing of directory %s: %w", displayPath("/"+listing), err)
		}
		return fmt.Errorf("list snapshot %s: %w", snap.ID.Short(), err)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !found {
		return notInSnapshot(fmt.Errorf("/%s: %w", target, snapshot.ErrNotInSnapshot), snap)
	}
	return nil
}

// nodeJSON is node n at path p (from the snapshot root) as ls --json
// prints it.
func nodeJSON(p string, n *snapshot.Node) lsNodeJSON {
	return lsNodeJSON{
		Name: n.Name, NameB64: exactBytes(n.Name), Type: string(n.Type), Path: "/" + p, PathB64: exactBytes("/" + p), Size: n.Size,
		Mode: n.UnixPerm(), Permissions: modeString(n), MTime: n.ModTime,
		UID: n.UID, GID: n.GID, User: n.User, Group: n.Group, LinkTarget: n.LinkTarget, LinkTargetB64: exactBytes(n.LinkTarget),
	}
}

func printNode(g *globals, tw *tabwriter.Writer, long bool, p string, n *snapshot.Node) error {
	abs := "/" + p
	if g.json {
		return printJSON(g.stdout, nodeJSON(p, n))
	}
	if !long {
		_, err := fmt.Fprintln(g.stdout, displayPath(abs))
		return err
	}
	owner, group := n.User, n.Group
	if owner == "" {
		owner = fmt.Sprint(n.UID)
	}
	if group == "" {
		group = fmt.Sprint(n.GID)
	}
	name := displayPath(abs)
	if n.Type == snapshot.TypeSymlink {
		name += " -> " + displayPath(n.LinkTarget)
	}
	_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", modeString(n), owner, group, n.Size,
		n.ModTime.Local().Format("2006-01-02 15:04:05"), name)
	return err
}

// modeString renders a node's type and mode as ls -l does ("drwxr-xr-x").
func modeString(n *snapshot.Node) string {
	t := map[snapshot.NodeType]byte{snapshot.TypeDir: 'd', snapshot.TypeSymlink: 'l',
		snapshot.TypeDev: 'b', snapshot.TypeCharDev: 'c', snapshot.TypeFIFO: 'p'}[n.Type]
	if t == 0 {
		t = '-'
	}
	b := []byte{t}
	const rwx = "rwxrwxrwx"
	for i := range 9 {
		if n.Mode&(1<<(8-i)) != 0 {
			b = append(b, rwx[i])
		} else {
			b = append(b, '-')
		}
	}
	special := func(bit fs.FileMode, pos int, set, unset byte) {
		if n.Mode&bit != 0 {
			if b[pos] == '-' {
				b[pos] = unset
			} else {
				b[pos] = set
			}
		}
	}
	special(fs.ModeSetuid, 3, 's', 'S')
	special(fs.ModeSetgid, 6, 's', 'S')
	special(fs.ModeSticky, 9, 't', 'T')
	return string(b)
}
