package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

func newKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "List or change the recipients that can read the repository",
		Long: `List or change the repository's recipients: the age public keys whose
identities can read the backups.

'key add' and 'key remove' write a key envelope for the new set of recipients
(the next generation), remove the older envelopes, and write a writer key of
the new generation to --key-out. From then on:
  * an identity that was removed cannot open the repository;
  * writer keys of older generations are refused for backups (their packs
    would be wrapped to the old recipients): install the new writer key on
    every machine that backs up ('lifeboat repo add NAME --replace' for a
    coordinator's agents);
  * packs written before stay wrapped to the recipients of their time until
    'lifeboat prune --rewrap' repacks them. Until then an added identity
    cannot read them, and a removed identity, with the storage credentials
    and a copy of the old envelope, still could.

The repository's chunk-ID and metadata keys do not change. A removed identity
that saw them keeps what a writer key gives: it can list snapshots, not read
files. (A new repository with 'init --from-repo' and 'copy' gets a new
metadata key, but shares the chunk-ID key.)

The key envelopes are signed with a key only identities hold, so a writer
key cannot plant one; see 'key list' for repositories created before that.`,
		Args: noArgs,
	}
	cmd.AddCommand(newKeyListCmd(g), newKeyChangeCmd(g, "add"), newKeyChangeCmd(g, "remove"), newKeyWriterCmd(g), newKeyCleanupCmd(g), newKeyPassphraseCmd(g))
	return cmd
}

type keyEnvelope struct {
	Name       string `json:"name"`
	Generation uint32 `json:"generation"`
	// Unverified says why an envelope does not verify (every lifeboat
	// ignores it; key cleanup removes it).
	Unverified string `json:"unverified,omitempty"`
}

type keyListOutput struct {
	RepoID     string        `json:"repo_id"`
	Generation uint32        `json:"generation"`
	Envelopes  []keyEnvelope `json:"envelopes"`
	// Recipients are those of the credential's generation: the current
	// ones unless Stale.
	Recipients    []string `json:"recipients"`
	KeyGeneration uint32   `json:"key_generation"`
	Stale         bool     `json:"stale_key,omitempty"`
	// Packs by the generation they were wrapped for (with an identity).
	Packs      map[uint32]int `json:"packs_by_generation,omitempty"`
	OlderPacks int            `json:"older_packs,omitempty"`
}

func newKeyListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Show the recipients, the key envelopes and the packs of older recipients",
		Long: `Show the repository's generation of recipients, its key envelopes, and the
recipients of the credential given, and whether the credential is out of
date (a writer key of an older generation, or an identity that was removed
but still opens a leftover envelope). With an identity, also count the packs by the generation of the
recipients they were written for: those of older generations wait for
'lifeboat prune --rewrap'.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runKeyList(cmd.Context(), g) },
	}
}

func runKeyList(ctx context.Context, g *globals) error {
	repo, err := g.openRepo(ctx, "key list", anyAccess)
	if err != nil {
		return err
	}
	gen, envs, bad, err := repo.KeyStatus(ctx)
	if err != nil {
		return storeError(g.repo, err)
	}
	sec := repo.Secrets()
	out := keyListOutput{RepoID: sec.RepoID, Generation: gen, Recipients: sec.Recipients, KeyGeneration: sec.Generation}
	why := map[string]string{}
	for _, e := range bad {
		why[e.Name] = e.Err.Error()
	}
	for _, e := range envs {
		out.Envelopes = append(out.Envelopes, keyEnvelope{Name: e.Name, Generation: e.Gen, Unverified: why[e.Name]})
	}
	out.Stale = sec.Generation < out.Generation
	if repo.CanRead() {
		if err := repo.LoadIndex(ctx); err != nil {
			return storeError(g.repo, err)
		}
		out.Packs = map[uint32]int{}
		for _, p := range repo.Index().Packs() {
			out.Packs[p.Gen]++
			if p.WrappedBefore(out.Generation) {
				out.OlderPacks++
			}
		}
	}
	if g.json {
		return printJSON(g.stdout, out)
	}
	w := g.stdout
	warnUnsigned(w, repo)
	fmt.Fprintf(w, "repository %s, recipients of generation %d\n", out.RepoID, out.Generation)
	for _, e := range out.Envelopes {
		fmt.Fprintf(w, "  envelope %s (generation %d)\n", e.Name, e.Generation)
		if e.Unverified != "" {
			fmt.Fprintf(w, "    DOES NOT VERIFY, ignored: %s; damaged, or planted by someone with write access to keys/; 'lifeboat key cleanup' removes it\n", e.Unverified)
		}
	}
	older := 0
	for _, e := range out.Envelopes {
		if e.Generation < out.Generation && e.Unverified == "" {
			older++
		}
	}
	if older > 0 {
		fmt.Fprintf(w, "%d key envelopes of older generations are left (a change of recipients was interrupted): identities removed since can still open the repository with them; 'lifeboat key cleanup' removes them\n", older)
	}
	who := "this identity"
	if !repo.CanRead() {
		who = "this writer key"
	}
	fmt.Fprintf(w, "recipients known to %s (generation %d):\n", who, sec.Generation)
	for _, r := range sec.Recipients {
		fmt.Fprintf(w, "  %s\n", r)
	}
	if out.Stale {
		fmt.Fprintf(w, "%s is out of date: the recipients were changed since; it cannot back up\n", who)
	}
	if out.Packs != nil {
		gens := make([]uint32, 0, len(out.Packs))
		for gen := range out.Packs {
			gens = append(gens, gen)
		}
		slices.Sort(gens)
		for _, gen := range gens {
			fmt.Fprintf(w, "%d packs written for %s\n", out.Packs[gen], chunkstore.GenName(gen))
		}
		if out.OlderPacks > 0 {
			fmt.Fprintf(w, "%d packs are wrapped to older recipients: 'lifeboat prune --rewrap' repacks those in use\n", out.OlderPacks)
		}
	}
	return nil
}

type keyChangeOutput struct {
	RepoID     string   `json:"repo_id"`
	Generation uint32   `json:"generation"`
	Recipients []string `json:"recipients"`
	WriterKey  string   `json:"writer_key_file"`
}

func newKeyChangeCmd(g *globals, verb string) *cobra.Command {
	var recipients []string
	var keyOut string
	var force bool
	short := map[string]string{"add": "Add recipients (identities that can read the repository)", "remove": "Remove recipients"}[verb]
	cmd := &cobra.Command{
		Use:   verb + " --recipient AGE_PUBKEY [--recipient ...] --key-out FILE",
		Short: short,
		Long: short + `.

Needs an identity that stays a recipient. Writes the key envelope of the next
generation, removes the older ones, and writes the writer key of the new
generation to --key-out (never overwriting a file). Older writer keys are
refused for backups from then on. Then run 'lifeboat prune --rewrap', so that
the packs written before are wrapped to the new recipients too; see
'lifeboat key --help'.`,
		Example: `  lifeboat key ` + verb + ` --repo s3:https://s3.example.net/backups --identity oncall.txt \
      --recipient age1... --key-out writer-gen2.key
  lifeboat prune --rewrap --repo s3:https://s3.example.net/backups --identity oncall.txt`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeyChange(cmd.Context(), g, verb, recipients, keyOut, force)
		},
	}
	cmd.Flags().StringArrayVar(&recipients, "recipient", nil, "age public key to "+verb+" (repeatable)")
	cmd.Flags().StringVar(&keyOut, "key-out", "", "where to write the writer key of the new generation (required)")
	if verb == "remove" {
		cmd.Flags().BoolVar(&force, "force", false, "remove even when packs not yet rewrapped would be left to the removed recipients alone")
		cmd.Long += `

Removing is refused while the index lists packs that none of the remaining
recipients is known to open: packs of an earlier generation not rewrapped
yet, whose recipients are all being removed, and packs of an unknown
generation ('repair index' indexes packs from the store so). Their data would
be left to the removed identities alone. Run 'lifeboat prune --rewrap' with
an identity of the old recipients first (packs it leaves in a GC mark count
until a prune deletes them). --force removes all the same.`
	}
	return cmd
}

