package restore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// wbFiles creates n files in a temporary directory, each written with
// size bytes of its own pattern, recording every write in w.
func wbFiles(t *testing.T, w *writeBehind, n, size int) ([]*os.File, [][]byte) {
	t.Helper()
	dir := t.TempDir()
	var files []*os.File
	var want [][]byte
	for i := range n {
		f, err := os.Create(filepath.Join(dir, string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte{byte(i + 1)}, size)
		// Two spans per file, written back to front as restore's
		// out-of-order chunks are.
		half := int64(size / 2)
		if _, err := f.WriteAt(data[half:], half); err != nil {
			t.Fatal(err)
		}
		w.wrote(f, half, int64(size)-half)
		if _, err := f.WriteAt(data[:half], 0); err != nil {
			t.Fatal(err)
		}
		w.wrote(f, 0, half)
		files = append(files, f)
		want = append(want, data)
	}
	return files, want
}

// closedFile reports whether f has been closed.
func closedFile(f *os.File) bool {
	_, err := f.Stat()
	return errors.Is(err, os.ErrClosed)
}

func TestWriteBehindClosesAfterWriteBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int64
	}{
		{"window smaller than a span", 1},          // every span settles as soon as it is written
		{"window of two files", 2 * 64 << 10},      // spans settle while later files are written
		{"window larger than everything", 1 << 40}, // nothing settles before drain
		{"off", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWriteBehind(tc.limit, false)
			files, want := wbFiles(t, w, 6, 64<<10)
			var mu sync.Mutex
			done := map[int]int{}
			for i, f := range files {
				w.release(f, func(err error) {
					if err != nil {
						t.Errorf("file %d: %v", i, err)
					}
					mu.Lock()
					done[i]++
					mu.Unlock()
				})
			}
			if tc.limit == 1<<40 {
				// Released files with spans still queued stay open.
				for i, f := range files {
					if closedFile(f) || done[i] != 0 {
						t.Fatalf("file %d closed before its write-back was waited for", i)
					}
				}
			}
			w.drain()
			for i, f := range files {
				if !closedFile(f) {
					t.Errorf("file %d still open after drain", i)
				}
				if done[i] != 1 {
					t.Errorf("file %d: done called %d times, want once", i, done[i])
				}
				got, err := os.ReadFile(f.Name())
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want[i]) {
					t.Errorf("file %d: content changed by write-behind", i)
				}
			}
			if len(w.files) != 0 || len(w.queue) != 0 || w.bytes != 0 {
				t.Errorf("window not empty after drain: %d files, %d spans, %d bytes", len(w.files), len(w.queue), w.bytes)
			}
		})
	}
}

func TestWriteBehindBoundsTheWindow(t *testing.T) {
	const span = 64 << 10
	w := newWriteBehind(3*span, false)
	files, _ := wbFiles(t, w, 5, 2*span) // ten spans of 64 KiB
	if w.bytes > w.limit {
		t.Errorf("%d bytes queued, window is %d", w.bytes, w.limit)
	}
	if len(w.queue) != 3 {
		t.Errorf("%d spans queued, want the newest 3", len(w.queue))
	}
	// The first files' spans have all settled: releasing them closes
	// them at once.
	closed := false
	w.release(files[0], func(error) { closed = true })
	if !closed || !closedFile(files[0]) {
		t.Error("a file whose spans were all written back was not closed at release")
	}
	for _, f := range files[1:] {
		w.release(f, func(error) {})
	}
	w.drain()
}

func TestWriteBehindReportsCloseErrors(t *testing.T) {
	w := newWriteBehind(1<<40, false)
	files, _ := wbFiles(t, w, 1, 4096)
	f := files[0]
	// Closing the descriptor behind the File's back makes the window's
	// own Close fail, as an NFS close reporting a write error would.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var got error
	w.release(f, func(err error) { got = err })
	w.drain()
	if got == nil {
		t.Fatal("close error not reported")
	}
}

func TestWriteBehindTurnsOffWhereUnsupported(t *testing.T) {
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w := newWriteBehind(1, false)
	w.wrote(pw, 0, 10) // sync_file_range on a pipe: ESPIPE
	if !w.off.Load() {
		t.Fatal("write-behind still on after the file refused sync_file_range")
	}
	var got error = errors.New("done not called")
	w.release(pw, func(err error) { got = err })
	if got != nil || !closedFile(pw) {
		t.Errorf("release with the window off: closed=%v, done(%v); want closed at once, done(nil)", closedFile(pw), got)
	}
}

