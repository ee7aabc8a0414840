package bench

import (
	"strings"
	"testing"
	"time"
)

func TestReportTargets(t *testing.T) {
	step := func(sec float64, rss int64) Step {
		return Step{Wall: time.Duration(sec * float64(time.Second)), MaxRSS: rss << 20, UserCPU: time.Second}
	}
	rs := &ToolResult{Tool: "restic", Full: step(40, 200), NoChange: step(2, 80), Restore: step(20, 250), StoredBytes: 1000}
	lb := &ToolResult{Tool: "lifeboat", Full: step(10, 100), NoChange: step(1.5, 40), Restore: step(10, 300), StoredBytes: 990}
	rs.Restore.Sync, lb.Restore.Sync = 5*time.Second, time.Second
	md := (&Report{DatasetBytes: 1 << 30, Restic: rs, Lifeboat: lb}).Markdown()
	for _, want := range []string{
		"| full backup | 40.0 s (26 MiB/s) | 10.0 s (102 MiB/s) | throughput ×4.00 | throughput ≥ ×2 | PASS |",
		"| no-change backup | 2.00 s | 1.50 s | time ×0.75 | time ≤ ×0.5 | **FAIL** |",
		"| restore | 20.0 s (51 MiB/s) | 10.0 s (102 MiB/s) | throughput ×2.00 | throughput ≥ ×2.5 | **FAIL** |",
		"| restore, then sync (data on disk) | 25.0 s (41 MiB/s) | 11.0 s (93 MiB/s) | throughput ×2.27 | — | — |",
		"| stored bytes | 1000 B (0 objects) | 990 B (0 objects) | size ×0.990 | ≤ ×1 | PASS |",
		"| peak RSS backup | 200.0 MiB | 100.0 MiB | memory ×0.50 | ≤ ×1 | PASS |",
		"| peak RSS restore | 250.0 MiB | 300.0 MiB | memory ×1.20 | ≤ ×1 | **FAIL** |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}

	m := Median([]*ToolResult{
		{Full: step(30, 1), StoredBytes: 3},
		{Full: step(10, 2), StoredBytes: 1},
		{Full: step(20, 3), StoredBytes: 2},
	})
	if m.Full.Wall != 20*time.Second || m.Full.MaxRSS != 3<<20 || m.StoredBytes != 2 {
		t.Errorf("Median = %+v", m)
	}
}
