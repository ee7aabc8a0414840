package main

import (
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

func newTokenCmd(g *globals) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens",
		Long: `API tokens authenticate calls to the coordinator (LIFEBOAT_TOKEN). Roles:
  admin      everything, including tokens and cluster membership
  operator   policies, repositories, jobs (apply, run, cancel) and all reads
  agent      the agent endpoints only (enroll, work, heartbeat, complete)
  read-only  reads only
Only a hash of each token is stored; the token is shown once, at creation.`,
	}
	cf.register(cmd)
	var role, name string
	var ttl time.Duration
	create := &cobra.Command{
		Use:     "create --role ROLE",
		Short:   "Create a token (printed alone on the last line)",
		Example: "  lifeboat token create --role read-only --name grafana --ttl 720h",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !coordinator.Role(role).Valid() {
				return usageError("--role %q: want admin, operator, agent or read-only", role)
			}
			if ttl < 0 {
				return usageError("--ttl must not be negative")
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			var res coordinator.TokenCreateResult
			req := coordinator.TokenCreateRequest{Role: coordinator.Role(role), Name: name, TTL: coordinator.Duration(ttl)}
			if err := c.Post(cmd.Context(), "/v1/tokens", req, &res); err != nil {
				return apiErr(err)
			}
			if g.json {
				return printJSON(g.stdout, res)
			}
			if !g.quiet {
				exp := "never expires"
				if !res.Expires.IsZero() {
					exp = "expires " + res.Expires.Local().Format(time.RFC3339)
				}
				fmt.Fprintf(g.stdout, "token %s (role %s, %s); it is shown only now:\n", res.ID, res.Role, exp)
			}
			fmt.Fprintln(g.stdout, res.Token)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "admin, operator, agent or read-only")
	create.Flags().StringVar(&name, "name", "", "what the token is for (shown in the audit log)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (e.g. 720h); 0 = no expiry")
	cmd.AddCommand(create)
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, done, err := fetch[[]coordinator.TokenView](cmd, g, &cf, "/v1/tokens")
			if done || err != nil {
				return err
			}
			tw := newTable(g.stdout, "ID", "ROLE", "NAME", "EXPIRES", "CREATED", "BY")
			for _, t := range ts {
				exp := "never"
				if !t.Expires.IsZero() {
					exp = t.Expires.Local().Format(time.DateTime)
				}
				row(tw, t.ID, t.Role, orDash(t.Name), exp, ago(t.CreatedAt), orDash(t.CreatedBy))
			}
			return tw.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token",
		Args:  argsBetween(1, 1, "token ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			if err := c.Delete(cmd.Context(), "/v1/tokens/"+url.PathEscape(args[0]), nil); err != nil {
				return apiErr(err)
			}
			fmt.Fprintf(g.stdout, "token %s revoked\n", args[0])
			return nil
		},
	})
	return cmd
}
