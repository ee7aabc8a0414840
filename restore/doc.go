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
// by blob. No file is under its own name before it is complete, so a
// killed restore never leaves one partly written there. Files of one
// chunk (most files) are created without a name (O_TMPFILE), written,
// given their metadata, linked in and closed in one step when their blob
// arrives: a killed restore leaves nothing of them, and the link costs
// the kernel less than a temporary name and a rename (about 3 % of a
// restore's CPU time on the bench dataset). Larger files, files the
// target holds something else for, files written with direct I/O and
// files on filesystems without O_TMPFILE are written under a temporary
// name they are renamed from;
// larger files are created up front at their final size, and chunks
// land in any order and all-zero chunks are simply not written, leaving
// holes.
//
// Restored data goes through the page cache, bounded by a write-behind
// window (writeBehind) sized from the kernel's own background write-back
// threshold: twice it, 64 MiB to 4 GiB. Each span written to a file of
// more than one chunk, or of one chunk of 256 KiB or more, is queued; once
// more than half the window waits for write-back, the oldest spans are
// handed to the kernel for it (sync_file_range, without waiting), and
// once more than the whole window is queued the restore waits for the
// oldest span's write-back and drops its pages (POSIX_FADV_DONTNEED),
// closing a finished file only after its last span has settled. A
// restore larger than the window thus leaves at most a window of its
// data cached or dirty; a smaller one leaves its data to the kernel, like
// any program writing files, and is not slowed down by a disk slower than
// itself. Options.Sync (--sync) flushes the target's filesystem at the
// end; Options.WriteBehind (--keep-cache) changes or turns off the window.
//
// With Options.DirectIO (--direct-io), files of 1 MiB and more are
// written with direct I/O (O_DIRECT) where the target's filesystem allows
// it: a blob bound for such a file is decoded at an address congruent to
// its file offset modulo 4 KiB, so the page-aligned interior of each
// chunk goes from the worker's buffer straight to the disk, and only its
// unaligned head and tail (under 4 KiB each) pass through the page cache
// (as does the whole blob for another file that shares it at another
// alignment). The span of each direct write is allocated (fallocate) just
// before it, so that the writers of one file share ext4's inode lock
// instead of taking it in turn, and all-zero chunks stay holes. Ranges
// whose data goes mostly to such files wait on the disk; they are
// interleaved with the others, which keep the cores busy meanwhile. A
// filesystem that refuses O_DIRECT turns it off for the rest of the
// restore.
//
// Entries of another type in the target are replaced only where that
// removes nothing the user did not ask to remove (conflicts.go): a
// directory with entries where the snapshot has a file stays, and the
// file is reported, unless Options.Delete asks for it to go. A directory
// that cannot be created is reported and left out with all below it.
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
