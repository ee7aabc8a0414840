package restore

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// Type conflicts: the target holds an entry of another type where the
// snapshot restores one. A restore never removes what the user did not
// ask it to remove:
//
//   - A directory holding entries where the snapshot has a file, symlink,
//     hard link or device is left as it is, with all it holds, and the
//     snapshot's entry is reported as not restored (dirConflicts), unless
//     Options.Delete asks for what the snapshot lacks to go. An empty
//     directory is replaced.
//   - Anything but a directory where the snapshot has a directory is
//     replaced (as a file with other content is), unless
//     Options.Overwrite keeps it (never; if-newer, where it is newer).
//     Then nothing below that directory is restored, and it is reported
//     (leaveOutBlocked), as is a directory that cannot be created.
//
// A dry run finds the same (predictBlocked), so what it says a restore
// would do is what the restore does.

// keepsInTheWay reports whether o leaves the entry st, which is not a
// directory, where the snapshot has directory n (nil: a directory above
// the backed-up paths, which has no times to compare).
func (o Overwrite) keepsInTheWay(st unix.Stat_t, n *snapshot.Node) bool {
	if n == nil {
		return o == OverwriteNever
	}
	return o.keeps(st, n)
}

// dirConflicts leaves out of the plan the files, hard links, symlinks
// and special files where the target holds a directory with entries,
// and reports each: that directory is left as it was. Options.Delete
// removes it instead; an empty one is replaced; one Options.Overwrite
// keeps is counted as kept later.
func (r *restorer) dirConflicts(pl *plan) {
	if r.opts.Delete || r.t == nil || r.t.fresh {
		return
	}
	conflict := func(p string, n *snapshot.Node) error {
		st, err := r.t.lstat(p)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || r.opts.Overwrite.keeps(st, n) {
			return nil
		}
		names, err := r.t.names(p)
		if err == nil && len(names) == 0 {
			return nil
		}
		what := "entries"
		if err != nil {
			what = fmt.Sprintf("entries, perhaps (it could not be listed: %v)", err)
		}
		return fmt.Errorf("the target holds a directory with %s here, where the snapshot has %s: it is left as it was, with all it holds; restore with --delete to replace it (what it holds is removed), or move it away, or restore into another directory", what, describeNode(n))
	}
	pl.drop(conflict, r.fail)
}

// gainedEntries is the failure of an entry whose place in the target is
// held by a directory that was empty, or not there, when dirConflicts
// looked and has entries now (err: ENOTEMPTY), which only
// Options.Delete removes.
func gainedEntries(err error) error {
	return fmt.Errorf("the target holds a directory with entries here, which it did not hold, or was empty, when the restore looked: it is left as it was, with all it holds; restore with --delete to replace it (what it holds is removed), or move it away, or restore into another directory: %w", err)
}

// drop takes out of the plan the files, hard links, symlinks and special
// files why gives an error for, noting it as a file's failure, and
// passes the content of a hard-link group whose first name it took out
// on to another of its names (passOn). report, if set, is told of each
// entry taken out.
func (pl *plan) drop(why func(p string, n *snapshot.Node) error, report func(p string, err error)) {
	var out map[*fileState]*fileState
	files := pl.files[:0]
	for _, f := range pl.files {
		err := why(f.path, f.node())
		if err == nil {
			files = append(files, f)
			continue
		}
		f.failed = err
		if report != nil {
			report(f.path, err)
		}
		pl.bytes -= f.size
		if len(pl.links) > 0 {
			out = leftOut(out, f)
		}
	}
	clear(pl.files[len(files):])
	pl.files = files
	links := pl.links[:0]
	for _, f := range pl.links {
		if err := why(f.path, f.node()); err != nil {
			if report != nil {
				report(f.path, err)
			}
			continue
		}
		links = append(links, f)
	}
	clear(pl.links[len(links):])
	pl.links = links
	pl.passOn(out)
	others := pl.others[:0]
	for _, o := range pl.others {
		if err := why(o.path, o.node); err != nil {
			if report != nil {
				report(o.path, err)
			}
			continue
		}
		others = append(others, o)
	}
	clear(pl.others[len(others):])
	pl.others = others
}

