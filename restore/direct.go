package restore

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Direct I/O. The bulk of a large file is written with O_DIRECT, from
// the worker's own (reused) buffer straight to the disk, instead of being
// copied into the page cache and written back later. Writing into the
// page cache costs the copy, the kernel's per-page bookkeeping and, on a
// virtual machine whose memory the host backs lazily or takes back (free
// page reporting), a host fault for each page not recently used. On the
// development VM, 20 minutes after boot with most of its memory never
// used, a 512 MiB buffered write (dd, no fsync) ran at 370-420 MB/s and
// the same write with O_DIRECT at 1.3-1.6 GB/s (docs/benchmarks.md).
//
// O_DIRECT needs the file offset, the length and the memory address of
// each write aligned to the device's logical block size. Chunk
// boundaries fall anywhere, so each chunk is split: its unaligned head
// and tail (less than directAlign bytes each) go through the page cache,
// the aligned interior goes direct. The interior is only aligned in
// memory if the plaintext was placed for it; fetch decodes each blob at
// the address its first target needs (placeDirect). Other targets of the
// same blob, at other alignments, are written through the page cache.
// Files under directMinFile are left to the page cache and the
// write-behind window.
//
// The page cache and direct writes of one file never share a page: the
// interior starts and ends on page boundaries, so the kernel has nothing
// to flush or invalidate. Data written direct has reached the device
// when the write returns, which also leaves less for the write-behind
// window and for a sync after the restore.
//
// Filesystems without O_DIRECT (open or write fails with EINVAL) turn it
// off for the rest of the restore; everything then goes through the page
// cache as before.

// directAlign is the alignment of offsets, lengths and addresses of
// direct writes: the page size, a multiple of every logical block size
// in common use (512 and 4096 bytes).
const directAlign = 4096

// directMinFile is the smallest file written with direct I/O. Smaller
// files are mostly written by one call each and gain little; they keep
// the single buffered write.
const directMinFile = 1 << 20

// directMinSpan is the smallest aligned interior worth a direct write
// (and the second descriptor it needs).
const directMinSpan = 64 << 10

// directSlots is how many direct writes a restore fetching packs ranges
// at once lets be under way: a quarter of its fetchers, at least one.
// With a disk slower than the restore's other work, every fetcher ended
// up waiting on a direct write while the cores idled: a restore of the
// bench dataset with direct writes held to 150 MB/s (a cgroup's limit)
// took 7.6 s with them unbounded, 3.1-3.4 s with four of eight fetchers
// allowed, 1.9-2.0 s with two, and 1.6-2.2 s through the page cache; at
// the disk's own 1.1 GB/s two slots cost nothing (median 1.44 s against
// 1.62 s unbounded, five alternated rounds; docs/benchmarks.md).
func directSlots(packs int) int { return max(1, packs/4) }

// directIO holds a restore's O_DIRECT descriptors, one per large file
// being written, beside the ordinary ones.
type directIO struct {
	off     atomic.Bool  // unsupported here, or turned off by the caller
	noAlloc atomic.Bool  // fallocate unsupported here
	written atomic.Int64 // bytes written direct
	log     *slog.Logger
	open    handles // opened with O_DIRECT
	once    sync.Once
	// slots bounds the direct writes under way (nil: no bound). A
	// write that finds none free goes through the page cache instead,
	// so that a slow disk holds up at most that many fetchers, and the
	// others keep the cores busy downloading and decoding.
	slots chan struct{}
}

func newDirectIO(enabled bool, slots int, log *slog.Logger) *directIO {
	d := &directIO{log: log}
	d.off.Store(!enabled)
	if slots > 0 {
		d.slots = make(chan struct{}, slots)
	}
	return d
}

// slot takes a slot for a direct write, if one is free, and returns
// the function that gives it back; ok is false when none is free.
func (d *directIO) slot() (release func(), ok bool) {
	if d.slots == nil {
		return func() {}, true
	}
	select {
	case d.slots <- struct{}{}:
		return func() { <-d.slots }, true
	default:
		return nil, false
	}
}

// wants reports whether f should be written with direct I/O.
func (d *directIO) wants(f *fileState) bool {
	return f.size >= directMinFile && !d.off.Load()
}

// disable turns direct I/O off for the rest of the restore after err
// showed the target does not support it.
func (d *directIO) disable(err error) {
	d.off.Store(true)
	d.once.Do(func() {
		d.log.Info("target does not support direct I/O, writing through the page cache", "err", err)
	})
}

// unsupportedDirect reports errors meaning O_DIRECT, or this alignment,
// is not supported by the target's filesystem.
func unsupportedDirect(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP)
}