// tinyReleasedFiles creates n files of one byte, each written as one span
// of w and released at once.
func tinyReleasedFiles(t *testing.T, w *writeBehind, n int) []*os.File {
	t.Helper()
	dir := t.TempDir()
	var files []*os.File
	for i := range n {
		f, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{1}, 0); err != nil {
			t.Fatal(err)
		}
		w.wrote(f, 0, 1)
		w.release(f, func(error) {})
		files = append(files, f)
	}
	return files
}

func TestWriteBehindBoundsOpenFiles(t *testing.T) {
	w := newWriteBehind(1<<40, false) // the byte bound never applies
	// One tiny span in each of more files than the window holds.
	files, _ := wbFiles(t, w, 1, 2)
	files = append(files, tinyReleasedFiles(t, w, writeBehindMaxFiles+2)...)
	if w.holding > writeBehindMaxFiles {
		t.Errorf("%d files held, bound is %d", w.holding, writeBehindMaxFiles)
	}
	if closedFile(files[0]) {
		t.Error("a file not yet released was closed")
	}
	for i, f := range files[1:3] {
		if !closedFile(f) {
			t.Errorf("released file %d still open with %d newer files queued", i, writeBehindMaxFiles)
		}
	}
	if closedFile(files[len(files)-1]) {
		t.Error("the newest file was closed")
	}
	w.release(files[0], func(error) {})
	w.drain()
	for i, f := range files {
		if !closedFile(f) {
			t.Fatalf("file %d open after drain", i)
		}
	}
}

func TestWriteBehindBoundsSpans(t *testing.T) {
	w := newWriteBehind(1<<40, false)
	files, _ := wbFiles(t, w, 1, 2)
	f := files[0]
	for i := range writeBehindMaxSpans + 10 {
		w.wrote(f, int64(i%2), 1) // the same two bytes, as spans of their own
	}
	if len(w.queue) > writeBehindMaxSpans {
		t.Errorf("%d spans queued, bound is %d", len(w.queue), writeBehindMaxSpans)
	}
	w.release(f, func(error) {})
	w.drain()
	if !closedFile(f) {
		t.Error("file open after drain")
	}
}

// TestWriteBehindStartsAtHalfTheWindow checks when write-back is asked
// for: not while at most half the window waits for it (a restore smaller
// than that leaves its data to the kernel), then for the oldest spans.
func TestWriteBehindStartsAtHalfTheWindow(t *testing.T) {
	const span = 64 << 10
	w := newWriteBehind(8*span, false)
	files, _ := wbFiles(t, w, 2, 2*span) // four spans: half the window
	if w.next != 0 || w.pending != 4*span {
		t.Fatalf("after half the window: %d spans started, %d bytes pending; want none started", w.next, w.pending)
	}
	more, _ := wbFiles(t, w, 1, 2*span) // two more
	if w.next != 2 || w.pending != 4*span {
		t.Fatalf("after six spans: %d started, %d bytes pending; want the oldest 2 started, 4 spans pending", w.next, w.pending)
	}
	if len(w.queue) != 6 || w.bytes != 6*span {
		t.Fatalf("%d spans, %d bytes queued; want all 6 (the window is not full)", len(w.queue), w.bytes)
	}
	// Three more spans overflow the window: the oldest settle, and the
	// started/pending split stays consistent.
	last, _ := wbFiles(t, w, 2, 2*span)
	if w.bytes > w.limit || len(w.queue) != 8 || w.pending > w.limit/2 {
		t.Fatalf("after ten spans: %d bytes, %d spans, %d pending; want at most %d, 8, at most %d", w.bytes, len(w.queue), w.pending, w.limit, w.limit/2)
	}
	var started int64
	for _, s := range w.queue[:w.next] {
		started += s.n
	}
	if started+w.pending != w.bytes {
		t.Fatalf("started %d + pending %d != queued %d", started, w.pending, w.bytes)
	}
	for _, f := range append(append(files, more...), last...) {
		w.release(f, func(error) {})
	}
	w.drain()
}

// TestWriteBehindEager checks that an eager window (Options.Sync) starts
// every span's write-back at once.
func TestWriteBehindEager(t *testing.T) {
	const span = 64 << 10
	w := newWriteBehind(8*span, true)
	files, want := wbFiles(t, w, 2, 2*span)
	if w.next != 4 || w.pending != 0 {
		t.Fatalf("after four spans: %d started, %d bytes pending; want all started", w.next, w.pending)
	}
	for _, f := range files {
		w.release(f, func(error) {})
	}
	w.drain()
	for i, f := range files {
		got, err := os.ReadFile(f.Name())
		if err != nil || !bytes.Equal(got, want[i]) {
			t.Errorf("file %d: content changed (%v)", i, err)
		}
	}
}

