package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// Run is the conformance suite of the object-storage seam. It checks every
// clause of the contract written on chunkstore.Reader and chunkstore.Store
// against the stores made by newStore, which is called once per subtest and
// must return an empty store.
func Run(t *testing.T, newStore func(t *testing.T) chunkstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s chunkstore.Store)
	}{
		{"PutGetWhole", testPutGetWhole},
		{"GetRanges", testGetRanges},
		{"OpenRange", testOpenRange},
		{"ZeroLength", testZeroLength},
		{"NotFound", testNotFound},
		{"List", testList},
		{"ListFnError", testListFnError},
		{"ListMany", testListMany},
		{"Delete", testDelete},
		{"ModTime", testModTime},
		{"OverwriteIdentical", testOverwriteIdentical},
		{"ConcurrentPuts", testConcurrentPuts},
		{"InvalidNames", testInvalidNames},
		{"ReadAfterWrite", testReadAfterWrite},
		{"NoAliasing", testNoAliasing},
		{"CanceledContext", testCanceledContext},
		{"Location", testLocation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// Data returns n deterministic pseudo-random bytes derived from seed.
func Data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, s chunkstore.Store, name string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), name, data); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", name, len(data), err)
	}
}

func mustGet(t *testing.T, s chunkstore.Store, name string, off, n int64) []byte {
	t.Helper()
	b, err := s.Get(t.Context(), name, off, n)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", name, off, n, err)
	}
	return b
}

