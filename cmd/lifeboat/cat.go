package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

func newCatCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cat config",
		Short: "Print the repository's plaintext config (no credentials needed)",
		Long: `Print the repository's config object: format version, repository ID, chunking
and packing parameters. It is stored in plaintext, so no identity or writer key
is needed: use it to find out which repository a location holds.`,
		Args: argsBetween(1, 1, "object: config"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "config" {
				return usageError("cat: unknown object %q: only config is supported", args[0])
			}
			st, err := g.openStore(cmd.Context(), false)
			if err != nil {
				return err
			}
			b, err := st.Get(cmd.Context(), chunkstore.ConfigName, 0, -1)
			if err != nil {
				return fmt.Errorf("read config of %s: %w (is this a lifeboat repository?)", st.Location(), storeError(g.repo, err))
			}
			cfg, err := chunkstore.ParseConfig(b)
			if err != nil {
				return fmt.Errorf("%s: %w", st.Location(), err)
			}
			return printJSON(g.stdout, cfg)
		},
	}
}
