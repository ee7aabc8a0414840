package chunkstore

import (
	"bytes"
	"testing"

	"github.com/zeebo/blake3"
)

// Hashers are pooled and reset between blobs: every sum must equal that
// of a fresh keyed hasher, whatever was hashed before, and data and tree
// IDs must keep their separate keys.
func TestChunkHasherReuse(t *testing.T) {
	var key [32]byte
	copy(key[:], "lifeboat chunk hasher reuse test")
	h := NewChunkHasher(key)
	fresh := func(k *[32]byte, b []byte) ID {
		hh, err := blake3.NewKeyed(k[:])
		if err != nil {
			t.Fatal(err)
		}
		hh.Write(b)
		var id ID
		hh.Sum(id[:0])
		return id
	}
	inputs := [][]byte{nil, []byte("a"), bytes.Repeat([]byte("xyz"), 100000), []byte("a"), make([]byte, 5<<10)}
	for round := 0; round < 3; round++ {
		for _, in := range inputs {
			if got, want := h.Sum(in), fresh(&key, in); got != want {
				t.Fatalf("round %d: data sum of %d bytes = %s, want %s", round, len(in), got.Short(), want.Short())
			}
			if got, want := h.SumType(TreeBlob, in), fresh(&h.treeKey, in); got != want {
				t.Fatalf("round %d: tree sum of %d bytes = %s, want %s", round, len(in), got.Short(), want.Short())
			}
			if h.Sum(in) == h.SumType(TreeBlob, in) {
				t.Fatal("data and tree IDs coincide")
			}
		}
	}
}
