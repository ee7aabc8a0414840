package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
)

const (
	defaultIdentityOut = "lifeboat-identity.txt"
	defaultKeyOut      = "lifeboat-writer.key"

	// nestedSearchLimit bounds how many objects init looks through for
	// a repository below its location: ten S3 list requests.
	nestedSearchLimit = 10000
)

type initFlags struct {
	recipients        []string
	identityOut       string
	keyOut            string
	pq                bool
	passphraseProtect bool
	from              fromFlags
}

func newInitCmd(g *globals) *cobra.Command {
	var f initFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a repository, an identity and a writer key",
		Long: `Create a new repository at --repo (creating the directory or bucket).

Without --recipient, a new identity is generated and written to --identity-out:
it is the only credential that can read the backups (restore, ls, deep check).
With --recipient, the repository is encrypted to the given age public keys and
no identity is generated.

The writer key written to --key-out can create backups and list snapshots but
cannot read any backup: give it to the machines that back up.

With --from-repo (and that repository's --from-key or --from-identity), the new
repository cuts and names blobs exactly as that one does (it shares its chunk-ID
key and chunker polynomial), so 'lifeboat copy' can copy snapshots from it,
reading only what is new. Everything else is its own: repository ID, metadata
key, and recipients, which may be another team's or an offline identity's.

Existing files are never overwritten; both files are created with mode 0600.`,
		Example: `  lifeboat init --repo /srv/backup
  lifeboat init --repo s3:https://s3.example.net/backups/fleet --pq --passphrase-protect
  lifeboat init --repo /srv/backup --recipient age1... --key-out /etc/lifeboat/writer.key
  lifeboat init --repo s3:https://s3.other-region.example.net/offsite --from-repo /srv/backup --from-key writer.key \
      --recipient age1... --key-out offsite-writer.key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runInit(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.recipients, "recipient", nil, "encrypt to this age public key instead of generating an identity (repeatable)")
	fl.StringVar(&f.identityOut, "identity-out", defaultIdentityOut, "where to write the generated identity")
	fl.StringVar(&f.keyOut, "key-out", defaultKeyOut, "where to write the writer key")
	fl.BoolVar(&f.pq, "pq", false, "generate a post-quantum hybrid identity (age1pq)")
	fl.BoolVar(&f.passphraseProtect, "passphrase-protect", false, "encrypt the generated identity file with a passphrase (LIFEBOAT_PASSPHRASE or prompt)")
	f.from.register(cmd, "share the chunking of this repository, to copy its snapshots here", false)
	return cmd
}

type initOutput struct {
	RepoID       string   `json:"repo_id"`
	Location     string   `json:"location"`
	Recipients   []string `json:"recipients"`
	IdentityFile string   `json:"identity_file,omitempty"`
	WriterKey    string   `json:"writer_key_file"`
	Protected    bool     `json:"identity_passphrase_protected"`
	ChunkingFrom string   `json:"chunking_from,omitempty"` // the ID of the repository whose chunking it shares
}

func runInit(cmd *cobra.Command, g *globals, f initFlags) error {
	ctx := cmd.Context()
	generate := len(f.recipients) == 0
	if !generate {
		for _, name := range []string{"pq", "passphrase-protect", "identity-out"} {
			if cmd.Flags().Changed(name) {
				return usageError("--%s applies to a generated identity and cannot be combined with --recipient", name)
			}
		}
		norm, err := chunkstore.NormalizeRecipients(f.recipients)
		if err != nil {
			return usageError("--recipient: %v", err)
		}
		f.recipients = norm
	}
	if err := g.checkRepoFlag(); err != nil {
		return err
	}
	// A repository inside another (a directory or S3 prefix below one)
	// would have its objects taken for the outer one's.
	rc := chunkstore.DefaultRetryConfig()
	rc.Logger = g.log
	if outer, err := location.Enclosing(ctx, g.repo, rc); err != nil {
		return storeError(g.repo, err)
	} else if outer != "" {
		return usageError("%s is inside the lifeboat repository at %s: choose a location outside it", g.repo, outer)
	}
	// A repository below the location would have its objects taken for
	// the new one's, just the same. Only lifeboat repositories are
	// refused, not any object (kopia refuses non-empty storage): lifeboat
	// lists and deletes only under its own names, so foreign objects and
	// a mount point's lost+found are harmless, and Init already refuses
	// a location holding any of its own. The search is bounded; past the
	// bound nothing can be ruled out, and such a location is refused.
	if inner, err := location.Nested(ctx, g.repo, rc, nestedSearchLimit); errors.Is(err, location.ErrNestedLimit) {
		return usageError("%v; lifeboat could not rule out a repository below it: choose an empty location, or a new directory or prefix", err)
	} else if err != nil {
		return storeError(g.repo, err)
	} else if inner != "" {
		return usageError("%s holds the lifeboat repository at %s below it: a repository here would mix with it; choose a location outside it, such as a sibling directory or prefix", g.repo, inner)
	}
	keyOut, err := filepath.Abs(f.keyOut)
	if err != nil {
		return err
	}
	idOut := ""
	if generate {
		if idOut, err = filepath.Abs(f.identityOut); err != nil {
			return err
		}
		if idOut == keyOut {
			return usageError("--identity-out and --key-out name the same file %s", idOut)
		}
	}

	// Check the output files before anything is created anywhere.
	for _, p := range []string{idOut, keyOut} {
		if p == "" {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists; refusing to overwrite it (move it away or choose another path with --identity-out/--key-out)", p)
		}
	}

	// The source of the chunking is opened before anything is created.
	chunking, chunkingFrom, err := sourceChunking(ctx, cmd, g, f.from)
	if err != nil {
		return err
	}

	out := initOutput{Recipients: f.recipients, WriterKey: keyOut, ChunkingFrom: chunkingFrom}
	var idFile []byte
	if generate {
		file, recipient, err := chunkstore.NewIdentity(f.pq)
		if err != nil {
			return fmt.Errorf("generate identity: %w", err)
		}
		idFile = file
		out.Recipients = []string{recipient}
		out.IdentityFile = idOut
		if f.passphraseProtect {
			pass, err := readPassphrase("Passphrase to protect the new identity: ", true)
			if err != nil {
				return fmt.Errorf("--passphrase-protect: %w", err)
			}
			if idFile, err = chunkstore.ProtectIdentityFile(idFile, pass); err != nil {
				return fmt.Errorf("protect identity: %w", err)
			}
			out.Protected = true
		}
	}

	// Create both files first (exclusively) and write the identity before
	// the repository exists, so a repository is never left without the
	// identity that reads it, and a path that cannot be written leaves no
	// repository behind. On failure, remove what was created.
	var created []*os.File
	cleanup := func() {
		for _, fh := range created {
			fh.Close()
			os.Remove(fh.Name())
		}
	}
	for _, p := range []string{idOut, keyOut} {
		if p == "" {
			continue
		}
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			cleanup()
			return fmt.Errorf("create %s: %w", p, err)
		}
		created = append(created, fh)
	}
	if generate {
		if err := writeSync(created[0], idFile); err != nil {
			cleanup()
			return fmt.Errorf("write identity %s: %w", idOut, err)
		}
	}
	// Only now is the repository's directory (or bucket) created: a
	// mistake in the output paths leaves nothing behind.
	st, err := g.openStore(ctx, true)
	if err != nil {
		cleanup()
		return err
	}
	out.Location = st.Location()
	sec, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: out.Recipients, Chunking: chunking})
	if err != nil {
		cleanup()
		if errors.Is(err, chunkstore.ErrAlreadyInitialized) {
			return fmt.Errorf("%w\n(use the existing repository with its identity or writer key, or choose another --repo)", err)
		}
		return storeError(g.repo, err)
	}
	out.RepoID = sec.RepoID
	// A repository created again where one was: this machine's cache
	// must not take it for a replaced one.
	if !g.noCache && g.cacheDir != "" {
		if err := chunkstore.Unpin(g.cacheDir, st.Location()); err != nil {
			g.log.Warn("could not forget the repository this cache saw here before", "err", err)
		}
	}
	keyBytes, err := chunkstore.MarshalWriterKey(sec)
	if err == nil {
		err = writeSync(created[len(created)-1], keyBytes)
	}
	if err != nil {
		// The incomplete file would make 'key writer-key' refuse the path.
		fh := created[len(created)-1]
		fh.Close()
		os.Remove(fh.Name())
		who := "the identity " + idOut
		if !generate {
			who = "an identity of its recipients"
		}
		return fmt.Errorf("repository %s was created, but writing the writer key %s failed: %w; %s", sec.RepoID, keyOut, err, writerKeyAgain(keyOut, who))
	}
	for _, fh := range created {
		if err := fh.Close(); err != nil {
			return fmt.Errorf("close %s: %w", fh.Name(), err)
		}
	}

	if g.json {
		return printJSON(g.stdout, out)
	}
	w := g.stdout
	fmt.Fprintf(w, "created lifeboat repository %s at %s\n\n", out.RepoID, out.Location)
	for _, r := range out.Recipients {
		fmt.Fprintf(w, "  recipient:   %s\n", r)
	}
	if generate {
		prot := ""
		if out.Protected {
			prot = " (passphrase-protected)"
		}
		fmt.Fprintf(w, "  identity:    %s%s\n", idOut, prot)
	}
	fmt.Fprintf(w, "  writer key:  %s\n", keyOut)
	if chunkingFrom != "" {
		fmt.Fprintf(w, "  chunking:    shared with repository %s (lifeboat copy --from-repo copies its snapshots here)\n", chunkingFrom)
	}
	fmt.Fprintln(w)
	if !g.quiet {
		if generate {
			fmt.Fprintln(w, "The identity reads everything: restore, ls, check --read-data. Keep a copy")
			fmt.Fprintln(w, "offline; without it the backups cannot be restored. Never give it to agents.")
		} else {
			fmt.Fprintln(w, "The identities of the recipients above read everything: restore, ls, check.")
		}
		fmt.Fprintln(w, "The writer key backs up and lists, tags and forgets snapshots; it cannot read backups or list file names.")
		fmt.Fprintln(w, "Give it to the machines that run 'lifeboat backup --key ...'.")
	}
	return nil
}

func writeSync(f *os.File, b []byte) error {
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Sync()
}
