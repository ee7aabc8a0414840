package cdc

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/restic/chunker"
)

// resticCuts chunks data with restic/chunker and returns the chunk lengths.
func resticCuts(t testing.TB, data []byte, pol chunker.Pol, min, max uint, bits int) []int {
	t.Helper()
	return resticCutsWith(t, chunker.NewWithBoundaries(nil, pol, min, max), data, pol, min, max, bits)
}

// resticCutsWith is resticCuts reusing ch and its buffer.
func resticCutsWith(t testing.TB, ch *chunker.Chunker, data []byte, pol chunker.Pol, min, max uint, bits int) []int {
	t.Helper()
	ch.ResetWithBoundaries(bytes.NewReader(data), pol, min, max)
	ch.SetAverageBits(bits)
	buf := make([]byte, max)
	var out []int
	for {
		c, err := ch.Next(buf)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, int(c.Length))
	}
}

// ourCuts chunks r with Chunker c, checks that the chunks put back
// together are data, and returns their lengths.
func ourCuts(t testing.TB, c *Chunker, r io.Reader, data []byte) []int {
	t.Helper()
	c.Reset(r)
	var out []int
	var joined []byte
	buf := make([]byte, 0, c.max)
	for {
		chunk, err := c.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(chunk) == 0 || len(chunk) > c.max {
			t.Fatalf("chunk %d has %d bytes, want 1 to %d", len(out), len(chunk), c.max)
		}
		out = append(out, len(chunk))
		joined = append(joined, chunk...)
	}
	if !bytes.Equal(joined, data) {
		t.Fatalf("chunks put together are %d bytes and differ from the %d bytes of input", len(joined), len(data))
	}
	return out
}

func sameCuts(t *testing.T, what string, got, want []int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d chunks, restic/chunker cuts %d (got %v, want %v)", what, len(got), len(want), head(got), head(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: chunk %d is %d bytes, restic/chunker's is %d", what, i, got[i], want[i])
		}
	}
}

func head(s []int) []int { return s[:min(len(s), 8)] }

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

func randomPol(t testing.TB, seed uint64) chunker.Pol {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	for {
		// restic draws polynomials of degree 53; lower degrees test the shift.
		deg := 53
		if seed%3 == 1 {
			deg = 20 + r.IntN(33)
		}
		p := chunker.Pol(r.Uint64()&(1<<deg-1) | 1<<deg)
		if p.Irreducible() {
			return p
		}
	}
}

