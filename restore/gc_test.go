package restore

import (
	"runtime/debug"
	"testing"
)

func TestRaiseGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))

	// Nested raises (two restores planning at once): the target stays
	// raised until the last one ends, then returns to what it was.
	first := raiseGC(400)
	if got := debug.SetGCPercent(-1); got != 400 {
		t.Fatalf("target %d while planning, want 400", got)
	}
	debug.SetGCPercent(400)
	second := raiseGC(400)
	first()
	first() // a second call is harmless
	if got := debug.SetGCPercent(400); got != 400 {
		t.Errorf("target %d after the first of two restores planned, want 400", got)
	}
	second()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("target %d after both planned, want 100 again", got)
	}

	// A higher target and a collector turned off are left alone.
	for _, prev := range []int{800, -1} {
		debug.SetGCPercent(prev)
		lower := raiseGC(400)
		if got := debug.SetGCPercent(prev); got != prev {
			t.Errorf("GOGC=%d: target %d while planning, want it left alone", prev, got)
		}
		lower()
		if got := debug.SetGCPercent(100); got != prev {
			t.Errorf("GOGC=%d: target %d afterwards", prev, got)
		}
	}
}

// A GOGC the user set in the environment is kept while planning.
func TestRaisePlanGCKeepsUserGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "100")
	lower := raisePlanGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100 set: target %d while planning, want 100", got)
	}
	lower()
	t.Setenv("GOGC", "")
	lower = raisePlanGC()
	if got := debug.SetGCPercent(planGCPercent); got != planGCPercent {
		t.Errorf("without GOGC: target %d while planning, want %d", got, planGCPercent)
	}
	lower()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("target %d after planning, want 100 again", got)
	}
}
