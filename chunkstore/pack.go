package chunkstore

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"

	"filippo.io/age"
)

// BlobType distinguishes file content from directory trees.
type BlobType uint8

// Blob types.
const (
	DataBlob BlobType = 0
	TreeBlob BlobType = 1
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

// Blob locates one sealed blob inside a pack.
type Blob struct {
	Type      BlobType
	ID        ID
	Offset    uint32 // of the sealed blob within the pack
	Length    uint32 // sealed length: nonce + ciphertext + tag
	RawLength uint32 // plaintext length
}

// RangeGap is the most bytes between two needed blobs of a pack that
// JoinRanges bridges: reading them along is cheaper than another GET.
const RangeGap = 256 << 10

// JoinRanges groups blobs of one pack, sorted by offset, into ranges to
// read with one ranged GET each: a blob joins the range before it when
// at most RangeGap bytes lie between them and the range stays within
// limit bytes (a blob longer than limit is a range of its own). It
// returns the index just past the last blob of each range.
func JoinRanges(blobs []Blob, limit int64) []int {
	var ends []int
	var start, end int64
	for i, b := range blobs {
		s, e := int64(b.Offset), int64(b.Offset)+int64(b.Length)
		if i > 0 && s-end <= RangeGap && e-start <= limit {
			end = e
			ends[len(ends)-1] = i + 1
			continue
		}
		start, end = s, e
		ends = append(ends, i+1)
	}
	return ends
}

// Pack layout (docs/format.md):
//
//	"LBPACK1\n" | u32 W | W bytes age(data key) | sealed blobs ... |
//	sealed trailer | u32 trailer length | "LBPEND1\n"
//
// A sealed blob is nonce(12) | encoding(1) | AES-256-GCM(dataKey, payload,
// ad = type|id|encoding); the encoding byte says whether the payload is
// raw or zstd. Keeping it outside the ciphertext (but authenticated) lets
// incompressible chunks be sealed straight from the read buffer.
// The trailer lists the blobs and is sealed with the metadata key, so a
// writer can rebuild the index from packs without reading their content.
const (
	packMagic     = "LBPACK1\n"
	packEndMagic  = "LBPEND1\n"
	blobEntrySize = 1 + IDSize + 4 + 4 + 4
	// KindTrailer tags the sealed blob list at the end of a pack.
	kindTrailer MetaKind = 3
	// PackFooterSize is the fixed size of the footer (length + end magic).
	PackFooterSize = 4 + len(packEndMagic)
	nonceSize      = 12
	tagSize        = 16
	// BlobOverhead is the sealed size of a blob beyond its payload.
	BlobOverhead = nonceSize + 1 + tagSize
)

// wrapDataKey encrypts a pack's data key to the recipients with age.
func wrapDataKey(key *[32]byte, rs []age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rs...)
	if err != nil {
		return nil, fmt.Errorf("wrap pack key: %w", err)
	}
	if _, err := w.Write(key[:]); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// unwrapDataKey decrypts a pack data key with the identities.
func unwrapDataKey(wrapped []byte, ids []age.Identity) (*[32]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(wrapped), ids...)
	if err != nil {
		return nil, err
	}
	var key [32]byte
	if _, err := io.ReadFull(r, key[:]); err != nil {
		return nil, fmt.Errorf("%w: pack key: %v", ErrCorrupt, err)
	}
	if n, _ := r.Read(make([]byte, 1)); n != 0 {
		return nil, fmt.Errorf("%w: pack key too long", ErrCorrupt)
	}
	return &key, nil
}

// packBuilder accumulates sealed blobs for one pack.
type packBuilder struct {
	key        [32]byte
	aead       cipher.AEAD // under key, made once per pack
	wrappedKey []byte
	buf        []byte
	blobs      []Blob
	rawBytes   int64
}

