package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/lifeboat-backup/lifeboat/internal/sysinfo"
	"golang.org/x/sys/unix"
)

// extraneous calls fn with each entry of the target that the snapshot
// does not hold, at or below one of the paths it backed up (paths), and
// that in selects — what Options.Delete removes —, a directory before
// anything below it (fn is not called for those: the directory goes with
// them). The directories above the backed-up paths are in a snapshot only
// as the way to them: it says nothing of what else they held, so nothing
// beside those paths is extraneous. It descends only into directories
// the plan holds and that are directories in the target (and into others
// an include pattern may select entries of), and never into
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
	// holdsStaying reports whether an entry below directory p of the
	// target must stay: one an exclude pattern keeps, or one named like
	// a restore's temporary file (a running restore's, or a killed one's
	// whose directory the snapshot lacks). Then p cannot go whole, only
	// what the patterns select in it. A listing that cannot be read
	// counts as holding one (walk then reports it). Every directory
	// --delete removes whole is walked so, even without patterns: its
	// removal reads all of it anyway.
	var holdsStaying func(p string) bool
	holdsStaying = func(p string) bool {
		names, err := r.t.names(p)
		if err != nil {
			return true
		}
		for _, name := range names {
			if leftoverName.MatchString(name) {
				return true
			}
			q := p + "/" + name
			st, err := r.t.lstat(q)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return true
			}
			dir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			if (in.excl != nil && in.excl.Excluded("/"+q, dir)) || (dir && holdsStaying(q)) {
				return true
			}
		}
		return false
	}
	// enter says whether to look in directory p, which the snapshot
	// holds, for what it lacks. A mount point of the target that the
	// snapshot holds empty is not entered: a backup with -x saves every
	// mount point below its paths so, having not looked in it, and its
	// emptiness in the snapshot says nothing of what that file system
	// holds. Entered, it was emptied (/home, mounted and backed up on
	// its own, by a restore of / with --delete).
	enter := func(p string) bool {
		if !descend[p] {
			return false
		}
		if len(kids[p]) == 0 && r.guard != nil && r.guard.mountedAt(p) {
			r.log.Info("not looked in (--delete): a file system is mounted there, and the snapshot holds the directory empty, as a backup with -x saves a mount point", "path", p)
			return false
		}
		return true
	}
	type devIno struct{ dev, ino uint64 }
	var walk func(d string)
	walk = func(d string) {
		if ctx.Err() != nil {
			return
		}
		names, err := r.t.names(d)
		if err != nil {
			fail(d, fmt.Errorf("could not list it to find what the snapshot does not hold (--delete): %w", err))
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
				if st.Mode&unix.S_IFMT == unix.S_IFDIR && enter(p) {
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
			if !keep[p] && !inScope(p) {
				continue // beside the backed-up paths: not even looked at
			}
			if !keep[p] && leftoverName.MatchString(name) {
				// A restore's temporary name: a killed one's is the
				// sweep's (removeLeftovers), reported as such; a running
				// one's (another restore into this target) must stay.
				// The sweep looks only in the directories the plan
				// holds: in one the snapshot lacks (d is not kept), what
				// --delete would otherwise remove is named as left, so
				// that a killed restore's is not left unsaid.
				if d != "" && !keep[d] && inScope(p) {
					if st, err := r.t.lstat(p); err == nil && in.match(p, st.Mode&unix.S_IFMT == unix.S_IFDIR) {
						r.spared = append(r.spared, Failure{Path: p, Err: errors.New("it is named like a restore's temporary file: another restore's into this target, or a killed one's in a directory the snapshot lacks (remove it if no restore is running into the target)")})
					}
				}
				continue
			}
			st, err := r.t.lstat(p)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				fail(p, fmt.Errorf("could not examine it (--delete): %w", err))
				continue
			}
			dir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			switch {
			case aliased[devIno{st.Dev, st.Ino}]:
			case keep[p]:
				if dir && enter(p) {
					walk(p)
				}
			case inScope(p) && in.match(p, dir):
				if why := r.guard.why(p); why != "" {
					r.spared = append(r.spared, Failure{Path: p, Err: errors.New(why)})
					continue
				}
				if dir && holdsStaying(p) {
					// Not whole: "--exclude '*.pid'" keeps the .pid
					// files in it, and so the directory; a restore's
					// temporary file in it stays too.
					walk(p)
					continue
				}
				fn(p, dir)
			case dir && inScope(p) && in.mayHoldMatches(p):
				// A directory the snapshot lacks, not selected itself,
				// may hold what a pattern selects (s/*/a.conf in s/new).
				walk(p)
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
		if err := r.t.clearAll(p); err != nil {
			r.failRemoval(p, r.entryError(fmt.Errorf("could not remove it (--delete: the snapshot does not hold it): %w", err)))
			return
		}
		r.log.Debug("removed what the snapshot does not hold", "path", p, "dir", dir)
		r.changes = append(r.changes, Change{Path: p, Action: ActionDelete, Dir: dir})
	}, r.failRemoval)
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

// deleteGuard knows what Options.Delete must not remove although the
// snapshot lacks it: a directory with a file system mounted at or below
// it (removing would empty that file system), and the paths of
// Options.Protect (the repository being read, say), what they hold and
// the directories above them.
type deleteGuard struct {
	mounts  []string // below the target, target-relative
	protect []string // below the target, target-relative
}

// newDeleteGuard reads the mount points of the process's mount
// namespace from mountinfo (/proc/self/mountinfo) and keeps those below
// target, and the protected paths below it.
func newDeleteGuard(target string, protect []string, mountinfo string) (*deleteGuard, error) {
	base := canonical(target)
	rel := func(p string) (string, bool) {
		if base == "/" {
			return strings.TrimPrefix(p, "/"), p != "/"
		}
		r, ok := strings.CutPrefix(p, base+"/")
		return r, ok && r != ""
	}
	g := &deleteGuard{}
	for _, p := range protect {
		if r, ok := rel(canonical(p)); ok {
			g.protect = append(g.protect, r)
		}
	}
	mounts, err := sysinfo.MountPoints(mountinfo)
	if err != nil {
		return nil, fmt.Errorf("read the mount table %s, which --delete needs so as not to remove a mounted file system's contents (restore without --delete where /proc is not mounted): %w", mountinfo, err)
	}
	for _, m := range mounts {
		if r, ok := rel(m); ok {
			g.mounts = append(g.mounts, r)
		}
	}
	return g, nil
}

// canonical is p absolute and cleaned, with symlinks resolved where it
// exists.
func canonical(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		return real
	}
	return filepath.Clean(p)
}

// mountedAt reports whether a file system is mounted at p
// (target-relative).
func (g *deleteGuard) mountedAt(p string) bool { return slices.Contains(g.mounts, p) }

// why says why p (target-relative) must stay, or "" if it may go.
func (g *deleteGuard) why(p string) string {
	holds := func(q string) bool { return q == p || strings.HasPrefix(q, p+"/") }
	for _, m := range g.mounts {
		if holds(m) {
			return fmt.Sprintf("a file system is mounted at /%s; unmount it first if it should go", m)
		}
	}
	for _, q := range g.protect {
		if holds(q) || strings.HasPrefix(p, q+"/") {
			return fmt.Sprintf("it is or holds /%s, which this restore uses (the repository, a key or the cache)", q)
		}
	}
	return ""
}
