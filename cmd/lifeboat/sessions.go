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
time per repository; KIND names the command). A session a process left
behind when it was killed stays until it is stale: 30 minutes after its
last renewal. Until then a backup's session keeps a prune from deleting
the packs it marked, and a prune's session keeps other prunes and repairs
from starting ('lifeboat unlock SESSION' removes it).

STATE is "live" (renewed within 30 minutes), "gone" (live, but of this
machine and its process no longer runs), "stale" or "done" (ended; prune
removes them). Times are the store's. Works with the writer key, with
credentials that may not delete, and on a read-only repository (mount or
credentials): the store cannot then tell its time, and which sessions are
stale is judged by this machine's clock (a note says so).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSessions(cmd.Context(), g) },
	}
}

func runSessions(ctx context.Context, g *globals) error {
	repo, err := g.openRepo(ctx, "sessions", anyAccess)
	if err != nil {
		return err
	}
	list, localClock, err := snapshot.Sessions(ctx, repo, chunkstore.DefaultSessionTiming)
	if err != nil {
		return fmt.Errorf("sessions: %w", storeError(g.repo, err))
	}
	// The note goes to stderr under --json, whose output stays a list.
	const localClockNote = "note: the store refused to write its clock object (read-only, access denied or full), so which sessions are stale is judged by this machine's clock, not the store's\n"
	if g.json {
		if localClock {
			fmt.Fprint(g.stderr, localClockNote)
		}
		return printJSON(g.stdout, list)
	}
	printSessions(g.stdout, list)
	if localClock {
		fmt.Fprint(g.stdout, localClockNote)
	}
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t\n", s.ID, sessionKind(s), s.Host, s.PID,
			s.Started.Local().Format("2006-01-02 15:04:05"), s.LastRenewed.Local().Format("2006-01-02 15:04:05"), s.State)
	}
	tw.Flush()
}

// sessionKind is "backup", or the command holding a prune session.
func sessionKind(s snapshot.SessionStatus) string {
	if s.Command != "" {
		return s.Command
	}
	return s.Kind
}

func newUnlockCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unlock [SESSION ...]",
		Short: "Remove sessions whose process is gone (a killed prune's, say)",
		Long: `Remove sessions that processes left behind, so that they stop holding
prunes and repairs back.

Without arguments, unlock removes every session that has ended (closed,
or stale: not renewed for 30 minutes) and the prune sessions of this
machine whose process no longer runs (as prune does). It lists the
sessions it leaves.

A prune or repair killed on another machine leaves a live-looking prune
session that makes every prune and repair on the repository refuse for 30
minutes ("another prune or repair is running ... session S, host H, pid
P"). If you know that process is gone (the machine is down, the process
was killed), name its session: 'lifeboat unlock SESSION' (an ID from
'lifeboat sessions' or a unique prefix of one) removes it. Be sure: should
that prune or repair in fact still run, it finds its session gone only
before it next rewrites the index, deletes packs or saves a repaired
snapshot, and then stops with an error; a step already under way is
finished, and two prunes overlapping that way can leave index files that
name packs the other deleted (run 'lifeboat check' once both have ended,
and 'lifeboat repair index' if it reports missing packs). A prune or
repair of a lifeboat version from before 'unlock' existed does not notice
at all.

A backup session that is not stale is never removed, not even when its
process looks gone (a process of another PID namespace can): a prune
could then delete data that backup reuses and is about to commit. It
stops holding prunes back 30 minutes after its last renewal. A prune
session whose process runs on this machine is refused too: stop the
process. Nothing is removed if any SESSION is refused. Works with the
writer key, with credentials that may delete.`,
		RunE: func(cmd *cobra.Command, args []string) error { return runUnlock(cmd.Context(), g, args) },
	}
}

func runUnlock(ctx context.Context, g *globals, ids []string) error {
	repo, err := g.openRepo(ctx, "unlock", anyAccess)
	if err != nil {
		return err
	}
	res, err := snapshot.Unlock(ctx, repo, ids, chunkstore.DefaultSessionTiming)
	return report(g, "unlock", res, err, printUnlock)
}

func printUnlock(w io.Writer, res *snapshot.UnlockResult) {
	for _, s := range res.Removed {
		fmt.Fprintf(w, "removed %s session %s (host %s, pid %d, %s)\n", sessionKind(s), s.ID, s.Host, s.PID, s.State)
	}
	for _, s := range res.Left {
		fmt.Fprintf(w, "left %s session %s (host %s, pid %d): %s, last renewed %s\n", sessionKind(s), s.ID, s.Host, s.PID, s.State, s.LastRenewed.Local().Format("2006-01-02 15:04:05"))
	}
	if len(res.Removed) == 0 {
		fmt.Fprintln(w, "no session removed")
	}
}
