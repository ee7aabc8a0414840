package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

func newSessionsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "sessions",
		Short: "List the backups, prunes and repairs registered in the repository",
		Long: `List the sessions in the repository, oldest first.

Every backup registers a session and renews it every 5 minutes while it
runs; prune and the repair commands register a prune session (one at a
time per repository). A session a process left behind when it was killed
stays until it is stale: 30 minutes after its last renewal. Until then a
backup's session keeps a prune from deleting the packs it marked, and a
prune's session keeps other prunes and repairs from starting ('lifeboat
unlock' removes it).

STATE is "live" (renewed within 30 minutes), "gone" (of this host, and
its process no longer runs), "stale" or "done" (ended; prune removes
them). Times are the store's. Works with the writer key.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSessions(cmd.Context(), g) },
	}
}

func runSessions(ctx context.Context, g *globals) error {
	repo, err := g.openRepo(ctx, "sessions", anyAccess)
	if err != nil {
		return err
	}
	list, err := snapshot.Sessions(ctx, repo, chunkstore.DefaultSessionTiming)
	if err != nil {
		return fmt.Errorf("sessions: %w", storeError(g.repo, err))
	}
	if g.json {
		return printJSON(g.stdout, list)
	}
	printSessions(g.stdout, list)
	if !g.quiet {
		fmt.Fprintf(g.stdout, "%d %s\n", len(list), plural(len(list), "session", "sessions"))
	}
	return nil
}

func printSessions(w io.Writer, list []snapshot.SessionStatus) {
	if len(list) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKind\tHost\tPID\tStarted\tLast renewed\tState\t")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t\n", s.ID, s.Kind, s.Host, s.PID,
			s.Started.Local().Format("2006-01-02 15:04:05"), s.LastRenewed.Local().Format("2006-01-02 15:04:05"), s.State)
	}
	tw.Flush()
}

func newUnlockCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unlock [SESSION ...]",
		Short: "Remove sessions whose process is gone (a killed prune's, say)",
		Long: `Remove sessions that processes left behind, so that they stop holding
prunes and repairs back.

Without arguments, unlock removes every session that has ended: closed,
stale (not renewed for 30 minutes), or of this host with its process no
longer running. It lists the live sessions it leaves.

A prune or repair killed on another host leaves a live-looking prune
session that makes every prune and repair on the repository refuse for 30
minutes ("another prune is running ... host H, pid P"). If you know that
process is gone (the host is down, the process was killed), name its
session: 'lifeboat unlock SESSION' (an ID from 'lifeboat sessions' or a
unique prefix of one) removes it. Removing the session of a prune that
is in fact still running lets a second one start beside it; both keep the
data snapshots reference, but their index files may then need 'lifeboat
repair index'.

A live backup session of another host is never removed: a prune could
then delete data that backup reuses and is about to commit. It stops
holding prunes back 30 minutes after its last renewal. A session whose
process runs on this host is refused too: stop the process. Nothing is
removed if any SESSION is refused. Works with the writer key, with
credentials that may delete.`,
		RunE: func(cmd *cobra.Command, args []string) error { return runUnlock(cmd.Context(), g, args) },
	}
}

func runUnlock(ctx context.Context, g *globals, ids []string) error {
	repo, err := g.openRepo(ctx, "unlock", anyAccess)
	if err != nil {
		return err
	}
	res, err := snapshot.Unlock(ctx, repo, ids, chunkstore.DefaultSessionTiming)
	if err != nil {
		if res != nil && !g.json {
			printUnlock(g.stdout, res)
		}
		return fmt.Errorf("unlock: %w", storeError(g.repo, err))
	}
	if g.json {
		return printJSON(g.stdout, res)
	}
	printUnlock(g.stdout, res)
	return nil
}

func printUnlock(w io.Writer, res *snapshot.UnlockResult) {
	for _, s := range res.Removed {
		fmt.Fprintf(w, "removed %s session %s (host %s, pid %d, %s)\n", s.Kind, s.ID, s.Host, s.PID, s.State)
	}
	for _, s := range res.Left {
		fmt.Fprintf(w, "left %s session %s (host %s, pid %d): live, last renewed %s\n", s.Kind, s.ID, s.Host, s.PID, s.LastRenewed.Local().Format("2006-01-02 15:04:05"))
	}
	if len(res.Removed) == 0 {
		fmt.Fprintln(w, "no session removed")
	}
}
