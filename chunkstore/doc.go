// Package chunkstore is the lifeboat repository: the object-storage seam
// and everything stored through it — packs, index files, sealed metadata
// and keys. It knows nothing of files or snapshots; those live in package
// snapshot, which stores trees as blobs and manifests as sealed metadata.
//
// # Objects
//
// A repository is a flat set of immutable objects (docs/format.md):
//
//	config               plaintext parameters (format version, chunker bounds, pack size)
//	keys/<sha256>[.gN]   the repository secrets, age-encrypted to the recipients, signed
//	data/<xx>/<sha256>   packs: sealed blobs plus a trailer listing them
//	index/<sha256>       which blob lives where, sealed with the metadata key
//	snapshots/<sha256>   snapshot manifests, sealed with the metadata key
//
// Every name except config is the SHA-256 of the object's bytes, so anyone
// can verify an object without keys, and nothing is ever overwritten.
//
// # Keys and what they unlock
//
// The secrets (chunk-ID key, metadata key, chunker polynomial) let a
// writer compute chunk IDs, read and write the index and snapshot
// manifests, and dedup — nothing else. Each pack gets a fresh random data
// key that is wrapped with age to the recipients and stored in the pack
// header (and copied into the index so restores need no extra request);
// only an identity unwraps it. Blob IDs are keyed BLAKE3 of the
// plaintext, so a reader authenticates every blob twice: the AEAD tag
// proves it was sealed under the pack key, and recomputing the keyed ID
// proves it is the content the tree asked for — needed because anyone
// with the public recipients can seal.
//
// # Writing
//
// A Writer seals blobs into per-goroutine open packs (so sealing runs
// in parallel without a shared lock), uploads full packs from a small
// pool, and records uploaded packs in index files every few packs and at
// Flush. The commit order packs → index → manifest means a crash leaves
// only unreferenced objects; the next backup adopts unindexed packs after
// verifying them (AdoptOrphans) rather than uploading their blobs again.
//
// # Storage seam
//
// Store and Reader (store.go) are the contract every backend meets; the
// retry decorator (retry.go) is the single place transient errors are
// retried. Backends: chunkstore/local, chunkstore/s3, chunkstore/mem; one
// conformance suite in chunkstore/storetest runs against all of them.
package chunkstore