func listNames(t *testing.T, s chunkstore.Store, prefix string) map[string]int64 {
	t.Helper()
	got := make(map[string]int64)
	err := s.List(t.Context(), prefix, func(oi chunkstore.ObjectInfo) error {
		if _, dup := got[oi.Name]; dup {
			return fmt.Errorf("List(%q) reported %q twice", prefix, oi.Name)
		}
		got[oi.Name] = oi.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

func testPutGetWhole(t *testing.T, s chunkstore.Store) {
	for i, n := range []int{1, 100, 64 << 10, 1<<20 + 3} {
		name := fmt.Sprintf("data/%02d/obj-%d", i, n)
		want := Data(uint64(n), n)
		put(t, s, name, want)
		if got := mustGet(t, s, name, 0, -1); !bytes.Equal(got, want) {
			t.Errorf("Get(%q, 0, -1): got %d bytes, want the %d put", name, len(got), len(want))
		}
		if got := mustGet(t, s, name, 0, int64(n)); !bytes.Equal(got, want) {
			t.Errorf("Get(%q, 0, %d): got %d bytes, want the %d put", name, n, len(got), len(want))
		}
		oi, err := s.Stat(t.Context(), name)
		if err != nil {
			t.Fatalf("Stat(%q): %v", name, err)
		}
		if oi.Size != int64(n) || oi.Name != name {
			t.Errorf("Stat(%q) = %+v, want size %d", name, oi, n)
		}
	}
}

func testGetRanges(t *testing.T, s chunkstore.Store) {
	const size = 1000
	data := Data(7, size)
	put(t, s, "ranges/obj", data)
	tests := []struct {
		off, n  int64
		wantErr bool
	}{
		{0, -1, false},
		{0, size, false},
		{1, size - 2, false},
		{5, -1, false},
		{size - 1, 1, false},
		{size - 1, -1, false},
		{size, -1, false},
		{size, 0, false},
		{0, 0, false},
		{17, 0, false},
		{123, 456, false},
		{0, size + 1, true},
		{size - 1, 2, true},
		{size, 1, true},
		{size + 1, -1, true},
		{size + 1, 0, true},
		{size + 100, 10, true},
		{-1, 10, true},
	}
	// Get, and GetInto with no buffer, a too small one and a large one
	// holding stale bytes: all must answer the same.
	bufs := []struct {
		name string
		buf  []byte
	}{{"Get", nil}, {"GetInto(nil)", nil}, {"GetInto(small)", make([]byte, 3, 10)}, {"GetInto(large)", bytes.Repeat([]byte{0xee}, 2*size)}}
	for _, b := range bufs {
		for _, tt := range tests {
			var got []byte
			var err error
			if b.name == "Get" {
				got, err = s.Get(t.Context(), "ranges/obj", tt.off, tt.n)
			} else {
				got, err = chunkstore.GetInto(t.Context(), s, "ranges/obj", tt.off, tt.n, b.buf)
			}
			switch {
			case tt.wantErr && err == nil:
				t.Errorf("%s(%d, %d) returned %d bytes, want an error (range outside object)", b.name, tt.off, tt.n, len(got))
			case tt.wantErr && errors.Is(err, chunkstore.ErrNotFound):
				t.Errorf("%s(%d, %d) = %v, must not wrap ErrNotFound", b.name, tt.off, tt.n, err)
			case !tt.wantErr && err != nil:
				t.Errorf("%s(%d, %d): %v", b.name, tt.off, tt.n, err)
			case !tt.wantErr:
				end := tt.off + tt.n
				if tt.n < 0 {
					end = size
				}
				if !bytes.Equal(got, data[tt.off:end]) {
					t.Errorf("%s(%d, %d): got %d bytes, want %d (bytes [%d,%d))", b.name, tt.off, tt.n, len(got), end-tt.off, tt.off, end)
				}
			}
		}
	}
}

// testOpenRange checks streamed ranges where the store offers them
// (chunkstore.RangeOpener): the same bytes as Get, read in any piece
// size, and the same errors. A store without streams says so with
// errors.ErrUnsupported.
func testOpenRange(t *testing.T, s chunkstore.Store) {
	const size = 1000
	data := Data(8, size)
	put(t, s, "stream/obj", data)
	ctx := t.Context()
	if _, err := chunkstore.OpenRange(ctx, s, "stream/obj", 0, 1); errors.Is(err, errors.ErrUnsupported) {
		return // Get only (decorators pass this answer on)
	}
	for _, tt := range []struct{ off, n int64 }{{0, size}, {1, size - 2}, {size - 1, 1}, {123, 456}} {
		for _, piece := range []int{1, 7, 4096} {
			rc, err := chunkstore.OpenRange(ctx, s, "stream/obj", tt.off, tt.n)
			if err != nil {
				t.Fatalf("OpenRange(%d, %d): %v", tt.off, tt.n, err)
			}
			var got []byte
			buf := make([]byte, piece)
			for {
				n, err := rc.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("OpenRange(%d, %d), reading %d bytes at a time: %v", tt.off, tt.n, piece, err)
				}
			}
			if err := rc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if !bytes.Equal(got, data[tt.off:tt.off+tt.n]) {
				t.Errorf("OpenRange(%d, %d), reading %d bytes at a time: got %d bytes, want %d (bytes [%d,%d))", tt.off, tt.n, piece, len(got), tt.n, tt.off, tt.off+tt.n)
			}
		}
	}
	// A stream closed before its end, then the same range again.
	rc, err := chunkstore.OpenRange(ctx, s, "stream/obj", 0, size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close part-way: %v", err)
	}
	for _, tt := range []struct{ off, n int64 }{{0, size + 1}, {size - 1, 2}, {size, 1}, {size + 100, 10}, {-1, 10}, {0, 0}, {5, -1}} {
		if rc, err := chunkstore.OpenRange(ctx, s, "stream/obj", tt.off, tt.n); err == nil {
			rc.Close()
			t.Errorf("OpenRange(%d, %d) succeeded, want an error (range outside object, or empty)", tt.off, tt.n)
		} else if errors.Is(err, chunkstore.ErrNotFound) {
			t.Errorf("OpenRange(%d, %d) = %v, must not wrap ErrNotFound", tt.off, tt.n, err)
		}
	}
	if _, err := chunkstore.OpenRange(ctx, s, "stream/missing", 0, 1); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Errorf("OpenRange of a missing object = %v, want ErrNotFound", err)
	}
}

func testZeroLength(t *testing.T, s chunkstore.Store) {
	put(t, s, "empty/obj", nil)
	put(t, s, "empty/obj2", []byte{})
	for _, name := range []string{"empty/obj", "empty/obj2"} {
		oi, err := s.Stat(t.Context(), name)
		if err != nil || oi.Size != 0 {
			t.Errorf("Stat(%q) = %+v, %v; want size 0", name, oi, err)
		}
		for _, n := range []int64{-1, 0} {
			if got := mustGet(t, s, name, 0, n); len(got) != 0 {
				t.Errorf("Get(%q, 0, %d) = %d bytes, want 0", name, n, len(got))
			}
		}
		if got, err := s.Get(t.Context(), name, 0, 1); err == nil {
			t.Errorf("Get(%q, 0, 1) on empty object returned %d bytes, want an error", name, len(got))
		}
		if got, err := s.Get(t.Context(), name, 1, -1); err == nil {
			t.Errorf("Get(%q, 1, -1) on empty object returned %d bytes, want an error", name, len(got))
		}
	}
	if got := listNames(t, s, "empty/"); len(got) != 2 || got["empty/obj"] != 0 {
		t.Errorf("List(empty/) = %v, want both empty objects", got)
	}
}

func testNotFound(t *testing.T, s chunkstore.Store) {
	put(t, s, "present/a", []byte("a"))
	for _, name := range []string{"missing", "present/b", "absent/dir/obj"} {
		if _, err := s.Get(t.Context(), name, 0, -1); !errors.Is(err, chunkstore.ErrNotFound) {
			t.Errorf("Get(%q, 0, -1) = %v, want ErrNotFound", name, err)
		}
		if _, err := s.Get(t.Context(), name, 2, 10); !errors.Is(err, chunkstore.ErrNotFound) {
			t.Errorf("Get(%q, 2, 10) = %v, want ErrNotFound", name, err)
		}
		if _, err := s.Get(t.Context(), name, 0, 0); !errors.Is(err, chunkstore.ErrNotFound) {
			t.Errorf("Get(%q, 0, 0) = %v, want ErrNotFound", name, err)
		}
		if _, err := s.Stat(t.Context(), name); !errors.Is(err, chunkstore.ErrNotFound) {
			t.Errorf("Stat(%q) = %v, want ErrNotFound", name, err)
		}
	}
	// A "directory" that only exists because of a longer name is no object.
	put(t, s, "dir/sub/obj", []byte("x"))
	for _, name := range []string{"dir", "dir/sub"} {
		if _, err := s.Stat(t.Context(), name); !errors.Is(err, chunkstore.ErrNotFound) {
			t.Errorf("Stat(%q) = %v, want ErrNotFound (only %q exists)", name, err, "dir/sub/obj")
		}
		if _, err := s.Get(t.Context(), name, 0, -1); !errors.Is(err, chunkstore.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound (only %q exists)", name, err, "dir/sub/obj")
		}
	}
}

func testList(t *testing.T, s chunkstore.Store) {
	objs := map[string]int64{
		"config":             6,
		"data/00/aa":         1,
		"data/00/ab":         2,
		"data/01/ba":         3,
		"data/01/deep/er/cc": 4,
		"index/x":            5,
		"keys/k1":            0,
		"snapshots/s":        7,
	}
	for name, n := range objs {
		put(t, s, name, Data(uint64(n), int(n)))
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", slices.Collect(func(yield func(string) bool) {
			for n := range objs {
				if !yield(n) {
					return
				}
			}
		})},
		{"data/", []string{"data/00/aa", "data/00/ab", "data/01/ba", "data/01/deep/er/cc"}},
		{"data", []string{"data/00/aa", "data/00/ab", "data/01/ba", "data/01/deep/er/cc"}},
		{"dat", []string{"data/00/aa", "data/00/ab", "data/01/ba", "data/01/deep/er/cc"}},
		{"data/0", []string{"data/00/aa", "data/00/ab", "data/01/ba", "data/01/deep/er/cc"}},
		{"data/00/", []string{"data/00/aa", "data/00/ab"}},
		{"data/00/a", []string{"data/00/aa", "data/00/ab"}},
		{"data/00/ab", []string{"data/00/ab"}},
		{"data/01/deep/", []string{"data/01/deep/er/cc"}},
		{"c", []string{"config"}},
		{"config", []string{"config"}},
		{"keys/", []string{"keys/k1"}},
		{"nope/", nil},
		{"data/02/", nil},
		{"data/00/ab/", nil},
		{"z", nil},
	}
	for _, tt := range tests {
		got := listNames(t, s, tt.prefix)
		gotNames := slices.Sorted(func(yield func(string) bool) {
			for n := range got {
				if !yield(n) {
					return
				}
			}
		})
		want := slices.Sorted(slices.Values(tt.want))
		if !slices.Equal(gotNames, want) {
			t.Errorf("List(%q) = %q, want %q", tt.prefix, gotNames, want)
			continue
		}
		for n, size := range got {
			if size != objs[n] {
				t.Errorf("List(%q): %q has size %d, want %d", tt.prefix, n, size, objs[n])
			}
		}
	}
}

