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
func dryRun(ctx context.Context, repo *chunkstore.Repository, opts BackupOptions, paths []string, start, asOf time.Time,
	excl, changing *Excluder, marks markers, devs map[uint64]bool) (*Result, error) {
	if err := repo.LoadIndex(ctx); err != nil {
		return nil, err
	}
	a := &archiver{
		asOf: asOf, repo: repo, opts: opts, log: opts.Logger, excl: excl, changing: changing, markers: marks, devs: devs,
		way: map[string]bool{}, cfg: repo.Config(), prog: opts.Progress, ids: newIDNames(),
		walkers: make(chan struct{}, opts.Walkers), procFD: procFDWorks(),
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
	m := Manifest{
		Time: asOf, Host: opts.Host, Username: opts.Username, Paths: paths, Tags: opts.Tags, ProgramVersion: opts.ProgramVersion,
		Summary: Summary{
			Start: start, End: opts.Now(),
			FilesNew: a.newFiles.Load(), FilesChanged: a.changed.Load(), FilesUnmodified: a.unmodified.Load(),
			Dirs: a.dirs.Load(), BytesProcessed: a.bytesProc.Load(), BytesRead: a.bytesRead.Load(), Errors: uint64(len(a.warnings)),
		},
	}
	return &Result{Manifest: m, Warnings: a.sortedWarnings()}, nil
}

// wouldRead counts, in a dry run, the regular file at path with stat st
// as a backup would: unmodified if the files cache holds it with the
// same stat and its content is stored, else read, as new or changed
// (BytesRead counts what would be read). Its directory's walk goes on.
func (a *archiver) wouldRead(path string, node *Node, st FileStat, content []chunkstore.ID, same bool, size int64) pendingNode {
	a.bytesProc.Add(uint64(size))
	a.prog.Files.Add(1)
	a.prog.BytesProcessed.Add(size)
	if same && !a.opts.ReadAll && a.allStored(content) {
		a.unmodified.Add(1)
		return pendingNode{node: node, unchanged: true, st: st}
	}
	status := "new"
	if a.opts.FilesCache.Has(path) {
		status = "changed"
		a.changed.Add(1)
	} else {
		a.newFiles.Add(1)
	}
	a.bytesRead.Add(uint64(size))
	a.log.Info("would read", "path", path, "status", status, "size", size)
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
