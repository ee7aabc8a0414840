package chunkstore

import (
	"encoding/binary"
	"errors"
	"testing"
)

// TestRawLengthBound: an index or a pack's blob list that claims a blob
// of more plaintext than any blob holds (maxMetaPlaintext) is corrupt;
// a reader would otherwise ask for that much memory, and on a 32-bit
// platform int(RawLength) turns negative and panics.
func TestRawLengthBound(t *testing.T) {
	pack := func(raw uint32) []PackEntry {
		return []PackEntry{{ID: ID{1}, Size: 1 << 20, Blobs: []Blob{{Type: DataBlob, ID: ID{2}, Offset: 8, Length: 4096, RawLength: raw}}}}
	}
	for _, tc := range []struct {
		raw     uint32
		corrupt bool
	}{{maxMetaPlaintext, false}, {maxMetaPlaintext + 1, true}, {1<<32 - 1, true}} {
		_, err := DecodeIndex(EncodeIndex(pack(tc.raw)))
		if got := errors.Is(err, ErrCorrupt); got != tc.corrupt {
			t.Errorf("index with a raw length of %d: %v, want corrupt %v", tc.raw, err, tc.corrupt)
		}
		list := binary.LittleEndian.AppendUint32(nil, 1)
		list = appendBlobEntry(list, pack(tc.raw)[0].Blobs[0])
		_, err = decodeBlobList(list)
		if got := errors.Is(err, ErrCorrupt); got != tc.corrupt {
			t.Errorf("blob list with a raw length of %d: %v, want corrupt %v", tc.raw, err, tc.corrupt)
		}
	}
}