// needKeyOut refuses a missing --key-out before the repository is opened.
func needKeyOut(keyOut string) error {
	if keyOut == "" {
		return usageError("--key-out is required: the writer key of the new generation is what the machines that back up need")
	}
	return nil
}

// createKeyOut creates the writer key file exclusively, before anything
// changes in the repository.
func createKeyOut(keyOut string) (*os.File, string, error) {
	if err := needKeyOut(keyOut); err != nil {
		return nil, "", err
	}
	p, err := filepath.Abs(keyOut)
	if err != nil {
		return nil, "", err
	}
	fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if os.IsExist(err) {
			return nil, "", fmt.Errorf("%s already exists; refusing to overwrite it (move it away or choose another --key-out)", p)
		}
		return nil, "", fmt.Errorf("create %s: %w", p, err)
	}
	return fh, p, nil
}

// changeRecipients is the new set of recipients after verb.
func changeRecipients(cur []string, verb string, given []string) ([]string, error) {
	if len(given) == 0 {
		return nil, usageError("give at least one --recipient to %s", verb)
	}
	given, err := chunkstore.NormalizeRecipients(given)
	if err != nil {
		return nil, usageError("--recipient: %v", err)
	}
	// Compared in canonical form: a repository written before recipients
	// were normalised may hold one twice, or several in one entry.
	next, err := chunkstore.CanonicalRecipients(cur)
	if err != nil {
		return nil, err
	}
	for _, r := range given {
		i := slices.Index(next, r)
		switch {
		case verb == "add" && i >= 0:
			return nil, fmt.Errorf("%s is already a recipient", r)
		case verb == "add":
			next = append(next, r)
		case i < 0:
			return nil, fmt.Errorf("%s is not a recipient (see 'lifeboat key list')", r)
		default:
			next = slices.Delete(next, i, i+1)
		}
	}
	if len(next) == 0 {
		return nil, fmt.Errorf("removing %s would leave no recipient: add the new one first", strings.Join(given, ", "))
	}
	if _, err := chunkstore.NormalizeRecipients(next); err != nil {
		return nil, usageError("--recipient: %v", err) // kinds mixed
	}
	return next, nil
}

