package bench

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Step is one measured run of a tool.
type Step struct {
	Wall    time.Duration
	MaxRSS  int64 // bytes, from the child's rusage
	UserCPU time.Duration
	SysCPU  time.Duration
	S3      Counts
	// Sync is how long the sync(2) right after the step took: the
	// write-back the tool left behind. The step's time does not include
	// it; "restore, then sync" in the report does.
	Sync time.Duration
}

// Throughput returns MiB/s for n bytes.
func (s Step) Throughput(n int64) float64 {
	if s.Wall <= 0 {
		return 0
	}
	return float64(n) / (1 << 20) / s.Wall.Seconds()
}

// ToolResult collects one tool's measurements.
type ToolResult struct {
	Tool          string
	Version       string
	Full          Step
	NoChange      Step
	Restore       Step
	StoredBytes   int64
	StoredObjects int
	Notes         []string // e.g. the tool's own summary of the backup
}

// BackupRSS is the peak RSS over both backups.
func (t *ToolResult) BackupRSS() int64 { return max(t.Full.MaxRSS, t.NoChange.MaxRSS) }

// Report is the outcome of one harness run.
type Report struct {
	Date         time.Time
	Host         string // CPU count, OS, Go version
	Order        string
	Load         string // load averages around the run: a busy machine skews it
	Runs         int
	DatasetDir   string
	DatasetFiles int
	DatasetBytes int64
	Composition  string
	Restic       *ToolResult
	Lifeboat     *ToolResult // nil when lifeboat was not run
	// Every round's results when Runs > 1; Restic and Lifeboat are then
	// their medians.
	AllRestic, AllLifeboat []*ToolResult
}

// Median combines several rounds of one tool: for each step the round
// with the median wall time (the lower middle for an even count), so wall
// time, CPU, RSS and requests of a step stay from the same round; stored
// bytes likewise.
func Median(rounds []*ToolResult) *ToolResult {
	if len(rounds) == 1 {
		return rounds[0]
	}
	out := *rounds[0]
	pick := func(get func(*ToolResult) Step) Step {
		steps := make([]Step, len(rounds))
		for i, r := range rounds {
			steps[i] = get(r)
		}
		sort.Slice(steps, func(a, b int) bool { return steps[a].Wall < steps[b].Wall })
		return steps[(len(steps)-1)/2]
	}
	out.Full = pick(func(r *ToolResult) Step { return r.Full })
	out.NoChange = pick(func(r *ToolResult) Step { return r.NoChange })
	out.Restore = pick(func(r *ToolResult) Step { return r.Restore })
	sorted := append([]*ToolResult(nil), rounds...)
	sort.Slice(sorted, func(a, b int) bool { return sorted[a].StoredBytes < sorted[b].StoredBytes })
	mid := sorted[(len(sorted)-1)/2]
	out.StoredBytes, out.StoredObjects = mid.StoredBytes, mid.StoredObjects
	return &out
}

// Target is one DESIGN.md performance target.
type Target struct {
	Text string
	OK   bool
	Set  bool // false: informational row, no target
}

