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
		Long: `Show the cluster's members, leader, term, commit index and each node's
health, as seen by the node that answers.

Exit code 4 when that node knows no leader (the status is still printed,
with --json too): an election is under way, or a majority of the voters is
down. One that lasts means a lost quorum: bring the lost nodes back, or, if
they are gone for good, see 'lifeboat cluster recover --help'. Exit code 1
when no node could be asked.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, done, err := fetch[coordinator.ClusterStatus](cmd, g, &cf, "/v1/cluster")
			if err != nil {
				return err
			}
			if done {
				return noLeader(cs)
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
			if err := tw.Flush(); err != nil {
				return err
			}
			return noLeader(cs)
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
			var res coordinator.RemoveResult
			if err := c.Post(cmd.Context(), "/v1/cluster/remove", coordinator.RemoveRequest{ID: args[0]}, &res); err != nil {
				return apiErr(err)
			}
			fmt.Fprintf(g.stdout, "node %s removed from the cluster\n", args[0])
			if !res.NodeSecretRotated {
				fmt.Fprintf(g.stderr, "lifeboat: the node secret was not rotated (see the leader's log): run 'lifeboat cluster rotate-secret' so that %s's copy of it opens nothing\n", args[0])
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate-secret",
		Short: "Replace the secret the coordinator nodes present to each other",
		Long: `Replace the node secret, which every coordinator node holds in its data dir
and presents to the others. Run it after a node's host or a copy of a data dir
was compromised (cluster remove does it for the node it removes). The members
use the new secret at once; a node that is no longer a member keeps the old
one, which then opens nothing. Upgrade every node first: a node of a release
before this command keeps the old secret and cannot register its address.`,
		Args: argsBetween(0, 0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			if err := c.Post(cmd.Context(), "/v1/cluster/node-secret", struct{}{}, nil); err != nil {
				return apiErr(err)
			}
			fmt.Fprintln(g.stdout, "node secret rotated")
			return nil
		},
	})
	cmd.AddCommand(newClusterRecoverCmd(g))
	return cmd
}

func newClusterRecoverCmd(g *globals) *cobra.Command {
	var dataDir, peers string
	cmd := &cobra.Command{
		Use:   "recover --data-dir DIR --peers ID=RAFTADDR[,...]",
		Short: "Make a stopped node the cluster on its own after the loss of a quorum",
		Long: `Rewrite the membership held in a stopped node's data dir to --peers (this
node alone, or the survivors, each recovered with the same list), for a
cluster that lost a majority of its nodes for good and so can neither elect a
leader nor remove the lost members. The node keeps all its state. Start it
afterwards as before (its --peers need not change); it leads once a majority
of the new membership runs. Bring replacements in with empty data dirs,
started WITHOUT --peers, by 'lifeboat cluster join'.

Only when the other members are gone for good: a recovered node beside a
majority of the old members that still runs makes a second cluster, and both
take writes. Recover the survivor with the newest state (the highest commit
index in the last 'cluster status' that reached it). This works offline, on
the data dir; it does not talk to the cluster.`,
		Example: `  systemctl stop lifeboat-server
  lifeboat cluster recover --data-dir /var/lib/lifeboat --peers n1=10.0.0.1:8421
  systemctl start lifeboat-server
  lifeboat cluster join n4 10.0.0.4:8421   # a new node, started without --peers`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || peers == "" {
				return usageError("cluster recover needs --data-dir and --peers")
			}
			ps, err := coordinator.ParsePeers(peers)
			if err != nil {
				return usageError("--peers: %v", err)
			}
			res, err := coordinator.RecoverCluster(dataDir, ps, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "node %s in %s: members were %s, now %s (state up to log index %d, term %d)\n",
				res.NodeID, dataDir, coordinator.FormatPeers(res.Before), coordinator.FormatPeers(res.After), res.LastIndex, res.LastTerm)
			fmt.Fprintf(g.stdout, "start 'lifeboat server' on this data dir; add new nodes, started without --peers, with 'lifeboat cluster join'\n")
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the stopped node's data dir")
	cmd.Flags().StringVar(&peers, "peers", "", "the new voting members: ID=RAFTADDR,... (include this node)")
	return cmd
}

// noLeader is the error, with exit code 4, of a cluster status whose
// answering node knows no leader; nil when it knows one.
func noLeader(cs coordinator.ClusterStatus) error {
	if cs.Leader != "" {
		return nil
	}
	return withCode(exitNoLeader, fmt.Errorf("cluster %s has no leader (as seen by %s, term %d): an election is under way, "+
		"or a majority of the voters is down and nothing can be written or scheduled; start the stopped nodes, "+
		"or, if a majority is gone for good, make a survivor the cluster with 'lifeboat cluster recover' "+
		"(docs/operations.md, \"Losing the coordinator\")", orDash(cs.Cluster), cs.Node, cs.Term))
}
