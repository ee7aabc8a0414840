package main

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// baseMemoryLimit is the floor of the soft memory limit for backup and
// restore, beyond what the index needs. Without a limit, Go lets the heap
// grow to twice the live data between collections; the pipelines keep
// most of their memory live (packs in flight, chunk and range buffers),
// so the limit trades a little GC time for a peak RSS below restic's.
const baseMemoryLimit = 160 << 20

// limitHeadroomPercent is how far above the live heap the limit is kept
// when the live heap outgrows the floor.
const limitHeadroomPercent = 20

// setMemoryLimit sets a soft memory limit sized to the repository and to
// the live heap: the larger of a floor (the base plus room for the
// in-memory index, about four times the sealed, compressed index files)
// and the heap the last collection kept plus a fifth. The limit is
// reconsidered after every collection.
//
// A fixed limit is not enough: a backup's live heap grows with the
// number of cores, since each reader and sealer holds chunk and payload
// buffers of up to the maximum chunk size. It measured 131-148 MiB with
// GOMAXPROCS=2, 206-224 with 4 and 379 with 8, and with the limit fixed at
// the floor the collector ran back to back from 4 cores on: 218-325
// collections in one backup of the bench dataset, against 15-17 with the
// limit following the live heap (docs/benchmarks.md). With a tenth of
// headroom it was still 56-61: the limit counts all of the runtime's
// memory, not only the heap. A restore keeps about 50 MiB live, well
// under the floor. GOMEMLIMIT in the environment takes precedence.
func setMemoryLimit(ctx context.Context, st chunkstore.Store) {
	setMemoryLimitFrom(ctx, st, baseMemoryLimit)
}

// setMemoryLimitFrom is setMemoryLimit with another base.
func setMemoryLimitFrom(ctx context.Context, st chunkstore.Store, base int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	var indexBytes int64
	err := st.List(ctx, chunkstore.IndexPrefix, func(oi chunkstore.ObjectInfo) error {
		indexBytes += oi.Size
		return nil
	})
	if err != nil {
		return // the command itself will report the storage problem
	}
	followLiveHeap(base + 4*indexBytes)
}

// followLiveHeap sets the soft memory limit to floor, and after every
// garbage collection to the larger of floor and the live heap plus
// limitHeadroomPercent. It returns a function that stops following and
// restores the limit that was set before.
func followLiveHeap(floor int64) (stop func()) {
	prev := debug.SetMemoryLimit(floor)
	w := &gcWatch{floor: floor}
	// The sentinel holds a pointer, so it is never batched with other
	// tiny objects (whose finalizers might never run).
	runtime.SetFinalizer(&gcSentinel{w: w}, (*gcSentinel).collected)
	return func() {
		w.stopped.Store(true)
		debug.SetMemoryLimit(prev)
	}
}

// gcWatch runs after each garbage collection: an unreachable object's
// finalizer runs after the cycle that found it, and re-arming the
// finalizer on the same object makes it run again after the next one.
type gcWatch struct {
	floor   int64
	stopped atomic.Bool
	sample  [1]metrics.Sample
}

type gcSentinel struct{ w *gcWatch }

func (s *gcSentinel) collected() {
	w := s.w
	if w.stopped.Load() {
		return
	}
	debug.SetMemoryLimit(memoryLimitFor(w.floor, w.liveHeap()))
	runtime.SetFinalizer(s, (*gcSentinel).collected)
}

// liveHeap is the heap the last collection found reachable.
func (w *gcWatch) liveHeap() int64 {
	w.sample[0].Name = "/gc/heap/live:bytes"
	metrics.Read(w.sample[:])
	if w.sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(w.sample[0].Value.Uint64())
}

// memoryLimitFor is the limit for a live heap of live bytes.
func memoryLimitFor(floor, live int64) int64 {
	return max(floor, live+live*limitHeadroomPercent/100)
}
