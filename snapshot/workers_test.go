package snapshot

import "testing"

// The default readers and sealers follow the Go processors up to
// MaxDefaultWorkers, and there is always at least one.
func TestDefaultWorkers(t *testing.T) {
	for _, tc := range []struct{ procs, want int }{
		{0, 1}, {1, 1}, {2, 2}, {8, 8}, {9, 8}, {64, 8},
	} {
		if got := defaultWorkers(tc.procs); got != tc.want {
			t.Errorf("defaultWorkers(%d) = %d, want %d", tc.procs, got, tc.want)
		}
	}
}
