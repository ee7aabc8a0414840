package restore

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/internal/sysinfo"
)

// leftoverPrefix starts every temporary name a restore gives what it
// puts in place of the target's entries.
const leftoverPrefix = ".lifeboat-restore-"

// leftoverName matches those names: tmpName's ".lifeboat-restore-PID-N"
// and replaceDir's "-old" directory moved aside. The first group is the
// PID of the restore that made it.
var leftoverName = regexp.MustCompile(`^\.lifeboat-restore-([1-9][0-9]{0,9})-[1-9][0-9]*(-old)?$`)

// leftovers finds, in the target's directories the plan holds (and the
// target itself), what restores killed before they could finish (kill
// -9, a crash, a power cut) left under their temporary names: partly
// written files, which can be as large as the largest file restored, and
// directories a file was taking the place of. It returns their paths.
//
// A name is not a leftover when the snapshot holds an entry by that name
// (a backup of a target that held leftovers, say), or while the process
// whose PID it carries runs. Ours counts as gone: leftovers runs before
// this restore hands out any name (findIdentical), so a name with our PID
// is an earlier process's (PID 1 in every container, say). The PID is
// only a second guard: restores also lock the target (targetDir.lock), so
// that one in another PID namespace is not taken for gone.
func (r *restorer) leftovers(pl *plan) []string {
	var found []string
	look := func(d string) {
		names, err := r.t.names(d)
		if err != nil {
			return // not a directory of the target (yet): nothing left there
		}
		for _, name := range names {
			if !strings.HasPrefix(name, leftoverPrefix) {
				continue
			}
			m := leftoverName.FindStringSubmatch(name)
			if m == nil {
				continue
			}
			pid, err := strconv.Atoi(m[1])
			if err != nil || (pid != os.Getpid() && sysinfo.ProcessExists(pid)) {
				continue
			}
			p := name
			if d != "" {
				p = d + "/" + name
			}
			found = append(found, p)
		}
	}
	look("")
	for _, d := range pl.dirs {
		look(d.path)
	}
	if len(found) == 0 {
		return nil
	}
	held := make(map[string]bool, len(found))
	for _, p := range found {
		held[p] = false
	}
	mark := func(p string) {
		if _, ok := held[p]; ok {
			held[p] = true
		}
	}
	for _, d := range pl.dirs {
		mark(d.path)
	}
	for _, f := range pl.files {
		mark(f.path)
	}
	for _, f := range pl.links {
		mark(f.path)
	}
	for _, o := range pl.others {
		mark(o.path)
	}
	out := found[:0]
	for _, p := range found {
		if !held[p] {
			out = append(out, p)
		}
	}
	return out
}

// removeLeftovers removes what leftovers finds, unless another restore
// is running into the target (see targetDir.lock), and returns how many it
// removed. A directory with a file system mounted in it is left, as
// --delete leaves one; so is, without --delete, a directory that holds
// entries, and what cannot be removed: each is recorded
// in r.leftoversKept, with why. They are not the snapshot's, so the
// restore does not fail for them.
func (r *restorer) removeLeftovers(pl *plan, lock *targetLock) int64 {
	if !lock.exclusive() {
		r.log.Debug("another restore is running into the target: what killed restores left in it is left for a later one")
		return 0
	}
	defer lock.share()
	return r.sweepLeftovers(pl, false)
}

// countLeftovers is removeLeftovers for a dry run: it removes nothing,
// and counts what it would remove.
func (r *restorer) countLeftovers(pl *plan) int64 { return r.sweepLeftovers(pl, true) }

