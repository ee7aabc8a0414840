package chunkstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// verifyRange is how much of a pack VerifyPack reads at once: it holds at
// most two ranges, whatever the pack size.
const verifyRange = 4 << 20

// VerifyPack checks the pack id, whose listing showed size bytes, with
// what a writer key can check: its SHA-256 equals its name, its header
// and footer are in place, its trailer decrypts with the metadata key,
// and the blobs it lists tile the space between header and trailer. It
// reads the pack in ranges into the hash instead of holding it whole;
// blob contents are not decrypted (that needs the identity: Check with
// ReadData does it).
//
// Damage is reported wrapping ErrCorrupt; a pack that is gone wraps
// ErrNotFound; an intact pack of a later format, written by a newer
// lifeboat, ErrNewerFormat; any other error is a failed read, which
// says nothing about the pack.
func (r *Repository) VerifyPack(ctx context.Context, id ID, size int64) error {
	name := PackName(id)
	minSize := int64(len(packMagic) + 4 + PackFooterSize)
	if size < minSize {
		return fmt.Errorf("%w: %d bytes, too short for a pack", ErrCorrupt, size)
	}
	h := sha256.New()
	var head, prev, last []byte
	for off := int64(0); off < size; off += verifyRange {
		b, err := r.store.Get(ctx, name, off, min(verifyRange, size-off))
		if err != nil {
			return fmt.Errorf("read bytes %d-%d: %w", off, off+min(verifyRange, size-off), err)
		}
		h.Write(b)
		if off == 0 {
			head = b[:len(packMagic)+4]
		}
		prev, last = last, b
	}
	var sum ID
	h.Sum(sum[:0])
	if sum != id {
		return fmt.Errorf("%w: content does not match its name (SHA-256 %s)", ErrCorrupt, sum.Short())
	}

	if v, ok := magicVersion(head, packMagic[:6]); ok && v > 1 {
		// Intact (its name is its hash), in a format this release
		// does not know: never damage to report or repair.
		return fmt.Errorf("%w (pack format version %d; this release reads 1)", ErrNewerFormat, v)
	}
	if string(head[:len(packMagic)]) != packMagic {
		return fmt.Errorf("%w: not a pack (bad header)", ErrCorrupt)
	}
	hdrEnd := int64(len(packMagic)) + 4 + int64(binary.LittleEndian.Uint32(head[len(packMagic):]))
	if hdrEnd > size-int64(PackFooterSize) {
		return fmt.Errorf("%w: pack header length %d out of range", ErrCorrupt, hdrEnd)
	}
	// The trailer sits before the footer; it is nearly always inside the
	// last range read, else the two last ones, else it is read again.
	tail := last
	if len(tail) < PackFooterSize {
		tail = append(append([]byte(nil), prev...), last...)
	}
	if len(tail) < PackFooterSize {
		return fmt.Errorf("%w: pack footer missing (truncated pack?)", ErrCorrupt)
	}
	need := int64(binary.LittleEndian.Uint32(tail[len(tail)-PackFooterSize:])) + int64(PackFooterSize)
	if need > size-hdrEnd {
		return fmt.Errorf("%w: pack trailer length %d out of range", ErrCorrupt, need-int64(PackFooterSize))
	}
	if need > int64(len(tail)) && need <= int64(len(prev)+len(last)) {
		tail = append(append([]byte(nil), prev...), last...)
	}
	if need > int64(len(tail)) {
		b, err := r.store.Get(ctx, name, size-need, need)
		if err != nil {
			return fmt.Errorf("read trailer: %w", err)
		}
		tail = b
	}
	blobs, trailerStart, err := parseTrailer(tail[int64(len(tail))-need:], size, &r.secrets.MetaKey)
	if err != nil {
		return err
	}
	end := uint64(hdrEnd)
	for i, bl := range blobs {
		if uint64(bl.Offset) != end || bl.Length < BlobOverhead {
			return fmt.Errorf("%w: blob %d of pack at offset %d, length %d; expected offset %d", ErrCorrupt, i, bl.Offset, bl.Length, end)
		}
		end += uint64(bl.Length)
	}
	if end != uint64(trailerStart) {
		return fmt.Errorf("%w: blobs end at %d but trailer starts at %d", ErrCorrupt, end, trailerStart)
	}
	return nil
}
