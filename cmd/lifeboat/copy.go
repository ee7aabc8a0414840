package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// fromFlags name a second repository, the source of copy and of init's
// chunking: --from-repo, --from-identity and --from-key, or the
// LIFEBOAT_FROM_* variables.
type fromFlags struct{ repo, identity, key string }

// register adds the flags; env says whether the command reads the
// LIFEBOAT_FROM_* variables too (see globals).
func (f *fromFlags) register(cmd *cobra.Command, what string, env bool) {
	note := func(v string) string {
		if env {
			return " (env " + v + ")"
		}
		return ""
	}
	fl := cmd.Flags()
	fl.StringVar(&f.repo, "from-repo", "", what+note("LIFEBOAT_FROM_REPO"))
	fl.StringVar(&f.identity, "from-identity", "", "identity file of --from-repo"+note("LIFEBOAT_FROM_IDENTITY"))
	fl.StringVar(&f.key, "from-key", "", "writer key file of --from-repo"+note("LIFEBOAT_FROM_KEY"))
}

// globals returns a copy of g that opens the --from repository, named
// by the flags or, with env, by the LIFEBOAT_FROM_* variables.
func (f *fromFlags) globals(cmd *cobra.Command, g *globals, env bool) *globals {
	src := *g
	src.source = true
	src.repo, src.identity, src.key = f.repo, f.identity, f.key
	if !env {
		return &src
	}
	for _, v := range []struct {
		flag string
		dst  *string
		env  string
	}{{"from-repo", &src.repo, "LIFEBOAT_FROM_REPO"}, {"from-identity", &src.identity, "LIFEBOAT_FROM_IDENTITY"}, {"from-key", &src.key, "LIFEBOAT_FROM_KEY"}} {
		if !cmd.Flags().Changed(v.flag) {
			*v.dst = os.Getenv(v.env)
		}
	}
	return &src
}

type copyFlags struct {
	filterFlags
	from fromFlags
}

func newCopyCmd(g *globals) *cobra.Command {
	var f copyFlags
	cmd := &cobra.Command{
		Use:   "copy [SNAPSHOT...] --from-repo SOURCE --from-identity FILE",
		Short: "Copy snapshots from another repository into this one (an offsite copy)",
		Long: `Copy snapshots from the repository --from-repo into --repo: every snapshot of
the source, or those named (IDs, unique ID prefixes or latest), narrowed by
--host, --tag and --path.

The destination must have been created from the source with
'lifeboat init --repo DEST --from-repo SOURCE --from-key SOURCE_WRITER_KEY': it
then names blobs as the source does, so only the blobs it does not hold yet are
read, and a daily copy reads about what the day's backups added. Each blob is
verified in the source (AEAD tag and keyed ID), then sealed anew for the
destination's own recipients: the destination can have another identity, kept
elsewhere, and the copy needs only its writer key.

A snapshot the destination already holds a copy of is skipped, so running copy
again after an interruption, or every night, copies only what is missing. A
copy keeps the snapshot's time, host, paths, tags and summary, and records the
snapshot it was copied from. A snapshot whose source data is damaged or missing
is not copied (no snapshot is saved for it; the message names the pack) and the
others are; the exit code is then 1. So is a snapshot whose manifest in the
source cannot be read.

S3 credentials come from the same environment (AWS_*) for both repositories.`,
		Example: `  lifeboat init --repo s3:https://s3.other-region.example.net/offsite \
      --from-repo s3:https://s3.example.net/backups --from-key writer.key \
      --recipient age1... --key-out offsite-writer.key
  lifeboat copy --from-repo s3:https://s3.example.net/backups --from-identity id.txt \
      --repo s3:https://s3.other-region.example.net/offsite --key offsite-writer.key
  lifeboat copy latest --host db1 --from-repo /srv/backup --from-identity id.txt --repo /mnt/usb/backup --key usb.key`,
		RunE: func(cmd *cobra.Command, args []string) error { return runCopy(cmd, g, f, args) },
	}
	f.register(cmd, "copy snapshots")
	f.from.register(cmd, "the repository to copy snapshots from", true)
	return cmd
}