func mustNew(t testing.TB, pol chunker.Pol, min, max uint, bits int) *Chunker {
	t.Helper()
	c, err := New(pol, min, max, bits)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Small bounds give hundreds of cuts per MiB, so every path of Next and
// the lane search (hits in each lane, in the tail, none) is taken many times.
func TestSameCutsAsRestic(t *testing.T) {
	sizes := []int{0, 1, 64, 65, 1023, 1024, 1025, 5000, 64 << 10, 1<<20 + 17, 3 << 20}
	for seed := uint64(0); seed < 12; seed++ {
		pol := randomPol(t, seed)
		for _, b := range []struct {
			min, max uint
			bits     int
		}{{1024, 16 << 10, 10}, {4096, 8192, 13}, {100, 300 << 10, 14}, {65, 4 << 20, 16}} {
			c := mustNew(t, pol, b.min, b.max, b.bits)
			for _, n := range sizes {
				data := randomBytes(seed*100+uint64(n), n)
				sameCuts(t, "random", ourCuts(t, c, bytes.NewReader(data), data), resticCuts(t, data, pol, b.min, b.max, b.bits))
			}
		}
	}
}

// The archiver's bounds (512 KiB – 8 MiB, 19 bits) on 64 MiB, the size of
// the golden test's input.
func TestSameCutsAsResticDefaultBounds(t *testing.T) {
	data := randomBytes(99, 64<<20)
	for seed := uint64(0); seed < 3; seed++ {
		pol := randomPol(t, seed)
		c := mustNew(t, pol, 512<<10, 8<<20, 19)
		got := ourCuts(t, c, bytes.NewReader(data), data)
		sameCuts(t, "64 MiB", got, resticCuts(t, data, pol, 512<<10, 8<<20, 19))
		if len(got) < 30 {
			t.Fatalf("only %d chunks in 64 MiB: the test does not exercise cuts", len(got))
		}
	}
}

// Zeros hash to zero, so every chunk ends at the minimum size; a 64-byte
// pattern whose windows never hit the mask makes every chunk the maximum.
func TestMinimumAndMaximumCuts(t *testing.T) {
	pol := randomPol(t, 5)
	const min, max, bits = 4096, 32 << 10, 20
	c := mustNew(t, pol, min, max, bits)

	zeros := make([]byte, 100_000)
	got := ourCuts(t, c, bytes.NewReader(zeros), zeros)
	sameCuts(t, "zeros", got, resticCuts(t, zeros, pol, min, max, bits))
	if got[0] != min {
		t.Fatalf("zeros: first chunk %d bytes, want the minimum %d", got[0], min)
	}

	var pattern []byte
	for seed := uint64(0); ; seed++ {
		pattern = randomBytes(1000+seed, windowSize)
		p := bytes.Repeat(pattern, 3)
		if c.searchLane(p, windowSize, 2*windowSize) < 0 {
			break
		}
	}
	periodic := bytes.Repeat(pattern, 200_000/windowSize)
	got = ourCuts(t, c, bytes.NewReader(periodic), periodic)
	sameCuts(t, "periodic", got, resticCuts(t, periodic, pol, min, max, bits))
	if got[0] != max {
		t.Fatalf("periodic: first chunk %d bytes, want the maximum %d", got[0], max)
	}
}

// Readers that return less than asked must not change the cuts.
func TestShortReads(t *testing.T) {
	pol := randomPol(t, 8)
	data := randomBytes(8, 600<<10)
	c := mustNew(t, pol, 2048, 64<<10, 12)
	want := resticCuts(t, data, pol, 2048, 64<<10, 12)
	sameCuts(t, "one byte at a time", ourCuts(t, c, iotest.OneByteReader(bytes.NewReader(data)), data), want)
	sameCuts(t, "half reads", ourCuts(t, c, iotest.HalfReader(bytes.NewReader(data)), data), want)
	sameCuts(t, "EOF with data", ourCuts(t, c, iotest.DataErrReader(bytes.NewReader(data)), data), want)
}

func TestReadError(t *testing.T) {
	c := mustNew(t, randomPol(t, 1), 1024, 8192, 10)
	// A reader's own io.ErrUnexpectedEOF (a truncated gzip stream) is a
	// failure too, not the end of the input.
	for _, boom := range []error{errors.New("disk on fire"), io.ErrUnexpectedEOF} {
		c.Reset(io.MultiReader(bytes.NewReader(randomBytes(1, 3000)), iotest.ErrReader(boom)))
		var err error
		for range 10 {
			if _, err = c.Next(nil); err != nil {
				break
			}
		}
		if err != boom {
			t.Errorf("Next after a failing read: %v, want %v", err, boom)
		}
	}
}

// A small buffer is replaced by one of the maximum chunk size; a large
// one is used as it is.
func TestBuffer(t *testing.T) {
	c := mustNew(t, randomPol(t, 2), 1024, 8192, 10)
	data := randomBytes(2, 20_000)
	c.Reset(bytes.NewReader(data))
	big := make([]byte, 10_000)
	chunk, err := c.Next(big)
	if err != nil {
		t.Fatal(err)
	}
	if &chunk[0] != &big[0] {
		t.Fatal("Next did not read into the buffer it was given")
	}
	chunk, err = c.Next(make([]byte, 10))
	if err != nil || cap(chunk) < 8192 {
		t.Fatalf("Next with a small buffer: cap %d, err %v; want a new buffer of 8192", cap(chunk), err)
	}
}

func TestNewRejects(t *testing.T) {
	good := randomPol(t, 3)
	for _, tc := range []struct {
		name     string
		pol      chunker.Pol
		min, max uint
		bits     int
	}{
		{"reducible polynomial", chunker.Pol(1<<53 | 1<<1), 1024, 8192, 10},
		{"polynomial of degree 8", chunker.Pol(0x11b), 1024, 8192, 10},
		{"minimum within the window", good, 64, 8192, 10},
		{"maximum below minimum", good, 8192, 1024, 10},
		{"zero average bits", good, 1024, 8192, 0},
	} {
		if _, err := New(tc.pol, tc.min, tc.max, tc.bits); err == nil {
			t.Errorf("%s: New accepted it", tc.name)
		}
	}
}

// FuzzSameCutsAsRestic compares the cuts of arbitrary input with
// restic/chunker's under small bounds. Polynomials and chunkers are made
// once (each costs about a millisecond), so that the fuzzer runs fast.
func FuzzSameCutsAsRestic(f *testing.F) {
	pols := make([]chunker.Pol, 8)
	for i := range pols {
		pols[i] = randomPol(f, uint64(i))
	}
	type key struct {
		pol int
		min uint
	}
	chunkers := map[key]*Chunker{}
	restics := map[key]*chunker.Chunker{}
	f.Add(uint8(1), []byte("hello"), uint16(100))
	f.Add(uint8(2), bytes.Repeat([]byte{0}, 5000), uint16(0))
	f.Add(uint8(3), randomBytes(3, 20_000), uint16(300))
	f.Fuzz(func(t *testing.T, polIndex uint8, data []byte, minSize uint16) {
		if len(data) > 1<<20 {
			t.Skip("inputs over 1 MiB add nothing the smaller ones do not")
		}
		k := key{int(polIndex) % len(pols), windowSize + 1 + uint(minSize%1024)}
		c, rc := chunkers[k], restics[k]
		if c == nil {
			c = mustNew(t, pols[k.pol], k.min, 4*k.min, 6)
			rc = chunker.NewWithBoundaries(nil, pols[k.pol], k.min, 4*k.min)
			chunkers[k], restics[k] = c, rc
		}
		got := ourCuts(t, c, bytes.NewReader(data), data)
		want := resticCutsWith(t, rc, data, pols[k.pol], k.min, 4*k.min, 6)
		if len(got) != len(want) {
			t.Fatalf("%d chunks, restic/chunker cuts %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("chunk %d is %d bytes, restic/chunker's is %d", i, got[i], want[i])
			}
		}
	})
}

func BenchmarkChunker(b *testing.B) {
	data := randomBytes(42, 64<<20)
	pol := chunker.Pol(0x3DA3358B4DC173)
	b.Run("restic", func(b *testing.B) {
		ch := chunker.NewWithBoundaries(nil, pol, 512<<10, 8<<20)
		buf := make([]byte, 8<<20)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			ch.ResetWithBoundaries(bytes.NewReader(data), pol, 512<<10, 8<<20)
			ch.SetAverageBits(19)
			for {
				if _, err := ch.Next(buf); err == io.EOF {
					break
				}
			}
		}
	})
	b.Run("lanes", func(b *testing.B) {
		c := mustNew(b, pol, 512<<10, 8<<20, 19)
		buf := make([]byte, 8<<20)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			c.Reset(bytes.NewReader(data))
			for {
				if _, err := c.Next(buf); err == io.EOF {
					break
				}
			}
		}
	})
}
