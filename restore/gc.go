package restore

import (
	"os"
	"runtime/debug"
	"sync"
)

// planGCPercent is the collector's target (GOGC) while a restore plans,
// up to the search for files already identical in a target that was not
// empty (it reads them back with buffers of its own).
//
// Planning builds the whole plan — every file, chunk reference and
// directory listing of the snapshot — from a heap that starts at a few
// MiB, so at the default target of 100 the collector ran about every
// 20 ms: six times while the bench dataset (16,832 files) was planned,
// marking the growing plan again each time. At 400 it ran twice, and
// planning took 114 ms instead of 126 (medians of five restores). Once
// the target is lowered again the collector runs once or twice as the
// downloads start, while the cores are not yet busy. The heap planning
// leaves (about 35 MiB) is well under what the downloads use later, so
// the peak memory of a restore does not grow. A target set with the
// GOGC environment variable is left as it is.
const planGCPercent = 400

// raisePlanGC raises the target to planGCPercent for a restore's
// planning, unless GOGC is set in the environment: a target the user
// chose is kept, as GOMEMLIMIT is by the CLI's memory limit.
func raisePlanGC() (lower func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	return raiseGC(planGCPercent)
}

// gcRaise counts the restores planning at once, so the target is set
// by the first and put back by the last.
var gcRaise struct {
	sync.Mutex
	n    int
	prev int
}

// raiseGC sets the collector's target to at least pct until the returned
// function is called. A target that is higher already, or a collector
// turned off (GOGC=off), is left alone.
func raiseGC(pct int) (lower func()) {
	gcRaise.Lock()
	defer gcRaise.Unlock()
	if gcRaise.n == 0 {
		gcRaise.prev = debug.SetGCPercent(pct)
		if gcRaise.prev < 0 || gcRaise.prev > pct {
			debug.SetGCPercent(gcRaise.prev)
		}
	}
	gcRaise.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			gcRaise.Lock()
			defer gcRaise.Unlock()
			gcRaise.n--
			if gcRaise.n == 0 {
				debug.SetGCPercent(gcRaise.prev)
			}
		})
	}
}
