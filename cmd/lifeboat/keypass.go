package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/internal/atomicfile"
)

// newPassphraseEnv holds the new passphrase for 'key passphrase' where no
// terminal can be asked (scripts, a secret manager's injection).
const newPassphraseEnv = "LIFEBOAT_NEW_PASSPHRASE"

type keyPassphraseOutput struct {
	IdentityFile string `json:"identity_file"`
	Protected    bool   `json:"identity_passphrase_protected"`
	WasProtected bool   `json:"was_protected"`
}

func newKeyPassphraseCmd(g *globals) *cobra.Command {
	var remove bool
	cmd := &cobra.Command{
		Use:   "passphrase",
		Short: "Set, change or remove the passphrase of an identity file",
		Long: `Set, change or remove the passphrase that protects the identity file given
with --identity (or LIFEBOAT_IDENTITY). No repository is needed.

The current passphrase, if the file has one, comes from LIFEBOAT_PASSPHRASE or
is asked on the terminal; the new one from LIFEBOAT_NEW_PASSPHRASE or is asked
twice on the terminal. --remove writes the identity unprotected.

The file is replaced atomically (a new file beside it, checked to open with
the new passphrase, then renamed over it, mode 0600, its owner and group
kept): a failure leaves the old file as it was. A copy of the file made before keeps the old passphrase: if
the passphrase was exposed together with a copy, add a new identity and
remove this one ('lifeboat key add', 'lifeboat key remove') instead.`,
		Example: `  lifeboat key passphrase --identity ./lifeboat-identity.txt
  LIFEBOAT_PASSPHRASE=old LIFEBOAT_NEW_PASSPHRASE=new lifeboat key passphrase --identity id.txt --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runKeyPassphrase(g, remove) },
	}
	cmd.Flags().BoolVar(&remove, "remove", false, "write the identity without a passphrase")
	return cmd
}

func runKeyPassphrase(g *globals, remove bool) error {
	if g.identity == "" {
		return usageError("key passphrase: pass --identity FILE (or set LIFEBOAT_IDENTITY): the identity file whose passphrase to change")
	}
	path, err := filepath.Abs(g.identity)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real // replace the file, not a symlink to it
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read identity: %w", err)
	}
	plain, protected, err := chunkstore.DecryptIdentityFile(old, func() (string, error) {
		return readPassphrase(fmt.Sprintf("Current passphrase for identity %s: ", path), false)
	})
	if err != nil {
		if errors.Is(err, chunkstore.ErrWrongPassphrase) {
			if _, ok := os.LookupEnv("LIFEBOAT_PASSPHRASE"); ok {
				return fmt.Errorf("identity %s: %w (the one LIFEBOAT_PASSPHRASE holds); nothing was changed", path, err)
			}
		}
		return fmt.Errorf("identity %s: %w; nothing was changed", path, err)
	}
	if _, err := chunkstore.ParseIdentityFile(plain, nil); err != nil {
		return fmt.Errorf("identity %s: %w; nothing was changed", path, err)
	}
	if !protected && remove {
		return fmt.Errorf("identity %s has no passphrase to remove; nothing was changed", path)
	}
	out := plain
	var pass string
	if !remove {
		if pass, err = readNewPassphrase(path); err != nil {
			return fmt.Errorf("%w; nothing was changed", err)
		}
		if out, err = chunkstore.ProtectIdentityFile(plain, pass); err != nil {
			return err
		}
		back, _, err := chunkstore.DecryptIdentityFile(out, func() (string, error) { return pass, nil })
		if err != nil || !bytes.Equal(back, plain) {
			return fmt.Errorf("the newly protected identity did not open again (%v); nothing was changed", err)
		}
	}
	if err := atomicfile.Write(path, out, 0o600); err != nil {
		return fmt.Errorf("write identity %s: %w; the old file is unchanged", path, err)
	}
	if g.json {
		return printJSON(g.stdout, keyPassphraseOutput{IdentityFile: path, Protected: !remove, WasProtected: protected})
	}
	if !g.quiet {
		if remove {
			fmt.Fprintf(g.stdout, "identity %s: passphrase removed; the file alone now gives full read access, so keep it offline\n", path)
		} else {
			fmt.Fprintf(g.stdout, "identity %s: protected with the new passphrase\n", path)
		}
	}
	return nil
}

// readNewPassphrase returns LIFEBOAT_NEW_PASSPHRASE, or asks for the new
// passphrase twice on the terminal.
func readNewPassphrase(path string) (string, error) {
	if p, ok := os.LookupEnv(newPassphraseEnv); ok {
		if p == "" {
			return "", errors.New(newPassphraseEnv + " is set but empty")
		}
		return p, nil
	}
	p, err := askPassphrase(fmt.Sprintf("New passphrase for identity %s: ", path), true)
	if errors.Is(err, chunkstore.ErrPassphraseRequired) {
		return "", errors.New("no new passphrase: set " + newPassphraseEnv + " or run on a terminal")
	}
	return p, err
}
