package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// readPassphrase returns LIFEBOAT_PASSPHRASE if it is set, otherwise asks
// on the controlling terminal (twice when confirm is set). Without either
// it fails with chunkstore.ErrPassphraseRequired.
func readPassphrase(prompt string, confirm bool) (string, error) {
	if p, ok := os.LookupEnv("LIFEBOAT_PASSPHRASE"); ok {
		if p == "" {
			return "", errors.New("LIFEBOAT_PASSPHRASE is set but empty")
		}
		return p, nil
	}
	return askPassphrase(prompt, confirm)
}

// askPassphrase asks for a passphrase on the controlling terminal (twice
// when confirm is set), failing with chunkstore.ErrPassphraseRequired
// where there is none.
func askPassphrase(prompt string, confirm bool) (string, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", chunkstore.ErrPassphraseRequired
	}
	defer tty.Close()
	if !term.IsTerminal(int(tty.Fd())) {
		return "", chunkstore.ErrPassphraseRequired
	}
	ask := func(prompt string) (string, error) {
		fmt.Fprint(tty, prompt)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		if err != nil {
			return "", fmt.Errorf("read passphrase from terminal: %w", err)
		}
		return string(b), nil
	}
	p, err := ask(prompt)
	if err != nil {
		return "", err
	}
	if p == "" {
		return "", errors.New("empty passphrase")
	}
	if confirm {
		again, err := ask("Repeat passphrase: ")
		if err != nil {
			return "", err
		}
		if again != p {
			return "", errors.New("the passphrases do not match")
		}
	}
	return p, nil
}
