package chunkstore

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/zeebo/blake3"
)

func referenceKeyed(key *[32]byte, data []byte) ID {
	h, err := blake3.NewKeyed(key[:])
	if err != nil {
		panic(err)
	}
	h.Write(data)
	var id ID
	h.Sum(id[:0])
	return id
}

// TestWideMatchesBLAKE3: the wide hasher gives keyed BLAKE3 as
// github.com/zeebo/blake3 computes it, at every length where its tree
// changes shape (chunk and 16-chunk boundaries, powers of two and one
// either side) and at random lengths up to 9 MiB, and through
// ChunkHasher on both sides of wideMin.
func TestWideMatchesBLAKE3(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var key [32]byte
	for i := range key {
		key[i] = byte(rng.Uint32())
	}
	data := make([]byte, 9<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	lengths := []int{0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 3 * 1024, 3*1024 + 1}
	for _, base := range []int{wideBuf, 2 * wideBuf, 3 * wideBuf, wideMin, 1 << 20, 8 << 20} {
		for _, d := range []int{-1025, -1024, -1, 0, 1, 1024, 1025} {
			lengths = append(lengths, base+d)
		}
	}
	for range 200 {
		lengths = append(lengths, rng.IntN(len(data)+1))
	}
	wk := newWideKey(&key)
	for _, n := range lengths {
		want := referenceKeyed(&key, data[:n])
		if got := keyedWide(&wk, data[:n]); got != want {
			t.Fatalf("length %d: wide %s, BLAKE3 %s", n, got.Short(), want.Short())
		}
	}
	// A blob that does not start at the beginning of its buffer, and
	// one whose buffer ends where it does (no capacity past it).
	for _, off := range []int{1, 7, 4093} {
		b := data[off : off+wideMin+5000 : off+wideMin+5000]
		if got, want := keyedWide(&wk, b), referenceKeyed(&key, b); got != want {
			t.Fatalf("offset %d: wide %s, BLAKE3 %s", off, got.Short(), want.Short())
		}
	}
	h := NewChunkHasher(key)
	for _, n := range []int{wideMin - 1, wideMin, 1 << 20} {
		if got, want := h.Sum(data[:n]), referenceKeyed(&key, data[:n]); got != want {
			t.Errorf("ChunkHasher.Sum of %d bytes = %s, want %s", n, got.Short(), want.Short())
		}
		if got, want := h.SumType(TreeBlob, data[:n]), referenceKeyed(&h.treeKey, data[:n]); got != want {
			t.Errorf("ChunkHasher.SumType(TreeBlob) of %d bytes = %s, want %s", n, got.Short(), want.Short())
		}
		// Both hashers, whichever this CPU picked.
		for _, wide := range []bool{false, true} {
			if got, want := keyedBy(wide, &h.treePool, &h.treeKey, &h.wideTreeKey, data[:n]), referenceKeyed(&h.treeKey, data[:n]); got != want {
				t.Errorf("tree blob of %d bytes, wide %v: %s, want %s", n, wide, got.Short(), want.Short())
			}
		}
	}
}

func BenchmarkKeyedHash(b *testing.B) {
	var key [32]byte
	wk := newWideKey(&key)
	for _, n := range []int{4 << 10, 8 << 10, 12 << 10, 16 << 10, 32 << 10, 64 << 10, 256 << 10, 1 << 20} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i * 7)
		}
		b.Run("zeebo/"+sizeName(n), func(b *testing.B) {
			h, _ := blake3.NewKeyed(key[:])
			var id ID
			b.SetBytes(int64(n))
			for b.Loop() {
				h.Reset()
				h.Write(data)
				h.Sum(id[:0])
			}
		})
		b.Run("wide/"+sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				keyedWide(&wk, data)
			}
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return strconv.Itoa(n>>20) + "MiB"
	}
	return strconv.Itoa(n>>10) + "KiB"
}
