package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// extraneous calls fn with each entry of the target that the snapshot
// does not hold, at or below one of the paths it backed up (paths), and
// that in selects — what Options.Delete removes —, a directory before
// anything below it (fn is not called for those: the directory goes with
// them). The directories above the backed-up paths are in a snapshot only
// as the way to them: it says nothing of what else they held, so nothing
// beside those paths is extraneous. It descends only into directories
// the plan holds and that are directories in the target, and never into
// one whose listing in the snapshot could not be read (failures): what
// the snapshot holds there is unknown either. Listings of the target
// that cannot be read are reported by fail and skipped.
func (r *restorer) extraneous(ctx context.Context, pl *plan, paths []string, failures []Failure, in *includer, fn func(p string, dir bool), fail func(p string, err error)) error {
	var scope []string // snapshot-relative; "" is everything
	for _, p := range paths {
		scope = append(scope, strings.Trim(path.Clean("/"+p), "/"))
	}
	inScope := func(p string) bool {
		for _, s := range scope {
			if s == "" || p == s || (strings.HasPrefix(p, s) && p[len(s)] == '/') {
				return true
			}
		}
		return false
	}
	keep := make(map[string]bool, len(pl.dirs)+len(pl.files)+len(pl.links)+len(pl.others)+len(failures))
	descend := make(map[string]bool, len(pl.dirs)+1)
	descend[""] = true
	for _, d := range pl.dirs {
		keep[d.path] = true
		descend[d.path] = true
	}
	for _, f := range pl.files {
		keep[f.path] = true
	}
	for _, f := range pl.links {
		keep[f.path] = true
	}
	for _, o := range pl.others {
		keep[o.path] = true
	}
	for _, f := range failures {
		keep[f.Path] = true
		delete(descend, f.Path)
	}
	kids := map[string][]string{} // kept names, by directory
	for p := range keep {
		d, base := split(p)
		kids[d] = append(kids[d], base)
	}
	type devIno struct{ dev, ino uint64 }
	var walk func(d string)
	walk = func(d string) {
		if ctx.Err() != nil {
			return
		}
		names, err := r.t.names(d)
		if err != nil {
			fail(d, fmt.Errorf("list the target's directory to find what the snapshot does not hold: %w", err))
			return
		}
		sort.Strings(names)
		// A kept name the listing lacks reaches an entry listed under
		// another name (a case-insensitive or normalising filesystem:
		// "Docs" finds "docs"). That entry is the kept one, not extra.
		listed := make(map[string]bool, len(names))
		for _, name := range names {
			listed[name] = true
		}
		aliased := map[devIno]bool{}
		for _, k := range kids[d] {
			if listed[k] {
				continue
			}
			p := k
			if d != "" {
				p = d + "/" + k
			}
			if st, err := r.t.lstat(p); err == nil {
				aliased[devIno{st.Dev, st.Ino}] = true
				if st.Mode&unix.S_IFMT == unix.S_IFDIR && descend[p] {
					walk(p)
				}
			}
		}
		for _, name := range names {
			if ctx.Err() != nil {
				return // interrupted: remove nothing more
			}
			p := name
			if d != "" {
				p = d + "/" + name
			}
			st, err := r.t.lstat(p)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				fail(p, err)
				continue
			}
			dir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			switch {
			case aliased[devIno{st.Dev, st.Ino}]:
			case keep[p]:
				if dir && descend[p] {
					walk(p)
				}
			case inScope(p) && in.match(p, dir):
				fn(p, dir)
			}
		}
	}
	walk("")
	return ctx.Err()
}

// deleteExtraneous removes what extraneous finds, recording each removal
// in r.changes.
func (r *restorer) deleteExtraneous(ctx context.Context, pl *plan, paths []string, failures []Failure, in *includer) error {
	return r.extraneous(ctx, pl, paths, failures, in, func(p string, dir bool) {
		if err := r.t.clear(p); err != nil {
			r.fail(p, fmt.Errorf("remove it (--delete: the snapshot does not hold it): %w", err))
			return
		}
		r.log.Debug("removed what the snapshot does not hold", "path", p, "dir", dir)
		r.changes = append(r.changes, Change{Path: p, Action: ActionDelete, Dir: dir})
	}, r.fail)
}

// names lists directory p of the target, never following a symlink.
func (t *targetDir) names(p string) ([]string, error) {
	var names []string
	err := t.withDir(p, func(dfd int) error {
		// A descriptor of its own: reading a directory moves its offset,
		// and the cached one is shared.
		fd, err := unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), p)
		defer f.Close()
		names, err = f.Readdirnames(-1)
		return err
	})
	return names, err
}
