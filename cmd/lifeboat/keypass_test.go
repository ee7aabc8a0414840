package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeyPassphrase: key passphrase sets, changes and removes an identity
// file's passphrase, replacing the file (mode 0600, nothing left beside
// it) so that only the new passphrase opens it; a wrong current
// passphrase, a missing new one, a writer key and removing a passphrase
// the file lacks change nothing. Through a symlink, the file it points to
// is replaced.
func TestKeyPassphrase(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := repo{path: filepath.Join(c.dir, "repo"), identity: filepath.Join(c.dir, "keys", "id.txt"), key: filepath.Join(c.dir, "w.key")}
	if err := os.Mkdir(filepath.Join(c.dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	c.with("LIFEBOAT_PASSPHRASE=old").ok("init", "--repo", r.path, "--identity-out", r.identity, "--key-out", r.key, "--passphrase-protect")
	opens := func(pass string) bool {
		t.Helper()
		env := "LIFEBOAT_PASSPHRASE=" + pass
		if pass == "" {
			env = "LIFEBOAT_NO_SUCH=1"
		}
		return c.with(env).run(r.reader("snapshots")...).code == 0
	}
	unchanged := func(what string, before []byte) {
		t.Helper()
		if after, err := os.ReadFile(r.identity); err != nil || !bytes.Equal(after, before) {
			t.Errorf("%s: the identity file changed (%v)", what, err)
		}
	}
	before, err := os.ReadFile(r.identity)
	if err != nil {
		t.Fatal(err)
	}
	c.with("LIFEBOAT_PASSPHRASE=wrong", "LIFEBOAT_NEW_PASSPHRASE=new").fails(1, r.reader("key", "passphrase"), "wrong passphrase", "nothing was changed")
	unchanged("wrong current passphrase", before)
	c.with("LIFEBOAT_PASSPHRASE=old", "LIFEBOAT_NEW_PASSPHRASE=").fails(1, r.reader("key", "passphrase"), "LIFEBOAT_NEW_PASSPHRASE is set but empty")
	unchanged("empty new passphrase", before)
	c.with("LIFEBOAT_PASSPHRASE=old").fails(1, []string{"key", "passphrase", "--identity", r.key}, "writer key", "nothing was changed")

	c.with("LIFEBOAT_PASSPHRASE=old", "LIFEBOAT_NEW_PASSPHRASE=new").ok(r.reader("key", "passphrase")...)
	if !opens("new") || opens("old") {
		t.Fatalf("after the change: opens with new %v, with old %v; want only new", opens("new"), opens("old"))
	}
	ents, err := os.ReadDir(filepath.Dir(r.identity))
	if err != nil || len(ents) != 1 {
		t.Errorf("files beside the identity: %v (%v), want it alone", ents, err)
	}
	if fi, err := os.Stat(r.identity); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("identity mode %v (%v), want 0600", fi.Mode(), err)
	}

	out := c.with("LIFEBOAT_PASSPHRASE=new").ok(r.reader("key", "passphrase", "--remove", "--json")...).stdout
	if !strings.Contains(out, `"identity_passphrase_protected":false`) || !strings.Contains(out, `"was_protected":true`) || !opens("") {
		t.Fatalf("--remove: %s; opens without a passphrase: %v", out, opens(""))
	}
	plain, _ := os.ReadFile(r.identity)
	c.fails(1, r.reader("key", "passphrase", "--remove"), "no passphrase to remove")
	unchanged("removing a missing passphrase", plain)

	// Through a symlink: the file is protected again, the link stays.
	link := filepath.Join(c.dir, "link.txt")
	if err := os.Symlink(r.identity, link); err != nil {
		t.Fatal(err)
	}
	c.with("LIFEBOAT_NEW_PASSPHRASE=third").ok("key", "passphrase", "--identity", link)
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v, %v", fi, err)
	}
	if opens("") || !opens("third") {
		t.Errorf("protected through a symlink: opens without %v, with the new one %v", opens(""), opens("third"))
	}
}