func testListFnError(t *testing.T, s chunkstore.Store) {
	for i := range 5 {
		put(t, s, fmt.Sprintf("fnerr/%d", i), []byte{byte(i)})
	}
	stop := errors.New("stop here")
	calls := 0
	err := s.List(t.Context(), "fnerr/", func(chunkstore.ObjectInfo) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Errorf("List returned %v, want the callback's error unchanged", err)
	}
	if calls != 2 {
		t.Errorf("callback called %d times, want listing to stop after the error (2)", calls)
	}
}

func testListMany(t *testing.T, s chunkstore.Store) {
	const n = 1100 // more than one S3 ListObjectsV2 page (1000 keys)
	putMany(t, s, n, func(i int) string { return fmt.Sprintf("many/%02x/%05d", i%7, i) })
	put(t, s, "manyother", []byte("x"))
	put(t, s, "other/many", []byte("x"))
	got := listNames(t, s, "many/")
	if len(got) != n {
		t.Fatalf("List(many/) returned %d names, want %d", len(got), n)
	}
	for i := range n {
		name := fmt.Sprintf("many/%02x/%05d", i%7, i)
		if size, ok := got[name]; !ok || size != 3 {
			t.Errorf("List(many/) lacks %q (or size %d != 3)", name, size)
		}
	}
	if all := listNames(t, s, ""); len(all) != n+2 {
		t.Errorf("List(\"\") returned %d names, want %d", len(all), n+2)
	}
}

