package snapshot

import (
	"context"
	"fmt"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// dryRun is Backup with BackupOptions.DryRun: the walk alone, with the
// repository's index (to tell which files the files cache would let go
// unread) but no session, writer, file read or files cache write.
func (a *archiver) dryRun(ctx context.Context, paths []string, start time.Time) (*Result, error) {
	if err := a.repo.LoadIndex(ctx); err != nil {
		return nil, err
	}
	var res dirDone
	select {
	case res = <-a.saveVirtual(ctx, buildVirtual(paths)):
	case <-ctx.Done():
		res.err = ctx.Err()
	}
	a.walking.Wait() // the walkers stop at ctx too
	if res.err != nil {
		return nil, fmt.Errorf("backup (dry run): %w", res.err)
	}
	o := a.opts
	m := Manifest{Time: a.asOf, Host: o.Host, Username: o.Username, Paths: paths, Tags: o.Tags, ProgramVersion: o.ProgramVersion,
		Summary: a.summary(start)}
	return &Result{Manifest: m, Warnings: a.sortedWarnings()}, nil
}

// wouldRead counts, in a dry run, the regular file at path with stat st
// as a backup would: unmodified and left unread if the files cache holds
// it with the same stat and its content is stored; read otherwise
// (BytesRead), and then counted as the reader counts it: unmodified if
// its stat was the recorded one (its content is found again), changed if
// the cache held it with another, new if it did not hold it. Its
// directory's walk goes on.
func (a *archiver) wouldRead(path string, node *Node, st FileStat, content []chunkstore.ID, same bool, size int64) pendingNode {
	a.bytesProc.Add(uint64(size))
	a.prog.Files.Add(1)
	a.prog.BytesProcessed.Add(size)
	status := ""
	switch {
	case same && !a.opts.ReadAll && a.allStored(content):
		a.unmodified.Add(1)
	case same:
		a.unmodified.Add(1)
		status = "unchanged, read again"
	case a.opts.FilesCache.Has(path):
		a.changed.Add(1)
		status = "changed"
	default:
		a.newFiles.Add(1)
		status = "new"
	}
	if status != "" {
		a.bytesRead.Add(uint64(size))
		a.log.Info("would read", "path", path, "status", status, "size", size)
	}
	return pendingNode{node: node, unchanged: true, st: st}
}

// finishDryDir waits for a directory's subdirectories in a dry run and
// counts it; nothing is stored.
func (a *archiver) finishDryDir(ctx context.Context, items []pendingNode, out chan dirDone) {
	for _, it := range items {
		if it.dir == nil {
			continue
		}
		select {
		case res := <-it.dir:
			if res.err != nil {
				out <- res
				return
			}
		case <-ctx.Done():
			out <- dirDone{err: ctx.Err()}
			return
		}
	}
	a.dirs.Add(1)
	a.prog.Dirs.Add(1)
	out <- dirDone{}
}
