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
