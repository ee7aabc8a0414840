package restore

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultWriteBehind is the page-cache window of a restore: how many
// bytes of restored file data may be waiting in the page cache before the
// oldest are written back and dropped.
const DefaultWriteBehind = 64 << 20

// writeBehindMaxSpans bounds the spans (and so the open files) in the
// window however small they are: the last chunk of a file, or the one
// data chunk of a mostly sparse one, may be a few bytes.
const writeBehindMaxSpans = 1024

// writeBehindMinFile is the smallest single-chunk file that goes through
// the window. Smaller files are closed at once: for them the two extra
// system calls cost more than the page cache they would free, and the
// window would hold thousands of descriptors.
const writeBehindMinFile = 256 << 10

// writeBehind bounds the page cache a restore fills. Each span of file
// data is handed to the kernel for write-back as soon as it is written
// (sync_file_range SYNC_FILE_RANGE_WRITE, which does not wait); once
// limit bytes of later writes (or writeBehindMaxSpans later spans) have
// followed it, the writer waits for that span's write-back to finish and
// drops its pages (POSIX_FADV_DONTNEED).
//
// This is what PostgreSQL's *_flush_after settings do, for the same
// reasons: a large restore does not push the host's working set out of
// memory or pile up gigabytes of dirty pages that stall every writer
// later, data reaches the disk while the restore runs rather than after
// it, and the page cache keeps reusing the same pages instead of taking
// fresh memory. The last matters on virtual machines whose memory is
// backed lazily or returned to the host by a balloon: there the first
// touch of a page costs the kernel several times the copy itself (see
// docs/benchmarks.md).
//
// A file handed to release stays open until its last span has been
// dropped, then it is closed. Filesystems that cannot do either call
// (EINVAL, ENOSYS, EOPNOTSUPP) turn the window off for the rest of the
// restore; their data simply stays in the page cache.
type writeBehind struct {
	limit int64
	off   atomic.Bool // unsupported here, or disabled by the caller

	mu    sync.Mutex
	queue []wbSpan
	bytes int64
	files map[*os.File]*wbFile
}

type wbSpan struct {
	f      *os.File
	off, n int64
}

type wbFile struct {
	spans int         // queued spans
	done  func(error) // set by release: close once spans reaches 0
	err   error       // first write-back error
}

// newWriteBehind returns a window of limit bytes; limit < 0 turns it off
// (every file is closed at release, nothing is dropped).
func newWriteBehind(limit int64) *writeBehind {
	w := &writeBehind{limit: limit, files: map[*os.File]*wbFile{}}
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
	if err := unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE); err != nil {
		if unsupported(err) {
			w.off.Store(true)
			return
		}
		w.mu.Lock()
		w.file(f).fail(err)
		w.mu.Unlock()
		return
	}
	w.mu.Lock()
	w.queue = append(w.queue, wbSpan{f: f, off: off, n: n})
	w.bytes += n
	w.file(f).spans++
	var due []wbSpan
	for (w.bytes > w.limit || len(w.queue) > writeBehindMaxSpans) && len(w.queue) > 0 {
		due = append(due, w.queue[0])
		w.bytes -= w.queue[0].n
		w.queue[0] = wbSpan{}
		w.queue = w.queue[1:]
	}
	w.mu.Unlock()
	w.settle(due)
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

// settle waits for the write-back of spans, drops their pages and closes
// the files that were released and have no spans left.
func (w *writeBehind) settle(spans []wbSpan) {
	for _, s := range spans {
		fd := int(s.f.Fd())
		err := unix.SyncFileRange(fd, s.off, s.n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		if err == nil {
			// Advice only: a failure leaves the pages cached, no more.
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
	w.mu.Unlock()
}

func (w *writeBehind) finish(f *os.File, wf *wbFile) {
	err := wf.err
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	wf.done(err)
}

// drain settles every queued span, so that every released file is
// closed and its done called. Files still held (not released) stay open.
func (w *writeBehind) drain() {
	w.mu.Lock()
	due := w.queue
	w.queue, w.bytes = nil, 0
	w.mu.Unlock()
	w.settle(due)
}

// unsupported reports errors meaning the filesystem or kernel does not
// offer sync_file_range or fadvise for this file.
func unsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) ||
		errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ESPIPE)
}
