package main

import (
	"runtime/debug"
	"testing"
)

// gcPercent reads the current GOGC setting.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func TestSetBackupGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, c := range []struct {
		gogc, memlimit string
		want           int
	}{
		{want: backupGCPercent},
		{gogc: "50", want: 100},       // the operator's GOGC stands
		{memlimit: "1GiB", want: 100}, // so does a memory limit of theirs
		{gogc: "off", memlimit: "1GiB", want: 100},
	} {
		t.Setenv("GOGC", c.gogc)
		t.Setenv("GOMEMLIMIT", c.memlimit)
		debug.SetGCPercent(100) // the value the runtime would start with here
		setBackupGC()
		if got := gcPercent(); got != c.want {
			t.Errorf("GOGC=%q GOMEMLIMIT=%q: GC percent %d after setBackupGC, want %d", c.gogc, c.memlimit, got, c.want)
		}
	}
}
