package coordinator

import (
	"testing"
	"time"
)

// TestTickWait pins the leader's wait between ticks, the case of a wall
// clock stepped back during a tick included: TestAlertsAfterClockStepsBack
// met that case only when the step landed inside a tick (2 of 40 runs
// before the fix).
func TestTickWait(t *testing.T) {
	const period = 10 * time.Second
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name    string
		elapsed time.Duration // now minus started, as the wall clock says
		want    time.Duration
	}{
		{"quick tick", 200 * time.Millisecond, period - 200*time.Millisecond},
		{"tick as long as the period", period, 0},
		{"tick longer than the period", 3 * period, 0},
		{"clock stepped back an hour during the tick", -time.Hour, period},
		{"clock stepped back a little during the tick", -time.Millisecond, period},
	} {
		if got := tickWait(period, start, start.Add(c.elapsed)); got != c.want {
			t.Errorf("%s: waits %v, want %v", c.name, got, c.want)
		}
	}
}
