package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/drill"
)

// The drill commands that go through the coordinator: run, list, show,
// report. 'drill local' (drill_local.go) needs no coordinator.

func addDrillRemoteCmds(g *globals, cmd *cobra.Command) {
	cf := &clientFlags{}
	for _, sub := range []*cobra.Command{newDrillRunCmd(g, cf), newDrillListCmd(g, cf), newDrillShowCmd(g, cf), newDrillReportCmd(g, cf)} {
		cf.register(sub) // not on the parent: 'drill local' needs no coordinator
		cmd.AddCommand(sub)
	}
}

func newDrillRunCmd(g *globals, cf *clientFlags) *cobra.Command {
	var snap string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "run POLICY",
		Short: "Start a restore drill of a policy now on one of its runners",
		Long: `Start a drill of POLICY now. The coordinator picks one of the policy's
runners (connected agents started with --identity that match drill.runner).
With --wait, wait for the verdict: exit 0 when the drill passed, 1 when it
failed.`,
		Example: "  lifeboat drill run db --wait\n  lifeboat drill run db --snapshot random-within:30d",
		Args:    argsBetween(1, 1, "policy name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := coordinator.CheckSnapshotSelector(snap); err != nil {
				return usageError("--snapshot: %v", err)
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			var res coordinator.DrillRunResult
			if err := c.Post(cmd.Context(), "/v1/policies/"+url.PathEscape(args[0])+"/drill", coordinator.DrillRunRequest{Snapshot: snap}, &res); err != nil {
				return apiErr(err)
			}
			if !wait {
				if g.json {
					return printJSON(g.stdout, res)
				}
				fmt.Fprintf(g.stdout, "drill %s started on %s (follow it with 'lifeboat drill show %s')\n", res.ID, res.Agent, res.ID)
				return nil
			}
			if !g.json {
				fmt.Fprintf(g.stderr, "drill %s started on %s; waiting for its verdict...\n", res.ID, res.Agent)
			}
			deadline := time.Now().Add(timeout)
			for {
				var d coordinator.DrillView
				if err := c.Get(cmd.Context(), "/v1/drills/"+url.PathEscape(res.ID), &d); err != nil {
					return apiErr(err)
				}
				if d.State == "passed" || d.State == "failed" {
					if g.json {
						if err := printJSON(g.stdout, d); err != nil {
							return err
						}
					} else {
						printDrill(g.stdout, d)
					}
					if !d.Passed {
						return withCode(exitError, fmt.Errorf("drill %s of policy %s failed: %s", d.ID, d.Policy, d.Summary))
					}
					return nil
				}
				if timeout > 0 && time.Now().After(deadline) {
					return fmt.Errorf("drill %s is still %s after %s (it goes on; follow it with 'lifeboat drill show %s')", res.ID, d.State, timeout, res.ID)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().StringVar(&snap, "snapshot", "", "snapshot to drill: latest, random-within:30d or an ID (default: the policy's drill.snapshot)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the verdict; exit 1 if the drill failed")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait, give up waiting after this long (0: no limit)")
	return cmd
}

func newDrillListCmd(g *globals, cf *clientFlags) *cobra.Command {
	var policy, since string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List drills, oldest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if policy != "" {
				q.Set("policy", policy)
			}
			if since != "" {
				q.Set("since", since)
			}
			list, done, err := fetch[[]coordinator.DrillView](cmd, g, cf, "/v1/drills?"+q.Encode())
			if done || err != nil {
				return err
			}
			tw := newTable(g.stdout, "ID", "POLICY", "STATE", "STARTED", "RUNNER", "SNAPSHOT", "RTO", "RPO", "REASONS")
			for _, d := range list {
				started := "-"
				if !d.StartedAt.IsZero() {
					started = d.StartedAt.Local().Format(time.DateTime)
				}
				row(tw, d.ID, d.Policy, d.State, started, orDash(d.Runner), orDash(shortID(d.SnapshotID)),
					durationText(d.RTOSeconds), durationText(d.RPOSeconds), orDash(strings.Join(d.Reasons, ",")))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&policy, "policy", "", "only drills of this policy")
	cmd.Flags().StringVar(&since, "since", "", "only drills started within this duration (30d) or since this RFC 3339 time")
	return cmd
}

func newDrillShowCmd(g *globals, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a drill: verdict, RTO and RPO, what was verified, verify command output",
		Args:  argsBetween(1, 1, "drill ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, done, err := fetch[coordinator.DrillView](cmd, g, cf, "/v1/drills/"+url.PathEscape(args[0]))
			if done || err != nil {
				return err
			}
			printDrill(g.stdout, d)
			return nil
		},
	}
}

func newDrillReportCmd(g *globals, cf *clientFlags) *cobra.Command {
	var since, format, policy, out string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Write an evidence report of drills for auditors (Markdown, HTML or JSON)",
		Long: `Write an evidence report: per policy, every drill with when it ran, who or what
triggered it, the runner, the snapshot, files and bytes restored, RTO and RPO
against the policy's targets, the verify commands' results, the verdict, and
the trend of RTO over time.`,
		Example: "  lifeboat drill report --since 90d --format html -o drills.html",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch format {
			case "md", "html", "json":
			default:
				return usageError("--format %q: want md, html or json", format)
			}
			now := time.Now()
			from, err := coordinator.ParseSince(since, now)
			if err != nil {
				return usageError("--since: %v", err)
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if policy != "" {
				q.Set("policy", policy)
			}
			if !from.IsZero() {
				q.Set("since", from.UTC().Format(time.RFC3339))
			}
			var list []coordinator.DrillView
			if err := c.Get(cmd.Context(), "/v1/drills?"+q.Encode(), &list); err != nil {
				return apiErr(err)
			}
			var results []drill.Result
			for _, d := range list {
				if d.State == "passed" || d.State == "failed" {
					results = append(results, drillResultOf(d.DrillRecord))
				}
			}
			w := g.stdout
			if out != "" && out != "-" {
				f, err := os.Create(out)
				if err != nil {
					return fmt.Errorf("drill report: %w", err)
				}
				defer f.Close()
				w = f
			}
			if err := drill.WriteReport(w, format, results, drill.ReportOptions{Since: from, Now: now}); err != nil {
				return fmt.Errorf("drill report: %w", err)
			}
			if f, ok := w.(*os.File); ok && f != os.Stdout {
				if err := f.Close(); err != nil {
					return fmt.Errorf("drill report: write %s: %w", out, err)
				}
				fmt.Fprintf(g.stderr, "wrote %s: %d drills\n", out, len(results))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "only drills started within this duration (90d) or since this RFC 3339 time")
	fl.StringVar(&format, "format", "md", "md, html or json")
	fl.StringVar(&policy, "policy", "", "only this policy")
	fl.StringVarP(&out, "output", "o", "", "write to this file instead of standard output")
	return cmd
}

// drillResultOf turns a stored record into the drill package's Result:
// the runner's full result when it sent one, else what the record holds
// (a drill that could not run).
func drillResultOf(d coordinator.DrillRecord) drill.Result {
	var r drill.Result
	if len(d.Result) > 0 {
		if err := json.Unmarshal(d.Result, &r); err != nil {
			r = drill.Result{}
		}
	}
	if r.ID == "" {
		r = drill.Result{ID: d.ID, Passed: d.Passed, SnapshotID: d.SnapshotID, StartedAt: d.StartedAt, FinishedAt: d.FinishedAt,
			RTOSeconds: d.RTOSeconds, RPOSeconds: d.RPOSeconds}
		for _, reason := range d.Reasons {
			r.Failures = append(r.Failures, drill.Failure{Reason: reason, Message: d.Summary})
		}
	}
	// The coordinator's record is authoritative for who and what.
	r.ID, r.Policy, r.Passed = d.ID, d.Policy, d.Passed
	r.JobID, r.Runner, r.Trigger, r.TriggeredBy = d.ID, d.Runner, string(d.Trigger), d.TriggeredBy
	if r.Failures == nil {
		r.Failures = []drill.Failure{}
	}
	return r
}

func printDrill(w io.Writer, d coordinator.DrillView) {
	fmt.Fprintf(w, "drill %s of policy %s: %s\n", d.ID, d.Policy, strings.ToUpper(d.State))
	trig := string(d.Trigger)
	if d.TriggeredBy != "" && d.Trigger == coordinator.TriggerManual {
		trig += " by " + d.TriggeredBy
	}
	fmt.Fprintf(w, "Trigger:     %s\nRunner:      %s\n", orDash(trig), orDash(d.Runner))
	if !d.StartedAt.IsZero() {
		fmt.Fprintf(w, "Started:     %s\n", d.StartedAt.Local().Format(time.RFC3339))
	}
	if d.State != "passed" && d.State != "failed" {
		return
	}
	fmt.Fprintf(w, "Summary:     %s\n", d.Summary)
	r := drillResultOf(d.DrillRecord)
	printDrillDetails(w, &r)
}

func targetSuffix(target float64, met *bool) string {
	if target <= 0 {
		return ""
	}
	s := " (target " + formatDuration(secs(target))
	if met != nil && !*met {
		s += ", MISSED"
	}
	return s + ")"
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// durationText renders seconds for tables, "-" when there are none.
func durationText(s float64) string {
	if s <= 0 {
		return "-"
	}
	return formatDuration(secs(s))
}
