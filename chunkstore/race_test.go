//go:build race

package chunkstore_test

// Under the race detector scrypt at age's default work factor takes tens
// of seconds; TestPassphraseProtectedIdentity uses a cheap one instead.
func init() { raceEnabled = true }