func TestWindowFor(t *testing.T) {
	for _, tc := range []struct{ background, want int64 }{
		{0, minWriteBehind}, // unknown: the floor
		{16 << 20, minWriteBehind},
		{100 << 20, 200 << 20},
		{2355 << 20, maxWriteBehind}, // 10 % of 23 GiB, doubled, is over the cap
	} {
		if got := windowFor(tc.background); got != tc.want {
			t.Errorf("windowFor(%d) = %d, want %d", tc.background, got, tc.want)
		}
	}
	if w := DefaultWriteBehind(); w < minWriteBehind || w > maxWriteBehind {
		t.Errorf("DefaultWriteBehind() = %d, outside [%d, %d]", w, int64(minWriteBehind), int64(maxWriteBehind))
	}
}

// resident reports how many of the pages of the file at path are in the
// page cache (mincore), or -1 where that cannot be told: on tmpfs, whose
// pages are the file itself and are never dropped.
func resident(t *testing.T, path string) int {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		return -1
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestWriteBehindDropsWhatItSettles checks what happens to the
// pages: a span pushed out of the window by bytes is written back and
// dropped from the page cache; a file let go because too many files were
// held is closed.
func TestWriteBehindDropsWhatItSettles(t *testing.T) {
	const span = 64 << 10
	w := newWriteBehind(2*span, false)
	files, _ := wbFiles(t, w, 2, 2*span) // the first file's two spans are pushed out
	first := files[0].Name()
	for _, f := range files {
		w.release(f, func(error) {})
	}
	if n := resident(t, first); n < 0 {
		t.Skip("tmpfs keeps every page; nothing to observe")
	} else if n > 0 {
		t.Errorf("%d pages of a file settled by bytes still cached", n)
	}
	w.drain()

	w = newWriteBehind(1<<40, false)
	held, _ := wbFiles(t, w, 1, 2*span)
	w.release(held[0], func(error) {})
	tinyReleasedFiles(t, w, writeBehindMaxFiles)
	if !closedFile(held[0]) {
		t.Fatal("the oldest file is still held with more than the bound of files queued")
	}
	w.drain()
}

// TestWriteBehindConcurrent has several writers write and release files
// through one window at once (run with -race): every file is closed and
// its done called exactly once, the content is intact, and the window's
// counters agree with its queue at the end of each phase.
func TestWriteBehindConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int64
		eager bool
	}{
		{"bytes bound", 256 << 10, false},
		{"eager", 256 << 10, true},
		{"counts only", 1 << 40, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWriteBehind(tc.limit, tc.eager)
			dir := t.TempDir()
			const writers, perWriter = 6, 200
			var mu sync.Mutex
			done := map[string]int{}
			var wg sync.WaitGroup
			for g := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perWriter {
						name := filepath.Join(dir, fmt.Sprintf("%d-%d", g, i))
						f, err := os.Create(name)
						if err != nil {
							t.Error(err)
							return
						}
						data := bytes.Repeat([]byte{byte(g*perWriter + i)}, 8<<10*(1+i%3))
						half := int64(len(data) / 2)
						for _, off := range []int64{half, 0} {
							end := int64(len(data))
							if off == 0 {
								end = half
							}
							if _, err := f.WriteAt(data[off:end], off); err != nil {
								t.Error(err)
								return
							}
							w.wrote(f, off, end-off)
						}
						w.release(f, func(err error) {
							if err != nil {
								t.Errorf("%s: %v", name, err)
							}
							mu.Lock()
							done[name]++
							mu.Unlock()
						})
					}
				}()
			}
			wg.Wait()
			w.mu.Lock()
			var queued int64
			for _, s := range w.queue {
				queued += s.n
			}
			if queued != w.bytes || w.holding > writeBehindMaxFiles || w.bytes > max(w.limit, 0) && tc.limit < 1<<40 {
				t.Errorf("queue holds %d bytes, counter %d, %d files held", queued, w.bytes, w.holding)
			}
			w.mu.Unlock()
			w.drain()
			if len(done) != writers*perWriter {
				t.Fatalf("done called for %d of %d files", len(done), writers*perWriter)
			}
			for name, n := range done {
				if n != 1 {
					t.Errorf("%s: done called %d times", name, n)
				}
			}
			if len(w.files) != 0 || len(w.queue) != 0 || w.holding != 0 {
				t.Errorf("after drain: %d files, %d spans, %d held", len(w.files), len(w.queue), w.holding)
			}
		})
	}
}
