package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestMemoryLimitFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct{ floor, live, want int64 }{
		{160 * mib, 0, 160 * mib},
		{160 * mib, 50 * mib, 160 * mib},  // a restore: the floor
		{160 * mib, 130 * mib, 160 * mib}, // a backup on 2 cores: the floor
		{160 * mib, 140 * mib, 168 * mib},
		{160 * mib, 215 * mib, 258 * mib}, // 4 cores: a fifth above the live heap
		{400 * mib, 215 * mib, 400 * mib}, // a large index raises the floor
	} {
		if got := memoryLimitFor(c.floor, c.live); got != c.want {
			t.Errorf("memoryLimitFor(%d MiB, %d MiB) = %.1f MiB, want %.1f MiB", c.floor/mib, c.live/mib, float64(got)/mib, float64(c.want)/mib)
		}
	}
}

// TestFollowLiveHeap keeps a live heap larger than the floor and checks
// that the limit moves above it after a collection, and comes back when
// following stops. Without this the collector would run back to back.
func TestFollowLiveHeap(t *testing.T) {
	const floor = 32 << 20
	before := debug.SetMemoryLimit(-1)
	stop := followLiveHeap(floor)
	if got := debug.SetMemoryLimit(-1); got != floor {
		t.Fatalf("limit %d right after followLiveHeap, want the floor %d", got, floor)
	}
	live := make([]byte, 96<<20)
	for i := range live {
		live[i] = byte(i)
	}
	deadline := time.Now().Add(10 * time.Second)
	for debug.SetMemoryLimit(-1) < int64(len(live))*(100+limitHeadroomPercent)/100 {
		if time.Now().After(deadline) {
			t.Fatalf("limit still %d MiB with %d MiB live", debug.SetMemoryLimit(-1)>>20, len(live)>>20)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // finalizers run on their own goroutine
	}
	runtime.KeepAlive(live)
	stop()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("limit %d after stop, want %d back", got, before)
	}
	// Stopped: later collections leave the limit alone (a running watch
	// would raise this one to the floor at least).
	const other = floor / 2
	debug.SetMemoryLimit(other)
	defer debug.SetMemoryLimit(before)
	runtime.GC()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if got := debug.SetMemoryLimit(-1); got != other {
		t.Fatalf("limit %d after a stopped watch saw a collection, want %d", got, other)
	}
}