func putMany(t *testing.T, s chunkstore.Store, n int, name func(int) string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				if err := s.Put(t.Context(), name(i), []byte{1, 2, 3}); err != nil {
					errs <- fmt.Errorf("Put(%q): %w", name(i), err)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// testModTime checks that Stat and List report when an object was stored:
// garbage collection orders backup sessions and its own marks by these
// times. The store's clock is the test machine's here (MinIO runs
// locally), so a generous window around the wall clock must hold.
func testModTime(t *testing.T, s chunkstore.Store) {
	before := time.Now().Add(-2 * time.Minute)
	put(t, s, "mtime/a", []byte("first"))
	time.Sleep(1100 * time.Millisecond) // S3 times may have one-second resolution
	put(t, s, "mtime/b", []byte("second"))
	after := time.Now().Add(2 * time.Minute)
	stat := map[string]time.Time{}
	for _, name := range []string{"mtime/a", "mtime/b"} {
		oi, err := s.Stat(t.Context(), name)
		if err != nil {
			t.Fatalf("Stat(%q): %v", name, err)
		}
		if oi.ModTime.Before(before) || oi.ModTime.After(after) {
			t.Errorf("Stat(%q).ModTime = %v, want between %v and %v", name, oi.ModTime, before, after)
		}
		stat[name] = oi.ModTime
	}
	if !stat["mtime/b"].After(stat["mtime/a"]) {
		t.Errorf("ModTime of the later object %v is not after the earlier one's %v", stat["mtime/b"], stat["mtime/a"])
	}
	err := s.List(t.Context(), "mtime/", func(oi chunkstore.ObjectInfo) error {
		if d := oi.ModTime.Sub(stat[oi.Name]).Abs(); d >= time.Second {
			t.Errorf("List reports ModTime %v for %q, Stat %v", oi.ModTime, oi.Name, stat[oi.Name])
		}
		return nil
	})
	if err != nil {
		t.Fatalf("List(mtime/): %v", err)
	}
}

func testDelete(t *testing.T, s chunkstore.Store) {
	put(t, s, "del/a", []byte("hello"))
	put(t, s, "del/b", []byte("world"))
	if err := s.Delete(t.Context(), "del/a"); err != nil {
		t.Fatalf("Delete(del/a): %v", err)
	}
	if _, err := s.Stat(t.Context(), "del/a"); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Errorf("Stat after Delete = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(t.Context(), "del/a", 0, -1); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if got := listNames(t, s, "del/"); len(got) != 1 || got["del/b"] != 5 {
		t.Errorf("List after Delete = %v, want only del/b", got)
	}
	for _, name := range []string{"del/a", "never/existed", "del/b/not-a-dir"} {
		if err := s.Delete(t.Context(), name); err != nil {
			t.Errorf("Delete(%q) of a missing object = %v, want nil", name, err)
		}
	}
	if got := mustGet(t, s, "del/b", 0, -1); string(got) != "world" {
		t.Errorf("Get(del/b) = %q after deleting its neighbour", got)
	}
	// A deleted name can be written again.
	put(t, s, "del/a", []byte("again"))
	if got := mustGet(t, s, "del/a", 0, -1); string(got) != "again" {
		t.Errorf("Get(del/a) after re-Put = %q", got)
	}
}

func testOverwriteIdentical(t *testing.T, s chunkstore.Store) {
	data := Data(3, 4096)
	put(t, s, "same/obj", data)
	put(t, s, "same/obj", data)
	if got := mustGet(t, s, "same/obj", 0, -1); !bytes.Equal(got, data) {
		t.Errorf("Get after identical overwrite: got %d bytes, want %d", len(got), len(data))
	}
	if got := listNames(t, s, "same/"); len(got) != 1 {
		t.Errorf("List after identical overwrite = %v, want one object", got)
	}
}

func testConcurrentPuts(t *testing.T, s chunkstore.Store) {
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("conc/%02d/obj", i%4) + fmt.Sprint(i)
			if err := s.Put(t.Context(), name, Data(uint64(i), 10000+i)); err != nil {
				errs <- fmt.Errorf("Put(%q): %w", name, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("conc/%02d/obj", i%4) + fmt.Sprint(i)
		if got := mustGet(t, s, name, 0, -1); !bytes.Equal(got, Data(uint64(i), 10000+i)) {
			t.Errorf("Get(%q) returned different bytes than were put", name)
		}
	}
	if got := listNames(t, s, "conc/"); len(got) != n {
		t.Errorf("List(conc/) = %d names, want %d", len(got), n)
	}
}

func testInvalidNames(t *testing.T, s chunkstore.Store) {
	for _, name := range []string{"", "/", "/abs", "trailing/", "a//b", ".", "..", "./a", "a/./b", "a/..", "../escape", "a/../../b"} {
		ctx := t.Context()
		checks := map[string]error{
			"Put":    s.Put(ctx, name, []byte("x")),
			"Delete": s.Delete(ctx, name),
		}
		_, checks["Get"] = s.Get(ctx, name, 0, -1)
		_, checks["Stat"] = s.Stat(ctx, name)
		for op, err := range checks {
			if err == nil {
				t.Errorf("%s(%q) succeeded, want an invalid-name error", op, name)
			} else if !chunkstore.IsPermanent(err) {
				t.Errorf("%s(%q) = %v, want a permanent error", op, name, err)
			}
		}
	}
	if got := listNames(t, s, ""); len(got) != 0 {
		t.Errorf("store not empty after rejected Puts: %v", got)
	}
}

func testReadAfterWrite(t *testing.T, s chunkstore.Store) {
	for i := range 20 {
		name := fmt.Sprintf("raw/%d", i)
		data := Data(uint64(i+100), 100+i)
		put(t, s, name, data)
		if oi, err := s.Stat(t.Context(), name); err != nil || oi.Size != int64(len(data)) {
			t.Fatalf("Stat(%q) right after Put = %+v, %v", name, oi, err)
		}
		if got := mustGet(t, s, name, 0, -1); !bytes.Equal(got, data) {
			t.Fatalf("Get(%q) right after Put returned other bytes", name)
		}
		if got := listNames(t, s, name); len(got) != 1 {
			t.Fatalf("List(%q) right after Put = %v", name, got)
		}
		if err := s.Delete(t.Context(), name); err != nil {
			t.Fatalf("Delete(%q): %v", name, err)
		}
		if got := listNames(t, s, name); len(got) != 0 {
			t.Fatalf("List(%q) right after Delete = %v", name, got)
		}
	}
}

func testNoAliasing(t *testing.T, s chunkstore.Store) {
	data := []byte("original")
	put(t, s, "alias/obj", data)
	data[0] = 'X'
	got := mustGet(t, s, "alias/obj", 0, -1)
	if string(got) != "original" {
		t.Fatalf("stored object changed with the caller's buffer: %q", got)
	}
	got[0] = 'Y'
	if again := mustGet(t, s, "alias/obj", 0, -1); string(again) != "original" {
		t.Fatalf("stored object changed through a returned buffer: %q", again)
	}
}

func testCanceledContext(t *testing.T, s chunkstore.Store) {
	put(t, s, "ctx/obj", []byte("x"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Put(ctx, "ctx/new", []byte("x")); err == nil {
		t.Error("Put with a canceled context succeeded")
	}
	if _, err := s.Get(ctx, "ctx/obj", 0, -1); err == nil {
		t.Error("Get with a canceled context succeeded")
	}
	if err := s.List(ctx, "", func(chunkstore.ObjectInfo) error { return nil }); err == nil {
		t.Error("List with a canceled context succeeded")
	}
}

func testLocation(t *testing.T, s chunkstore.Store) {
	if s.Location() == "" {
		t.Error("Location() is empty")
	}
}