type copyJSON struct {
	Source     string `json:"source"`
	ID         string `json:"id,omitempty"` // in the destination
	Existing   bool   `json:"existing"`     // already copied before
	Time       string `json:"time"`
	Host       string `json:"host"`
	Trees      int64  `json:"trees_added"`
	Blobs      int64  `json:"blobs_added"`
	Bytes      int64  `json:"bytes_read"`  // plaintext of the data blobs read from the source
	BytesAdded int64  `json:"bytes_added"` // stored in the destination
	Error      string `json:"error,omitempty"`
}

func runCopy(cmd *cobra.Command, g *globals, f copyFlags, args []string) error {
	ctx := cmd.Context()
	sg := f.from.globals(cmd, g, true)
	if sg.repo == "" {
		return usageError("copy needs the repository to copy from: pass --from-repo (or LIFEBOAT_FROM_REPO)")
	}
	if err := g.checkRepoFlag(); err != nil {
		return err
	}
	src, err := sg.openRepo(ctx, "copy (source)", readAccess)
	if err != nil {
		return fmt.Errorf("source %s: %w", sg.repo, err)
	}
	dst, err := g.openRepo(ctx, "copy (destination)", anyAccess)
	if err != nil {
		return fmt.Errorf("destination %s: %w", g.repo, err)
	}
	list, err := listSnapshots(ctx, sg, src)
	if err != nil {
		return fmt.Errorf("source %s: %w", sg.repo, err)
	}
	filter := f.filter()
	snaps, err := list.pick(args, filter)
	if err != nil {
		return fmt.Errorf("source %s: %w", sg.repo, err)
	}
	// A source snapshot whose manifest cannot be read is not copied:
	// that is a failure, as damaged data is, not a success with a
	// warning a nightly job's log keeps to itself. Its host and tags are
	// unknown, so a filter cannot leave it out. (A named one was refused
	// by pick.) One forgotten since the listing is just gone.
	var unread []*snapshot.UnreadableError
	if len(args) == 0 {
		for _, e := range list.bad {
			var u *snapshot.UnreadableError
			if errors.As(e, &u) && !errors.Is(e, chunkstore.ErrNotFound) {
				unread = append(unread, u)
			}
		}
	}
	if len(snaps) == 0 && len(unread) == 0 {
		// Not an error: a nightly copy from a source with no backups yet
		// (or none of the filtered host) has nothing to do.
		if !g.json {
			warnf(g.stderr, "source %s holds no snapshot%s: nothing to copy", sg.repo, filter.Describe())
		} else if err := printJSON(g.stdout, []copyJSON{}); err != nil {
			return err
		}
		return nil
	}

	// The source's index is loaded as well as the destination's; the
	// limit's floor allows for the source's (the larger, usually).
	setMemoryLimit(ctx, src.Store())
	var copied atomic.Int64
	var done atomic.Int32
	bar := g.startProgress(func(el time.Duration) string {
		n := copied.Load()
		return fmt.Sprintf("[%s] %d of %d snapshots, %s copied, %s", formatClock(el), done.Load(), len(snaps), formatBytes(n), formatRate(n, el))
	})
	var results []snapshot.CopyResult
	if len(snaps) > 0 {
		results, err = snapshot.Copy(ctx, src, dst, snaps, snapshot.CopyOptions{
			ProgramVersion: "lifeboat " + versionString(),
			Logger:         g.pkgLogger(),
			Progress:       &copied,
			Done:           func(snapshot.CopyResult) { done.Add(1) },
		})
	}
	bar.Stop()
	out := make([]copyJSON, 0, len(results)+len(unread))
	var copiedN, existing, failed int
	for _, u := range unread {
		failed++
		out = append(out, copyJSON{Source: u.ID.String(), Error: "manifest unreadable: " + u.Err.Error()})
		if !g.json {
			warnf(g.stderr, "snapshot %s NOT copied: its manifest in the source cannot be read (above); put it back from a copy of the source's bucket, or remove it there with 'lifeboat forget %s'", u.ID.Short(), u.ID)
		}
	}
	for _, r := range results {
		j := copyJSON{Source: r.Source.ID.String(), Existing: r.Existing, Time: r.Source.Time.Format(time.RFC3339),
			Host: r.Source.Host, Trees: r.Trees, Blobs: r.Blobs, Bytes: r.Bytes, BytesAdded: r.BytesAdded}
		what := fmt.Sprintf("snapshot %s (%s, %s)", r.Source.ID.Short(), r.Source.Host, r.Source.Time.Local().Format(time.DateTime))
		switch {
		case r.Err != nil:
			j.Error = r.Err.Error()
			failed++
			if !g.json {
				warnf(g.stderr, "%s NOT copied: %v; check the source with 'lifeboat check --read-data' and repair it (if a prune of the source ran meanwhile, copy again)", what, r.Err)
			}
		case r.Existing:
			j.ID = r.ID.String()
			existing++
			if !g.json && !g.quiet {
				fmt.Fprintf(g.stdout, "%s already copied as %s\n", what, r.ID.Short())
			}
		default:
			j.ID = r.ID.String()
			copiedN++
			if !g.json && !g.quiet {
				fmt.Fprintf(g.stdout, "%s copied as %s: %d blobs, %s read, %s added\n",
					what, r.ID.Short(), r.Blobs, formatBytes(r.Bytes), formatBytes(r.BytesAdded))
			}
		}
		out = append(out, j)
	}
	if g.json && len(out) > 0 {
		// Also when the copy stopped: the snapshots it committed are
		// in the destination.
		if err := printJSON(g.stdout, out); err != nil {
			return err
		}
	}
	switch {
	case errors.Is(err, snapshot.ErrCopyChunking):
		return fmt.Errorf("%w: %s was not created from %s, so no blob of one could be used by the other. Create the destination with 'lifeboat init --repo DEST --from-repo %s --from-key SOURCE_WRITER_KEY' and copy into it", err, g.repo, sg.repo, sg.repo)
	case errors.Is(err, snapshot.ErrCopySameRepository):
		return usageError("%v: --repo %s and --from-repo %s are one repository (%s…)", err, g.repo, sg.repo, dst.Config().ID[:12])
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("copy interrupted after %d of %d snapshots; run it again to copy the rest (what was uploaded is reused)", len(results), len(snaps))
	case err != nil:
		return fmt.Errorf("copy stopped after %d of %d snapshots: %w", len(results), len(snaps), err)
	}
	if !g.json && !g.quiet {
		fmt.Fprintf(g.stdout, "%d %s copied, %d already there, %d failed\n", copiedN, plural(copiedN, "snapshot", "snapshots"), existing, failed)
	}
	if failed > 0 {
		n := len(snaps) + len(unread)
		return withCode(exitError, fmt.Errorf("%d of %d %s could not be copied (listed above)", failed, n, plural(n, "snapshot", "snapshots")))
	}
	return nil
}

// sourceChunking opens the --from repository of init (writer key or
// identity) and returns its chunking.
func sourceChunking(ctx context.Context, cmd *cobra.Command, g *globals, f fromFlags) (*chunkstore.Chunking, string, error) {
	// Flags only: a LIFEBOAT_FROM_REPO left in the environment for copy
	// must not make every new repository share its chunk-ID key.
	sg := f.globals(cmd, g, false)
	if sg.repo == "" {
		if sg.identity != "" || sg.key != "" {
			return nil, "", usageError("--from-identity and --from-key name the credentials of --from-repo, which is missing")
		}
		return nil, "", nil
	}
	src, err := sg.openRepo(ctx, "init --from-repo", anyAccess)
	if err != nil {
		return nil, "", fmt.Errorf("source %s: %w", sg.repo, err)
	}
	c := src.Chunking()
	return &c, src.Config().ID, nil
}
