package chunkstore

import (
	"strings"
	"testing"
	"time"
	"unsafe"
)

// asIfSuspended returns the time as the last reading before a suspend of
// d that ended just now: its wall clock d ago, its monotonic reading now
// (Linux's monotonic clock stands still while the machine sleeps).
func asIfSuspended(t *testing.T, d time.Duration) time.Time {
	// time.Time's layout: a monotonic reading lives in ext.
	type rep struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	now := time.Now()
	then := now.Add(-d)
	(*rep)(unsafe.Pointer(&then)).ext = (*rep)(unsafe.Pointer(&now)).ext
	if time.Since(then) > time.Minute || time.Now().Round(0).Sub(then.Round(0)) < d {
		t.Fatalf("could not build a time whose clocks disagree (time.Time's layout changed?): since %v by the monotonic clock, %v by the wall clock", time.Since(then), time.Now().Round(0).Sub(then.Round(0)))
	}
	return then
}

// TestSessionLapsedAcrossSuspend: a backup whose machine slept past
// CommitWindow (prune elsewhere may have taken its session for dead and
// deleted what it reused) must not commit when it wakes. Its monotonic
// clock did not advance, and the renewal that would notice comes only a
// Heartbeat later: CommitBy and HeldUntil read the wall clock too, and
// the time they give counts from the last renewal by both clocks.
func TestSessionLapsedAcrossSuspend(t *testing.T) {
	timing := DefaultSessionTiming
	fresh := &Session{id: "fresh", timing: timing, lastBeat: time.Now()}
	if _, err := fresh.CommitBy(); err != nil {
		t.Fatalf("a session renewed just now: %v", err)
	}
	slept := &Session{id: "slept", timing: timing, lastBeat: asIfSuspended(t, time.Hour)}
	if _, err := slept.CommitBy(); err == nil || !strings.Contains(err.Error(), "does not commit") {
		t.Errorf("CommitBy after an hour's suspend: %v, want the session lapsed", err)
	}
	if _, err := slept.HeldUntil(); err == nil {
		t.Error("HeldUntil after an hour's suspend: no error, want the session lapsed")
	}
	// A shorter suspend leaves the session alive, but shortens what is
	// left of its window by as much.
	half := (timing.CommitWindow + timing.Stale) / 2
	dozed := &Session{id: "dozed", timing: timing, lastBeat: asIfSuspended(t, 10*time.Minute)}
	by, err := dozed.CommitBy()
	if want := time.Now().Add(half - 10*time.Minute); err != nil || by.After(want) {
		t.Errorf("CommitBy after a 10-minute suspend: %v, %v; want no later than %v", by, err, want)
	}
}
