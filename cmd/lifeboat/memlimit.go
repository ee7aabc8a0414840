package main

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// baseMemoryLimit is the soft heap limit for restores beyond what the
// index needs. Without one, Go lets the heap grow to twice the live data
// between collections. A restore keeps about 50 MiB live (measured with
// 3 and 4 Ps; its range buffers live outside the heap, see
// restore/buffers.go), so a fixed limit trades a little GC time for a
// peak RSS below restic's.
const baseMemoryLimit = 160 << 20

// backupGCPercent is GOGC for backups. A backup's live heap grows with
// the number of cores: each reader and sealer holds chunk and payload
// buffers of up to the maximum chunk size, beside the pack buffers. It
// measured 131-148 MiB with GOMAXPROCS=2, 206-224 with 4 and 379 with 8,
// so a fixed soft limit either wastes memory on small machines or sits
// below the live heap on large ones, where the collector then runs
// back to back: with GOMAXPROCS=4 under the former 160 MiB limit a
// backup of the bench dataset ran 218-313 collections and took 5.1-5.9 s,
// against 19-21 collections and 4.2-5.2 s with this setting (same 2-core
// VM, four runs each, docs/benchmarks.md). Collecting when the heap has
// grown 10 % past what the last collection kept bounds the peak to about
// 1.1 times the live heap on any machine, at a few dozen collections per
// backup: the buffers are reused and hold no pointers, so each costs
// about a millisecond.
const backupGCPercent = 10

// setBackupGC sets GOGC for a backup unless the operator set GOGC or
// GOMEMLIMIT in the environment.
func setBackupGC() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(backupGCPercent)
}

// setMemoryLimit sets a soft memory limit sized to the repository: the
// base plus room for the in-memory index (about four times the sealed,
// compressed index files), so large repositories are not starved into
// constant collection. GOMEMLIMIT in the environment takes precedence.
func setMemoryLimit(ctx context.Context, st chunkstore.Store) {
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
	debug.SetMemoryLimit(baseMemoryLimit + 4*indexBytes)
}
