package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// dryRun plans a restore of snap and compares it with what the target
// holds, writing nothing (Options.DryRun). Files already in the target
// are read to tell identical ones from those a restore would replace,
// as a restore does.
func dryRun(ctx context.Context, repo *chunkstore.Repository, snap *snapshot.Snapshot, opts Options, in *includer, guard *deleteGuard) (*Result, error) {
	exists, err := statTarget(opts.Target)
	if err != nil {
		return nil, err
	}
	r := &restorer{repo: repo, opts: opts, log: opts.Logger, prog: opts.Progress, guard: guard}
	if exists {
		if err := unix.Faccessat(unix.AT_FDCWD, opts.Target, unix.W_OK, unix.AT_EACCESS); err != nil {
			return nil, unwritableTarget(opts.Target, err)
		}
		root, err := os.OpenRoot(opts.Target)
		if err != nil {
			return nil, fmt.Errorf("open restore target: %w", err)
		}
		defer root.Close()
		if r.t, err = newTargetDir(root, opts.Target); err != nil {
			return nil, err
		}
		defer r.t.close()
	}
	if err := repo.EnsureIndex(ctx); err != nil {
		return nil, err
	}
	pl, failures, err := planSnapshot(ctx, repo, snap, in, nil, r.log)
	if err != nil {
		return nil, err
	}
	if err := checkDeleteScope(opts, snap, in); err != nil {
		return nil, err
	}
	r.unmatched, r.excludedIncludes = in.unmatched()
	r.excludedPaths = in.excludedRoots()
	r.failures = slices.Clone(failures) // failures grows below, for extraneous
	// The directories the restore could not create, as it would find
	// them (and below, dirConflicts: the files it would not replace).
	blocked, unwritable := r.predictBlocked(pl)
	failures = append(failures, r.leaveOutBlocked(pl, blocked)...)
	r.prog.TotalFiles.Store(int64(len(pl.files) + len(pl.links)))
	r.prog.TotalBytes.Store(pl.bytes)
	res := &Result{Dirs: int64(len(pl.dirs))}
	if r.t != nil && !r.t.fresh {
		// What a restore would remove first (if no other restore is
		// running into the target then).
		res.Leftovers = r.countLeftovers(pl)
		r.dirConflicts(pl)
		if err := r.findIdentical(ctx, pl.files, pl.links); err != nil {
			return nil, err
		}
	}
	jobs := pl.packJobs()
	for _, j := range jobs {
		res.BytesDownloaded += j.end - j.start
	}
	if err := r.checkPacks(ctx, jobs); err != nil {
		return nil, err
	}
	for _, f := range pl.files {
		if f.failed == nil && !f.keep && !f.skip {
			// Its links fail with it (settledLink).
			if f.failed = r.unwritableIn(unwritable, f.path); f.failed == nil {
				f.failed = r.unreplaceable(f.path, f.held)
			}
		}
		if f.failed != nil {
			r.fail(f.path, f.failed)
			continue
		}
		res.count(f)
		if f.keep || f.skip {
			continue
		}
		res.BytesWritten += f.size
		r.replaces(f.path, func(unix.Stat_t) bool { return false })
	}
	for _, f := range pl.links {
		if r.settledLink(f, res) {
			continue
		}
		if err := cmp.Or(r.unwritableIn(unwritable, f.path), r.unreplaceable(f.path, true)); err != nil {
			r.fail(f.path, err)
			continue
		}
		res.Files++
		r.replaces(f.path, func(st unix.Stat_t) bool {
			if !f.linkTo.skip {
				return false
			}
			first, err := r.t.lstat(f.linkTo.path)
			return err == nil && first.Dev == st.Dev && first.Ino == st.Ino
		})
	}
	for _, o := range pl.others {
		if r.kept(o.path, o.node) {
			res.Kept++
			continue
		}
		if err := cmp.Or(r.unwritableIn(unwritable, o.path), r.unreplaceable(o.path, true)); err != nil {
			r.fail(o.path, err)
			continue
		}
		if o.node.Type == snapshot.TypeSymlink {
			res.Symlinks++
		} else {
			res.Other++
		}
		r.replaces(o.path, func(st unix.Stat_t) bool { return r.t.sameSpecial(o.path, st, o.node) })
	}
	for _, d := range pl.dirs {
		r.replaces(d.path, func(st unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR })
	}
	for _, c := range r.changes {
		if c.Action == ActionReplace {
			res.Replaced++
		}
	}
	if opts.Delete && r.t != nil && !r.t.fresh {
		if err := r.extraneous(ctx, pl, snap.Paths, failures, in, func(p string, dir bool) {
			if err := cmp.Or(r.unwritableIn(unwritable, p), r.unreplaceable(p, !dir)); err != nil {
				r.failRemoval(p, fmt.Errorf("could not remove it (--delete: the snapshot does not hold it): %w", err))
				return
			}
			r.changes = append(r.changes, Change{Path: p, Action: ActionDelete, Dir: dir})
			res.Deleted++
		}, r.failRemoval); err != nil {
			return nil, err
		}
	}
	r.report(res)
	return res, nil
}

