//go:build !linux

package agent

import (
	"log/slog"
	"syscall"
)

// LowerPriority lowers the CPU priority of this process (nice 10); IO
// priority is left alone outside Linux. Failures are logged.
func LowerPriority(log *slog.Logger) {
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, 10); err != nil {
		log.Warn("could not lower the CPU priority (--nice)", "err", err)
	}
}
