package drill

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// ReportOptions configure WriteReport.
type ReportOptions struct {
	Since time.Time // only drills started at or after Since (zero: all)
	Title string    // default "Restore drill evidence"
	Now   time.Time // the report's generation time; default time.Now()
}

// PolicySummary aggregates a policy's drills. RTO figures are over
// passed drills: a failed drill measured no recovery.
type PolicySummary struct {
	Drills           int       `json:"drills"`
	Passed           int       `json:"passed"`
	Failed           int       `json:"failed"`
	PassRate         float64   `json:"pass_rate"` // 0..1
	MedianRTOSeconds float64   `json:"median_rto_seconds"`
	MaxRTOSeconds    float64   `json:"max_rto_seconds"`
	TargetRTOSeconds float64   `json:"target_rto_seconds,omitempty"` // of the newest drill
	TargetRPOSeconds float64   `json:"target_rpo_seconds,omitempty"`
	LastDrill        time.Time `json:"last_drill,omitzero"`
	LastPassed       time.Time `json:"last_passed,omitzero"`
}

// PolicyReport is one policy's section of a report.
type PolicyReport struct {
	Policy  string        `json:"policy"`
	Drills  []Result      `json:"drills"`
	Summary PolicySummary `json:"summary"`
}

type reportJSON struct {
	Title       string         `json:"title"`
	GeneratedAt time.Time      `json:"generated_at"`
	Since       time.Time      `json:"since,omitzero"`
	Policies    []PolicyReport `json:"policies"`
}

// noPolicy names the group of drills run without a policy.
const noPolicy = "(no policy)"

// GroupByPolicy selects results started at or after since, groups them
// by policy (sorted by name) and sorts each group by start time.
func GroupByPolicy(results []Result, since time.Time) []PolicyReport {
	by := map[string][]Result{}
	for _, r := range results {
		if r.StartedAt.Before(since) {
			continue
		}
		p := r.Policy
		if p == "" {
			p = noPolicy
		}
		by[p] = append(by[p], r)
	}
	out := make([]PolicyReport, 0, len(by))
	for p, rs := range by {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].StartedAt.Before(rs[j].StartedAt) })
		for i := range rs {
			if rs[i].Failures == nil {
				rs[i].Failures = []Failure{}
			}
		}
		out = append(out, PolicyReport{Policy: p, Drills: rs, Summary: summarize(rs)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Policy < out[j].Policy })
	return out
}

func summarize(rs []Result) PolicySummary {
	s := PolicySummary{Drills: len(rs)}
	var rtos []float64
	for _, r := range rs {
		if r.Passed {
			s.Passed++
			rtos = append(rtos, r.RTOSeconds)
			s.LastPassed = r.StartedAt
		}
		s.LastDrill = r.StartedAt
		s.TargetRTOSeconds, s.TargetRPOSeconds = r.TargetRTOSeconds, r.TargetRPOSeconds
	}
	s.Failed = s.Drills - s.Passed
	if s.Drills > 0 {
		s.PassRate = float64(s.Passed) / float64(s.Drills)
	}
	if len(rtos) > 0 {
		slices.Sort(rtos)
		m := len(rtos) / 2
		s.MedianRTOSeconds = rtos[m]
		if len(rtos)%2 == 0 {
			s.MedianRTOSeconds = (rtos[m-1] + rtos[m]) / 2
		}
		s.MaxRTOSeconds = rtos[len(rtos)-1]
	}
	return s
}

// WriteReport writes an evidence report of results for auditors, in
// format "md" (Markdown), "html" (one self-contained page with inline
// SVG charts) or "json".
func WriteReport(w io.Writer, format string, results []Result, opts ReportOptions) error {
	if opts.Title == "" {
		opts.Title = "Restore drill evidence"
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	pols := GroupByPolicy(results, opts.Since)
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reportJSON{Title: opts.Title, GeneratedAt: opts.Now.UTC(), Since: opts.Since, Policies: pols})
	case "md", "markdown":
		return writeMarkdown(w, pols, opts)
	case "html":
		return writeHTML(w, pols, opts)
	}
	return fmt.Errorf("report format %q: want md, html or json", format)
}

// ---- shared cell texts ----

const timeLayout = "2006-01-02 15:04 UTC"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format(timeLayout)
}

func triggerText(r Result) string {
	t := r.Trigger
	if t == "" {
		t = "manual"
	}
	if r.TriggeredBy != "" {
		t += " by " + r.TriggeredBy
	}
	return t
}

func snapshotText(r Result) string {
	if r.SnapshotID == "" {
		return "—"
	}
	id := r.SnapshotID
	if len(id) > 8 {
		id = id[:8]
	}
	return id + " (" + fmtTime(r.SnapshotTime) + ")"
}

func restoredText(r Result) string {
	s := fmtCount(r.Files) + " files, " + fmtBytes(r.Bytes)
	if r.SamplePercent > 0 {
		s += fmt.Sprintf(" (%.4g%% sample)", r.SamplePercent)
	}
	return s
}

func vsTarget(v, target float64, met *bool) string {
	s := fmtDuration(seconds(v))
	if target > 0 {
		s += " / " + fmtDuration(seconds(target))
		switch {
		case met == nil:
		case *met:
			s += " ✓"
		default:
			s += " ✗"
		}
	}
	return s
}

