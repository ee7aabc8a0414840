package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// defaultCacheMaxAge is how long a repository's cache may go unused
// before 'lifeboat cache --cleanup' removes it and backups mention it.
const defaultCacheMaxAge = 30

func newCacheCmd(g *globals) *cobra.Command {
	var cleanup bool
	var maxAge int
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "List the repository caches under --cache-dir, and remove those unused for long",
		Long: `List the caches under --cache-dir: one directory per repository this machine
opened (named by its ID), with its size and when it was last used.

A repository that was deleted, or is no longer used from this machine, keeps
its cache forever. With --cleanup, the caches not used for --max-age days
(default 30) are removed. Only directories that look like lifeboat's
repository caches are listed or removed; signers/ (what this machine
remembers of each repository location) is kept. A cache removed by mistake
costs only downloads: the next command that opens its repository fills it
again, and the next backup reads every file again.

Needs no repository and no credentials.`,
		Example: `  lifeboat cache
  lifeboat cache --cleanup --max-age 90`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if maxAge < 1 {
				return usageError("--max-age must be at least 1 day, got %d", maxAge)
			}
			return runCache(g, cleanup, time.Duration(maxAge)*24*time.Hour)
		},
	}
	cmd.Flags().BoolVar(&cleanup, "cleanup", false, "remove the caches not used for --max-age days")
	cmd.Flags().IntVar(&maxAge, "max-age", defaultCacheMaxAge, "days a cache may go unused before --cleanup removes it")
	return cmd
}

// cacheEntry is a listed cache and what --cleanup did with it.
type cacheEntry struct {
	chunkstore.CacheInfo
	Old     bool   `json:"old"`
	Removed bool   `json:"removed"`
	Error   string `json:"error,omitempty"`
}

func runCache(g *globals, cleanup bool, maxAge time.Duration) error {
	if g.cacheDir == "" {
		return usageError("no cache directory: set --cache-dir or LIFEBOAT_CACHE_DIR")
	}
	list, err := chunkstore.Caches(g.cacheDir)
	if err != nil {
		return fmt.Errorf("cache %s: %w", g.cacheDir, err)
	}
	cutoff := time.Now().Add(-maxAge)
	var out []cacheEntry
	var failed int
	if cleanup {
		n, err := chunkstore.RemoveInterrupted(g.cacheDir)
		if err != nil {
			fmt.Fprintf(g.stderr, "lifeboat: %v\n", err)
			failed++
		} else if n > 0 && !g.quiet && !g.json {
			fmt.Fprintf(g.stdout, "removed %d %s an interrupted cleanup left\n", n, plural(n, "cache", "caches"))
		}
	}
	for _, c := range list {
		e := cacheEntry{CacheInfo: c, Old: c.LastUsed.Before(cutoff)}
		if cleanup && e.Old {
			if err := chunkstore.RemoveCache(g.cacheDir, c.RepoID, cutoff); err != nil {
				e.Error = err.Error()
				failed++
			} else {
				e.Removed = true
			}
		}
		out = append(out, e)
	}
	if g.json {
		if out == nil {
			out = []cacheEntry{}
		}
		if err := printJSON(g.stdout, out); err != nil {
			return err
		}
	} else {
		printCaches(g.stdout, out, cleanup)
		if !g.quiet {
			summarizeCaches(g.stdout, out, cleanup, maxAge)
		}
	}
	if failed > 0 {
		return fmt.Errorf("cache: %d %s not removed (see above)", failed, plural(failed, "cache", "caches"))
	}
	return nil
}

func printCaches(w io.Writer, list []cacheEntry, cleanup bool) {
	if len(list) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Repository\tSize\tLast used\t\t")
	for _, e := range list {
		note := ""
		switch {
		case e.Removed:
			note = "removed"
		case e.Error != "":
			note = "not removed: " + e.Error
		case e.Old && !cleanup:
			note = "old"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", e.RepoID[:12], formatBytes(e.Size), e.LastUsed.Local().Format("2006-01-02 15:04"), note)
	}
	tw.Flush()
}

func summarizeCaches(w io.Writer, list []cacheEntry, cleanup bool, maxAge time.Duration) {
	var old, removed int
	var oldSize, freed int64
	for _, e := range list {
		if e.Old {
			old++
			oldSize += e.Size
		}
		if e.Removed {
			removed++
			freed += e.Size
		}
	}
	days := int(maxAge / (24 * time.Hour))
	switch {
	case cleanup:
		fmt.Fprintf(w, "%d %s removed (%s), not used for %d days\n", removed, plural(removed, "cache", "caches"), formatBytes(freed), days)
	case old > 0:
		fmt.Fprintf(w, "%d of %d %s not used for %d days (%s): remove them with 'lifeboat cache --cleanup'\n", old, len(list), plural(len(list), "cache", "caches"), days, formatBytes(oldSize))
	default:
		fmt.Fprintf(w, "%d %s\n", len(list), plural(len(list), "cache", "caches"))
	}
}

// hintOldCaches prints one line when the cache directory holds caches of
// other repositories unused for defaultCacheMaxAge days. Backup and
// restore call it; it reads only the cache directory's top levels.
func hintOldCaches(g *globals, repoID string) {
	if g.noCache || g.cacheDir == "" || g.quiet || g.json {
		return
	}
	old := chunkstore.OldCaches(g.cacheDir, repoID, time.Now().Add(-defaultCacheMaxAge*24*time.Hour))
	if len(old) == 0 {
		return
	}
	fmt.Fprintf(g.stderr, "lifeboat: %d %s under %s not used for %d days; see 'lifeboat cache', remove with 'lifeboat cache --cleanup'\n",
		len(old), plural(len(old), "repository cache", "repository caches"), g.cacheDir, defaultCacheMaxAge)
}
