// Package local stores a lifeboat repository in a directory of the local
// filesystem: one file per object, the object name's slashes becoming
// subdirectories ("data/ab/ab12..." is <dir>/data/ab/ab12...).
//
// # Atomic writes
//
// Put never writes the final file in place. It creates a temporary file
// named ".tmp-<random>" in the directory that will hold the object (so the
// rename below never crosses a filesystem), writes the data, fsyncs the
// file, renames it over the final name and finally fsyncs the directory so
// the rename itself is durable. rename(2) is atomic: a reader sees either
// no object, or the previous object, or the complete new one, never a
// prefix. Directories are created on demand and the parent of each new
// directory is fsynced as well; a Put into a directory below a top-level
// one that it found there (data/ab, sessions/<session>, which Delete
// removes once empty and another writer may have just made again)
// fsyncs that directory's parent too. A crash can leave temporary files behind;
// List never reports them and Put refuses names that would look like them,
// so they are invisible garbage that an operator (or a future GC) may
// delete. Overwriting an object with identical bytes is just another
// rename.
//
// Delete unlinks the file and then fsyncs its directory, so that deletes
// are durable in the order they completed: prune deletes the old index
// files before the packs they name, and a crash must not bring an index
// file back while the packs stay gone. (It costs about 0.1 ms a delete on
// the development VM's disk, 8 at a time as prune deletes packs: under
// half a second for 3,000 packs; BenchmarkDeletePacks.)
//
// The local store has no end-to-end checksum of its own: fsync+rename
// guarantees the file is whole, and the repository layer above detects
// corrupted bytes (pack names are the hash of their content, blobs are
// authenticated).
//
// # Permissions
//
// A repository is private to the user who writes it (files 0600,
// directories 0700) unless its root directory is setgid, the sign that
// it is shared with its group on purpose: then every file and directory
// Put creates has the group access the root has (read, or read and
// write) whatever the umask, and every directory is setgid, so what is
// written stays the group's. A new directory is made under a temporary
// name, given its mode and renamed into place, so a concurrent writer
// never finds it with the umask's. A writer not in the root's group is
// refused with an error saying so: the kernel would clear the setgid bit
// of the directories it makes. A repository directory created with its
// group and mode 2750 before `lifeboat init` thus lets that group (the
// operators who restore, say) read everything root's backups write; for
// an existing repository, `chgrp -R G repo`, `chmod -R g+rX repo` and
// `find repo -type d -exec chmod g+s {} +` do the same.
//
// # Reads
//
// Get opens the file, checks the requested range against its size and
// reads it with a single ReadAt; a range past the end or a short read is an
// error, never a short result. List walks only the deepest directory named
// by the prefix, skips subtrees that cannot match, and turns any walk error
// into a listing error. Missing files become chunkstore.ErrNotFound; a
// missing repository root becomes chunkstore.ErrBucketNotFound instead, so
// a vanished (unmounted) repository is never mistaken for an empty one.
//
// # Errors
//
// Every error names the path involved. Errors that retrying cannot cure —
// a full disk (ENOSPC, EDQUOT), permission denied, a read-only filesystem,
// a path component that is a file — are marked chunkstore.Permanent with a
// hint about what to do, so the retry decorator gives up at once.
//
// Deleting the last object of a directory below a top-level one (data/ab,
// sessions/<session>) removes that directory with rmdir, which fails on
// one that is not empty: a concurrent Put has its temporary file there
// from the moment it creates it to the rename, and one that finds the
// directory gone before creating that file makes it again.
package local
