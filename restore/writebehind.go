package restore

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/lifeboat-backup/lifeboat/internal/sysinfo"
	"golang.org/x/sys/unix"
)

// Bounds of the default window (DefaultWriteBehind).
const (
	minWriteBehind = 64 << 20
	maxWriteBehind = 4 << 30
)

// DefaultWriteBehind is the page-cache window a restore uses unless told
// otherwise: twice the amount of dirty data at which the kernel itself
// starts writing back in the background (vm.dirty_background_bytes, or
// vm.dirty_background_ratio of the available memory: 10 % by default),
// between 64 MiB and 4 GiB. Up to half the window a restore therefore
// behaves like any program writing files, and the kernel decides when
// its data goes to disk; beyond that it starts the write-back of its own
// oldest data, and beyond the whole window it waits for it and drops the
// data from the cache.
//
// In a cgroup with a memory limit (a container), the limit counts as the
// available memory when it is lower: the page cache a restore fills is
// charged to its cgroup.
func DefaultWriteBehind() int64 {
	avail := sysinfo.MemInfo("/proc/meminfo", "MemAvailable")
	if lim := sysinfo.CgroupMemoryLimit("/proc/self/cgroup", "/sys/fs/cgroup"); lim > 0 && (avail == 0 || lim < avail) {
		avail = lim
	}
	bg := sysinfo.DirtyBackground("/proc/sys", avail)
	if avail > 0 && bg > avail/5 {
		// A vm.dirty_background_bytes set for the whole machine can
		// exceed what a container may use: the window stays under 40 %
		// of the memory at hand.
		bg = avail / 5
	}
	return windowFor(bg)
}

func windowFor(dirtyBackground int64) int64 {
	return min(max(2*dirtyBackground, minWriteBehind), maxWriteBehind)
}

// Besides bytes, the window bounds its spans (their records) and, above
// all, the files it holds open for them: the last chunk of a file, or
// the one data chunk of a mostly sparse one, may be a few bytes, and a
// file of one chunk of 256 KiB or more is a span of its own.
const (
	writeBehindMaxSpans = 1 << 16
	writeBehindMaxFiles = 1024
)

// writeBehindMinFile is the smallest single-chunk file that goes through
// the window. Smaller files are closed at once: for them the two extra
// system calls cost more than the page cache they would free, and the
// window would hold thousands of descriptors.
const writeBehindMinFile = 256 << 10

// writeBehind bounds the page cache a restore fills. Each span of file
// data written is queued. Once more than half the window's bytes wait
// for write-back, the oldest of them are handed to the kernel for it
// (sync_file_range SYNC_FILE_RANGE_WRITE, which does not wait); once
// more than the whole window is queued, the writer waits for the oldest
// span's write-back to finish and drops its pages (POSIX_FADV_DONTNEED).
// When only the number of spans (writeBehindMaxSpans) or of released
// files held open for them (writeBehindMaxFiles) is over its bound, the
// oldest span is let go without waiting: its write-back is started and
// its pages are dropped once clean, by the kernel's reclaim rather than
// by the restore.
//
// This is what PostgreSQL's *_flush_after settings do, for the same
// reasons: a restore larger than the window does not push the host's
// working set out of memory or pile up dirty pages that stall every
// writer later, and the page cache keeps reusing the same pages instead
// of taking fresh memory. A restore smaller than half the window writes
// nothing back itself, as restic, cp and tar do not: on a disk slower
// than the restore (700 MB/s), starting write-back as it went took the
// restore from 1.7 to 2.2 s (its data then on disk about 0.7 s sooner,
// which is what Options.Sync buys), and also waiting for the disk to
// 2.4-2.8 s (docs/benchmarks.md).
//
// A file handed to release stays open until its last span has been
// dropped, then it is closed; drain closes the rest without waiting.
// Filesystems that cannot do either call (EINVAL, ENOSYS, EOPNOTSUPP,
// ESPIPE)
// turn the window off for the rest of the restore; their data simply
// stays in the page cache.
type writeBehind struct {
	limit   int64
	startAt int64       // write-back is started for spans beyond this many pending bytes
	off     atomic.Bool // unsupported here, or disabled by the caller

	mu      sync.Mutex
	queue   []wbSpan // oldest first
	bytes   int64    // in queue
	next    int      // queue[:next] have had their write-back started
	pending int64    // bytes in queue[next:]
	files   map[*os.File]*wbFile
	holding int // released files with spans in the queue (held open only for the window)
}

type wbSpan struct {
	f      *os.File
	off, n int64
}

type wbFile struct {
	queued int         // spans in the queue
	spans  int         // spans not yet settled (queued or being settled)
	done   func(error) // set by release: close once spans reaches 0
	err    error       // first write-back error
}

// newWriteBehind returns a window of limit bytes; limit < 0 turns it off
// (every file is closed at release, nothing is dropped). An eager window
// starts the write-back of every span as soon as it is written, for a
// restore that is to end with its data on disk (Options.Sync): the disk
// then works while the restore does, instead of after it.
func newWriteBehind(limit int64, eager bool) *writeBehind {
	w := &writeBehind{limit: limit, startAt: limit / 2, files: map[*os.File]*wbFile{}}
	if eager {
		w.startAt = 0
	}
	if limit < 0 {
		w.off.Store(true)
	}
	return w
}

// wrote records that [off, off+n) of f was just written.
func (w *writeBehind) wrote(f *os.File, off, n int64) {
	if n <= 0 || w.off.Load() {
		return
	}
	w.mu.Lock()
	w.queue = append(w.queue, wbSpan{f: f, off: off, n: n})
	w.bytes += n
	w.pending += n
	wf := w.file(f)
	wf.queued++
	wf.spans++
	var start []wbSpan
	for w.pending > w.startAt && w.next < len(w.queue) {
		start = append(start, w.queue[w.next])
		w.pending -= w.queue[w.next].n
		w.next++
	}
	due, forget := w.popDue()
	w.mu.Unlock()
	w.start(start)
	w.settle(due, true)
	w.settle(forget, false)
}

