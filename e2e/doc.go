// Package e2e holds end-to-end tests of the lifeboat binary. It has no
// non-test code: the tests build cmd/lifeboat once (TestMain) and run it as
// a subprocess, the way an operator or an agent would, against real
// repositories on the local filesystem and on MinIO.
//
// # What the suite proves
//
// Crash safety (crash_test.go). A deterministic dataset of ~150 MB (many
// small text and binary files, a few large pseudo-random ones) is backed up
// into a repository with small packs, and the backup is killed with
// SIGKILL (a real kill -9, no chance to clean up) at seeded random moments
// spread over the expected backup duration, including right at the start
// and at the very end, with files modified between some attempts. After
// every kill `lifeboat check --read-data` must pass: no snapshot may ever
// reference missing data. A final uninterrupted backup must succeed,
// reuse the packs the killed runs uploaded (every pack on storage ends up in
// the index and the repository does not grow beyond one copy of the data),
// pass check --read-data and restore byte-identically. A few iterations run
// against MinIO as well, one of them killing the backup exactly between the
// index and the snapshot manifest (the commit point) through an HTTP proxy
// that kills the process when the manifest PUT arrives: no snapshot may
// appear and the next backup must add almost nothing.
//
// Bad input (badinput_test.go). Every command an operator can get wrong
// — wrong or missing credentials, a writer key where an identity is
// needed, a wrong passphrase, a missing or foreign repository, a missing
// bucket, an unreachable or failing S3 endpoint — exits non-zero with a
// message naming the object or path at fault and the fix. Damaged
// repositories (truncated or bit-flipped packs, a truncated index file, a
// bit-flipped manifest) are detected by check --read-data and by restore,
// which names the affected files and restores everything else
// byte-identically. Restore targets that are files, read-only or full
// fail cleanly, and crafted trees that try to escape the restore target
// (names "..", names with "/", a planted symlink followed by a path
// through it) never write outside it.
//
// # Running
//
// `make test` runs the suite as part of `go test ./...` under
// scripts/minio.sh, which provides MinIO. Without the LIFEBOAT_TEST_S3_*
// variables the S3 parts skip (or fail when LIFEBOAT_TEST_REQUIRE_S3=1).
// Mounting tmpfs (full and read-only restore targets) needs root; those
// subtests skip otherwise. `go test -short` skips the crash test.
package e2e