// describeNode names the type of n with an article ("a symlink").
func describeNode(n *snapshot.Node) string {
	switch n.Type {
	case snapshot.TypeFile:
		return "a file"
	case snapshot.TypeSymlink:
		return "a symlink"
	case snapshot.TypeFIFO:
		return "a FIFO"
	case snapshot.TypeDir:
		return "a directory"
	}
	return "a device node"
}

// leaveOutBlocked takes out of the plan the directories that could not
// be created (blocked, as dirMaker or predictBlocked found them: with
// why, or with a nil error for those below one) and everything below
// them, and reports each such directory once, naming why. It returns
// those failures, which Options.Delete must not descend into either.
func (r *restorer) leaveOutBlocked(pl *plan, blocked map[string]error) []Failure {
	if len(blocked) == 0 {
		return nil
	}
	isBlocked := func(p string) bool { _, ok := blocked[p]; return ok }
	below := func(p string) bool { d, _ := split(p); return d != "" && isBlocked(d) }
	var failures []Failure
	dirs := pl.dirs[:0]
	for _, d := range pl.dirs {
		err, ok := blocked[d.path]
		if !ok {
			dirs = append(dirs, d)
			continue
		}
		if err == nil {
			continue
		}
		var kept *keptInTheWayError
		if errors.As(err, &kept) {
			err = fmt.Errorf("%w; --overwrite %s leaves it, so nothing below it is restored: restore with --overwrite if-changed to replace it, or move it away, or restore into another directory", err, r.opts.Overwrite)
		} else {
			err = fmt.Errorf("could not create this directory, so nothing below it is restored: %w; fix what stops it (a parent the user may not write to, a read-only mount, an immutable entry in its place) and run the restore again, or restore into another directory", err)
		}
		fl := Failure{Path: d.path, Err: err}
		failures = append(failures, fl)
		r.record(fl)
	}
	clear(pl.dirs[len(dirs):])
	pl.dirs = dirs
	pl.drop(func(p string, _ *snapshot.Node) error {
		if !below(p) {
			return nil
		}
		dir, _ := split(p)
		return fmt.Errorf("its directory /%s could not be created", dir)
	}, nil)
	return failures
}

// leftOut adds f, a file taken out of the plan, to out (made if nil),
// for passOn to find whether one of its hard links takes its place. (Not
// called where the plan has no hard links: a blocked directory can hold
// millions of files.)
func leftOut(out map[*fileState]*fileState, f *fileState) map[*fileState]*fileState {
	if out == nil {
		out = map[*fileState]*fileState{}
	}
	out[f] = nil
	return out
}

// passOn gives the content of each file in out, one whose name was taken
// out of the plan, to the first of its hard links still planned: that
// name becomes a planned file, and the group's other planned names are
// linked to it, not failed with the name left out. out maps each to the
// name that took its place (nil: none yet).
func (pl *plan) passOn(out map[*fileState]*fileState) {
	if len(out) == 0 {
		return
	}
	links := pl.links[:0]
	for _, l := range pl.links {
		heir, ok := out[l.linkTo]
		switch {
		case !ok:
		case heir != nil:
			l.linkTo = heir
		default:
			first := l.linkTo
			out[first] = l
			l.linkTo = nil
			l.chunks, l.size = first.chunks, first.size
			pl.files = append(pl.files, l)
			pl.bytes += l.size
			continue
		}
		links = append(links, l)
	}
	clear(pl.links[len(links):])
	pl.links = links
}