// newPackBuilder starts a pack in buf (reused; may be nil).
func newPackBuilder(rs []age.Recipient, buf []byte) (*packBuilder, error) {
	p := &packBuilder{}
	if _, err := rand.Read(p.key[:]); err != nil {
		return nil, err
	}
	wk, err := wrapDataKey(&p.key, rs)
	if err != nil {
		return nil, err
	}
	p.wrappedKey = wk
	p.aead = newGCM(p.key[:])
	p.buf = append(buf[:0], packMagic...)
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(len(wk)))
	p.buf = append(p.buf, wk...)
	return p, nil
}

func blobAD(t BlobType, id ID, enc byte) []byte {
	ad := make([]byte, 2+IDSize)
	ad[0] = byte(t)
	copy(ad[1:], id[:])
	ad[1+IDSize] = enc
	return ad
}

// sealBlob appends nonce | enc | GCM(payload) to dst.
func sealBlob(dst []byte, aead cipher.AEAD, t BlobType, id ID, enc byte, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, nonceSize+1)...)
	if _, err := rand.Read(dst[start : start+nonceSize]); err != nil {
		panic(err)
	}
	dst[start+nonceSize] = enc
	return aead.Seal(dst, dst[start:start+nonceSize], payload, blobAD(t, id, enc))
}

// openBlob authenticates a sealed blob and returns its encoding and payload.
func openBlob(dst []byte, aead cipher.AEAD, t BlobType, id ID, sealed []byte) (byte, []byte, error) {
	if len(sealed) < BlobOverhead {
		return 0, nil, fmt.Errorf("%w: %s blob %s truncated", ErrCorrupt, t, id.Short())
	}
	enc := sealed[nonceSize]
	out, err := aead.Open(dst, sealed[:nonceSize], sealed[nonceSize+1:], blobAD(t, id, enc))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %s blob %s failed authentication", ErrCorrupt, t, id.Short())
	}
	return enc, out, nil
}

// add seals payload into the pack. The caller guarantees the pack does
// not grow past 4 GiB.
func (p *packBuilder) add(t BlobType, id ID, enc byte, payload []byte, rawLen int) {
	off := len(p.buf)
	p.buf = sealBlob(p.buf, p.aead, t, id, enc, payload)
	p.blobs = append(p.blobs, Blob{Type: t, ID: id, Offset: uint32(off), Length: uint32(len(p.buf) - off), RawLength: uint32(rawLen)})
	p.rawBytes += int64(rawLen)
}

// finish appends the trailer and footer and returns the pack's name.
func (p *packBuilder) finish(metaKey *[32]byte) ID {
	trailer := sealMeta(metaKey, kindTrailer, encodeBlobList(p.blobs))
	p.buf = append(p.buf, trailer...)
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(len(trailer)))
	p.buf = append(p.buf, packEndMagic...)
	return Hash(p.buf)
}

func encodeBlobList(blobs []Blob) []byte {
	out := make([]byte, 0, 4+len(blobs)*blobEntrySize)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(blobs)))
	for _, b := range blobs {
		out = appendBlobEntry(out, b)
	}
	return out
}

func appendBlobEntry(out []byte, b Blob) []byte {
	out = append(out, byte(b.Type))
	out = append(out, b.ID[:]...)
	out = binary.LittleEndian.AppendUint32(out, b.Offset)
	out = binary.LittleEndian.AppendUint32(out, b.Length)
	return binary.LittleEndian.AppendUint32(out, b.RawLength)
}

func readBlobEntry(b []byte) Blob {
	var e Blob
	e.Type = BlobType(b[0])
	copy(e.ID[:], b[1:1+IDSize])
	e.Offset = binary.LittleEndian.Uint32(b[1+IDSize:])
	e.Length = binary.LittleEndian.Uint32(b[5+IDSize:])
	e.RawLength = binary.LittleEndian.Uint32(b[9+IDSize:])
	return e
}

