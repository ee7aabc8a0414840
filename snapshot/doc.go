// Package snapshot turns a filesystem into a snapshot and back into
// trees: the node/tree model, manifests, the archiver that creates
// snapshots, the local files cache, and walking and checking trees.
//
// # Model
//
// A snapshot manifest (sealed metadata, readable with the writer key)
// records time, host, paths, tags, a summary and the ID of the root tree.
// Trees are JSON blobs stored in packs — readable only with an identity —
// listing a directory's nodes sorted by name; a file node carries the IDs
// of its chunks, a directory node the ID of its subtree. Backed-up paths
// keep their absolute location: backing up /home/u/docs yields trees
// for "home", "home/u" and "home/u/docs".
//
// # Backup pipeline
//
// One walker goroutine visits entries in name order and stats them. A
// regular file whose size, mtime, ctime, inode and device match the files
// cache — and whose chunks are all still in the index — reuses its
// recorded chunk list without being opened. Other files go to Readers,
// which read and split them into content-defined chunks (restic's Rabin
// chunker with the repository's secret polynomial, 512 KiB–8 MiB, ~1 MiB
// average) and compute each chunk's keyed ID. Chunks the index does not
// know are reserved (so two readers never store the same chunk twice) and
// handed to Sealers, which compress, seal and append them to packs. Each
// directory waits for its children in its own goroutine and then stores
// its tree, so trees complete bottom-up while the walk continues and
// both cores stay busy. Read buffers come from a fixed pool, bounding
// memory however large the files are.
//
// # Directory descriptors
//
// Each directory is opened once (O_DIRECTORY|O_NOFOLLOW, from its
// parent's descriptor), listed through that descriptor, and its entries
// are stat'ed (fstatat, AT_SYMLINK_NOFOLLOW), opened (openat, O_NOFOLLOW)
// and, for the calls that take a path (llistxattr), reached through
// /proc/self/fd/N/name, all relative to it (dirfd.go). No entry's whole
// path is resolved again: a directory renamed or swapped for a symlink
// mid-walk cannot lead the walk out of the tree it opened, and paths
// longer than PATH_MAX (4096 bytes, which nesting makes) need nothing
// special. Only the backup paths themselves are opened by path.
//
// # Why a files cache
//
// Writers cannot decrypt earlier trees, so unlike restic the previous
// snapshot cannot tell them what changed. The files cache is a local
// file (path → stat data and chunk IDs), bound to one repository, written
// after the manifest is committed. Losing it costs one full re-read; the
// data itself still deduplicates.
package snapshot