func checksText(r Result) string {
	if len(r.Checks) == 0 {
		return "—"
	}
	var parts []string
	for _, c := range r.Checks {
		st := "exit " + fmt.Sprint(c.ExitCode)
		switch {
		case c.Skipped:
			st = "skipped"
		case c.TimedOut:
			st = "timed out"
		case c.Signal != "":
			st = "killed by signal " + c.Signal
		}
		parts = append(parts, fmt.Sprintf("%s: %s", c.Command, st))
	}
	return strings.Join(parts, "; ")
}

func resultText(r Result) string {
	if r.Passed {
		return "PASS"
	}
	return "FAIL (" + strings.Join(r.Reasons(), ", ") + ")"
}

// sparkline renders values as a row of block characters.
func sparkline(vs []float64) string {
	if len(vs) == 0 {
		return ""
	}
	bars := []rune("▁▂▃▄▅▆▇█")
	lo, hi := slices.Min(vs), slices.Max(vs)
	var b strings.Builder
	for _, v := range vs {
		i := 0
		if hi > lo {
			i = int((v - lo) / (hi - lo) * float64(len(bars)-1))
		}
		b.WriteRune(bars[i])
	}
	return b.String()
}

// ---- Markdown ----

func mdCell(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\\\")
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", " ")
}

func writeMarkdown(w io.Writer, pols []PolicyReport, opts ReportOptions) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\nGenerated %s", mdCell(opts.Title), fmtTime(opts.Now))
	if !opts.Since.IsZero() {
		fmt.Fprintf(&b, ", covering drills since %s", fmtTime(opts.Since))
	}
	b.WriteString(".\n")
	if len(pols) == 0 {
		b.WriteString("\nNo drills in this period.\n")
	}
	for _, p := range pols {
		s := p.Summary
		fmt.Fprintf(&b, "\n## Policy: %s\n\n", mdCell(p.Policy))
		b.WriteString("| Drills | Passed | Failed | Pass rate | Median RTO | Max RTO | RTO target | RPO target |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		fmt.Fprintf(&b, "| %d | %d | %d | %.0f%% | %s | %s | %s | %s |\n\n", s.Drills, s.Passed, s.Failed, s.PassRate*100,
			fmtDuration(seconds(s.MedianRTOSeconds)), fmtDuration(seconds(s.MaxRTOSeconds)), targetText(s.TargetRTOSeconds), targetText(s.TargetRPOSeconds))
		b.WriteString("| Started | Trigger | Runner | Snapshot | Restored and verified | RTO / target | RPO / target | Verify commands | Result |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range p.Drills {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				fmtTime(r.StartedAt), mdCell(triggerText(r)), mdCell(r.Runner), snapshotText(r), restoredText(r),
				vsTarget(r.RTOSeconds, r.TargetRTOSeconds, r.RTOMet), vsTarget(r.RPOSeconds, r.TargetRPOSeconds, r.RPOMet),
				mdCell(checksText(r)), resultText(r))
		}
		var failed []Result
		for _, r := range p.Drills {
			if !r.Passed {
				failed = append(failed, r)
			}
		}
		if len(failed) > 0 {
			b.WriteString("\n### Failures\n\n")
			for _, r := range failed {
				fmt.Fprintf(&b, "- %s, drill %s:\n", fmtTime(r.StartedAt), mdCell(r.ID))
				for _, f := range r.Failures {
					fmt.Fprintf(&b, "  - %s\n", mdCell(f.Error()))
				}
			}
		}
		var damaged []Result
		for _, r := range p.Drills {
			if len(r.DamagedPacks) > 0 {
				damaged = append(damaged, r)
			}
		}
		if len(damaged) > 0 {
			b.WriteString("\n### Damaged packs\n\nPacks that were missing or damaged; the drill restored what it needed from them from other copies the repository holds. Run `lifeboat check --read-data`, then `lifeboat repair packs` on what it names:\n\n")
			for _, r := range damaged {
				fmt.Fprintf(&b, "- %s, drill %s: %s\n", fmtTime(r.StartedAt), mdCell(r.ID), mdCell(strings.Join(r.DamagedPacks, ", ")))
			}
		}
		var warned []Result
		for _, r := range p.Drills {
			if r.MetadataErrors > 0 {
				warned = append(warned, r)
			}
		}
		if len(warned) > 0 {
			b.WriteString("\n### Metadata warnings\n\nEntries whose data was restored and verified but whose owner, mode or times could not all be set in the scratch directory (first few per drill):\n\n")
			for _, r := range warned {
				fmt.Fprintf(&b, "- %s, drill %s: %s entries\n", fmtTime(r.StartedAt), mdCell(r.ID), fmtCount(r.MetadataErrors))
				for _, f := range r.MetadataSamples {
					fmt.Fprintf(&b, "  - %s\n", mdCell(f.Path+": "+f.Message))
				}
			}
		}
		var rtos []float64
		for _, r := range p.Drills {
			if r.Passed {
				rtos = append(rtos, r.RTOSeconds)
			}
		}
		if len(rtos) > 0 {
			fmt.Fprintf(&b, "\n### RTO trend\n\n`%s` (passed drills, oldest first; min %s, max %s)\n\n", sparkline(rtos),
				fmtDuration(seconds(slices.Min(rtos))), fmtDuration(seconds(slices.Max(rtos))))
			b.WriteString("| Date | RTO |\n|---|---:|\n")
			for _, r := range p.Drills {
				if r.Passed {
					fmt.Fprintf(&b, "| %s | %s |\n", fmtTime(r.StartedAt), fmtDuration(seconds(r.RTOSeconds)))
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func targetText(s float64) string {
	if s <= 0 {
		return "none"
	}
	return fmtDuration(seconds(s))
}
