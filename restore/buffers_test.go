package restore

import (
	"testing"
	"unsafe"
)

func TestBufferArena(t *testing.T) {
	const n = 3
	a := newBufferArena(n)
	if a == nil {
		t.Fatal("could not map the arena")
	}
	defer a.release()
	bufs := a.buffers(n)
	if len(bufs) != n {
		t.Fatalf("%d buffers, want %d", len(bufs), n)
	}
	starts := map[uintptr]bool{}
	for i, b := range bufs {
		if len(b.data) != 0 || cap(b.data) != maxHeld {
			t.Fatalf("buffer %d: len %d cap %d, want 0 and %d", i, len(b.data), cap(b.data), maxHeld)
		}
		full := b.data[:maxHeld]
		addr := uintptr(unsafe.Pointer(unsafe.SliceData(full)))
		if addr%hugePage != 0 {
			t.Errorf("buffer %d starts at %#x, not on a huge-page boundary", i, addr)
		}
		starts[addr] = true
		// Fill each buffer with its own byte; overlapping buffers would
		// overwrite each other's.
		for j := range full {
			full[j] = byte(i + 1)
		}
	}
	if len(starts) != n {
		t.Fatalf("buffers share a start address")
	}
	for i, b := range bufs {
		full := b.data[:maxHeld]
		for _, j := range []int{0, maxHeld / 2, maxHeld - 1} {
			if full[j] != byte(i+1) {
				t.Fatalf("buffer %d byte %d = %d, overwritten by another buffer", i, j, full[j])
			}
		}
	}
}

func TestBufferArenaNil(t *testing.T) {
	var a *bufferArena // what a failed mapping returns
	if bufs := a.buffers(4); bufs != nil {
		t.Fatalf("nil arena handed out %d buffers", len(bufs))
	}
	a.release()
}