// unknownPacks refuses a 'key remove' while the index does not list
// every pack: whom the keys of the packs it misses are wrapped to is
// unknown, and they may be wrapped only to recipients the removal takes
// away, which could then never read them again.
func unknownPacks(ctx context.Context, g *globals, repo *chunkstore.Repository) error {
	const fix = "run 'lifeboat repair index' (once no backup is running), then 'lifeboat prune --rewrap' with an identity of the recipients you remove, then remove them (or --force to remove anyway)"
	if probs := repo.IndexProblems(); len(probs) > 0 {
		return fmt.Errorf("key remove: %d index %s could not be read (%v), so the packs listed there are not known, nor whether an identity left can read them: %s", len(probs), plural(len(probs), "file", "files"), probs[0], fix)
	}
	present, err := repo.ListPacks(ctx)
	if err != nil {
		return storeError(g.repo, err)
	}
	n := 0
	for id := range present {
		if !repo.Index().HasPack(id) && !repo.Index().Excluded(id) {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("key remove: %d %s under data/ no index file lists (from a backup still running or killed, or an index file that was lost), so whom %s wrapped to is not known: %s", n, plural(n, "pack", "packs"), plural(n, "its key is", "their keys are"), fix)
	}
	return nil
}

func runKeyChange(ctx context.Context, g *globals, verb string, given []string, keyOut string, force bool) error {
	if err := needKeyOut(keyOut); err != nil {
		return err
	}
	repo, err := g.openRepo(ctx, "key "+verb, readAccess)
	if err != nil {
		return err
	}
	next, err := changeRecipients(repo.Secrets().Recipients, verb, given)
	if err != nil {
		return err
	}
	if verb == "remove" && !force {
		if err := repo.LoadIndex(ctx); err != nil {
			return storeError(g.repo, err)
		}
		if err := unknownPacks(ctx, g, repo); err != nil {
			return err
		}
		if stranded := repo.Stranded(next); len(stranded) > 0 {
			var parts []string
			for gen, n := range stranded {
				parts = append(parts, fmt.Sprintf("%d of %s", n, chunkstore.GenName(gen)))
			}
			slices.Sort(parts)
			return fmt.Errorf("key remove: packs in the index (%s) are wrapped only to recipients this removes, or to recipients not recorded: no identity left is known to read them; run 'lifeboat prune --rewrap' with an identity of those recipients first (or --force to remove anyway)", strings.Join(parts, ", "))
		}
	}
	fh, path, err := createKeyOut(keyOut)
	if err != nil {
		return err
	}
	sec, err := repo.Rekey(ctx, next)
	if sec == nil {
		fh.Close()
		os.Remove(path)
		return fmt.Errorf("key %s: %w", verb, storeError(g.repo, err))
	}
	// The new generation is in place even when removing the old
	// envelopes failed: its writer key is needed either way.
	if werr := writeWriterKey(fh, path, sec); werr != nil {
		return fmt.Errorf("key %s: the repository's recipients are now those of generation %d, and older writer keys are refused for backups, but %w; %s",
			verb, sec.Generation, werr, writerKeyAgain(path, "an identity of the new recipients"))
	}
	if err != nil {
		return fmt.Errorf("key %s: %w", verb, err)
	}
	out := keyChangeOutput{RepoID: sec.RepoID, Generation: sec.Generation, Recipients: sec.Recipients, WriterKey: path}
	if g.json {
		return printJSON(g.stdout, out)
	}
	w := g.stdout
	warnUnsigned(w, repo)
	fmt.Fprintf(w, "repository %s: recipients of generation %d\n", out.RepoID, out.Generation)
	for _, r := range out.Recipients {
		fmt.Fprintf(w, "  %s\n", r)
	}
	fmt.Fprintf(w, "writer key of generation %d: %s\n\n", out.Generation, path)
	fmt.Fprintln(w, "Next:")
	fmt.Fprintln(w, "  1. install the new writer key on every machine that backs up; with a coordinator,")
	fmt.Fprintln(w, "     'lifeboat repo add NAME --replace --key NEW_KEY' (agents get it with their next job);")
	fmt.Fprintln(w, "     older writer keys are refused for backups from now on;")
	fmt.Fprintln(w, "  2. run 'lifeboat prune --rewrap' so that the packs written before are wrapped to these")
	fmt.Fprintln(w, "     recipients too ('lifeboat key list' counts those left).")
	return nil
}

// writeWriterKey writes sec as a writer key into fh (created by
// createKeyOut) and closes it. When that fails, the incomplete file is
// removed: left behind, it would make 'key writer-key' refuse the path.
func writeWriterKey(fh *os.File, path string, sec *chunkstore.Secrets) error {
	b, err := chunkstore.MarshalWriterKey(sec)
	if err == nil {
		err = writeSync(fh, b)
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing the writer key %s failed: %w", path, err)
	}
	return nil
}

// writerKeyAgain tells how to write the writer key that a command which
// changed the repository could not write to path.
func writerKeyAgain(path, who string) string {
	return fmt.Sprintf("free space there (or choose another path) and run 'lifeboat key writer-key --key-out %s' with %s", path, who)
}

func newKeyWriterCmd(g *globals) *cobra.Command {
	var keyOut string
	cmd := &cobra.Command{
		Use:   "writer-key --key-out FILE",
		Short: "Write a writer key of the current generation",
		Long: `Write a writer key of the repository's current generation of recipients
to --key-out (never overwriting a file), for a machine that lost its writer
key or holds one of an older generation. Needs an identity of the current
recipients.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := needKeyOut(keyOut); err != nil {
				return err
			}
			repo, err := openCurrent(ctx, g, "key writer-key")
			if err != nil {
				return err
			}
			sec := repo.Secrets()
			fh, path, err := createKeyOut(keyOut)
			if err != nil {
				return err
			}
			if err := writeWriterKey(fh, path, sec); err != nil {
				return err
			}
			if g.json {
				return printJSON(g.stdout, keyChangeOutput{RepoID: sec.RepoID, Generation: sec.Generation, Recipients: sec.Recipients, WriterKey: path})
			}
			fmt.Fprintf(g.stdout, "writer key of generation %d for repository %s: %s\n", sec.Generation, sec.RepoID, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyOut, "key-out", "", "where to write the writer key (required)")
	return cmd
}

type keyCleanupOutput struct {
	RemovedOlder      int           `json:"removed_older"`
	RemovedUnverified []keyEnvelope `json:"removed_unverified"`
}

func newKeyCleanupCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cleanup",
		Short: "Remove key envelopes of older generations",
		Long: `Remove the key envelopes of generations older than the current one: what
'key add' or 'key remove' does last, left undone when it was interrupted or
the storage credentials could not delete. Until then an identity that was
removed can still open the repository (to read packs not yet rewrapped).
Also removes envelopes that do not verify (their content does not match
their name, or the repository's key signer did not sign them), which every
lifeboat ignores: damage, or an envelope planted by someone with write access
to keys/. Needs an identity of the current recipients.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, err := openCurrent(ctx, g, "key cleanup")
			if err != nil {
				return err
			}
			n, err := repo.RemoveOldEnvelopes(ctx)
			if err != nil {
				return fmt.Errorf("key cleanup: %w", storeError(g.repo, err))
			}
			bad, err := repo.RemoveUnverifiedEnvelopes(ctx)
			out := keyCleanupOutput{RemovedOlder: n, RemovedUnverified: []keyEnvelope{}}
			for _, e := range bad {
				out.RemovedUnverified = append(out.RemovedUnverified, keyEnvelope{Name: e.Name, Generation: e.Gen, Unverified: e.Err.Error()})
			}
			if err != nil {
				return fmt.Errorf("key cleanup: %w", storeError(g.repo, err))
			}
			if g.json {
				return printJSON(g.stdout, out)
			}
			fmt.Fprintf(g.stdout, "removed %d key %s of older generations\n", n, plural(n, "envelope", "envelopes"))
			for _, e := range out.RemovedUnverified {
				fmt.Fprintf(g.stdout, "removed %s, which did not verify (%s)\n", e.Name, e.Unverified)
			}
			return nil
		},
	}
}

// openCurrent opens the repository with an identity of the current
// recipients, for a command (name) that acts on their behalf.
func openCurrent(ctx context.Context, g *globals, name string) (*chunkstore.Repository, error) {
	repo, err := g.openRepo(ctx, name, readAccess)
	if err != nil {
		return nil, err
	}
	cur, err := repo.KeyGeneration(ctx)
	if err != nil {
		return nil, storeError(g.repo, err)
	}
	if sec := repo.Secrets(); sec.Generation < cur {
		return nil, fmt.Errorf("%s: %w: this identity is a recipient only of generation %d, and the current one is %d", name, chunkstore.ErrStaleKey, sec.Generation, cur)
	}
	return repo, nil
}

// warnUnsigned says what a repository without signed key envelopes
// (created by an earlier release) does not protect against.
func warnUnsigned(w io.Writer, repo *chunkstore.Repository) {
	if repo.SignedEnvelopes() {
		return
	}
	fmt.Fprintln(w, "note: this repository was created before key envelopes were signed; anyone who can put")
	fmt.Fprintln(w, "objects under keys/ (a writer key holder with the storage credentials) could plant an")
	fmt.Fprintln(w, "envelope identities would open: deny agents s3:PutObject on keys/* (docs/operations.md)")
}