// Markdown renders the summary table, the per-step details and the
// dataset description.
func (r *Report) Markdown() string {
	var b strings.Builder
	n := r.DatasetBytes
	fmt.Fprintf(&b, "## lifeboat vs restic — %s\n\n", r.Date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Dataset: %d files, %s (%s).\n\nMachine: %s; %s. Order: %s.", r.DatasetFiles, fmtBytes(n), r.Composition, r.Host, r.Load, r.Order)
	if r.Runs > 1 {
		fmt.Fprintf(&b, " %d rounds; each step shows the round with the median wall time.", r.Runs)
	}
	b.WriteString("\n\n")
	b.WriteString("| | restic | lifeboat | ratio (lifeboat/restic) | DESIGN.md target | result |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	rs, lb := r.Restic, r.Lifeboat
	row := func(name, rv, lv, ratio string, t Target) {
		res := "—"
		if t.Set && lb != nil {
			res = "**FAIL**"
			if t.OK {
				res = "PASS"
			}
		}
		if lb == nil {
			lv, ratio = "not run", "—"
		}
		tt := t.Text
		if tt == "" {
			tt = "—"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", name, rv, lv, ratio, tt, res)
	}
	stepCell := func(s Step) string {
		return fmt.Sprintf("%.1f s (%.0f MiB/s)", s.Wall.Seconds(), s.Throughput(n))
	}
	var l ToolResult
	if lb != nil {
		l = *lb
	}
	thr := func(a, b Step) float64 { return b.Throughput(n) / nz(a.Throughput(n)) }
	tm := func(a, b Step) float64 { return b.Wall.Seconds() / nz(a.Wall.Seconds()) }

	x := thr(rs.Full, l.Full)
	row("full backup", stepCell(rs.Full), stepCell(l.Full), fmt.Sprintf("throughput ×%.2f", x), Target{"throughput ≥ ×2", x >= 2, true})
	x = tm(rs.NoChange, l.NoChange)
	row("no-change backup", fmt.Sprintf("%.2f s", rs.NoChange.Wall.Seconds()), fmt.Sprintf("%.2f s", l.NoChange.Wall.Seconds()), fmt.Sprintf("time ×%.2f", x), Target{"time ≤ ×0.5", x <= 0.5, true})
	x = thr(rs.Restore, l.Restore)
	row("restore", stepCell(rs.Restore), stepCell(l.Restore), fmt.Sprintf("throughput ×%.2f", x), Target{"throughput ≥ ×2.5", x >= 2.5, true})
	withSync := func(s Step) Step { s.Wall += s.Sync; return s }
	x = thr(withSync(rs.Restore), withSync(l.Restore))
	row("restore, then sync (data on disk)", stepCell(withSync(rs.Restore)), stepCell(withSync(l.Restore)), fmt.Sprintf("throughput ×%.2f", x), Target{})
	x = float64(l.StoredBytes) / nz(float64(rs.StoredBytes))
	row("stored bytes", fmt.Sprintf("%s (%d objects)", fmtBytes(rs.StoredBytes), rs.StoredObjects), fmt.Sprintf("%s (%d objects)", fmtBytes(l.StoredBytes), l.StoredObjects), fmt.Sprintf("size ×%.3f", x), Target{"≤ ×1", x <= 1, true})
	x = float64(l.BackupRSS()) / nz(float64(rs.BackupRSS()))
	row("peak RSS backup", fmtBytes(rs.BackupRSS()), fmtBytes(l.BackupRSS()), fmt.Sprintf("memory ×%.2f", x), Target{"≤ ×1", x <= 1, true})
	x = float64(l.Restore.MaxRSS) / nz(float64(rs.Restore.MaxRSS))
	row("peak RSS restore", fmtBytes(rs.Restore.MaxRSS), fmtBytes(l.Restore.MaxRSS), fmt.Sprintf("memory ×%.2f", x), Target{"≤ ×1", x <= 1, true})
	cpu := func(s Step) float64 { return (s.UserCPU + s.SysCPU).Seconds() }
	cpuCell := func(t ToolResult) string {
		return fmt.Sprintf("%.1f s / %.1f s", cpu(t.Full), cpu(t.Restore))
	}
	row("CPU time user+sys (full backup / restore)", cpuCell(*rs), cpuCell(l),
		fmt.Sprintf("CPU ×%.2f / ×%.2f", cpu(l.Full)/nz(cpu(rs.Full)), cpu(l.Restore)/nz(cpu(rs.Restore))), Target{})
	req := func(t ToolResult) string {
		return fmt.Sprintf("%d / %d / %d", t.Full.S3.Total(), t.NoChange.S3.Total(), t.Restore.S3.Total())
	}
	rsTotal := rs.Full.S3.Total() + rs.NoChange.S3.Total() + rs.Restore.S3.Total()
	lbTotal := l.Full.S3.Total() + l.NoChange.S3.Total() + l.Restore.S3.Total()
	row("S3 requests (full / no-change / restore)", req(*rs), req(l), fmt.Sprintf("requests ×%.2f", float64(lbTotal)/nz(float64(rsTotal))), Target{})

	b.WriteString("\n### Per step\n\n")
	b.WriteString("| tool | step | wall | MiB/s | CPU user+sys | peak RSS | S3 requests | S3 up / down |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, t := range []*ToolResult{rs, lb} {
		if t == nil {
			continue
		}
		for _, s := range []struct {
			name string
			st   Step
		}{{"full backup", t.Full}, {"no-change backup", t.NoChange}, {"restore", t.Restore}} {
			fmt.Fprintf(&b, "| %s | %s | %.2f s | %.1f | %.1f s + %.1f s | %s | %s | %s / %s |\n",
				t.Tool, s.name, s.st.Wall.Seconds(), s.st.Throughput(n), s.st.UserCPU.Seconds(), s.st.SysCPU.Seconds(),
				fmtBytes(s.st.MaxRSS), s.st.S3.Breakdown(), fmtBytes(s.st.S3.BytesUp), fmtBytes(s.st.S3.BytesDn))
		}
	}
	if r.Runs > 1 {
		b.WriteString("\n### Rounds (wall seconds: full / no-change / restore, then the sync after the restore)\n\n")
		for _, all := range [][]*ToolResult{r.AllRestic, r.AllLifeboat} {
			for i, t := range all {
				fmt.Fprintf(&b, "- %s round %d: %.1f / %.2f / %.1f + %.1f, stored %s\n", t.Tool, i+1, t.Full.Wall.Seconds(), t.NoChange.Wall.Seconds(), t.Restore.Wall.Seconds(), t.Restore.Sync.Seconds(), fmtBytes(t.StoredBytes))
			}
		}
	}
	b.WriteString("\n### Tools\n\n")
	for _, t := range []*ToolResult{rs, lb} {
		if t == nil {
			continue
		}
		fmt.Fprintf(&b, "- %s: `%s`\n", t.Tool, t.Version)
		for _, note := range t.Notes {
			fmt.Fprintf(&b, "  - %s\n", note)
		}
	}
	return b.String()
}

func nz(v float64) float64 {
	if v == 0 {
		return 1e-12
	}
	return v
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// FmtBytes formats a byte count with a binary unit.
func FmtBytes(n int64) string { return fmtBytes(n) }
