package bench

// Micro-benchmarks of the CPU-bound stages of the backup and restore
// pipelines, one goroutine each, so the numbers are per core:
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/bench/
//
// They only compile under a plain `go test`. docs/benchmarks.md records the
// figures measured on the development machine.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/lifeboat-backup/lifeboat/internal/cdc"
	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
)

const blockSize = 1 << 20 // about a chunk's size

var (
	inputsOnce sync.Once
	randomData []byte // 64 MiB of ChaCha8 output
	textData   []byte // 64 MiB of generated source code and log lines
)

func inputs() {
	inputsOnce.Do(func() {
		const n = 64 << 20
		randomData = make([]byte, n)
		_, _ = rand.NewChaCha8([32]byte{1}).Read(randomData)

		g := newGen()
		g.pcg.Seed(1, 2)
		text := make([]byte, 0, n+1<<20)
		for len(text) < n {
			// Alternate a source file and a batch of log lines, the mix
			// the dataset's text portion has.
			text = g.sourceFile(text, []string{".go", ".py", ".c", ".ts"}[len(text)%4], 16<<10)
			for i := 0; i < 8; i++ {
				text = g.logLines(text)
			}
		}
		textData = text[:n]
	})
}

// blocks walks data in blockSize pieces, forever.
type blocks struct {
	data []byte
	off  int
}

func (bl *blocks) next() []byte {
	if bl.off+blockSize > len(bl.data) {
		bl.off = 0
	}
	b := bl.data[bl.off : bl.off+blockSize]
	bl.off += blockSize
	return b
}

