package main

import (
	"fmt"
	"strings"
	"testing"
)

func TestSchedule(t *testing.T) {
	steps := []string{"full", "nochange", "restore"}
	names := []string{"restic", "lifeboat"}
	show := func(runs []stepRun) string {
		var parts []string
		for _, r := range runs {
			parts = append(parts, fmt.Sprintf("%s:%s", names[r.runner], r.step))
		}
		return strings.Join(parts, " ")
	}
	for _, tc := range []struct {
		order string
		round int
		want  string
	}{
		{"interleaved", 1, "restic:full lifeboat:full restic:nochange lifeboat:nochange restic:restore lifeboat:restore"},
		{"interleaved", 2, "restic:full lifeboat:full restic:nochange lifeboat:nochange restic:restore lifeboat:restore"},
		{"alternating", 1, "restic:full lifeboat:full restic:nochange lifeboat:nochange restic:restore lifeboat:restore"},
		{"alternating", 2, "lifeboat:full restic:full lifeboat:nochange restic:nochange lifeboat:restore restic:restore"},
		{"alternating", 3, "restic:full lifeboat:full restic:nochange lifeboat:nochange restic:restore lifeboat:restore"},
		{"sequential", 1, "restic:full restic:nochange restic:restore lifeboat:full lifeboat:nochange lifeboat:restore"},
		{"sequential", 2, "restic:full restic:nochange restic:restore lifeboat:full lifeboat:nochange lifeboat:restore"},
	} {
		if got := show(schedule(tc.order, tc.round, len(names), steps)); got != tc.want {
			t.Errorf("%s round %d:\n got  %s\n want %s", tc.order, tc.round, got, tc.want)
		}
	}
	// restic alone (BENCH_TOOLS=restic): every round is the same.
	if got := show(schedule("alternating", 2, 1, steps)); got != "restic:full restic:nochange restic:restore" {
		t.Errorf("restic alone, round 2: %s", got)
	}
}
