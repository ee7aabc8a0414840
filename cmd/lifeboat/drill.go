package main

import "github.com/spf13/cobra"

// newDrillCmd is the parent of the drill commands.
func newDrillCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Restore drills: prove that backups can be restored",
		Long: `A restore drill restores a snapshot into scratch space, verifies every
restored file against the snapshot, runs the owner's verify commands, measures
RTO and RPO against their targets and removes the scratch copy.

'lifeboat drill local' runs one now, on this machine, from the repository
alone: the on-call answer to "can we restore right now?". 'drill run', 'list',
'show' and 'report' go through the coordinator, whose policies schedule drills
on agents that hold an identity (see docs/operations.md).`,
		Args: noArgs,
	}
	cmd.AddCommand(newDrillLocalCmd(g))
	addDrillRemoteCmds(g, cmd)
	return cmd
}
