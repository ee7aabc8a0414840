package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

func newAlertCmd(g *globals) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "alert",
		Short: "List alerts and manage where they are sent",
		Long: `The coordinator alerts when a policy's newest backup on an agent failed
(backup_failed), a policy misses its RPO target (rpo_missed), a drill failed
or took longer than the RTO target (drill_failed), verification found damaged
packs (verify_damage), an agent has not been in touch for too long
(agent_unseen, 'lifeboat server --alert-agent-unseen') or a policy's newest
prune failed or its scheduled prune found no drill runner for an hour
(prune_failed). One ongoing problem is
one alert; targets get a message when it opens and one when it resolves.
See "Alerts" in docs/operations.md.`,
	}
	cf.register(cmd)

	var all bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List open alerts (--all: also those resolved in the last 7 days)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/v1/alerts"
			if all {
				path += "?all=1"
			}
			alerts, done, err := fetch[[]coordinator.AlertView](cmd, g, &cf, path)
			if done || err != nil {
				return err
			}
			if len(alerts) == 0 && !g.quiet {
				fmt.Fprintln(g.stderr, "no alerts")
				return nil
			}
			tw := newTable(g.stdout, "STATUS", "KIND", "SUBJECT", "OPENED", "RESOLVED", "MESSAGE")
			for _, a := range alerts {
				resolved := "-"
				if a.Status == "resolved" {
					resolved = ago(a.ResolvedAt)
				}
				row(tw, a.Status, a.Kind, a.Subject, ago(a.OpenedAt), resolved, a.Message)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&all, "all", false, "include resolved alerts")
	cmd.AddCommand(list, newAlertTargetCmd(g, &cf))

	cmd.AddCommand(&cobra.Command{
		Use:   "test TARGET",
		Short: "Send a test message to a target now (exit 1 if the receiver refuses it)",
		Args:  argsBetween(1, 1, "target name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			var res coordinator.AlertTestResult
			if err := c.Post(cmd.Context(), "/v1/alert-targets/"+url.PathEscape(args[0])+"/test", nil, &res); err != nil {
				if ae, ok := errors.AsType[*coordinator.APIError](err); ok && ae.Status == 502 {
					return fmt.Errorf("%w (check the target's URL with 'lifeboat alert target list' and that the receiver accepts JSON POSTs)", err)
				}
				return apiErr(err)
			}
			if g.json {
				return printJSON(g.stdout, res)
			}
			fmt.Fprintf(g.stdout, "test message delivered to %s (sent by node %s)\n", res.Target, res.Node)
			return nil
		},
	})
	return cmd
}

func newAlertTargetCmd(g *globals, cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "target",
		Short: "Add, list and remove alert targets (webhooks)",
	}
	var u, kind, kinds string
	add := &cobra.Command{
		Use:   "add NAME --url URL",
		Short: "Add a target, or replace the one of that name",
		Long: `Add a target: a generic JSON webhook (--kind webhook, the default) or a
Slack-compatible incoming webhook (--kind slack). --kinds limits it to some
alert kinds: backup_failed, rpo_missed, drill_failed, verify_damage,
agent_unseen, prune_failed. Needs an admin token.`,
		Example: "  lifeboat alert target add oncall --kind slack --url https://hooks.slack.com/services/T000/B000/XXXX\n" +
			"  lifeboat alert target add pager --url https://pager.example.com/hook --kinds drill_failed,verify_damage",
		Args: argsBetween(1, 1, "target name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if u == "" {
				return usageError("alert target add needs --url URL")
			}
			req := coordinator.AlertTargetRequest{Name: args[0], Kind: kind, URL: u}
			for _, k := range strings.Split(kinds, ",") {
				if k = strings.TrimSpace(k); k != "" {
					req.Kinds = append(req.Kinds, coordinator.AlertKind(k))
				}
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			var res coordinator.AlertTargetView
			if err := c.Post(cmd.Context(), "/v1/alert-targets", req, &res); err != nil {
				return apiErr(err)
			}
			if g.json {
				return printJSON(g.stdout, res)
			}
			fmt.Fprintf(g.stdout, "alert target %s (%s, %s) saved; try it with 'lifeboat alert test %s'\n", res.Name, res.Kind, res.URL, res.Name)
			return nil
		},
	}
	add.Flags().StringVar(&u, "url", "", "the receiver's URL (http or https)")
	add.Flags().StringVar(&kind, "kind", "webhook", "webhook (generic JSON) or slack")
	add.Flags().StringVar(&kinds, "kinds", "", "comma-separated alert kinds to send (default: all)")
	cmd.AddCommand(add)

	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List targets (URLs shown as scheme://host/…)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, done, err := fetch[[]coordinator.AlertTargetView](cmd, g, cf, "/v1/alert-targets")
			if done || err != nil {
				return err
			}
			tw := newTable(g.stdout, "NAME", "KIND", "URL", "KINDS", "CREATED")
			for _, t := range ts {
				ks := "all"
				if len(t.Kinds) > 0 {
					s := make([]string, len(t.Kinds))
					for i, k := range t.Kinds {
						s[i] = string(k)
					}
					ks = strings.Join(s, ",")
				}
				row(tw, t.Name, t.Kind, t.URL, ks, ago(t.CreatedAt))
			}
			return tw.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a target",
		Args:  argsBetween(1, 1, "target name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			if err := c.Delete(cmd.Context(), "/v1/alert-targets/"+url.PathEscape(args[0]), nil); err != nil {
				return apiErr(err)
			}
			fmt.Fprintf(g.stdout, "alert target %s removed\n", args[0])
			return nil
		},
	})
	return cmd
}
