// Package storetest holds what the tests of every storage implementation
// and of the code above them share: the conformance suite (Run) that each
// Store must pass, a fault-injecting wrapper (Faulty) for testing the
// retry decorator and the readers' corruption checks, and the hooks to the
// real MinIO server that scripts/minio.sh starts (MinIO, MinIORepoURL).
//
// The suite is one table of subtests, each given a fresh, empty store, so
// a failure names the contract clause it broke. It avoids names that
// would be both an object and a "directory" ("a" and "a/b"), which neither
// a filesystem nor MinIO can hold at once; lifeboat never uses such names.
package storetest
