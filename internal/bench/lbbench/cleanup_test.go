package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWaitAfterCleanup(t *testing.T) {
	dir := t.TempDir()
	stamp := filepath.Join(dir, "cleanup.stamp")
	if got := waitAfterCleanup(stamp, time.Minute); got != 0 {
		t.Fatalf("no stamp: waited %v", got)
	}
	work := filepath.Join(dir, "work")
	// An empty work directory (a run stopped before its first step)
	// freed no inodes: removed, and nothing to wait for.
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := removeWork(work, stamp); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Fatalf("empty work directory still there: %v", err)
	}
	if got := waitAfterCleanup(stamp, time.Minute); got != 0 {
		t.Fatalf("after removing an empty work directory: waited %v", got)
	}
	if err := os.MkdirAll(filepath.Join(work, "restore", "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := removeWork(work, stamp); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Fatalf("work directory still there: %v", err)
	}
	start := time.Now()
	got := waitAfterCleanup(stamp, 300*time.Millisecond)
	if got <= 0 || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("right after a cleanup: waited %v (%v), want most of the window", got, time.Since(start))
	}
	if got := waitAfterCleanup(stamp, 300*time.Millisecond); got != 0 {
		t.Fatalf("after the window: waited %v", got)
	}
}

func TestDropPageCache(t *testing.T) {
	knob := filepath.Join(t.TempDir(), "drop_caches")
	if err := os.WriteFile(knob, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := dropPageCache(knob); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(knob); string(b) != "3\n" {
		t.Fatalf("wrote %q to the knob, want \"3\\n\"", b)
	}
	// Where it may not write, it says so and the run goes on without.
	if err := dropPageCache(filepath.Join(t.TempDir(), "missing", "drop_caches")); err == nil {
		t.Fatal("dropPageCache into a missing directory reported success")
	}
}
