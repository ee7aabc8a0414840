package main

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

func newJobCmd(g *globals) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "job",
		Short: "List, show and cancel jobs",
		Long: `Jobs are the runs of policies on agents. States (JSON field "state"):
pending, running, succeeded, failed, cancelled.`,
	}
	cf.register(cmd)
	var policy, state, agent string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List jobs, oldest scheduled first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"policy": policy, "state": state, "agent": agent} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			var jobs []coordinator.Job
			if err := c.Get(cmd.Context(), "/v1/jobs?"+q.Encode(), &jobs); err != nil {
				return apiErr(err)
			}
			if g.json {
				return printJSON(g.stdout, jobs)
			}
			tw := newTable(g.stdout, "ID", "POLICY", "AGENT", "KIND", "STATE", "SCHEDULED", "ATTEMPT", "RESULT")
			for _, j := range jobs {
				row(tw, j.ID, j.Policy, j.Agent, j.Kind, j.State, j.ScheduledAt.Local().Format(time.DateTime), j.Attempt, jobResult(j))
			}
			return tw.Flush()
		},
	}
	fl := list.Flags()
	fl.StringVar(&policy, "policy", "", "only jobs of this policy")
	fl.StringVar(&state, "state", "", "only jobs in this state: pending, running, succeeded, failed, cancelled")
	fl.StringVar(&agent, "agent", "", "only jobs of this agent")
	fl.IntVar(&limit, "limit", 0, "only the newest N")
	cmd.AddCommand(list)

	cmd.AddCommand(&cobra.Command{
		Use:   "show ID",
		Short: "Show a job",
		Args:  argsBetween(1, 1, "job ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, done, err := fetch[coordinator.Job](cmd, g, &cf, "/v1/jobs/"+url.PathEscape(args[0]))
			if done || err != nil {
				return err
			}
			printJob(g, j)
			return nil
		},
	})
	var reason string
	cancel := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a pending or running job",
		Args:  argsBetween(1, 1, "job ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			var j coordinator.Job
			if err := c.Post(cmd.Context(), "/v1/jobs/"+url.PathEscape(args[0])+"/cancel", coordinator.CancelRequest{Reason: reason}, &j); err != nil {
				return apiErr(err)
			}
			if g.json {
				return printJSON(g.stdout, j)
			}
			fmt.Fprintf(g.stdout, "job %s cancelled\n", j.ID)
			return nil
		},
	}
	cancel.Flags().StringVar(&reason, "reason", "", "why (recorded with the job)")
	cmd.AddCommand(cancel)
	return cmd
}

func jobResult(j coordinator.Job) string {
	switch {
	case j.Result == nil:
		return "-"
	case j.Result.Error != "":
		return terminalSafe(j.Result.Error)
	case j.Result.SnapshotID != "" && j.Result.Partial:
		return "snapshot " + j.Result.SnapshotID + " (partial: some files could not be read)"
	case j.Result.SnapshotID != "":
		return "snapshot " + j.Result.SnapshotID
	case j.Result.Verify != nil:
		v := j.Result.Verify
		s := fmt.Sprintf("%d packs (%s) verified in %d shards", v.Packs, formatBytes(v.Bytes), v.Shards)
		if n := len(v.CatalogDropped); n > 0 {
			s += fmt.Sprintf("; %d forgotten snapshots left the catalog", n)
		}
		return s
	case j.Result.Prune != nil:
		p := j.Result.Prune
		s := fmt.Sprintf("pruned: %d packs (%s) deleted, %d marked, %d repacked", p.DeletedPacks, formatBytes(p.DeletedBytes), p.MarkedPacks, p.RepackedPacks)
		if p.PendingMarks > 0 {
			s += fmt.Sprintf("; %d marks wait for %d running backups", p.PendingMarks, p.WaitingFor)
		}
		return s
	case j.Result.Drill != "":
		return "drill passed (lifeboat drill show " + j.Result.Drill + ")"
	}
	return "-"
}

func printJob(g *globals, j coordinator.Job) {
	w := g.stdout
	fmt.Fprintf(w, "job %s\n", j.ID)
	if j.Kind == coordinator.KindVerify {
		fmt.Fprintf(w, "  repository: %s (%s, %s)\n", j.Repository, j.Kind, j.Trigger)
		if j.Verify != nil {
			fmt.Fprintf(w, "  shards:     %d of %d\n", len(j.Verify.Shards), coordinator.VerifyShards)
		}
	} else {
		fmt.Fprintf(w, "  policy:     %s (%s, %s)\n", j.Policy, j.Kind, j.Trigger)
	}
	fmt.Fprintf(w, "  agent:      %s\n", j.Agent)
	fmt.Fprintf(w, "  state:      %s (attempt %d of %d)\n", j.State, j.Attempt, j.MaxAttempts)
	fmt.Fprintf(w, "  scheduled:  %s\n", j.ScheduledAt.Local().Format(time.RFC3339))
	if !j.StartedAt.IsZero() {
		fmt.Fprintf(w, "  started:    %s\n", j.StartedAt.Local().Format(time.RFC3339))
	}
	if !j.FinishedAt.IsZero() {
		fmt.Fprintf(w, "  finished:   %s\n", j.FinishedAt.Local().Format(time.RFC3339))
	}
	if l := j.Lease; l != nil && j.State == coordinator.JobRunning {
		fmt.Fprintf(w, "  lease:      token %d held by %s until %s\n", l.Token, l.Holder, l.Deadline.Local().Format(time.RFC3339))
	}
	if p := j.Progress; p != nil {
		line := fmt.Sprintf("%d files, %s", p.Files, formatBytes(p.Bytes))
		if p.Rate > 0 {
			line += fmt.Sprintf(", %s/s", formatBytes(p.Rate))
		}
		if p.ETASeconds > 0 && j.State == coordinator.JobRunning {
			line += fmt.Sprintf(", about %s left", (time.Duration(p.ETASeconds) * time.Second).String())
		}
		fmt.Fprintf(w, "  progress:   %s\n", line)
	}
	fmt.Fprintf(w, "  result:     %s\n", jobResult(j))
	if j.Result != nil {
		if v := j.Result.Verify; v != nil {
			for _, id := range v.Damaged {
				fmt.Fprintf(w, "  damaged:    pack %s\n", id)
			}
		}
		for _, warn := range j.Result.Warnings {
			fmt.Fprintf(w, "  warning:    %s\n", terminalSafe(warn))
		}
	}
}