func decodeBlobList(b []byte) ([]Blob, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: blob list truncated", ErrCorrupt)
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(n)*blobEntrySize != uint64(len(b)) {
		return nil, fmt.Errorf("%w: blob list claims %d entries in %d bytes", ErrCorrupt, n, len(b))
	}
	out := make([]Blob, n)
	for i := range out {
		out[i] = readBlobEntry(b[i*blobEntrySize:])
		if out[i].Type > TreeBlob {
			return nil, fmt.Errorf("%w: blob list entry %d has unknown type %d", ErrCorrupt, i, out[i].Type)
		}
		if out[i].RawLength > maxMetaPlaintext {
			return nil, fmt.Errorf("%w: blob list entry %d claims %d bytes of plaintext, more than any blob holds", ErrCorrupt, i, out[i].RawLength)
		}
	}
	return out, nil
}

// PackInfo is what a pack says about itself.
type PackInfo struct {
	WrappedKey []byte
	Blobs      []Blob
}

// ParsePack checks the structure of a whole pack and decodes its header
// and trailer with the metadata key. It does not check the pack's hash
// (callers compare Hash(b) with the name) nor decrypt blobs.
func ParsePack(b []byte, metaKey *[32]byte) (PackInfo, error) {
	var info PackInfo
	if v, ok := magicVersion(b, packMagic[:6]); ok && v > 1 {
		return info, fmt.Errorf("%w (pack format version %d; this release reads 1)", ErrNewerFormat, v)
	}
	if len(b) < len(packMagic)+4+PackFooterSize || string(b[:len(packMagic)]) != packMagic {
		return info, fmt.Errorf("%w: not a pack (bad header)", ErrCorrupt)
	}
	w := binary.LittleEndian.Uint32(b[len(packMagic):])
	hdrEnd := uint64(len(packMagic)) + 4 + uint64(w)
	if hdrEnd > uint64(len(b)-PackFooterSize) {
		return info, fmt.Errorf("%w: pack header length %d out of range", ErrCorrupt, w)
	}
	info.WrappedKey = b[len(packMagic)+4 : hdrEnd]
	blobs, trailerStart, err := parseTrailer(b[hdrEnd:], int64(len(b)), metaKey)
	if err != nil {
		return info, err
	}
	end := hdrEnd
	for i, bl := range blobs {
		if uint64(bl.Offset) != end || bl.Length < BlobOverhead {
			return info, fmt.Errorf("%w: blob %d of pack at offset %d, length %d; expected offset %d", ErrCorrupt, i, bl.Offset, bl.Length, end)
		}
		end += uint64(bl.Length)
	}
	if end != uint64(trailerStart) {
		return info, fmt.Errorf("%w: blobs end at %d but trailer starts at %d", ErrCorrupt, end, trailerStart)
	}
	info.Blobs = blobs
	return info, nil
}

// parseTrailer reads the footer and trailer from tail, the last bytes of
// a pack of packSize bytes. It returns the blob list and the offset where
// the trailer begins.
func parseTrailer(tail []byte, packSize int64, metaKey *[32]byte) ([]Blob, int64, error) {
	if len(tail) < PackFooterSize || string(tail[len(tail)-len(packEndMagic):]) != packEndMagic {
		return nil, 0, fmt.Errorf("%w: pack footer missing (truncated pack?)", ErrCorrupt)
	}
	tl := int64(binary.LittleEndian.Uint32(tail[len(tail)-PackFooterSize:]))
	if tl > int64(len(tail)-PackFooterSize) {
		return nil, 0, fmt.Errorf("%w: pack trailer length %d out of range", ErrCorrupt, tl)
	}
	sealed := tail[len(tail)-PackFooterSize-int(tl) : len(tail)-PackFooterSize]
	plain, err := openMeta(metaKey, kindTrailer, sealed)
	if err != nil {
		return nil, 0, fmt.Errorf("pack trailer: %w", err)
	}
	blobs, err := decodeBlobList(plain)
	if err != nil {
		return nil, 0, err
	}
	return blobs, packSize - int64(PackFooterSize) - tl, nil
}