// popDue takes the spans that are over the window's bounds off the
// queue, oldest first: due ones (over the byte bound) are to be waited
// for and dropped, the others (over a count bound only) let go. w.mu is
// held.
func (w *writeBehind) popDue() (due, forget []wbSpan) {
	for (w.bytes > w.limit || len(w.queue) > writeBehindMaxSpans || w.holding > writeBehindMaxFiles) && len(w.queue) > 0 {
		s := w.queue[0]
		if w.bytes > w.limit {
			due = append(due, s)
		} else {
			// Only a count is over its bound (many small spans or
			// files): let go of the span without waiting for the
			// disk (settle starts its write-back).
			forget = append(forget, s)
		}
		w.bytes -= s.n
		if w.next > 0 {
			w.next--
		} else {
			w.pending -= s.n
		}
		w.queue[0] = wbSpan{}
		w.queue = w.queue[1:]
		wf := w.files[s.f]
		wf.queued--
		if wf.queued == 0 && wf.done != nil {
			w.holding--
		}
	}
	return due, forget
}

// start hands spans to the kernel for write-back without waiting for it.
// A span's file may have been closed meanwhile (its spans settled by
// another writer): Control then refuses, and there is nothing to do.
func (w *writeBehind) start(spans []wbSpan) {
	for _, s := range spans {
		rc, err := s.f.SyscallConn()
		if err != nil {
			continue
		}
		var serr error
		if rc.Control(func(fd uintptr) {
			serr = unix.SyncFileRange(int(fd), s.off, s.n, unix.SYNC_FILE_RANGE_WRITE)
		}) != nil {
			continue
		}
		if serr != nil && unsupported(serr) {
			w.off.Store(true)
			return
		}
		if serr != nil {
			// Kept for the file's done (EIO): the span may never
			// settle, as a restore smaller than the window ends
			// without waiting.
			w.mu.Lock()
			if wf := w.files[s.f]; wf != nil {
				wf.fail(serr)
			}
			w.mu.Unlock()
		}
	}
}

func (w *writeBehind) file(f *os.File) *wbFile {
	wf := w.files[f]
	if wf == nil {
		wf = &wbFile{}
		w.files[f] = wf
	}
	return wf
}

func (wf *wbFile) fail(err error) {
	if wf.err == nil {
		wf.err = err
	}
}

// settle waits for the write-back of spans and drops their pages (or,
// without wait, starts it and drops what is already clean), and closes
// the files that were released and have no spans left.
func (w *writeBehind) settle(spans []wbSpan, wait bool) {
	for _, s := range spans {
		fd := int(s.f.Fd())
		var err error
		if wait {
			err = unix.SyncFileRange(fd, s.off, s.n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
			if unsupported(err) {
				w.off.Store(true)
			}
		}
		if err == nil {
			// Advice only: a failure leaves the pages cached, no more.
			// Without the wait it drops what is already clean and
			// starts the write-back of the rest (FADV_DONTNEED does
			// both and waits for neither), which the kernel then
			// reclaims like any written file's pages.
			_ = unix.Fadvise(fd, s.off, s.n, unix.FADV_DONTNEED)
		}
		w.mu.Lock()
		wf := w.files[s.f]
		if err != nil && !unsupported(err) {
			wf.fail(err)
		}
		wf.spans--
		closeNow := wf.done != nil && wf.spans == 0
		if closeNow {
			delete(w.files, s.f)
		}
		w.mu.Unlock()
		if closeNow {
			w.finish(s.f, wf)
		}
	}
}

// release closes f once its queued spans have been written back, and
// then calls done with the first write-back or close error (nil if
// none; done may be nil). done may run on another goroutine, before or after release
// returns.
func (w *writeBehind) release(f *os.File, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	w.mu.Lock()
	wf := w.files[f]
	if wf == nil || wf.spans == 0 {
		delete(w.files, f)
		w.mu.Unlock()
		if wf == nil {
			wf = &wbFile{}
		}
		wf.done = done
		w.finish(f, wf)
		return
	}
	wf.done = done
	if wf.queued > 0 {
		w.holding++
	}
	due, forget := w.popDue()
	w.mu.Unlock()
	w.settle(due, true)
	w.settle(forget, false)
}

func (w *writeBehind) finish(f *os.File, wf *wbFile) {
	err := wf.err
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	wf.done(err)
}

// drain closes every released file without waiting for the write-back
// of its queued spans: their data stays in the page cache, dirty or
// being written, for the kernel to write back as it would any program's.
// Write-back errors seen so far are reported to done. Files still held
// (not released) stay open.
func (w *writeBehind) drain() {
	w.mu.Lock()
	var closeNow []*os.File
	for f, wf := range w.files {
		wf.spans, wf.queued = 0, 0
		if wf.done != nil {
			closeNow = append(closeNow, f)
		}
	}
	ready := make([]*wbFile, len(closeNow))
	for i, f := range closeNow {
		ready[i] = w.files[f]
		delete(w.files, f)
	}
	clear(w.queue)
	w.queue, w.bytes, w.next, w.pending, w.holding = nil, 0, 0, 0, 0
	w.mu.Unlock()
	for i, f := range closeNow {
		w.finish(f, ready[i])
	}
}

// unsupported reports errors meaning the filesystem or kernel does not
// offer sync_file_range or fadvise for this file.
func unsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) ||
		errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ESPIPE)
}
