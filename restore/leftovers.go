package restore

import (
	"errors"
	"os"
	"regexp"
	"strconv"

	"golang.org/x/sys/unix"
)

// leftoverName matches the temporary names a restore gives what it puts
// in place of the target's entries: tmpName's ".lifeboat-restore-PID-N"
// and replaceDir's "-old" directory moved aside. The first group is the
// PID of the restore that made it.
var leftoverName = regexp.MustCompile(`^\.lifeboat-restore-([1-9][0-9]{0,9})-[1-9][0-9]*(-old)?$`)

// removeLeftovers removes, from the target's directories the plan holds
// (dirs, and the target itself), what restores killed before they could
// finish (kill -9, a crash, a power cut) left under their temporary
// names: partly written files, which can be as large as the largest file
// restored, and directories a file was taking the place of. A name is a
// leftover when the process whose PID it carries is gone. Ours counts as
// gone too: removeLeftovers runs before this restore hands out any name
// (findIdentical), so a name with our PID is an earlier process's (PID 1
// in every container, say). Another restore still running into the same
// target, on this machine, keeps its files; one running on another
// machine into a shared filesystem is not seen and loses them, and
// reports those files as failed.
//
// It returns how many entries it removed. One it cannot remove is
// logged as a warning, naming it and why: it is not the snapshot's, so
// the restore does not fail for it.
func (r *restorer) removeLeftovers(dirs []*entry) int64 {
	var removed int64
	sweep := func(d string) {
		names, err := r.t.names(d)
		if err != nil {
			return // not a directory of the target (yet): nothing left there
		}
		for _, name := range names {
			m := leftoverName.FindStringSubmatch(name)
			if m == nil {
				continue
			}
			pid, err := strconv.Atoi(m[1])
			if err != nil || (pid != os.Getpid() && processRuns(pid)) {
				continue
			}
			p := name
			if d != "" {
				p = d + "/" + name
			}
			if err := r.t.clear(p); err != nil {
				r.log.Warn("could not remove a temporary file or directory a killed restore left in the target; remove it by hand", "path", p, "err", err)
				continue
			}
			r.log.Debug("removed what a killed restore left", "path", p, "pid", pid)
			removed++
		}
	}
	sweep("")
	for _, d := range dirs {
		sweep(d.path)
	}
	return removed
}

// processRuns reports whether a process with the given PID exists in
// our PID namespace (one of another user's answers EPERM).
func processRuns(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