// BenchmarkChunker is restic/chunker (Rabin fingerprints) with the
// 512 KiB – 8 MiB boundaries both restic and lifeboat use, and lifeboat's
// 19 average bits (with restic's 20 it hashes two thirds of each chunk
// instead of half).
func BenchmarkChunker(b *testing.B) {
	inputs()
	pol := chunker.Pol(0x3DA3358B4DC173) // any irreducible polynomial
	buf := make([]byte, 8<<20)
	b.SetBytes(int64(len(randomData)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := chunker.NewWithBoundaries(bytes.NewReader(randomData), pol, 512<<10, 8<<20)
		c.SetAverageBits(19)
		untilEOF(b, func() error { _, err := c.Next(buf); return err })
	}
}

// untilEOF calls next until it returns io.EOF.
func untilEOF(b *testing.B, next func() error) {
	for {
		err := next()
		if err == io.EOF {
			return
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChunkerLanes is internal/cdc, which the archiver uses: the same
// boundaries as BenchmarkChunker's, searched in four lanes at once.
func BenchmarkChunkerLanes(b *testing.B) {
	inputs()
	pol := chunker.Pol(0x3DA3358B4DC173)
	c, err := cdc.New(pol, 512<<10, 8<<20, 19)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 8<<20)
	b.SetBytes(int64(len(randomData)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Reset(bytes.NewReader(randomData))
		untilEOF(b, func() error { _, err := c.Next(buf); return err })
	}
}

// BenchmarkKeyedBLAKE3 is the chunk-ID hash (keyed BLAKE3 over a 1 MiB
// chunk, a fresh hasher per chunk as chunkstore.ChunkHasher does).
func BenchmarkKeyedBLAKE3(b *testing.B) {
	inputs()
	key := make([]byte, 32)
	bl := blocks{data: randomData}
	var sum [32]byte
	b.SetBytes(blockSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, err := blake3.NewKeyed(key)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = h.Write(bl.next())
		h.Sum(sum[:0])
	}
}

// BenchmarkKeyedBLAKE3Parallel is BenchmarkKeyedBLAKE3 on every core
// at once: run with -cpu 1,2 (or the machine's count) to see how much
// more the cores deliver together than one alone. On the 2-vCPU
// development VM they gave 2.0-2.25x when it was quiet, and 1.5x in one
// measurement taken minutes after tens of GiB of restored files had been
// written and deleted: a reason to measure only on a machine at rest.
func BenchmarkKeyedBLAKE3Parallel(b *testing.B) {
	inputs()
	key := make([]byte, 32)
	b.SetBytes(blockSize)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		bl := blocks{data: randomData}
		var sum [32]byte
		for pb.Next() {
			h, err := blake3.NewKeyed(key)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = h.Write(bl.next())
			h.Sum(sum[:0])
		}
	})
}

// BenchmarkSHA256 is plain SHA-256 over 1 MiB (restic's blob ID).
func BenchmarkSHA256(b *testing.B) {
	inputs()
	bl := blocks{data: randomData}
	b.SetBytes(blockSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = sha256.Sum256(bl.next())
	}
}

// BenchmarkHMACSHA256 is the alternative keyed chunk ID.
func BenchmarkHMACSHA256(b *testing.B) {
	inputs()
	key := make([]byte, 32)
	bl := blocks{data: randomData}
	var sum [32]byte
	b.SetBytes(blockSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h := hmac.New(sha256.New, key)
		_, _ = h.Write(bl.next())
		h.Sum(sum[:0])
	}
}

// BenchmarkAES256GCM seals 1 MiB blobs.
func BenchmarkAES256GCM(b *testing.B) {
	inputs()
	block, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	out := make([]byte, 0, blockSize+aead.Overhead())
	bl := blocks{data: randomData}
	b.SetBytes(blockSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out = aead.Seal(out[:0], nonce, bl.next(), nil)
	}
}

func newEncoder(b *testing.B) *zstd.Encoder { return newEncoderLevel(b, zstd.SpeedFastest) }

func newEncoderLevel(b *testing.B, level zstd.EncoderLevel) *zstd.Encoder {
	// The options chunkstore uses.
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false))
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func benchEncode(b *testing.B, data []byte) { benchEncodeLevel(b, data, zstd.SpeedFastest) }

func benchEncodeLevel(b *testing.B, data []byte, level zstd.EncoderLevel) {
	e := newEncoderLevel(b, level)
	bl := blocks{data: data}
	out := make([]byte, 0, blockSize+blockSize/8)
	var in, outN int64
	b.SetBytes(blockSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out = e.EncodeAll(bl.next(), out[:0])
		in += blockSize
		outN += int64(len(out))
	}
	b.ReportMetric(float64(in)/float64(outN), "ratio")
}

// BenchmarkZstdFastestText compresses 1 MiB blocks of generated text.
func BenchmarkZstdFastestText(b *testing.B) {
	inputs()
	benchEncode(b, textData)
}

// BenchmarkZstdDefaultText is BenchmarkZstdFastestText at zstd's default
// level (restic's "auto"): the ratio lifeboat would gain and the speed it
// would pay.
func BenchmarkZstdDefaultText(b *testing.B) {
	inputs()
	benchEncodeLevel(b, textData, zstd.SpeedDefault)
}

// BenchmarkZstdFastestRandom compresses incompressible 1 MiB blocks.
func BenchmarkZstdFastestRandom(b *testing.B) {
	inputs()
	benchEncode(b, randomData)
}

// BenchmarkZstdDecodeText decompresses 1 MiB blocks of text; throughput
// is in decompressed bytes.
func BenchmarkZstdDecodeText(b *testing.B) {
	inputs()
	e := newEncoder(b)
	var frames [][]byte
	for off := 0; off+blockSize <= 16<<20; off += blockSize {
		frames = append(frames, e.EncodeAll(textData[off:off+blockSize], nil))
	}
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	out := make([]byte, 0, blockSize)
	b.SetBytes(blockSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err = d.DecodeAll(frames[i%len(frames)], out[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkZstdDecodeTextExactCap decodes as chunkstore does for blobs:
// capacity limited to the recorded size, with or without a block of
// slack (without, the decoder takes its slower bounds-checked loop for
// the last blocks of every frame).
func BenchmarkZstdDecodeTextExactCap(b *testing.B) {
	inputs()
	e := newEncoder(b)
	var frames [][]byte
	for off := 0; off+blockSize/2 <= 16<<20; off += blockSize / 2 {
		frames = append(frames, e.EncodeAll(textData[off:off+blockSize/2], nil))
	}
	for _, slack := range []int{0, 128<<10 + 64} {
		b.Run(fmt.Sprintf("slack=%d", slack), func(b *testing.B) {
			d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecodeAllCapLimit(true))
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			buf := make([]byte, 0, blockSize)
			b.SetBytes(blockSize / 2)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err = d.DecodeAll(frames[i%len(frames)], buf[:0:blockSize/2+slack]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
