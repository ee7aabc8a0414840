package agent

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	niceLevel = 10
	// ioprioBestEffortLow is IOPRIO_CLASS_BE (2) << IOPRIO_CLASS_SHIFT (13)
	// at level 7, the lowest: the agent's reads yield to everyone else's
	// without the starvation of the idle class on a busy disk.
	ioprioBestEffortLow = 2<<13 | 7
	ioprioWhoProcess    = 1
)

// LowerPriority lowers the CPU (nice 10) and IO (best-effort, lowest
// level) priority of this process. On Linux both are per thread, so it
// walks every thread of the process; threads created later inherit them
// from their creator, and so do hooks. Failures are logged, not returned:
// an agent that cannot lower its priority still backs up.
func LowerPriority(log *slog.Logger) {
	var cpuErr, ioErr error
	for range 2 { // again, for threads started during the first pass
		tids, err := os.ReadDir("/proc/self/task")
		if err != nil {
			tids = nil
			cpuErr, ioErr = err, err
		}
		for _, e := range tids {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if err := raiseNice(tid); err != nil {
				cpuErr = fmt.Errorf("setpriority thread %d: %w", tid, err)
			}
			if _, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprioBestEffortLow); errno != 0 {
				ioErr = fmt.Errorf("ioprio_set thread %d: %w", tid, errno)
			}
		}
	}
	if cpuErr != nil {
		log.Warn("could not lower the CPU priority (--nice)", "err", cpuErr)
	}
	if ioErr != nil {
		log.Warn("could not lower the IO priority (--nice)", "err", ioErr)
	}
	if cpuErr == nil || ioErr == nil {
		log.Info("lowered priority", "nice", cpuErr == nil, "io_best_effort_low", ioErr == nil)
	}
}

// raiseNice sets a thread's nice value to niceLevel unless it is nicer
// already (lowering it again would need privileges).
func raiseNice(tid int) error {
	// getpriority(2) returns 20-nice from the raw syscall.
	cur, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err == nil && 20-cur >= niceLevel {
		return nil
	}
	return syscall.Setpriority(syscall.PRIO_PROCESS, tid, niceLevel)
}