// predictBlocked finds, in a dry run, the directories a restore could
// not create: where the target holds something else that
// Options.Overwrite keeps, or where their parent in the target may not
// be written to (permissions, a read-only mount, an immutable
// directory). Directories below them are noted with a nil error, as
// dirMaker does. It also returns the directories the target holds that
// may not be written to, with why: where the restore would fail each
// entry it writes in them (unwritableIn).
func (r *restorer) predictBlocked(pl *plan) (blocked, unwritable map[string]error) {
	blocked = map[string]error{}
	if r.t == nil || r.t.fresh {
		return blocked, nil
	}
	for _, d := range pl.dirs {
		parent, _ := split(d.path)
		if _, ok := blocked[parent]; ok && parent != "" {
			blocked[d.path] = nil
			continue
		}
		st, err := r.t.lstat(d.path)
		switch {
		case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
			if werr := r.t.withDir(d.path, func(dfd int) error {
				return unix.Faccessat(dfd, ".", unix.W_OK, unix.AT_EACCESS)
			}); werr != nil {
				if unwritable == nil {
					unwritable = map[string]error{}
				}
				unwritable[d.path] = werr
			}
		case err == nil:
			if r.opts.Overwrite.keepsInTheWay(st, d.node) {
				blocked[d.path] = &keptInTheWayError{mode: st.Mode}
			} else if rerr := r.t.removable(parent, d.path, st); rerr != nil {
				blocked[d.path] = rerr
			}
		case errors.Is(err, unix.ENOENT):
			// Created in its parent, if that is a directory the target
			// holds already (one the restore makes is writable).
			pst, perr := r.t.lstat(parent)
			if perr != nil || pst.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue
			}
			if werr := r.t.withDir(parent, func(dfd int) error {
				return unix.Faccessat(dfd, ".", unix.W_OK, unix.AT_EACCESS)
			}); werr != nil {
				blocked[d.path] = werr
			}
		}
	}
	return blocked, unwritable
}

// unwritableIn returns, in a dry run, why the restore could not write
// entry p, if its directory is one predictBlocked found the target
// holds and may not be written to.
func (r *restorer) unwritableIn(unwritable map[string]error, p string) error {
	if len(unwritable) == 0 {
		return nil
	}
	dir, _ := split(p)
	err, ok := unwritable[dir]
	if !ok {
		return nil
	}
	return r.entryError(fmt.Errorf("its directory /%s may not be written to: %w", dir, err))
}

// unreplaceable returns, in a dry run, why the restore could not replace
// (or, Options.Delete, remove) what the target holds at p: a file marked
// immutable or append-only.
// held says the target holds an entry there (known already for files:
// fileState.held), or may (lstat finds out).
func (r *restorer) unreplaceable(p string, held bool) error {
	if r.t == nil || r.t.fresh || !held {
		return nil
	}
	st, err := r.t.lstat(p)
	if err != nil {
		return nil
	}
	if err := r.t.fixed(p, st); err != nil {
		return fmt.Errorf("what the target holds here is a file marked immutable or append-only, which cannot be removed or replaced: %w; clear the flag (chattr -i -a) and run the restore again, or restore into another directory", err)
	}
	return nil
}

// The inode flags (FS_IOC_GETFLAGS) that keep an entry from being
// removed: chattr +i and +a.
const (
	fsImmutableFL = 0x10
	fsAppendFL    = 0x20
)

// removable reports, in a dry run, why the entry st at p, in directory
// parent, could not be removed to make room for the snapshot's: its
// directory is not writable (permissions, a read-only mount), or it is a
// file marked immutable or append-only. (Only regular files are opened
// to read their flags: opening a device can have effects.)
func (t *targetDir) removable(parent, p string, st unix.Stat_t) error {
	if err := t.withDir(parent, func(dfd int) error {
		return unix.Faccessat(dfd, ".", unix.W_OK, unix.AT_EACCESS)
	}); err != nil {
		return err
	}
	return t.fixed(p, st)
}

// fixed reports unix.EPERM, in a dry run, where the entry st at p is a
// file marked immutable or append-only, which cannot be removed or
// replaced.
func (t *targetDir) fixed(p string, st unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	dir, base := split(p)
	return t.withDir(dir, func(dfd int) error {
		fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil // not known: the restore will tell
		}
		defer unix.Close(fd)
		flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
		if err == nil && flags&(fsImmutableFL|fsAppendFL) != 0 {
			return unix.EPERM
		}
		return nil
	})
}
