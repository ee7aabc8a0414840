package chunkstore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// ErrCorrupt is wrapped by every error that reports damaged repository
// bytes: a failed authentication tag, a hash mismatch, a truncated object.
var ErrCorrupt = errors.New("repository data is corrupt")

// ErrNewerFormat is wrapped by errors about an object that carries a
// lifeboat magic of a version this release does not know: it was written
// by a newer lifeboat. Such an object is never damaged garbage to delete
// or replace; the only fix is to upgrade.
var ErrNewerFormat = errors.New("written by a newer lifeboat: upgrade lifeboat to read it")

func newGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // key length is fixed
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// Sealed metadata objects (index, snapshot) have the layout
//
//	magic "LBM1" | kind (1 byte) | nonce (12) | AES-256-GCM(metaKey, zstd(plaintext))
//
// with the first five bytes as additional data, so an index cannot be
// passed off as a snapshot.
const metaMagic = "LBM1"

// MetaKind tags sealed metadata objects.
type MetaKind byte

// Metadata kinds.
const (
	KindIndex    MetaKind = 1
	KindSnapshot MetaKind = 2
)

func (k MetaKind) String() string {
	switch k {
	case KindIndex:
		return "index"
	case KindSnapshot:
		return "snapshot"
	case KindSession:
		return "session"
	case KindGCMark:
		return "GC mark"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// prefix is where the objects of kind k are stored; only indexes and
// snapshots are stored under their ID alone (see byID).
func (k MetaKind) prefix() string {
	switch k {
	case KindIndex:
		return IndexPrefix
	case KindSnapshot:
		return SnapshotsPrefix
	case KindSession:
		return SessionsPrefix
	case KindGCMark:
		return GCPrefix
	}
	return ""
}

// byID returns an error unless objects of kind k are named prefix+ID,
// which SaveMeta, LoadMeta, ListMeta and the metadata cache assume.
// Sessions (sessions/<session>/<seq>) and GC marks (gc/ also holds the
// clock probes) are named by gc.go, never through those.
func (k MetaKind) byID() error {
	if k == KindIndex || k == KindSnapshot {
		return nil
	}
	return fmt.Errorf("%s objects are not stored by ID alone: only index and snapshot objects are saved, loaded and listed this way", k)
}

// freeList keeps up to cap(ch) values for reuse. Unlike sync.Pool it is
// not emptied by garbage collection: under the pipelines' soft memory
// limit the collector runs many times a second, and with a sync.Pool
// every blob re-created its zstd encoder and re-grew its output buffer.
type freeList[T any] struct {
	ch  chan T
	new func() T
}

func newFreeList[T any](n int, new func() T) *freeList[T] {
	return &freeList[T]{ch: make(chan T, n), new: new}
}

func (f *freeList[T]) get() T {
	select {
	case v := <-f.ch:
		return v
	default:
		return f.new()
	}
}

// put keeps v for reuse, or drops it when the list is full.
func (f *freeList[T]) put(v T) {
	select {
	case f.ch <- v:
	default:
	}
}

var (
	// The encoders and decoders only ever run EncodeAll/DecodeAll with
	// concurrency 1, so they start no goroutines and a dropped one needs
	// no Close.
	encoders = newEncoders(zstd.SpeedFastest)
	// Blobs under smallBlob are compressed at zstd's default level
	// (about level 3) rather than the fastest (about level 1): see
	// compress. A window of smallBlob covers any such input whole and
	// keeps the encoder at about 2.2 MiB after a 300 KiB input, against
	// 9.7 MiB with the default 8 MiB window.
	smallEncoders = newEncoders(zstd.SpeedDefault, zstd.WithWindowSize(smallBlob))
	decoders      = newFreeList(runtime.GOMAXPROCS(0)+2, func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxMetaPlaintext), zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
		return d
	})
)

