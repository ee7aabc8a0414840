package chunkstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// textLike returns n bytes of word-salad text: compressible, but with
// enough variety that zstd's levels produce different frames.
func textLike(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{"func", "return", "err", "nil", "if", "for", "range", "package", "import", "type", "struct", "map", "string", "int", "byte", "context", "ctx", "value", "key", "index"}
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "%s %s%d %s;\n", words[r.IntN(len(words))], words[r.IntN(len(words))], r.IntN(1000), words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

// TestCompressLevelBySize checks that blobs under smallBlob get zstd's
// default level and larger ones the fastest, and that both round-trip.
func TestCompressLevelBySize(t *testing.T) {
	frame := func(level zstd.EncoderLevel, src []byte) []byte {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
		if err != nil {
			t.Fatal(err)
		}
		return e.EncodeAll(src, nil)
	}
	for _, c := range []struct {
		n    int
		want zstd.EncoderLevel
	}{
		{4 << 10, zstd.SpeedDefault},
		{100 << 10, zstd.SpeedDefault},
		{smallBlob - 1, zstd.SpeedDefault},
		{smallBlob, zstd.SpeedFastest},
		{2 << 20, zstd.SpeedFastest},
	} {
		src := textLike(c.n, uint64(c.n))
		got := compress(nil, src)
		fast, def := frame(zstd.SpeedFastest, src), frame(zstd.SpeedDefault, src)
		if bytes.Equal(fast, def) {
			t.Fatalf("%d bytes: the two levels give the same frame; the input cannot tell them apart", c.n)
		}
		want := fast
		if c.want == zstd.SpeedDefault {
			want = def
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%d bytes: compress gave %d bytes, want the %v frame of %d bytes (fastest %d, default %d)", c.n, len(got), c.want, len(want), len(fast), len(def))
		}
		plain, err := decompress(nil, got, c.n)
		if err != nil || !bytes.Equal(plain, src) {
			t.Errorf("%d bytes: round trip failed: %v", c.n, err)
		}
	}
}
