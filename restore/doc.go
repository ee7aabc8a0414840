// Package restore reads a snapshot back into a directory.
//
// # Algorithm
//
// Restore first walks the snapshot's trees (filtered by include
// patterns) and builds a plan: directories, files with each chunk's
// location, links and special files. Directory listings are loaded and
// decoded ahead of the walk by helpers (one more than the cores), in the
// order the walk will need them, and directories are created as the
// walk finds them, on a goroutine of their own; the garbage collector's
// target is raised while the plan is built (restore/gc.go). If the
// target is not empty, files that already hold the snapshot's content
// are found by recomputing the keyed ID of each chunk in place and are
// skipped — so an interrupted restore resumes where it stopped.
//
// The chunks still needed are grouped by pack and neighbouring blobs are
// merged into ranges (up to 32 MiB, so usually a whole pack; bridging
// gaps below 256 KiB), so each region of a pack is downloaded once with a
// ranged GET however many files share its blobs; several ranges are in
// flight at once. Each range is streamed: its blobs are read one at a
// time into the start of a reused 8 MiB buffer (the buffers live in one
// mapping that asks for transparent huge pages, so filling them does not
// take thousands of page faults), and each blob is handled while its
// bytes are still in the CPU's cache. It is authenticated (AEAD) and
// decrypted in place, decompressed if it was stored compressed, and its
// keyed ID recomputed before any byte is written; then it is written to
// every file offset that needs it. A stream that cannot be opened or
// breaks off is not retried as such: the rest of its range is read
// whole, at most 8 MiB per request, with retries, and failing that blob
// by blob. Files of one chunk (most files) are created, written, given
// their metadata and closed in one step when their blob arrives; larger
// files are created up front at their final size, so chunks land in any
// order and all-zero chunks are simply not written, leaving holes.
//
// Files of 1 MiB and more are written with direct I/O (O_DIRECT) where
// the target's filesystem allows it: a blob bound for such a file is
// decoded at an address congruent to its file offset modulo 4 KiB, so the
// page-aligned interior of each chunk goes from the worker's buffer
// straight to the disk, and only its unaligned head and tail (under 4 KiB
// each) pass through the page cache (as does the whole blob for another
// file that shares it at another alignment). The span of each direct
// write is allocated (fallocate) just before it, so that the writers of
// one file share ext4's inode lock instead of taking it in turn, and
// all-zero chunks stay holes. Ranges whose data goes mostly to such
// files wait on the disk; they are interleaved with the others,
// which keep the cores busy meanwhile. A filesystem that refuses O_DIRECT
// turns it off for the rest of the restore.
//
// Writes to the other large files (of more than one chunk, or of one of
// 256 KiB or more), and to all of them when direct I/O is off, go
// through a write-behind window:
// write-back of each chunk is started as soon as it is written
// (sync_file_range), and once 64 MiB of later writes have followed, the
// restore waits for it and drops its pages from the page cache
// (POSIX_FADV_DONTNEED), closing a finished file only after its last
// chunk has been dropped. A restore of any size thus leaves at most 64
// MiB of its data cached or dirty, data is on disk soon after it is
// written, and the page cache reuses the same pages — which on virtual
// machines with lazily backed memory is several times cheaper than
// taking fresh ones (docs/benchmarks.md). Options.WriteBehind and
// Options.NoDirectIO (--keep-cache) change or turn off both.
//
// A pack that cannot be read is retried blob by blob; a blob that fails
// verification fails only the files that use it. Failed files are
// removed and reported; everything else is restored. Directory metadata
// is applied last, deepest first, the directories of one depth in
// parallel.
//
// # Confinement
//
// Every operation is made relative to directory descriptors opened one
// component at a time with O_NOFOLLOW, and names come from validated
// trees (no "/", "." or ".."), so neither a planted symlink nor one the
// snapshot itself contains can redirect a write outside the target.
// Existing entries are unlinked before a file is created in their place,
// never opened, so a planted hard link cannot be written through.
package restore
