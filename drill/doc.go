// Package drill runs restore drills: it proves that a snapshot can be
// brought back, measures how long that takes and how old the data was,
// and leaves evidence an auditor can read.
//
// # Algorithm
//
// A drill starts its clock, then:
//
//  1. Selects a snapshot: "latest" among those matching the filter, an ID
//     (or unique prefix), or "random-within:30d" — one of the snapshots
//     newer than now-30d, chosen uniformly with the drill ID as the seed,
//     so rerunning a drill repeats its choice while different drills
//     cover the whole window. RPO is the snapshot's age at the start.
//  2. Walks the snapshot's trees and, when a sample percentage is set,
//     chooses that share of the regular files: those whose hash of (drill
//     ID, path) is smallest. Symlinks, special files and the directories
//     above chosen files come along. The bytes to restore are checked
//     against the scratch limit and the scratch filesystem's free space
//     before anything is written.
//  3. Restores into Scratch/lifeboat-drill-<ID> with package restore,
//     which authenticates every blob before writing it. Restore keeps
//     backed-up absolute paths below its target: /srv/data is restored to
//     Scratch/lifeboat-drill-<ID>/srv/data. Files restore could not write
//     are failures naming the blob or pack: "corrupt" when stored data is
//     damaged (a blob failed authentication or its ID check), "missing"
//     when a pack is not in the repository, "restore" otherwise.
//  4. Verifies the restored tree independently of the restore, by reading
//     the restored files back through the filesystem (recently written
//     data may come from the page cache rather than the disk):
//     every entry the snapshot lists (or the sample) must exist with the
//     recorded type, mode bits and symlink target, and with the extended
//     attributes the restore sets (restore.RestorableXAttrs) holding the
//     recorded values — attributes the snapshot lacks are not looked for,
//     as the scratch filesystem may add its own; every regular file is
//     read back, a chunk at a time (the chunk lengths come from the
//     index), and each chunk's keyed ID — the same keyed BLAKE3 the
//     backup used — must equal the snapshot's content list, so a file is
//     proven identical to what was backed up without holding it in
//     memory. Paths are resolved inside the scratch directory without
//     following symlinks. Holes read back as zeros and hash like the
//     all-zero chunks the backup recorded. A second name of a hard link
//     must be the same inode as the first. Mismatches are "content"
//     failures naming the path, the chunk and both IDs (or the
//     attribute). Owners and times are not compared: entries whose owner,
//     mode, times or attributes the restore could not set are counted in
//     Result.MetadataErrors, the first ten named in MetadataSamples, and
//     their attributes are not compared. They are warnings, in the
//     summary and the report, not failures: the data came back.
//  5. Runs the owner's verify commands with /bin/sh -c, in the restored
//     tree, each in a process group of its own that is killed (SIGKILL)
//     on timeout. They see LIFEBOAT_DRILL_DIR (the restore target: a
//     backed-up /srv/data is at $LIFEBOAT_DRILL_DIR/srv/data),
//     LIFEBOAT_DRILL_ID, LIFEBOAT_SNAPSHOT_ID, LIFEBOAT_SNAPSHOT_TIME,
//     LIFEBOAT_SNAPSHOT_HOST, LIFEBOAT_SNAPSHOT_PATHS (newline-separated)
//     and LIFEBOAT_POLICY. They run only when the restore and its
//     verification succeeded; otherwise they are recorded as skipped.
//  6. Stops the clock: RTO is the time from the start to a verified tree
//     whose checks passed. It fails the drill when over the target. An old
//     snapshot fails the RPO target only when it was selected as the
//     latest: an explicit or random-within snapshot is old on purpose.
//  7. Removes the scratch directory (or keeps it after a failure when
//     asked to) and returns the Result.
//
// A Result is returned for every drill that started, whatever the
// outcome; WriteReport renders many of them as evidence (Markdown, HTML
// or JSON), grouped by policy with pass rates and the RTO trend.
package drill
