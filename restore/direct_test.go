package restore

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestInterior(t *testing.T) {
	const A = directAlign
	for _, tc := range []struct {
		name       string
		p          uintptr // address of the data
		off, n     int64
		wantA, wan int64
	}{
		{"all aligned", 10 * A, 4 * A, 32 * A, 4 * A, 36 * A},
		{"unaligned offset, address congruent", 10*A + 100, 4*A + 100, 32 * A, 5 * A, 36 * A},
		{"unaligned end", 10 * A, 4 * A, 32*A + 7, 4 * A, 36 * A},
		{"address not congruent with the offset", 10*A + 8, 4*A + 100, 32 * A, 0, 0},
		{"interior shorter than directMinSpan", 10 * A, 4 * A, directMinSpan - 1, 0, 0},
		{"interior exactly directMinSpan", 10 * A, 4 * A, directMinSpan, 4 * A, 4*A + directMinSpan},
		{"shorter than a block", 10*A + 1, 1, A - 2, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := interior(tc.p, tc.off, tc.n)
			if a != tc.wantA || b != tc.wan {
				t.Fatalf("interior(%#x, %d, %d) = [%d, %d), want [%d, %d)", tc.p, tc.off, tc.n, a, b, tc.wantA, tc.wan)
			}
			if a < b && ((tc.p+uintptr(a-tc.off))%A != 0 || a%A != 0 || b%A != 0 || a < tc.off || b > tc.off+tc.n) {
				t.Fatalf("[%d, %d) is not an aligned part of the write", a, b)
			}
		})
	}
}

// placeDirect must put data for any file offset at an address congruent
// to it, inside the buffer, so that interior finds the aligned part.
func TestPlaceDirect(t *testing.T) {
	buf := make([]byte, 0, 1<<20+directAlign)
	for _, off := range []int64{0, 1, 511, 512, 4095, 4096, 4097, 123457, 1<<40 + 3} {
		dst := placeDirect(buf, off)
		if len(dst) != 0 || cap(dst) < 1<<20 {
			t.Fatalf("offset %d: len %d cap %d, want an empty slice with room for 1 MiB", off, len(dst), cap(dst))
		}
		if (addr(dst[:1])-uintptr(off))%directAlign != 0 {
			t.Fatalf("offset %d: address %#x not congruent modulo %d", off, addr(dst[:1]), directAlign)
		}
		dst = append(dst, make([]byte, 1<<20)...)
		if a, b := interior(addr(dst), off, int64(len(dst))); b-a < 1<<20-2*directAlign {
			t.Fatalf("offset %d: aligned interior [%d, %d) of a placed 1 MiB write is too short", off, a, b)
		}
	}
}

// directSupported reports whether dir's filesystem accepts O_DIRECT.
func directSupported(t *testing.T, dir string) bool {
	t.Helper()
	p := filepath.Join(dir, "probe")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		if errors.Is(err, syscall.EINVAL) {
			return false
		}
		t.Fatal(err)
	}
	unix.Close(fd)
	return true
}

// reserve must allocate exactly the span about to be written, and leave
// the size and the rest of the file (holes for all-zero chunks) alone.
func TestReserveAllocatesOnlyTheSpan(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	const size, off, n = 8 << 20, 2 << 20, 1 << 20
	if err := fh.Truncate(size); err != nil {
		t.Fatal(err)
	}
	d := newDirectIO(true, 0, nil)
	d.reserve(fh, off, n)
	if d.noAlloc.Load() {
		t.Skip("the temporary directory's filesystem has no fallocate")
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(fh.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size {
		t.Fatalf("size %d after reserve, want %d", st.Size, size)
	}
	if got := st.Blocks * 512; got < n || got > n+1<<20 {
		t.Fatalf("%d bytes allocated after reserving %d", got, n)
	}
}

// A filesystem without fallocate turns reserve off after one try; a
// full disk does not (the write that follows reports it).
func TestReserveStopsWhereUnsupported(t *testing.T) {
	orig := fallocate
	t.Cleanup(func() { fallocate = orig })
	for _, tc := range []struct {
		errno     syscall.Errno
		wantOff   bool
		wantCalls int // of fallocate, by three reserves
	}{
		{unix.EOPNOTSUPP, true, 1},
		{unix.ENOSYS, true, 1},
		{unix.EINVAL, true, 1},
		{unix.ENOSPC, false, 3},
		{unix.EDQUOT, false, 3},
	} {
		calls := 0
		fallocate = func(*os.File, int64, int64) error { calls++; return &os.PathError{Op: "fallocate", Err: tc.errno} }
		d := newDirectIO(true, 0, nil)
		for range 3 {
			d.reserve(nil, 0, directAlign)
		}
		if d.noAlloc.Load() != tc.wantOff || calls != tc.wantCalls {
			t.Errorf("%v: turned off %v after %d calls, want %v after %d", tc.errno, d.noAlloc.Load(), calls, tc.wantOff, tc.wantCalls)
		}
	}
}