// replaces records, in a dry run, that a restore would replace what the
// target holds at p, unless nothing is there or same says it is what
// the restore would leave there.
func (r *restorer) replaces(p string, same func(unix.Stat_t) bool) {
	if r.t == nil || r.t.fresh {
		return
	}
	st, err := r.t.lstat(p)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		// Nothing there, or a parent is not a directory: the restore
		// replaces that parent, and this records it.
		return
	}
	if err == nil && same(st) {
		return
	}
	r.changes = append(r.changes, Change{Path: p, Action: ActionReplace, Dir: err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR})
}

// readlink returns the target of symlink p, or "" if it cannot be read.
func (t *targetDir) readlink(p string) string {
	dir, base := split(p)
	buf := make([]byte, 4096)
	n := 0
	err := t.withDir(dir, func(dfd int) (err error) {
		n, err = unix.Readlinkat(dfd, base, buf)
		return err
	})
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// sameSpecial reports whether the entry st at p is what restoring n, a
// symlink, FIFO or device node, would make: same type, and same link
// target or device number. (The restore makes it again all the same;
// nothing it holds is lost.)
func (t *targetDir) sameSpecial(p string, st unix.Stat_t, n *snapshot.Node) bool {
	switch n.Type {
	case snapshot.TypeSymlink:
		return st.Mode&unix.S_IFMT == unix.S_IFLNK && t.readlink(p) == n.LinkTarget
	case snapshot.TypeFIFO:
		return st.Mode&unix.S_IFMT == unix.S_IFIFO
	case snapshot.TypeDev:
		return st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == n.Device
	case snapshot.TypeCharDev:
		return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == n.Device
	}
	return false
}

// checkPacks lists the repository's packs and fails, in a dry run, the
// files whose data lies in a pack the restore would read that is missing
// or has another size than the index says: what a restore would find
// when it reads them. (Damage within a pack shows only when it is read.)
func (r *restorer) checkPacks(ctx context.Context, jobs []*packJob) error {
	if len(jobs) == 0 {
		return nil
	}
	present, err := r.repo.ListPacks(ctx)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		size, ok := present[j.pack.ID]
		var err error
		switch {
		case !ok:
			err = fmt.Errorf("pack %s is missing from the repository", chunkstore.PackName(j.pack.ID))
		case size != int64(j.pack.Size):
			err = fmt.Errorf("pack %s has %d bytes, the index says %d", chunkstore.PackName(j.pack.ID), size, j.pack.Size)
		default:
			continue
		}
		for _, bj := range j.blobs {
			for _, t := range bj.targets {
				if t.file.failed == nil {
					t.file.failed = err
				}
			}
		}
	}
	return nil
}
