package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version or VCS revision is used.
var version = ""

const rootLong = `lifeboat backs up paths into an encrypted, deduplicated repository on a
local directory or S3-compatible storage, and restores them.

Credentials:
  identity (--identity)  full access: restore, ls, deep check. Keep it safe.
  writer key (--key)     back up, list, tag and forget snapshots, stats, repair
                         index (each command's --help says); cannot read backups.
  S3 credentials         the standard AWS_* environment variables.

Repository locations (--repo):
  /abs/path, file:///abs/path, s3:http(s)://host[:port]/bucket[/prefix]

Environment:
  LIFEBOAT_REPO          --repo
  LIFEBOAT_IDENTITY      --identity
  LIFEBOAT_KEY           --key
  LIFEBOAT_FROM_REPO, LIFEBOAT_FROM_IDENTITY, LIFEBOAT_FROM_KEY
                         --from-repo, --from-identity, --from-key (copy)
  LIFEBOAT_CACHE_DIR     --cache-dir
  LIFEBOAT_PASSPHRASE    passphrase of a passphrase-protected identity file
  LIFEBOAT_S3_BUCKET_LOOKUP   S3 addressing: auto (default), path or dns
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN   S3 credentials

Exit codes:
  0  success
  1  error, or problems found (check), or files that could not be restored
  2  usage error (unknown command or flag, missing argument, bad flag value,
     no repository or credentials given)
  3  backup completed, but some files could not be read (snapshot is partial)
  4  cluster status: the cluster has no leader (election or lost quorum)`

// globals holds the persistent flags and what is derived from them.
type globals struct {
	repo, identity, key, cacheDir string
	// source is set on the copy of globals that opens the repository
	// named by --from-repo (fromFlags): messages then name those flags.
	source                        bool
	noCache, json, quiet, verbose bool
	logFormat                     string

	stdout, stderr io.Writer
	log            *slog.Logger // warnings by default; debug with --verbose
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "lifeboat",
		Short:         "Encrypted, deduplicated backups you can restore at 3 a.m.",
		Long:          rootLong,
		Version:       versionString(),
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.resolve(cmd)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("lifeboat {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitErr{code: exitUsage, err: err}
	})

	pf := root.PersistentFlags()
	pf.StringVarP(&g.repo, "repo", "r", "", "repository location (env LIFEBOAT_REPO)")
	pf.StringVar(&g.identity, "identity", "", "identity file: full access (env LIFEBOAT_IDENTITY)")
	pf.StringVar(&g.key, "key", "", "writer key file: backup and snapshot metadata, no file contents (env LIFEBOAT_KEY)")
	pf.StringVar(&g.cacheDir, "cache-dir", "", "local cache directory (env LIFEBOAT_CACHE_DIR; default $XDG_CACHE_HOME/lifeboat)")
	pf.BoolVar(&g.noCache, "no-cache", false, "use no local cache (metadata and files cache)")
	pf.BoolVar(&g.json, "json", false, "print machine-readable JSON on stdout")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print only errors and essential output")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log details to stderr")
	pf.StringVar(&g.logFormat, "log-format", "", "log format on stderr: text or json (default: text; json for server and agent)")

	root.AddCommand(
		newInitCmd(g),
		newKeyCmd(g),
		newBackupCmd(g),
		newSnapshotsCmd(g),
		newLsCmd(g),
		newDumpCmd(g),
		newDiffCmd(g),
		newFindCmd(g),
		newStatsCmd(g),
		newCopyCmd(g),
		newRestoreCmd(g),
		newCheckCmd(g),
		newForgetCmd(g),
		newPruneCmd(g),
		newRepairCmd(g),
		newRewriteCmd(g),
		newTagCmd(g),
		newSessionsCmd(g),
		newUnlockCmd(g),
		newCatCmd(g),
		newCacheCmd(g),
		newVersionCmd(g),
		newServerCmd(g),
		newClusterCmd(g),
		newPolicyCmd(g),
		newDrillCmd(g),
		newRepoCmd(g),
		newJobCmd(g),
		newStatusCmd(g),
		newTokenCmd(g),
		newAgentCmd(g),
		newAlertCmd(g),
	)
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command group below root (a
// command with subcommands and nothing to run of its own) fail with a
// usage error on an argument that names none of them. Cobra would print
// the group's help and exit 0, so a mistyped 'key cleanup' in a script
// would pass for done.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !c.HasParent() || !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.SuggestionsMinimumDistance = 2
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 || args[0] == "help" {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(": did you mean %q?", s[0])
		}
		return usageError("%s (see '%s --help')", msg, cmd.CommandPath())
	}
}

