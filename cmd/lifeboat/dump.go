package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type dumpFlags struct {
	filterFlags
	output string
}

func newDumpCmd(g *globals) *cobra.Command {
	var f dumpFlags
	cmd := &cobra.Command{
		Use:   "dump [flags] SNAPSHOT [PATH]",
		Short: "Write a file from a snapshot to stdout (a directory as a tar archive)",
		Long: `Write one file of a snapshot to standard output, or with --output to a new
file; a directory (PATH "/" for the whole snapshot) is written as a tar
archive (pax format) of everything below it.

SNAPSHOT is a snapshot ID, a unique prefix of one, or "latest" (the newest
snapshot matching --host/--tag/--path). PATH is the absolute path as it was
backed up; a stream backed up with --stdin is /NAME (its --stdin-filename).
Without PATH, the snapshot's one backed-up path is dumped: the stream of a
database dump, say.

Needs the identity. Every chunk is authenticated and its keyed ID recomputed
before it is written. If one cannot be read or fails verification, dump stops
and exits 1 naming the file: what was written is then only the start of the
file or archive. In a pipeline, check the exit status (set -o pipefail in
bash); with --output, the incomplete file is removed.`,
		Example: `  lifeboat dump latest /app.sql | psql app
  lifeboat dump --path /orders.dump latest | pg_restore -d orders
  lifeboat dump --host db1 latest /etc/postgresql > postgresql-etc.tar
  lifeboat dump -o passwd 3f2a91c0 /etc/passwd`,
		Args: argsBetween(1, 2, "SNAPSHOT (an ID, a unique ID prefix, or latest)"),
		RunE: func(cmd *cobra.Command, args []string) error { return runDump(cmd.Context(), g, f, args) },
	}
	f.register(cmd, "consider snapshots")
	cmd.Flags().StringVarP(&f.output, "output", "o", "", "write to this new file instead of stdout (refused if it exists; removed if the dump fails)")
	return cmd
}

func runDump(ctx context.Context, g *globals, f dumpFlags, args []string) error {
	repo, snaps, err := openSnapshots(ctx, g, "dump", f.filter(), args[0])
	if err != nil {
		return err
	}
	snap := snaps[0]
	var p string
	switch {
	case len(args) == 2:
		p = strings.Trim(path.Clean("/"+args[1]), "/")
	case len(snap.Paths) == 1:
		p = strings.Trim(path.Clean("/"+snap.Paths[0]), "/")
	default:
		return usageError("dump: snapshot %s holds %d paths (%s): name the one to dump", snap.ID.Short(), len(snap.Paths), strings.Join(snap.Paths, ", "))
	}
	n, err := snapshot.Lookup(ctx, repo, snap.Tree, p)
	if errors.Is(err, snapshot.ErrNotInSnapshot) {
		return notInSnapshot(err, snap)
	}
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", snap.ID.Short(), err)
	}
	name := "/" + p
	switch n.Type {
	case snapshot.TypeFile, snapshot.TypeDir:
	case snapshot.TypeSymlink:
		return fmt.Errorf("%s in snapshot %s is a symbolic link to %q; dump its target", displayPath(name), snap.ID.Short(), n.LinkTarget)
	default:
		return fmt.Errorf("%s in snapshot %s is a %s: nothing to dump", displayPath(name), snap.ID.Short(), n.Type)
	}

	var w io.Writer = g.stdout
	var out *os.File
	if f.output != "" {
		if out, err = os.OpenFile(f.output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("--output: %w: dump never overwrites a file; remove it or name another", err)
			}
			return fmt.Errorf("--output: %w", err)
		}
		w = out
	} else if n.Type == snapshot.TypeDir && isTerminal(g.stdout) {
		return usageError("dump: %s is a directory: refusing to write a tar archive to a terminal; redirect stdout or use --output FILE", displayPath(name))
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if n.Type == snapshot.TypeFile {
		err = restore.DumpFile(ctx, repo, name, n, bw)
	} else {
		err = restore.DumpTar(ctx, repo, p, n, bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if out != nil {
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(f.output)
			return fmt.Errorf("dump of %s from snapshot %s failed, %s removed: %w", displayPath(name), snap.ID.Short(), f.output, storeError(g.repo, err))
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("dump of %s from snapshot %s failed; the output is incomplete: %w", displayPath(name), snap.ID.Short(), storeError(g.repo, err))
	}
	return nil
}
