package chunkstore

import (
	"encoding/binary"
	"math"
	"math/bits"
	"sync"
	"time"

	"github.com/zeebo/blake3"
	"lukechampine.com/blake3/guts"
)

// Large blobs may be hashed sixteen chunks at a time: guts.CompressBuffer
// compresses the 1 KiB chunks of a 16 KiB buffer in the lanes of one
// vector (AVX-512 where the CPU has it, two AVX2 halves otherwise), and
// the buffers' chaining values are merged into BLAKE3's tree here, on the
// calling goroutine. The result is keyed BLAKE3, bit for bit
// (TestWideMatchesBLAKE3); only the speed differs, and which is faster
// depends on the CPU: on a Zen 5 core the wide hasher ran at 5.4 GB/s
// against 3.9 for github.com/zeebo/blake3 (AVX2, eight chunks at a time)
// on 1 MiB, while on an Intel Xeon VM the package's own AVX-512 hasher,
// on one core, ran at 3.6-3.7 GB/s against zeebo's 4.0 on data in the
// CPU's cache (docs/benchmarks.md; this code was not measured there). So
// a process measures both once (hashWide, 0.2-0.3 ms on the Zen 5 VM),
// as the Linux kernel picks its RAID checksum code at boot. Blobs under
// wideMin always take zeebo's, which is faster there: a wide step
// computes all sixteen lanes however few hold data.
const (
	wideBuf = guts.MaxSIMD * guts.ChunkSize // 16 KiB
	// wideMin is the length from which a blob may be hashed wide.
	wideMin = wideBuf
)

var (
	wideOnce sync.Once
	wideWins bool
)

// hashWide reports whether keyedWide is the faster hasher on this CPU,
// measured on first use: the best of several runs of each on 64 KiB,
// wide taken only if at least 5 % faster (0.2-0.3 ms, once a process).
func hashWide() bool {
	wideOnce.Do(func() { wideWins = measureWide() })
	return wideWins
}

func measureWide() bool {
	var key [32]byte
	wk := newWideKey(&key)
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i * 131)
	}
	best := func(f func()) time.Duration {
		b := time.Duration(math.MaxInt64)
		for range 6 {
			t := time.Now()
			f()
			b = min(b, time.Since(t))
		}
		return b
	}
	zh, err := blake3.NewKeyed(key[:])
	if err != nil {
		panic(err) // the key length is fixed at 32 bytes
	}
	var id ID
	narrow := best(func() {
		zh.Reset()
		_, _ = zh.Write(data)
		zh.Sum(id[:0])
	})
	wide := best(func() { keyedWide(&wk, data) })
	return wide*100 < narrow*95
}

type wideKey [8]uint32

func newWideKey(key *[32]byte) wideKey {
	var k wideKey
	for i := range k {
		k[i] = binary.LittleEndian.Uint32(key[4*i:])
	}
	return k
}

// The assembly reads a whole 16 KiB buffer: a blob's last, partial one
// is copied into a scratch buffer first.
var wideScratch = sync.Pool{New: func() any { return new([wideBuf]byte) }}

// keyedWide returns the 32-byte keyed BLAKE3 of data.
func keyedWide(key *wideKey, data []byte) ID {
	k := (*[8]uint32)(key)
	const flags = guts.FlagKeyedHash
	// The roots of the complete subtrees hashed so far, one per height
	// (log2 of its chunks); bit h of chunks says whether stack[h] is one.
	var stack [64][8]uint32
	var chunks uint64
	for len(data) > wideBuf {
		cv := guts.ChainingValue(guts.CompressBuffer((*[wideBuf]byte)(data), wideBuf, k, chunks, flags))
		h := 4 // a full buffer is a subtree of 16 chunks
		for chunks&(1<<h) != 0 {
			cv = guts.ChainingValue(guts.ParentNode(stack[h], cv, k, flags))
			h++
		}
		stack[h] = cv
		chunks += guts.MaxSIMD
		data = data[wideBuf:]
	}
	// The last up to 16 chunks, then the stack merged into it from the
	// lowest subtree up: BLAKE3's left subtrees are the largest powers
	// of two.
	var n guts.Node
	if len(data) <= guts.ChunkSize {
		n = guts.CompressChunk(data, k, chunks, flags)
	} else {
		s := wideScratch.Get().(*[wideBuf]byte)
		copy(s[:], data)
		n = guts.CompressBuffer(s, len(data), k, chunks, flags)
		wideScratch.Put(s)
	}
	for h := bits.TrailingZeros64(chunks); h < bits.Len64(chunks); h++ {
		if chunks&(1<<h) != 0 {
			n = guts.ParentNode(stack[h], guts.ChainingValue(n), k, flags)
		}
	}
	n.Flags |= guts.FlagRoot
	out := guts.WordsToBytes(guts.CompressNode(n))
	var id ID
	copy(id[:], out[:])
	return id
}