// resolve fills unset flags from the environment and sets up logging.
func (g *globals) resolve(cmd *cobra.Command) error {
	fromEnv := func(name string, dst *string, envs ...string) {
		if cmd.Flags().Changed(name) {
			return
		}
		for _, e := range envs {
			if v := os.Getenv(e); v != "" {
				*dst = v
				return
			}
		}
	}
	fromEnv("repo", &g.repo, "LIFEBOAT_REPO", "LIFEBOAT_REPOSITORY")
	fromEnv("identity", &g.identity, "LIFEBOAT_IDENTITY")
	fromEnv("key", &g.key, "LIFEBOAT_KEY")
	fromEnv("cache-dir", &g.cacheDir, "LIFEBOAT_CACHE_DIR")
	if g.cacheDir == "" {
		if dir, err := os.UserCacheDir(); err == nil {
			g.cacheDir = filepath.Join(dir, "lifeboat")
		}
	}
	if g.quiet && g.verbose {
		return usageError("--quiet and --verbose exclude each other")
	}
	level := slog.LevelWarn
	switch {
	case g.verbose:
		level = slog.LevelDebug
	case g.quiet:
		level = slog.LevelError
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "", "text":
		g.log = slog.New(slog.NewTextHandler(g.stderr, hopts))
	case "json":
		g.log = slog.New(slog.NewJSONHandler(g.stderr, hopts))
	default:
		return usageError("invalid --log-format %q: want text or json", g.logFormat)
	}
	return nil
}

