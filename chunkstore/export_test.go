package chunkstore

import (
	"context"
	"time"

	"filippo.io/age"
)

// Hooks into unexported decoders of repository bytes, for the fuzz and
// custody tests in package chunkstore_test.
var (
	OpenMetaForTest           = openMeta
	SealMetaForTest           = sealMeta
	ParseTrailerForTest       = parseTrailer
	DecodeBlobPayloadForTest  = decodeBlobPayload
	EncodeBlobPayloadForTest  = encodeBlobPayload
	KindTrailerForTest        = kindTrailer
	SealEnvelopeForTest       = sealEnvelope
	OpenEnvelopeForTest       = openEnvelope
	EnvelopeCiphertextForTest = envelopeCiphertext
)

// OpenBlobForTest authenticates and decrypts one sealed blob with key.
func OpenBlobForTest(dst []byte, key *[32]byte, t BlobType, id ID, sealed []byte) (byte, []byte, error) {
	return openBlob(dst, newGCM(key[:]), t, id, sealed)
}

// BuildPackForTest seals blobs (keyed by their chunk IDs under hasher)
// into a pack the way Writer does, with metaKey sealing the trailer, and
// returns the pack bytes and its blob list.
func BuildPackForTest(rs []age.Recipient, metaKey *[32]byte, hasher *ChunkHasher, types []BlobType, blobs [][]byte) ([]byte, []Blob, error) {
	p, err := newPackBuilder(rs, nil)
	if err != nil {
		return nil, nil, err
	}
	for i, b := range blobs {
		enc, payload, _ := encodeBlobPayload(nil, b)
		p.add(types[i], hasher.SumType(types[i], b), enc, payload, len(b))
	}
	p.finish(metaKey)
	return p.buf, p.blobs, nil
}

// InitUnsignedForTest creates a repository as releases before signed key
// envelopes did: no key_signer in the config.
func InitUnsignedForTest(ctx context.Context, st Store, opts InitOptions) (*Secrets, error) {
	opts.unsigned = true
	return Init(ctx, st, opts)
}

// SetRetryClockForTest makes the WithRetry store s read the time from now
// when it decides whether the store still counts as unreachable.
func SetRetryClockForTest(s Store, now func() time.Time) {
	s.(*retryStore).reach.now = now
}

// UnreachableLapseForTest is how long a WithRetry store counts as
// unreachable after a request last found it so.
const UnreachableLapseForTest = unreachableLapse

// BeforeRemoveCacheForTest makes RemoveCache call fn between checking a
// cache and renaming it aside.
func BeforeRemoveCacheForTest(fn func(path string)) { beforeRemoveCache = fn }

// MarkCacheUsedForTest is what Open does to its repository's cache.
var MarkCacheUsedForTest = markCacheUsed
