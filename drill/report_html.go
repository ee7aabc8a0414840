package drill

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

// chart is an inline SVG line chart of RTO over time.
type chart struct {
	W, H    int
	Points  string // polyline of passed drills
	Dots    []dot
	TargetY float64 // 0: no target line
	Target  string
	MaxY    string
	From    string
	To      string
}

type dot struct {
	X, Y   float64
	Passed bool
	Title  string
}

const chartW, chartH, chartPad = 640, 180, 28

func rtoChart(p PolicyReport) *chart {
	if len(p.Drills) == 0 {
		return nil
	}
	c := &chart{W: chartW, H: chartH}
	first, last := p.Drills[0].StartedAt, p.Drills[len(p.Drills)-1].StartedAt
	span := last.Sub(first)
	maxV := p.Summary.TargetRTOSeconds
	for _, r := range p.Drills {
		maxV = max(maxV, r.RTOSeconds)
	}
	if maxV <= 0 {
		maxV = 1
	}
	maxV *= 1.1
	x := func(t time.Time) float64 {
		if span <= 0 {
			return chartW / 2
		}
		return chartPad + float64(t.Sub(first))/float64(span)*(chartW-2*chartPad)
	}
	y := func(v float64) float64 { return chartH - chartPad - v/maxV*(chartH-2*chartPad) }
	var pts []string
	for _, r := range p.Drills {
		d := dot{X: x(r.StartedAt), Passed: r.Passed, Title: fmt.Sprintf("%s: %s, RTO %s", fmtTime(r.StartedAt), resultText(r), fmtDuration(seconds(r.RTOSeconds)))}
		if r.Passed {
			d.Y = y(r.RTOSeconds)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", d.X, d.Y))
		} else {
			d.Y = chartH - chartPad
		}
		c.Dots = append(c.Dots, d)
	}
	c.Points = strings.Join(pts, " ")
	if t := p.Summary.TargetRTOSeconds; t > 0 {
		c.TargetY = y(t)
		c.Target = "target " + fmtDuration(seconds(t))
	}
	c.MaxY = fmtDuration(seconds(maxV))
	c.From, c.To = fmtTime(first), fmtTime(last)
	return c
}

type htmlRow struct {
	Started, Trigger, Runner, Snapshot, Restored, RTO, RPO, Result string
	Checks                                                         []string
	Passed                                                         bool
	Failures                                                       []string
	Warning                                                        string // metadata not all restored
}

type htmlPolicy struct {
	Policy   string
	Summary  PolicySummary
	PassRate string
	Median   string
	Max      string
	TRTO     string
	TRPO     string
	Rows     []htmlRow
	Chart    *chart
}

type htmlPage struct {
	Title, Generated, Since string
	Policies                []htmlPolicy
}

var reportTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.pass{color:#176f2c;font-weight:bold}.fail{color:#b00020;font-weight:bold}.warn{color:#8a5a00;margin:.3em 0 0}
.num{text-align:right}ul{margin:.2em 0;padding-left:1.2em}
svg{border:1px solid #ddd;background:#fcfcfc}
</style></head><body>
<h1>{{.Title}}</h1>
<p>Generated {{.Generated}}{{if .Since}}, covering drills since {{.Since}}{{end}}.</p>
{{if not .Policies}}<p>No drills in this period.</p>{{end}}
{{range .Policies}}
<section>
<h2>Policy: {{.Policy}}</h2>
<table><tr><th>Drills</th><th>Passed</th><th>Failed</th><th>Pass rate</th><th>Median RTO</th><th>Max RTO</th><th>RTO target</th><th>RPO target</th></tr>
<tr><td class="num">{{.Summary.Drills}}</td><td class="num">{{.Summary.Passed}}</td><td class="num">{{.Summary.Failed}}</td><td class="num">{{.PassRate}}</td><td class="num">{{.Median}}</td><td class="num">{{.Max}}</td><td class="num">{{.TRTO}}</td><td class="num">{{.TRPO}}</td></tr></table>
{{with .Chart}}
<h3>RTO trend</h3>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="RTO of each drill over time">
<line x1="28" y1="152" x2="612" y2="152" stroke="#999"/>
<line x1="28" y1="28" x2="28" y2="152" stroke="#999"/>
<text x="30" y="20" font-size="11">{{.MaxY}}</text>
<text x="28" y="170" font-size="11">{{.From}}</text>
<text x="612" y="170" font-size="11" text-anchor="end">{{.To}}</text>
{{if .TargetY}}<line x1="28" y1="{{.TargetY}}" x2="612" y2="{{.TargetY}}" stroke="#b00020" stroke-dasharray="4 3"/><text x="610" y="{{.TargetY}}" dy="-3" font-size="11" text-anchor="end" fill="#b00020">{{.Target}}</text>{{end}}
{{if .Points}}<polyline fill="none" stroke="#1a5fb4" stroke-width="2" points="{{.Points}}"/>{{end}}
{{range .Dots}}<circle cx="{{.X}}" cy="{{.Y}}" r="4" fill="{{if .Passed}}#1a5fb4{{else}}#b00020{{end}}"><title>{{.Title}}</title></circle>
{{end}}</svg>
{{end}}
<h3>Drills</h3>
<table><tr><th>Started</th><th>Trigger</th><th>Runner</th><th>Snapshot</th><th>Restored and verified</th><th>RTO / target</th><th>RPO / target</th><th>Verify commands</th><th>Result</th></tr>
{{range .Rows}}<tr><td>{{.Started}}</td><td>{{.Trigger}}</td><td>{{.Runner}}</td><td>{{.Snapshot}}</td><td>{{.Restored}}</td><td>{{.RTO}}</td><td>{{.RPO}}</td>
<td>{{if .Checks}}<ul>{{range .Checks}}<li><code>{{.}}</code></li>{{end}}</ul>{{else}}—{{end}}</td>
<td><span class="{{if .Passed}}pass{{else}}fail{{end}}">{{.Result}}</span>{{if .Failures}}<ul>{{range .Failures}}<li>{{.}}</li>{{end}}</ul>{{end}}{{if .Warning}}<p class="warn">{{.Warning}}</p>{{end}}</td></tr>
{{end}}</table>
</section>
{{end}}
</body></html>
`))

func writeHTML(w io.Writer, pols []PolicyReport, opts ReportOptions) error {
	page := htmlPage{Title: opts.Title, Generated: fmtTime(opts.Now)}
	if !opts.Since.IsZero() {
		page.Since = fmtTime(opts.Since)
	}
	for _, p := range pols {
		s := p.Summary
		hp := htmlPolicy{
			Policy: p.Policy, Summary: s, PassRate: fmt.Sprintf("%.0f%%", s.PassRate*100),
			Median: fmtDuration(seconds(s.MedianRTOSeconds)), Max: fmtDuration(seconds(s.MaxRTOSeconds)),
			TRTO: targetText(s.TargetRTOSeconds), TRPO: targetText(s.TargetRPOSeconds), Chart: rtoChart(p),
		}
		for _, r := range p.Drills {
			row := htmlRow{
				Started: fmtTime(r.StartedAt), Trigger: triggerText(r), Runner: r.Runner, Snapshot: snapshotText(r),
				Restored: restoredText(r), RTO: vsTarget(r.RTOSeconds, r.TargetRTOSeconds, r.RTOMet),
				RPO: vsTarget(r.RPOSeconds, r.TargetRPOSeconds, r.RPOMet), Result: resultText(r), Passed: r.Passed,
				Warning: r.warningText(),
			}
			for _, c := range r.Checks {
				row.Checks = append(row.Checks, checksText(Result{Checks: []CheckResult{c}}))
			}
			for _, f := range r.Failures {
				row.Failures = append(row.Failures, f.Error())
			}
			hp.Rows = append(hp.Rows, row)
		}
		page.Policies = append(page.Policies, hp)
	}
	return reportTmpl.Execute(w, page)
}
