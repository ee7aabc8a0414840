package restore

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page on amd64 and arm64
// (with 4 KiB base pages).
const hugePage = 2 << 20

// bufferArena holds a restore's download buffers in one anonymous
// mapping outside the Go heap, with transparent huge pages requested for
// it. Each worker's 8 MiB buffer (maxHeld) is otherwise faulted in 4 KiB
// at a time on first use: 16k page faults for eight workers, half of all the
// page faults of a 1.3 GiB restore, and each one is dearer on a virtual
// machine. (Plaintext buffers, a few MiB each, gained nothing measurable
// from the same treatment and stay on the heap.) Where huge pages are not
// available the mapping behaves like ordinary memory.
type bufferArena struct {
	mem []byte
}

// roundHuge rounds n up to a multiple of hugePage.
func roundHuge(n int) int { return (n + hugePage - 1) &^ (hugePage - 1) }

// newBufferArena maps room for n workers' buffers. It returns nil if the
// mapping fails; callers then allocate on the heap.
func newBufferArena(n int) *bufferArena {
	// One spare huge page lets the buffers start on a huge-page boundary.
	size := n*roundHuge(maxHeld) + hugePage
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	_ = unix.Madvise(mem, unix.MADV_HUGEPAGE) // a hint; without it the pages are small
	return &bufferArena{mem: mem}
}

// buffers returns n workers' empty buffers carved from the arena.
func (a *bufferArena) buffers(n int) []*fetchBufs {
	if a == nil {
		return nil
	}
	off := 0
	if addr := uintptr(unsafe.Pointer(unsafe.SliceData(a.mem))); addr%hugePage != 0 {
		off = int(hugePage - addr%hugePage)
	}
	carve := func(size int) []byte {
		b := a.mem[off : off : off+size]
		off += roundHuge(size)
		return b
	}
	out := make([]*fetchBufs, n)
	for i := range out {
		out[i] = &fetchBufs{data: carve(maxHeld)}
	}
	return out
}

// release unmaps the arena. No buffer from it may be used afterwards.
func (a *bufferArena) release() {
	if a != nil {
		_ = unix.Munmap(a.mem)
		a.mem = nil
	}
}