// sweepLeftovers removes (or with dry, counts) what leftovers finds, for
// removeLeftovers and countLeftovers.
func (r *restorer) sweepLeftovers(pl *plan, dry bool) int64 {
	var removed int64
	for _, p := range r.leftovers(pl) {
		if st, err := r.t.lstat(p); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			guard, err := r.dirGuard()
			if err != nil {
				r.keepLeftover(p, err)
				continue
			}
			if why := guard.why(p); why != "" {
				r.keepLeftover(p, errors.New(why))
				continue
			}
			if dry && !r.opts.Delete {
				if names, err := r.t.names(p); err == nil && len(names) > 0 {
					r.keepLeftover(p, leftoverWithEntries)
					continue
				}
			}
		}
		if dry {
			removed++
			continue
		}
		// A directory under a temporary name is one the target held
		// where the snapshot has a file. Without Delete the restore
		// that moved it there would have removed it only while empty
		// (replaceDir): entries it holds are the user's, which only
		// Delete removes (clear).
		if err := r.t.clear(p); err != nil {
			if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
				r.keepLeftover(p, leftoverWithEntries)
			} else {
				r.keepLeftover(p, fmt.Errorf("could not remove it: %w; remove it by hand once no restore is writing into the target", err))
			}
			continue
		}
		r.log.Debug("removed what a killed restore left", "path", p)
		removed++
	}
	return removed
}

// leftoverWithEntries is why a leftover directory that holds entries is
// not removed without Options.Delete.
var leftoverWithEntries = errors.New("it holds entries: it is a directory the target held where the snapshot has a file, which a restore moved to this name to put the file in its place, then was killed or could not move it back; without --delete what it holds is left: look through it and move it back or away, or restore with --delete to remove it with all it holds")

// keepLeftover records leftover p as not removed, because of err; it is
// reported once, here (--delete leaves every such name alone).
//
// One named with this process's PID (an earlier process's: 1 in every
// container) keeps its number from nextTmp, as a name the snapshot holds
// does (plan.takeTmp): a file written under it, or a directory moved
// aside to it, would fail, and the failed file's cleanup would remove
// the leftover with all it holds. The sweep runs before any number is
// handed out.
func (r *restorer) keepLeftover(p string, err error) {
	r.leftoversKept = append(r.leftoversKept, Failure{Path: p, Err: err, Removal: true})
	_, name := split(p)
	r.tmpsTaken = takeTmpName(r.tmpsTaken, name)
}

// targetLock is a restore's flock(2) on its target directory: shared
// while it runs, exclusive while it removes leftovers. A restore that
// cannot have it exclusively knows another is running into the same
// target, whatever its PID namespace, and leaves the temporary files
// alone. Where the filesystem has no such locks, restores go without,
// and only the PID guards another's files.
type targetLock struct {
	fd  int // -1: no lock
	log func(msg string, args ...any)
}

// lock takes the shared lock on the target directory, through a
// duplicate of the descriptor the restore opened it with (the lock is
// on what the restore writes into, whatever its path names by now),
// waiting while another restore holds it exclusively (for as long as its
// removals take).
func (t *targetDir) lock(log func(msg string, args ...any)) *targetLock {
	l := &targetLock{fd: -1, log: log}
	fd := -1
	err := t.withDir("", func(dfd int) (err error) {
		fd, err = unix.FcntlInt(uintptr(dfd), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	if err != nil {
		log("cannot lock the restore target", "err", err)
		return l
	}
	if err := flock(fd, unix.LOCK_SH); err != nil {
		log("cannot lock the restore target", "err", err)
		unix.Close(fd)
		return l
	}
	l.fd = fd
	return l
}

// exclusive tries to turn the shared lock into the exclusive one without
// waiting. It reports false when another restore holds the target; the
// shared lock is then taken again (Linux drops it while trying). Without
// locks it reports true.
func (l *targetLock) exclusive() bool {
	if l == nil || l.fd < 0 {
		return true
	}
	err := flock(l.fd, unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return true
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		l.log("cannot lock the restore target", "err", err)
		return true
	}
	l.share()
	return false
}

// share goes back to the shared lock.
func (l *targetLock) share() {
	if l != nil && l.fd >= 0 {
		if err := flock(l.fd, unix.LOCK_SH); err != nil {
			l.log("cannot lock the restore target", "err", err)
		}
	}
}

func (l *targetLock) release() {
	if l != nil && l.fd >= 0 {
		unix.Close(l.fd)
		l.fd = -1
	}
}

// flock is flock(2), retried when a signal interrupts a wait.
func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