// pkgLogger is the logger handed to packages: their per-file warnings
// duplicate what the CLI prints, so they are shown only with --verbose.
// localPaths are the paths on this machine a command uses: the
// repository when it is a local directory, the identity and key files,
// the cache directory. restore --delete never removes them.
func (g *globals) localPaths() []string {
	var out []string
	if l, err := location.Parse(g.repo); err == nil && l.Kind == location.Local {
		out = append(out, l.Path)
	}
	for _, p := range []string{g.identity, g.key, g.cacheDir} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (g *globals) pkgLogger() *slog.Logger {
	if g.verbose {
		return g.log
	}
	return slog.New(slog.DiscardHandler)
}

// access is what a command needs from its credentials.
type access int

const (
	anyAccess  access = iota // identity or writer key
	readAccess               // identity only
)

// opt names a credential or repository flag ("repo", "identity", "key")
// and its environment variable as a user sets them for this repository.
func (g *globals) opt(name string) string {
	if g.source {
		return "--from-" + name + " (or LIFEBOAT_FROM_" + strings.ToUpper(name) + ")"
	}
	return "--" + name + " (or LIFEBOAT_" + strings.ToUpper(name) + ")"
}

// checkRepoFlag reports a missing or malformed --repo as a usage error.
func (g *globals) checkRepoFlag() error {
	if g.repo == "" {
		return usageError("no repository given: set %s", g.opt("repo"))
	}
	if _, err := location.Parse(g.repo); err != nil {
		return usageError("%v", err)
	}
	return nil
}

// openStore parses --repo and opens the store behind it.
func (g *globals) openStore(ctx context.Context, create bool) (chunkstore.Store, error) {
	if err := g.checkRepoFlag(); err != nil {
		return nil, err
	}
	rc := chunkstore.DefaultRetryConfig()
	rc.Logger = g.log
	st, err := location.OpenWithRetry(ctx, g.repo, create, rc)
	if err != nil {
		return nil, storeError(g.repo, err)
	}
	return st, nil
}

// storeError adds advice to errors opening or reading a store.
func storeError(repo string, err error) error {
	if errors.Is(err, chunkstore.ErrBucketNotFound) && !strings.Contains(err.Error(), "lifeboat init") {
		return fmt.Errorf("%w\n(repository %s does not exist: create it with 'lifeboat init' or check --repo)", err, repo)
	}
	return err
}

// openRepo opens the repository for a command; name is used in messages.
func (g *globals) openRepo(ctx context.Context, name string, need access) (*chunkstore.Repository, error) {
	if err := g.checkRepoFlag(); err != nil {
		return nil, err
	}
	var creds chunkstore.Credentials
	switch {
	case g.identity != "":
		ids, err := loadIdentity(g.identity)
		if err != nil {
			return nil, err
		}
		creds.Identities = ids
	case need == readAccess && g.key != "":
		return nil, fmt.Errorf("%s needs the identity, %s: the writer key %s can back up and list snapshots but, by design, cannot decrypt file names or contents", name, g.opt("identity"), g.key)
	case need == readAccess:
		return nil, usageError("%s needs the repository identity: pass %s", name, g.opt("identity"))
	case g.key != "":
		b, err := os.ReadFile(g.key)
		if err != nil {
			return nil, fmt.Errorf("read writer key: %w", err)
		}
		sec, err := chunkstore.ParseWriterKey(b)
		if err != nil {
			return nil, fmt.Errorf("writer key %s: %w", g.key, err)
		}
		creds.Writer = sec
	case g.source:
		return nil, usageError("%s needs credentials: pass %s (full access) or %s (writer key)", name, g.opt("identity"), g.opt("key"))
	default:
		return nil, usageError("%s needs credentials: pass --identity FILE (full access) or --key FILE (writer key), or set LIFEBOAT_IDENTITY or LIFEBOAT_KEY", name)
	}
	st, err := g.openStore(ctx, false)
	if err != nil {
		return nil, err
	}
	opts := chunkstore.Options{Logger: g.log}
	if !g.noCache && g.cacheDir != "" {
		if err := os.MkdirAll(g.cacheDir, 0o700); err != nil {
			// Without it everything works, only slower and with one
			// check less: say so once, for what this command does.
			lost := "repository metadata is downloaded again"
			if name == "backup" {
				lost = "every file is read again (no files cache), " + lost
			}
			if len(creds.Identities) > 0 {
				lost += ", and the repository is not compared with the one this machine saw at this location before"
			}
			warnf(g.stderr, "no local cache: %v; %s (set --cache-dir or LIFEBOAT_CACHE_DIR to a writable directory, or pass --no-cache)", err, lost)
			g.noCache = true
		} else {
			opts.CacheDir = g.cacheDir
		}
	}
	repo, err := chunkstore.Open(ctx, st, creds, opts)
	if errors.Is(err, chunkstore.ErrWrongKey) {
		if g.identity != "" {
			return nil, fmt.Errorf("identity %s: %w", g.identity, err)
		}
		return nil, fmt.Errorf("writer key %s: %w", g.key, err)
	}
	if err != nil {
		return nil, storeError(g.repo, err)
	}
	if need == readAccess && !repo.CanRead() {
		return nil, fmt.Errorf("%s: %w", name, chunkstore.ErrNoIdentity)
	}
	return repo, nil
}

// loadIdentity reads and parses an identity file, asking for its
// passphrase if it is protected.
func loadIdentity(path string) ([]age.Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	ids, err := chunkstore.ParseIdentityFile(b, func() (string, error) {
		return readPassphrase(fmt.Sprintf("Passphrase for identity %s: ", path), false)
	})
	switch {
	case errors.Is(err, chunkstore.ErrWrongPassphrase):
		if _, ok := os.LookupEnv("LIFEBOAT_PASSPHRASE"); ok {
			return nil, fmt.Errorf("identity %s: %w (the one LIFEBOAT_PASSPHRASE holds)", path, err)
		}
		return nil, fmt.Errorf("identity %s: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	return ids, nil
}

func versionString() string {
	v := version
	bi, ok := debug.ReadBuildInfo()
	if v == "" {
		v = "dev"
		if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	if ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			v += " (" + rev + dirty + ")"
		}
		v += " " + bi.GoVersion
	}
	return v
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.json {
				return printJSON(g.stdout, map[string]string{"version": versionString()})
			}
			fmt.Fprintf(g.stdout, "lifeboat %s\n", versionString())
			return nil
		},
	}
}
