package main

import (
	"os"
	"path/filepath"
	"testing"
)

// pretouch touches every page of what it maps and hands it back.
func TestPretouch(t *testing.T) {
	const n = 8 << 20
	got, err := pretouch(n)
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("pretouch(%d) touched %d bytes", n, got)
	}
	if got, err := pretouch(0); got != 0 || err != nil {
		t.Fatalf("pretouch(0) = %d, %v", got, err)
	}
}

// The size is capped at a quarter of the available memory.
func TestPretouchSize(t *testing.T) {
	dir := t.TempDir()
	mi := filepath.Join(dir, "meminfo")
	if err := os.WriteFile(mi, []byte("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:    4096 kB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := memAvailable(mi); got != 4096<<10 {
		t.Fatalf("memAvailable = %d, want %d", got, 4096<<10)
	}
	if got := memAvailable(filepath.Join(dir, "missing")); got != 0 {
		t.Fatalf("memAvailable of a missing file = %d, want 0", got)
	}
	for _, tc := range []struct {
		want  int
		avail int64
		got   int
	}{
		{3 << 30, 4 << 30, 1 << 30}, // a quarter of what is available
		{1 << 20, 4 << 30, 1 << 20}, // less than that: as asked
		{3 << 30, 0, 3 << 30},       // unknown: as asked
	} {
		if got := pretouchSize(tc.want, tc.avail); got != tc.got {
			t.Errorf("pretouchSize(%d, %d) = %d, want %d", tc.want, tc.avail, got, tc.got)
		}
	}
}