// newEncoders keeps reusable zstd encoders of one level. No frame
// checksum: every blob is authenticated by its AEAD tag and verified
// against its keyed ID, so a 32-bit xxhash would only cost time (~5 % of
// compression) and 4 bytes.
func newEncoders(level zstd.EncoderLevel, opts ...zstd.EOption) *freeList[*zstd.Encoder] {
	opts = append([]zstd.EOption{zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false)}, opts...)
	return newFreeList(runtime.GOMAXPROCS(0)+2, func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			panic(err)
		}
		return e
	})
}

// compressBound is room enough for the zstd frame of n bytes, including
// incompressible input stored as raw blocks (3 bytes per 128 KiB block
// plus the frame header).
func compressBound(n int) int { return n + n>>8 + 64 }

// smallBlob is the size below which compress uses zstd's default level.
// With the default chunk bounds chunks are at least 512 KiB, so these are
// whole small files, the last chunks of files, trees and metadata (and,
// in a repository with a lower chunk_min, some chunks). On the bench's 209 MiB of
// source-like files (15,000 files, 1-40 KiB) the default level stores
// 57.3 MiB against 61.1 MiB, for 0.2-0.3 s more CPU on one core and
// 0.35-0.54 s more user CPU in a whole backup; on 1 MiB pieces of logs
// and CSV it saves less per CPU-second (3.0 MiB of 78.3 for 0.5 s), so
// chunks of large files stay at the fastest level. Decoding costs the
// same (docs/benchmarks.md).
const smallBlob = 512 << 10

// compress appends the zstd frame of src to dst. dst is grown to the
// bound first, so the encoder never re-grows it block by block.
func compress(dst, src []byte) []byte {
	if need := len(dst) + compressBound(len(src)); cap(dst) < need {
		grown := make([]byte, len(dst), need)
		copy(grown, dst)
		dst = grown
	}
	list := encoders
	if len(src) < smallBlob {
		list = smallEncoders
	}
	e := list.get()
	dst = e.EncodeAll(src, dst)
	list.put(e)
	return dst
}

// decodeSlack is room the decoder may have past limit: with less than a
// block (128 KiB) of spare capacity it copies through slower bounds-checked
// loops, which with a buffer of exactly limit bytes it did for the last
// blocks of every blob (15 % slower decoding of 512 KiB text blobs). It is
// used when the caller's buffer has it (restore's reused buffers).
const decodeSlack = 128<<10 + 64

// DecodeSlack is how much room beyond a blob's raw length decompression
// wants in the buffer passed to OpenBlob or a BlobOpener.
const DecodeSlack = decodeSlack

// decompress appends the zstd frame src to dst, refusing to produce more
// than limit bytes. The decoders run with a capacity limit, so a small
// malicious frame that claims or expands to gigabytes fails after at
// most limit+decodeSlack bytes instead of exhausting memory.
func decompress(dst, src []byte, limit int) ([]byte, error) {
	room := limit + decodeSlack
	if cap(dst)-len(dst) < room {
		// The caller's buffer is too small (or nil): allocate exactly
		// limit. Slack in a fresh allocation would cost more to zero
		// than it saves on small blobs such as trees.
		room = limit
		if cap(dst)-len(dst) < limit {
			grown := make([]byte, len(dst), len(dst)+limit)
			copy(grown, dst)
			dst = grown
		}
	}
	dst = dst[: len(dst) : len(dst)+room]
	d := decoders.get()
	defer decoders.put(d)
	out, err := d.DecodeAll(src, dst)
	if err == nil && len(out)-len(dst) > limit {
		err = errors.New("decompressed size exceeds the limit")
	}
	if err != nil {
		return nil, fmt.Errorf("%w (limit %d bytes)", err, limit)
	}
	return out, nil
}

