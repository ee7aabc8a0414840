package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

func newPolicyCmd(g *globals) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Apply, list, show, delete and run backup policies",
		Long: `Policies say what to back up (paths, exclude), where (a repository registered
with 'lifeboat repo add'), when (schedule), on which agents (label selector),
how long to keep it (retention: the agent forgets its older snapshots after
each backup; retention.prune has a drill runner free their data on a
schedule, else 'lifeboat prune' with the identity does) and the recovery
targets (rpo, rto).
See docs/api.md and the example in docs/operations.md.`,
	}
	cf.register(cmd)

	var file string
	var dryRun bool
	var checkIndex uint64
	apply := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Validate and apply a YAML policy file (all of it or nothing)",
		Long: `Validate and apply a YAML file of one or more policies (separated by ---).
Every problem is printed as FILE:LINE: FIELD: MESSAGE and nothing is applied
(exit code 1). Policies that did not change are left alone.

With --check-index N the file must hold one policy, applied only if it is
still at version N ('policy show --json' and 'policy list' show it; 0: only
if it does not exist yet). If someone changed it since, nothing is applied
and the error names its current version (exit code 1): read it again.`,
		Example: "  lifeboat policy apply -f web.yaml\n  lifeboat policy apply -f fleet.yaml --dry-run\n  lifeboat policy apply -f web.yaml --check-index 42",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError("policy apply needs -f FILE")
			}
			b, err := readPolicyFile(file)
			if err != nil {
				return err
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			var check *uint64
			if cmd.Flags().Changed("check-index") {
				check = &checkIndex
			}
			res, err := c.ApplyPoliciesAt(cmd.Context(), b, filepath.Base(file), dryRun, check)
			var ae *coordinator.APIError
			if errors.As(err, &ae) && len(ae.Problems) > 0 {
				for _, p := range ae.Problems {
					p.File = file // the path as the user gave it
					fmt.Fprintf(g.stderr, "%s\n", p)
				}
				return withCode(exitError, fmt.Errorf("%s: %d problem(s); nothing was applied", file, len(ae.Problems)))
			}
			if err != nil {
				return apiErr(err)
			}
			for _, w := range res.Warnings {
				w.File = file
				warnf(g.stderr, "%s", w)
			}
			if g.json {
				return printJSON(g.stdout, res)
			}
			for _, p := range res.Policies {
				if p.Version > 0 {
					fmt.Fprintf(g.stdout, "policy %s %s (version %d)\n", p.Name, p.Status, p.Version)
				} else {
					fmt.Fprintf(g.stdout, "policy %s %s\n", p.Name, p.Status)
				}
			}
			return nil
		},
	}
	apply.Flags().StringVarP(&file, "file", "f", "", "policy file (YAML; - for stdin)")
	apply.Flags().BoolVar(&dryRun, "dry-run", false, "validate only")
	apply.Flags().Uint64Var(&checkIndex, "check-index", 0, "apply only if the policy is still at this version (0: only create); one policy per file")
	cmd.AddCommand(apply)

	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List policies",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, done, err := fetch[[]coordinator.PolicyRecord](cmd, g, &cf, "/v1/policies")
			if done || err != nil {
				return err
			}
			tw := newTable(g.stdout, "NAME", "REPOSITORY", "SCHEDULE", "PATHS", "RPO", "VERSION", "UPDATED")
			for _, p := range ps {
				rpo := "-"
				if p.Policy.Targets.RPO > 0 {
					rpo = p.Policy.Targets.RPO.String()
				}
				row(tw, p.Policy.Name, p.Policy.Repository, p.Policy.Schedule, len(p.Policy.Paths), rpo, p.Version, ago(p.UpdatedAt))
			}
			return tw.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show NAME",
		Short: "Show a policy as YAML (--json: the stored record)",
		Args:  argsBetween(1, 1, "policy name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			path := "/v1/policies/" + url.PathEscape(args[0])
			if g.json {
				var pr coordinator.PolicyRecord
				if err := c.Get(cmd.Context(), path, &pr); err != nil {
					return apiErr(err)
				}
				return printJSON(g.stdout, pr)
			}
			_, b, err := c.Raw(cmd.Context(), http.MethodGet, path+"?format=yaml", nil, "")
			if err != nil {
				return apiErr(err)
			}
			_, err = g.stdout.Write(b)
			return err
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a policy (its pending jobs are cancelled)",
		Args:  argsBetween(1, 1, "policy name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			if err := c.Delete(cmd.Context(), "/v1/policies/"+url.PathEscape(args[0]), nil); err != nil {
				return apiErr(err)
			}
			fmt.Fprintf(g.stdout, "policy %s deleted\n", args[0])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "run NAME",
		Short: "Back up now: one job for every agent the policy selects",
		Args:  argsBetween(1, 1, "policy name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			var res coordinator.RunResult
			if err := c.Post(cmd.Context(), "/v1/policies/"+url.PathEscape(args[0])+"/run", nil, &res); err != nil {
				return apiErr(err)
			}
			if g.json {
				return printJSON(g.stdout, res)
			}
			for _, id := range res.Jobs {
				fmt.Fprintf(g.stdout, "job %s created\n", id)
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "prune NAME",
		Short: "Prune the policy's repository now, on one of its drill runners",
		Long: `Create a prune job: one of the policy's drill runners (an agent with the
identity) runs 'lifeboat prune' on the policy's repository with the policy's
retention.max_unused, as retention.prune does on its schedule. Follow it with
'lifeboat job show ID'.`,
		Args: argsBetween(1, 1, "policy name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			var res coordinator.DrillRunResult
			if err := c.Post(cmd.Context(), "/v1/policies/"+url.PathEscape(args[0])+"/prune", nil, &res); err != nil {
				return apiErr(err)
			}
			if g.json {
				return printJSON(g.stdout, res)
			}
			fmt.Fprintf(g.stdout, "job %s created on %s\n", res.ID, res.Agent)
			return nil
		},
	})
	return cmd
}

func readPolicyFile(file string) ([]byte, error) {
	if file == "-" {
		b, err := readAllLimited(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("read policy from stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	if len(b) > coordinator.DefaultMaxBody {
		return nil, fmt.Errorf("policy file %s is larger than %d bytes", file, coordinator.DefaultMaxBody)
	}
	return b, nil
}

func readAllLimited(f *os.File) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, coordinator.DefaultMaxBody+1))
	if err == nil && len(b) > coordinator.DefaultMaxBody {
		return nil, fmt.Errorf("more than %d bytes", coordinator.DefaultMaxBody)
	}
	return b, err
}