// handle returns f's O_DIRECT descriptor, opening it on first use, or
// nil if direct I/O is not available (then without taking a lock, and
// without using a descriptor opened before it was found unsupported).
func (d *directIO) handle(t *targetDir, f *fileState) (*os.File, error) {
	if d.off.Load() {
		return nil, nil
	}
	return d.open.get(f, func() (*os.File, error) {
		fh, err := openDirect(t, f.wpath())
		if err != nil && unsupportedDirect(err) {
			d.disable(err)
			return nil, nil
		}
		if err == nil {
			if err = f.created(fh); err != nil {
				fh.Close()
				return nil, err
			}
		}
		return fh, err
	})
}

// openDirect opens an existing file for direct writes. Tests replace it
// to play a filesystem without O_DIRECT.
var openDirect = func(t *targetDir, p string) (*os.File, error) {
	return t.openFile(p, unix.O_WRONLY|unix.O_DIRECT)
}

// reserve allocates the blocks of [off, off+n) in fh's file, without
// changing its size, before a direct write of that span. The file was
// created sparse at its final size, and ext4 lets a direct write take
// the file's lock shared only when it overwrites blocks already
// allocated (written or not); a write into a hole takes it exclusive and
// keeps it until the device has the data. Several workers write chunks
// of one large file at once, and without this they queued behind one
// another on that lock, spinning as they waited. With it, the lock's
// slow path fell from 1.6 % of lifeboat's samples in a restore to 0.4 %,
// and on the Zen 4 VM restores took 2.04 s against 2.14 s on average,
// faster in 12 of 19 alternated pairs; on an earlier VM with a slower
// disk three pairs showed no gain (docs/benchmarks.md).
//
// Only spans about to be written are allocated, so all-zero chunks stay
// holes. A filesystem without fallocate (the errors of unsupported, as
// for the write-behind window's calls) turns it off for the rest of the
// restore; any other error, such as a full disk, is left to the write,
// which reports it.
func (d *directIO) reserve(fh *os.File, off, n int64) {
	if d.noAlloc.Load() {
		return
	}
	err := fallocate(fh, off, n)
	if unsupported(err) {
		d.noAlloc.Store(true)
	}
}

// fallocate allocates [off, off+n) of fh's file, keeping its size.
// Tests replace it to play a filesystem without it.
var fallocate = func(fh *os.File, off, n int64) error {
	return unix.Fallocate(int(fh.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// writeDirect writes through an O_DIRECT descriptor. Tests replace it
// to play a filesystem that refuses the writes.
var writeDirect = (*os.File).WriteAt

// close closes f's O_DIRECT descriptor, if it has one.
func (d *directIO) close(f *fileState) error {
	if fh := d.open.take(f); fh != nil {
		return fh.Close()
	}
	return nil
}

// closeAll closes every O_DIRECT descriptor (a failed restore).
func (d *directIO) closeAll() {
	d.open.takeAll(func(fh *os.File) { _ = fh.Close() })
}

// handles holds descriptors of files being written, each opened on
// first use by whichever worker needs it first.
type handles struct {
	m  sync.Map // *fileState → *os.File
	mu sync.Mutex
}

// get returns f's descriptor, calling open on first use. open may return
// (nil, nil): nothing is kept then, and the next get calls it again.
func (h *handles) get(f *fileState, open func() (*os.File, error)) (*os.File, error) {
	if v, ok := h.m.Load(f); ok {
		return v.(*os.File), nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, ok := h.m.Load(f); ok {
		return v.(*os.File), nil
	}
	fh, err := open()
	if err != nil || fh == nil {
		return nil, err
	}
	h.m.Store(f, fh)
	return fh, nil
}

// take removes and returns f's descriptor, nil if it has none.
func (h *handles) take(f *fileState) *os.File {
	if v, ok := h.m.LoadAndDelete(f); ok {
		return v.(*os.File)
	}
	return nil
}

// takeAll removes every descriptor and passes it to fn.
func (h *handles) takeAll(fn func(*os.File)) {
	h.m.Range(func(k, v any) bool {
		h.m.Delete(k)
		fn(v.(*os.File))
		return true
	})
}

// interior returns the part of a write of n bytes at file offset off
// that can go direct: [a, b) in file offsets, empty (a == b) if none. p
// is the address of the data's first byte.
func interior(p uintptr, off, n int64) (a, b int64) {
	a = (off + directAlign - 1) &^ (directAlign - 1)
	b = (off + n) &^ (directAlign - 1)
	if b-a < directMinSpan || (p+uintptr(a-off))%directAlign != 0 {
		return 0, 0
	}
	return a, b
}

// placeDirect returns the start of an empty buffer within buf at which
// data bound for file offset off lies aligned for direct I/O: its address
// is congruent to off modulo directAlign. buf needs directAlign bytes of
// capacity beyond what will be decoded into it.
func placeDirect(buf []byte, off int64) []byte {
	shift := (uintptr(off) - addr(buf[:1])) % directAlign
	return buf[shift:shift]
}

// addr is the address of b's first byte.
func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
