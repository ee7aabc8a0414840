package main

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// baseMemoryLimit is the soft heap limit for backup and restore beyond
// what the index needs. Without one, Go lets the heap grow to twice the
// live data between collections; the pipelines keep ~100 MiB live (packs
// in flight, chunk buffers), so the limit trades a little GC time for a
// peak RSS below restic's.
const baseMemoryLimit = 160 << 20

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
