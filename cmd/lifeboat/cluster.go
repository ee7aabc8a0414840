package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

func newClusterCmd(g *globals) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show and change the coordinator cluster",
		Long: `Show the coordinator cluster (members, leader, term, commit index, each
node's health) and change its membership while it runs.

A new node joins in two steps: start it with 'lifeboat server' and no --peers,
then run 'lifeboat cluster join ID RAFTADDR' against the cluster.`,
	}
	cf.register(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show members, leader, term, commit index and health",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, done, err := fetch[coordinator.ClusterStatus](cmd, g, &cf, "/v1/cluster")
			if done || err != nil {
				return err
			}
			leader := cs.Leader
			if leader == "" {
				leader = "none (election in progress or no quorum)"
			}
			fmt.Fprintf(g.stdout, "cluster %s: leader %s, term %d, commit index %d (as seen by %s)\n\n", orDash(cs.Cluster), leader, cs.Term, cs.CommitIndex, cs.Node)
			tw := newTable(g.stdout, "ID", "ROLE", "HEALTH", "RAFT", "API", "TERM", "COMMIT", "APPLIED")
			for _, m := range cs.Members {
				role := m.State
				if role == "" {
					role = "?"
				}
				if !m.Voter {
					role += " (non-voter)"
				}
				health := m.Health
				if m.Error != "" {
					health += ": " + m.Error
				}
				row(tw, m.ID, role, health, m.RaftAddr, orDash(m.HTTPAddr), m.Term, m.CommitIndex, m.AppliedIndex)
			}
			return tw.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "join ID RAFTADDR",
		Short: "Add a started node (no --peers) as a voting member",
		Args:  argsBetween(2, 2, "node ID and Raft address"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			if err := c.Post(cmd.Context(), "/v1/cluster/join", coordinator.JoinRequest{ID: args[0], Addr: args[1]}, nil); err != nil {
				return apiErr(err)
			}
			fmt.Fprintf(g.stdout, "node %s (%s) joined the cluster\n", args[0], args[1])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "remove ID",
		Short: "Remove a member from the cluster",
		Args:  argsBetween(1, 1, "node ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			if err := c.Post(cmd.Context(), "/v1/cluster/remove", coordinator.RemoveRequest{ID: args[0]}, nil); err != nil {
				return apiErr(err)
			}
			fmt.Fprintf(g.stdout, "node %s removed from the cluster\n", args[0])
			return nil
		},
	})
	return cmd
}
