package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestKeyCLI: an incident responder joins and another leaves. 'key add'
// gives the new identity the repository and a new writer key; the old
// writer key can no longer back up; 'prune --rewrap' makes the old
// backups readable by the new identity; 'key remove' locks the old
// identity out. Then the usage errors and refusals, each changing
// nothing.
func TestKeyCLI(t *testing.T) {
	c := newCLI(t)
	a := initRepo(t, c, "repo")
	dir := filepath.Join(c.dir, "d")
	content := bytes.Repeat([]byte("rotate me\n"), 50000)
	fixture.Create(t, dir, fixture.Tree{"f": {Content: content}})
	c.ok(a.writer("backup", dir)...)

	bFile, bRcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	b := repo{path: a.path, identity: filepath.Join(c.dir, "b-identity.txt"), key: filepath.Join(c.dir, "writer-gen1.key")}
	if err := os.WriteFile(b.identity, bFile, 0o600); err != nil {
		t.Fatal(err)
	}
	aRcpt := strings.TrimSpace(c.ok(a.reader("key", "list", "--json")...).stdout)
	type listOut struct {
		Generation    uint32         `json:"generation"`
		Recipients    []string       `json:"recipients"`
		KeyGeneration uint32         `json:"key_generation"`
		Stale         bool           `json:"stale_key"`
		Packs         map[string]int `json:"packs_by_generation"`
		OlderPacks    int            `json:"older_packs"`
	}
	l := decodeJSON[listOut](t, aRcpt)
	if l.Generation != 0 || len(l.Recipients) != 1 || l.Packs["0"] == 0 {
		t.Fatalf("key list of a new repository: %+v", l)
	}
	aRcpt = l.Recipients[0]

	out := c.ok(a.reader("key", "add", "--recipient", bRcpt, "--key-out", b.key)...).stdout
	if !strings.Contains(out, "recipients of generation 1") || !strings.Contains(out, "prune --rewrap") {
		t.Errorf("key add:\n%s", out)
	}
	c.fails(1, a.writer("backup", dir), "writer key is of generation 0", "stale key")
	l = decodeJSON[listOut](t, c.ok(a.writer("key", "list", "--json")...).stdout)
	if !l.Stale || l.Generation != 1 || l.KeyGeneration != 0 {
		t.Errorf("key list with the old writer key: %+v, want it stale", l)
	}
	fixture.Create(t, dir, fixture.Tree{"g": {Content: []byte("after the change\n")}})
	c.ok(b.writer("backup", dir)...)

	// B reads the new backup but not the old one until the rewrap.
	l = decodeJSON[listOut](t, c.ok(b.reader("key", "list", "--json")...).stdout)
	if l.Generation != 1 || l.OlderPacks == 0 || l.Packs["1"] == 0 {
		t.Fatalf("key list before the rewrap: %+v", l)
	}
	snaps := decodeJSON[[]struct {
		ID string `json:"id"`
	}](t, c.ok(b.writer("snapshots", "--json")...).stdout)
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots", len(snaps))
	}
	c.fails(1, b.reader("restore", snaps[0].ID, "--target", filepath.Join(c.dir, "early")), "generation 0")
	c.fails(1, b.reader("prune", "--rewrap"), "generation 0", "prune --rewrap")
	c.fails(1, b.reader("key", "remove", "--recipient", aRcpt, "--key-out", filepath.Join(c.dir, "early.key")), "wrapped only to recipients this removes")
	out = c.ok(a.reader("prune", "--rewrap")...).stdout
	if !strings.Contains(out, "packs written for older recipients") {
		t.Errorf("prune --rewrap:\n%s", out)
	}
	l = decodeJSON[listOut](t, c.ok(b.reader("key", "list", "--json")...).stdout)
	if l.OlderPacks != 0 || l.Packs["0"] != 0 {
		t.Fatalf("key list after the rewrap: %+v", l)
	}
	target := filepath.Join(c.dir, "t")
	c.ok(b.reader("restore", snaps[0].ID, "--target", target)...)
	if got, err := os.ReadFile(filepath.Join(target, dir, "f")); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("B's restore of the first backup: %v", err)
	}

	// B removes A.
	gen2 := filepath.Join(c.dir, "writer-gen2.key")
	c.ok(b.reader("key", "remove", "--recipient", aRcpt, "--key-out", gen2)...)
	c.fails(1, a.reader("snapshots"), "not a recipient")
	c.fails(1, b.writer("backup", dir), "writer key is of generation 1")
	c.ok("backup", "--repo", a.path, "--key", gen2, dir)
	c.ok(b.reader("prune", "--rewrap")...)
	c.ok(b.reader("check", "--read-data")...)
	c.ok(b.reader("key", "writer-key", "--key-out", filepath.Join(c.dir, "again.key"))...)
	again, err := os.ReadFile(filepath.Join(c.dir, "again.key"))
	if err != nil || !strings.Contains(string(again), `"generation": 2`) {
		t.Fatalf("key writer-key wrote %s (%v)", again, err)
	}

	// Refusals change nothing: the generation stays 2.
	x := filepath.Join(c.dir, "x.key")
	for _, e := range []struct {
		code int
		args []string
		want string
	}{
		{2, b.reader("key", "add", "--recipient", aRcpt), "--key-out is required"},
		{2, b.reader("key", "add", "--key-out", x), "give at least one --recipient"},
		{2, b.reader("key", "add", "--recipient", "age1bogus", "--key-out", x), "--recipient"},
		{1, b.reader("key", "add", "--recipient", bRcpt, "--key-out", x), "already a recipient"},
		{1, b.reader("key", "add", "--recipient", " "+bRcpt+"\n", "--key-out", x), "already a recipient"},
		{2, b.reader("key", "add", "--recipient", aRcpt, "--recipient", aRcpt, "--key-out", x), "given twice"},
		{2, b.reader("key", "add", "--recipient", aRcpt+"\n"+bRcpt, "--key-out", x), "is not one public key"},
		{1, b.reader("key", "remove", "--recipient", aRcpt, "--key-out", x), "is not a recipient"},
		{1, b.reader("key", "remove", "--recipient", bRcpt, "--key-out", x), "would leave no recipient"},
		{1, b.reader("key", "add", "--recipient", aRcpt, "--key-out", gen2), "already exists"},
		{1, b.writer("key", "add", "--recipient", aRcpt, "--key-out", x), "needs the identity"},
		{1, a.reader("key", "add", "--recipient", aRcpt, "--key-out", x), "not a recipient"},
	} {
		c.fails(e.code, e.args, e.want)
	}
	if _, err := os.Stat(x); !os.IsNotExist(err) {
		t.Errorf("a refused change left %s behind (%v)", x, err)
	}
	if l := decodeJSON[listOut](t, c.ok(b.reader("key", "list", "--json")...).stdout); l.Generation != 2 || len(l.Recipients) != 1 {
		t.Errorf("after the refusals: %+v", l)
	}
}

