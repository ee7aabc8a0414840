package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

func newStatusCmd(g *globals) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each policy's and agent's last success, achieved RPO, drills, verification coverage and what is overdue",
		Long: `Show, per policy and per agent, the last successful backup, the achieved
recovery point (age of the newest good snapshot) against the policy's RPO
target, and what is overdue. The exit code is 0 even when something is
overdue; use --json to alert on it.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, done, err := fetch[coordinator.StatusReport](cmd, g, &cf, "/v1/status")
			if done || err != nil {
				return err
			}
			w := g.stdout
			fmt.Fprintln(w, "Policies")
			tw := newTable(w, "  NAME", "LAST SUCCESS", "RPO", "TARGET", "STATE", "PENDING", "RUNNING", "FAILED", "NEXT RUN")
			for _, p := range st.Policies {
				target, state := "-", "ok"
				if p.RPOTarget > 0 {
					target = p.RPOTarget.String()
				}
				if p.Overdue {
					state = "OVERDUE"
				}
				next := "-"
				if !p.NextRun.IsZero() {
					next = p.NextRun.Local().Format(time.DateTime)
				}
				row(tw, "  "+p.Name, ago(p.LastSuccess), formatAge(time.Duration(p.RPOAchieved)), target, state, p.Pending, p.Running, p.Failed, next)
			}
			tw.Flush()
			fmt.Fprintln(w, "\nAgents")
			tw = newTable(w, "  NAME", "CONNECTED", "LAST SEEN", "RUNNING", "LAST SUCCESS", "STATE")
			for _, a := range st.Agents {
				state := "ok"
				switch {
				case a.Revoked:
					state = "revoked"
				case a.Overdue:
					state = "OVERDUE"
				}
				row(tw, "  "+a.Name, a.Connected, ago(a.LastSeen), a.Running, ago(a.LastSuccess), state)
			}
			tw.Flush()
			fmt.Fprintln(w, "\nRestore drills")
			tw = newTable(w, "  POLICY", "LAST DRILL", "RESULT", "RTO", "TARGET", "SNAPSHOT AGE")
			for _, p := range st.Policies {
				d := p.LastDrill
				if d == nil {
					row(tw, "  "+p.Name, "never", "-", "-", orDash(durationOrEmpty(p.RTOTarget)), "-")
					continue
				}
				result := "passed"
				if !d.Passed {
					result = "FAILED (" + strings.Join(d.Reasons, ",") + ")"
				}
				row(tw, "  "+p.Name, ago(d.StartedAt), result, durationText(d.RTOSeconds), orDash(durationOrEmpty(p.RTOTarget)), durationText(d.RPOSeconds))
			}
			tw.Flush()
			fmt.Fprintln(w, "\nVerification coverage")
			printCoverage(w, st.Coverage)
			if len(st.Overdue) > 0 {
				fmt.Fprintf(w, "\nOverdue (RPO target missed): %d\n", len(st.Overdue))
				for _, o := range st.Overdue {
					fmt.Fprintf(w, "  %s\n", o)
				}
			} else {
				fmt.Fprintln(w, "\nNothing overdue.")
			}
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

func durationOrEmpty(d coordinator.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}