// decompressMeta decodes a metadata frame with a streaming reader, so
// memory grows with the real output rather than a preallocated limit.
func decompressMeta(src []byte) ([]byte, error) {
	d, err := zstd.NewReader(bytes.NewReader(src), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxMetaPlaintext))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	out, err := io.ReadAll(io.LimitReader(d, maxMetaPlaintext+1))
	if err != nil {
		return nil, err
	}
	if len(out) > maxMetaPlaintext {
		return nil, fmt.Errorf("decompressed size exceeds %d bytes", maxMetaPlaintext)
	}
	return out, nil
}

// sealMeta seals plaintext metadata under the metadata key.
func sealMeta(key *[32]byte, kind MetaKind, plaintext []byte) []byte {
	aead := newGCM(key[:])
	out := make([]byte, 5+aead.NonceSize(), 5+aead.NonceSize()+len(plaintext)/2+64)
	copy(out, metaMagic)
	out[4] = byte(kind)
	if _, err := rand.Read(out[5 : 5+aead.NonceSize()]); err != nil {
		panic(err)
	}
	z := compress(nil, plaintext)
	return aead.Seal(out, out[5:5+aead.NonceSize()], z, out[:5])
}

// maxMetaPlaintext bounds what a sealed metadata object may expand to.
const maxMetaPlaintext = 1 << 30

// errMetaAuth marks a metadata object that the metadata key does not
// authenticate. Of one read through LoadMeta, whose bytes match their
// name's hash, it means a key other than the one that sealed it.
var errMetaAuth = errors.New("failed authentication")

// openMeta authenticates and decrypts a sealed metadata object.
func openMeta(key *[32]byte, kind MetaKind, b []byte) ([]byte, error) {
	aead := newGCM(key[:])
	if len(b) < 5+aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: %s object truncated (%d bytes)", ErrCorrupt, kind, len(b))
	}
	if string(b[:4]) != metaMagic {
		if string(b[:3]) == metaMagic[:3] && b[3] > metaMagic[3] && b[3] <= '9' {
			return nil, fmt.Errorf("%w (%s object sealed with format version %c; this release reads 1)", ErrNewerFormat, kind, b[3])
		}
		return nil, fmt.Errorf("%w: %s object has bad magic", ErrCorrupt, kind)
	}
	if MetaKind(b[4]) != kind {
		return nil, fmt.Errorf("%w: object is a %s, expected %s", ErrCorrupt, MetaKind(b[4]), kind)
	}
	z, err := aead.Open(nil, b[5:5+aead.NonceSize()], b[5+aead.NonceSize():], b[:5])
	if err != nil {
		return nil, fmt.Errorf("%w: %s object %w (damaged, or sealed with another repository's key)", ErrCorrupt, kind, errMetaAuth)
	}
	plain, err := decompressMeta(z)
	if err != nil {
		return nil, fmt.Errorf("%w: %s object: decompress: %v", ErrCorrupt, kind, err)
	}
	return plain, nil
}

// Blob payload encodings: the byte stored before each sealed blob's ciphertext.
const (
	blobRaw  = 0
	blobZstd = 1
)

// encodeBlobPayload compresses data into dst. A blob whose zstd form is
// not at least 1/32 smaller is stored raw (zstd bails out early on
// incompressible input, so trying costs little): then data itself is
// returned as the payload, with no copy.
func encodeBlobPayload(dst, data []byte) (enc byte, payload, buf []byte) {
	z := compress(dst[:0], data)
	if len(z) >= len(data)-len(data)/32 {
		return blobRaw, data, z
	}
	return blobZstd, z, z
}

func decodeBlobPayload(dst []byte, enc byte, payload []byte, rawLen int) ([]byte, error) {
	switch enc {
	case blobRaw:
		return append(dst, payload...), nil
	case blobZstd:
		out, err := decompress(dst, payload, rawLen)
		if err != nil {
			return nil, fmt.Errorf("%w: decompress blob: %v", ErrCorrupt, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown blob encoding %d", ErrCorrupt, enc)
}
