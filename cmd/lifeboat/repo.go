package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

func newRepoCmd(g *globals) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Register repositories with the coordinator",
	}
	cf.register(cmd)
	var replace bool
	add := &cobra.Command{
		Use:   "add NAME --repo URL --key WRITER_KEY",
		Short: "Register a repository and its writer key (never the identity)",
		Long: `Register a repository with the coordinator so that policies can name it.
The coordinator stores the writer key and hands it to agents with their jobs;
it refuses an identity. The S3 credentials in the environment now (AWS_* and
LIFEBOAT_S3_* variables) are stored with the repository for the agents.`,
		Example: "  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... lifeboat repo add fleet --repo s3:https://s3.example.net/backups --key lifeboat-writer.key",
		Args:    argsBetween(1, 1, "repository name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.repo == "" {
				return usageError("repo add needs --repo URL (or LIFEBOAT_REPO)")
			}
			if g.key == "" {
				return usageError("repo add needs --key WRITER_KEY_FILE (or LIFEBOAT_KEY); never the identity")
			}
			key, err := os.ReadFile(g.key)
			if err != nil {
				return fmt.Errorf("read writer key: %w", err)
			}
			env := map[string]string{}
			for _, kv := range os.Environ() {
				k, v, _ := strings.Cut(kv, "=")
				if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "LIFEBOAT_S3_") {
					env[k] = v
				}
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			var r coordinator.Repository
			req := coordinator.RepoAddRequest{Name: args[0], URL: g.repo, WriterKey: string(key), Env: env, Replace: replace}
			if err := c.Post(cmd.Context(), "/v1/repos", req, &r); err != nil {
				return apiErr(err)
			}
			if g.json {
				return printJSON(g.stdout, r)
			}
			names := make([]string, 0, len(env))
			for k := range env {
				names = append(names, k)
			}
			sort.Strings(names)
			fmt.Fprintf(g.stdout, "repository %s registered: %s\n", r.Name, r.URL)
			if len(names) > 0 {
				fmt.Fprintf(g.stdout, "stored with it: %s\n", strings.Join(names, ", "))
			}
			return nil
		},
	}
	add.Flags().BoolVar(&replace, "replace", false, "replace a repository registered under the same name")
	cmd.AddCommand(add)
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List registered repositories",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, done, err := fetch[[]coordinator.Repository](cmd, g, &cf, "/v1/repos")
			if done || err != nil {
				return err
			}
			tw := newTable(g.stdout, "NAME", "URL", "ENV", "ADDED")
			for _, r := range rs {
				keys := make([]string, 0, len(r.Env))
				for k := range r.Env {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				row(tw, r.Name, r.URL, orDash(strings.Join(keys, ",")), ago(r.AddedAt))
			}
			return tw.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "remove NAME",
		Short: "Unregister a repository no policy uses (its data is untouched)",
		Args:  argsBetween(1, 1, "repository name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			if err := c.Delete(cmd.Context(), "/v1/repos/"+url.PathEscape(args[0]), nil); err != nil {
				return apiErr(err)
			}
			fmt.Fprintf(g.stdout, "repository %s unregistered\n", args[0])
			return nil
		},
	})
	var all bool
	verify := &cobra.Command{
		Use:   "verify NAME",
		Short: "Verify the repository's packs now (the shards due, or --all) on one of its agents",
		Long: `Start a verification job: an agent that backs up to the repository downloads
packs and checks each against its name (the SHA-256 of its bytes), without an
identity and without a lock, so backups go on. Without --all it reads the
shards a scheduled run would (those verified longest ago). Follow the job
with 'lifeboat job show ID'; coverage is in 'lifeboat status'.`,
		Args: argsBetween(1, 1, "repository name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			var res coordinator.RunResult
			if err := c.Post(cmd.Context(), "/v1/repos/"+url.PathEscape(args[0])+"/verify", coordinator.VerifyRequest{All: all}, &res); err != nil {
				return apiErr(err)
			}
			if g.json {
				return printJSON(g.stdout, res)
			}
			for _, id := range res.Jobs {
				fmt.Fprintf(g.stdout, "verify job %s created (follow it with 'lifeboat job show %s')\n", id, id)
			}
			return nil
		},
	}
	verify.Flags().BoolVar(&all, "all", false, "read every pack, not only the shards due")
	cmd.AddCommand(verify)
	cmd.AddCommand(&cobra.Command{
		Use:   "coverage",
		Short: "Show each repository's verification coverage: packs verified within the period, overdue, damaged",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cov, done, err := fetch[[]coordinator.CoverageReport](cmd, g, &cf, "/v1/coverage")
			if done || err != nil {
				return err
			}
			printCoverage(g.stdout, cov)
			return nil
		},
	})
	return cmd
}

// printCoverage prints verification coverage, one repository per line,
// then the damaged packs.
func printCoverage(w io.Writer, cov []coordinator.CoverageReport) {
	tw := newTable(w, "  REPOSITORY", "PACKS", "SIZE", "VERIFIED", "WITHIN", "OVERDUE", "DAMAGED", "OLDEST SHARD")
	for _, r := range cov {
		oldest := "never"
		if !r.OldestShard.IsZero() {
			oldest = ago(r.OldestShard)
		}
		if r.ListedAt.IsZero() {
			row(tw, "  "+r.Repository, "?", "?", "never verified", r.Every.String(), "all", len(r.Damaged), oldest)
			continue
		}
		row(tw, "  "+r.Repository, r.Packs, formatBytes(r.Bytes), fmt.Sprintf("%.1f%%", 100*r.Ratio), r.Every.String(),
			r.OverduePacks, len(r.Damaged), oldest)
	}
	tw.Flush()
	for _, r := range cov {
		for _, d := range r.Damaged {
			fmt.Fprintf(w, "  DAMAGED %s pack %s (%s): %s\n", r.Repository, d.Pack, d.FailedAt.Local().Format(time.DateTime), d.Error)
		}
	}
}