// TestPlantedEnvelopeReported: an object under keys/ named like an
// envelope but not signed by the repository's key signer (what a writer
// key holder with write access to keys/ could plant) is ignored when the
// repository is opened, but check reports it (exit 1), key list marks it,
// and key cleanup removes it.
func TestPlantedEnvelopeReported(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	junk := bytes.Repeat([]byte("not an envelope "), 64)
	sum := sha256.Sum256(junk)
	planted := "keys/" + hex.EncodeToString(sum[:]) + ".g7"
	if err := os.WriteFile(filepath.Join(r.path, planted), junk, 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok(r.writer("snapshots")...)
	if res := c.run(r.writer("check")...); res.code != 1 || !strings.Contains(res.stdout, planted) || !strings.Contains(res.stdout, "not signed") || !strings.Contains(res.stdout, "'lifeboat key cleanup' removes it") {
		t.Errorf("check of a repository with a planted envelope: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if out := c.ok(r.reader("key", "list")...).stdout; !strings.Contains(out, "DOES NOT VERIFY") {
		t.Errorf("key list does not mark the planted envelope:\n%s", out)
	}
	type cleanup struct {
		Older      int `json:"removed_older"`
		Unverified []struct {
			Name string `json:"name"`
		} `json:"removed_unverified"`
	}
	o := decodeJSON[cleanup](t, c.ok(r.reader("key", "cleanup", "--json")...).stdout)
	if o.Older != 0 || len(o.Unverified) != 1 || o.Unverified[0].Name != planted {
		t.Errorf("key cleanup --json: %+v, want the planted envelope removed", o)
	}
	c.ok(r.reader("check")...)
	c.ok(r.reader("snapshots")...)
}

// TestChangeRecipientsLegacy: a repository written before recipients
// were normalised may list one twice, or several in one entry (init
// --recipient "$(cat recipients.txt)"); removing one removes every copy
// of it, and the others stay, each on its own.
func TestChangeRecipientsLegacy(t *testing.T) {
	var r [3]string
	for i := range r {
		_, rcpt, err := chunkstore.NewIdentity(false)
		if err != nil {
			t.Fatal(err)
		}
		r[i] = rcpt
	}
	stored := []string{r[0], " " + r[0], "# team\n" + r[1] + "\n" + r[2] + "\n"}
	got, err := changeRecipients(stored, "remove", []string{r[0]})
	if err != nil || !slices.Equal(got, []string{r[1], r[2]}) {
		t.Errorf("remove %s from %q: %q, %v; want the two others", r[0], stored, got, err)
	}
	got, err = changeRecipients(stored, "remove", []string{r[2]})
	if err != nil || !slices.Equal(got, []string{r[0], r[1]}) {
		t.Errorf("remove the last of a multi-line entry: %q, %v", got, err)
	}
	if _, err := changeRecipients(stored, "add", []string{r[1]}); err == nil || !strings.Contains(err.Error(), "already a recipient") {
		t.Errorf("add one already in a multi-line entry: %v", err)
	}
}

// TestInitRecipientsRefused: init refuses a recipient given twice, the
// lines of a recipients file as one, and a secret key, which it does not
// repeat; nothing is created.
func TestInitRecipientsRefused(t *testing.T) {
	c := newCLI(t)
	file, rcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	var secret string
	for _, l := range strings.Split(string(file), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			secret = l
		}
	}
	r := filepath.Join(c.dir, "repo")
	init := func(rcpts ...string) []string {
		args := []string{"init", "--repo", r, "--key-out", filepath.Join(c.dir, "w.key")}
		for _, x := range rcpts {
			args = append(args, "--recipient", x)
		}
		return args
	}
	c.fails(2, init(rcpt, " "+rcpt), "given twice")
	c.fails(2, init("# ops\n"+rcpt+"\n"), "is not one public key")
	res := c.fails(2, init(secret), "is a secret key", "age-keygen -y")
	if strings.Contains(res.stderr+res.stdout, secret) {
		t.Errorf("the secret key is repeated:\n%s", res.stderr)
	}
	_, pqRcpt, err := chunkstore.NewIdentity(true)
	if err != nil {
		t.Fatal(err)
	}
	c.fails(2, init(rcpt, pqRcpt), "cannot be mixed")
	if _, err := os.Stat(r); !os.IsNotExist(err) {
		t.Errorf("a refused init created %s (%v)", r, err)
	}
	// An output file that cannot be created leaves no repository either.
	c.fails(1, []string{"init", "--repo", r, "--identity-out", filepath.Join(c.dir, "no-such-dir", "id.txt"), "--key-out", filepath.Join(c.dir, "w.key")}, "no-such-dir")
	if _, err := os.Stat(r); !os.IsNotExist(err) {
		t.Errorf("an init whose identity could not be written created %s (%v)", r, err)
	}
	c.ok(init(" " + rcpt + "\n")...)
	id := filepath.Join(c.dir, "id.txt")
	if err := os.WriteFile(id, file, 0o600); err != nil {
		t.Fatal(err)
	}
	c.fails(2, []string{"key", "add", "--repo", r, "--identity", id, "--recipient", pqRcpt, "--key-out", filepath.Join(c.dir, "w2.key")}, "cannot be mixed")
}

// TestKeyRemoveForce: --force removes the only recipient of packs not
// rewrapped yet, and the remaining identity then cannot read them:
// check names the generation, and exits 1.
func TestKeyRemoveForce(t *testing.T) {
	c := newCLI(t)
	a := initRepo(t, c, "repo")
	dir := filepath.Join(c.dir, "d")
	fixture.Create(t, dir, fixture.Tree{"f": {Content: []byte("only A can read this\n")}})
	c.ok(a.writer("backup", dir)...)
	bFile, bRcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	b := repo{path: a.path, identity: filepath.Join(c.dir, "b.txt"), key: filepath.Join(c.dir, "w1.key")}
	if err := os.WriteFile(b.identity, bFile, 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok(a.reader("key", "add", "--recipient", bRcpt, "--key-out", b.key)...)
	var aRcpt string
	for _, l := range strings.Split(c.ok(a.reader("key", "list")...).stdout, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "age1") && l != bRcpt {
			aRcpt = l
		}
	}
	if aRcpt == "" {
		t.Fatal("key list shows no recipient besides B")
	}
	c.fails(1, b.reader("key", "remove", "--recipient", aRcpt, "--key-out", filepath.Join(c.dir, "w2.key")), "generation 0", "--force")
	// Nor when the index does not list every pack: those of a lost or
	// damaged index file may be A's alone.
	idx, err := filepath.Glob(filepath.Join(a.path, "index", "*"))
	if err != nil || len(idx) == 0 {
		t.Fatalf("index files %v: %v", idx, err)
	}
	orig, err := os.ReadFile(idx[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, damage := range []string{"missing", "flipped"} {
		if damage == "missing" {
			err = os.Remove(idx[0])
		} else {
			b := bytes.Clone(orig)
			b[len(b)/2] ^= 1
			err = os.WriteFile(idx[0], b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		want := "no index file lists"
		if damage == "flipped" {
			want = "could not be read"
		}
		// (A damaged index file is warned about first.)
		r := c.run(b.reader("key", "remove", "--no-cache", "--recipient", aRcpt, "--key-out", filepath.Join(c.dir, "w2.key"))...)
		if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "repair index") || !strings.Contains(r.stderr, "--force") {
			t.Errorf("key remove with the index file %s: exit %d\n%s", damage, r.code, r.stderr)
		}
	}
	if err := os.WriteFile(idx[0], orig, 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok(b.reader("key", "remove", "--force", "--recipient", aRcpt, "--key-out", filepath.Join(c.dir, "w2.key"))...)
	r := c.run(b.reader("check", "--read-data")...)
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "generation 0") {
		t.Fatalf("check after a forced removal: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out := c.ok(b.reader("key", "cleanup")...).stdout
	if !strings.Contains(out, "removed 0 key envelopes") {
		t.Errorf("key cleanup with nothing to remove:\n%s", out)
	}
}

// TestRepositoryReplacedOrCreatedAgain: an identity whose cache saw a
// repository refuses another one presented at the same place (exit 1,
// naming the file to remove), unless 'lifeboat init' created it there
// on this machine.
func TestRepositoryReplacedOrCreatedAgain(t *testing.T) {
	c := newCLI(t)
	a := initRepo(t, c, "repo")
	c.ok(a.reader("snapshots")...) // the cache now knows the repository
	// Replaced behind this machine's back: another repository for the
	// same identity, made with another cache.
	if err := os.RemoveAll(a.path); err != nil {
		t.Fatal(err)
	}
	idFile, err := os.ReadFile(a.identity)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(idFile), "# public key: ")
	recipient, _, _ := strings.Cut(rest, "\n")
	if !ok || !strings.HasPrefix(recipient, "age1") {
		t.Fatalf("no public key in %s", a.identity)
	}
	other := c.with("XDG_CACHE_HOME=" + filepath.Join(c.dir, "elsewhere"))
	other.ok("init", "--repo", a.path, "--recipient", recipient, "--key-out", filepath.Join(c.dir, "k2"))
	c.fails(1, a.reader("snapshots"), "this machine saw", "rm ")

	// Created again here, by this machine: no complaint.
	if err := os.RemoveAll(a.path); err != nil {
		t.Fatal(err)
	}
	c.ok("init", "--repo", a.path, "--recipient", recipient, "--key-out", filepath.Join(c.dir, "k3"))
	c.ok(a.reader("snapshots")...)
}

// TestPruneRewrapStaleIdentity: prune --rewrap with an identity that
// opens only an older generation's key envelope (left by an interrupted
// change of recipients) cannot wrap packs to the current recipients: it
// exits 1 saying how many packs it could not rewrap and which identity
// is needed, dry run or not, instead of rewrapping nothing and exiting 0.
func TestPruneRewrapStaleIdentity(t *testing.T) {
	t.Parallel()
	c, r, _, _ := backedUpSmallTree(t)
	other := addOtherIdentity(t, c, r)
	gen1, err := filepath.Glob(filepath.Join(r.path, "keys", "*"))
	if err != nil || len(gen1) != 1 {
		t.Fatalf("key envelopes %v (%v), want one", gen1, err)
	}
	env, err := os.ReadFile(gen1[0])
	if err != nil {
		t.Fatal(err)
	}
	c.ok("key", "remove", "--force", "--recipient", identityRecipient(t, r.identity), "--key-out", filepath.Join(c.dir, "gen2.key"), "--repo", r.path, "--identity", other.identity)
	// As if the removal had stopped before removing the older envelope.
	if err := os.WriteFile(gen1[0], env, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{r.reader("prune", "--rewrap", "--dry-run"), r.reader("prune", "--rewrap")} {
		c.fails(1, args, "generation 1", "generation 2", "cannot wrap the", "packs written for older recipients", "with an identity of the current recipients")
	}
}

// fullDir mounts a small tmpfs at a new directory and fills it, so that
// writing a file there fails with ENOSPC; free removes the filler.
func fullDir(t *testing.T, c *cli) (dir string, free func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root")
	}
	dir = filepath.Join(c.dir, "full")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	for {
		if _, err = f.Write(block); err != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
	}
	return dir, func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWriterKeyOnFullDisk: when the writer key cannot be written (its
// disk is full) after 'key add' has changed the recipients, or after
// 'init' has created the repository, the command exits 1 saying that the
// repository changed, and how to get the writer key: 'key writer-key'
// into the same path, which works once there is space (the incomplete
// file is removed, not left to block it), and its key backs up.
func TestWriterKeyOnFullDisk(t *testing.T) {
	c := newCLI(t)
	a := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	fixture.Create(t, src, fixture.Tree{"f": {Content: []byte("full disk\n")}})
	full, free := fullDir(t, c)
	gone := func(p string) {
		t.Helper()
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind (%v): 'key writer-key --key-out %s' would refuse it", p, err, p)
		}
	}

	_, rcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	gen1 := filepath.Join(full, "gen1.key")
	c.fails(1, a.reader("key", "add", "--recipient", rcpt, "--key-out", gen1),
		"no space left on device", "generation 1", "older writer keys are refused", "lifeboat key writer-key --key-out "+gen1)
	gone(gen1)

	b := repo{path: filepath.Join(c.dir, "repo-b"), identity: filepath.Join(c.dir, "b-identity.txt"), key: filepath.Join(full, "b.key")}
	c.fails(1, []string{"init", "--repo", b.path, "--identity-out", b.identity, "--key-out", b.key},
		"no space left on device", "was created", "lifeboat key writer-key --key-out "+b.key)
	gone(b.key)

	free()
	c.ok(a.reader("key", "writer-key", "--key-out", gen1)...)
	a.key = gen1
	c.ok(a.writer("backup", src)...)
	c.ok(b.reader("key", "writer-key", "--key-out", b.key)...)
	c.ok(b.writer("backup", src)...)
}
