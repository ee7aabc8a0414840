package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestRewriteCLI: a key file is removed from the snapshots with
// rewrite --forget, prune deletes it, and neither ls nor find sees it
// any more; the usage and credential errors.
func TestRewriteCLI(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	dir := filepath.Join(c.dir, "d")
	fixture.Create(t, dir, fixture.Tree{
		"app.conf":      {Content: []byte("port = 1\n")},
		"certs":         {Dir: true},
		"certs/tls.pem": {Content: fixture.Random(3, 3000)},
	})
	c.ok(r.writer("backup", "--host", "h1", dir)...)
	c.ok(r.writer("backup", "--host", "h2", dir)...)

	out := c.ok(r.reader("rewrite", "--dry-run", "--exclude", "*.pem")...).stdout
	if !strings.Contains(out, "would remove 1 path:\n  "+dir+"/certs/tls.pem") || !strings.Contains(out, "2 snapshots looked at, 2 held paths to remove") {
		t.Errorf("dry run:\n%s", out)
	}
	type rewritten struct {
		Rewritten []struct {
			Original  string   `json:"original"`
			Rewritten string   `json:"rewritten"`
			Removed   []string `json:"removed"`
			Forgotten bool     `json:"forgotten"`
		} `json:"rewritten"`
	}
	res := decodeJSON[rewritten](t, c.ok(r.reader("rewrite", "--host", "h1", "--exclude", "*.pem", "--forget", "--json")...).stdout)
	if len(res.Rewritten) != 1 || !res.Rewritten[0].Forgotten || len(res.Rewritten[0].Removed) != 1 {
		t.Fatalf("rewrite --host h1 --forget: %+v", res)
	}
	// h2's snapshot still holds the file; then it is rewritten too.
	c.ok(r.reader("find", "--host", "h2", "tls.pem")...)
	c.ok(r.reader("rewrite", "--exclude", "*.pem", "--forget")...)
	c.ok(r.reader("prune")...)
	c.fails(1, r.reader("find", "tls.pem"), "nothing matches tls.pem in 2 snapshots")
	ls := c.ok(r.reader("ls", "--host", "h1", "latest")...).stdout
	if strings.Contains(ls, "tls.pem") || !strings.Contains(ls, "app.conf") {
		t.Errorf("ls of the rewritten snapshot:\n%s", ls)
	}
	snaps := decodeJSON[[]struct {
		Tags       []string `json:"tags"`
		Original   string   `json:"original"`
		OriginalBy string   `json:"original_by"`
	}](t, c.ok(r.writer("snapshots", "--json")...).stdout)
	if len(snaps) != 2 || snaps[0].Original == "" || snaps[0].OriginalBy != "rewrite" || strings.Join(snaps[0].Tags, ",") != "rewritten" {
		t.Errorf("snapshots after the rewrites: %+v", snaps)
	}
	c.ok(r.reader("check", "--read-data")...)
	if w := c.ok(r.reader("rewrite", "--dry-run", "--exclude", "certs/tls.pem")...).stderr; !strings.Contains(w, "it matches nothing (write /certs/tls.pem?)") {
		t.Errorf("a relative path pattern gave no warning:\n%s", w)
	}

	for _, e := range []struct {
		code int
		args []string
		want string
	}{
		{2, r.reader("rewrite"), "rewrite needs --exclude"},
		{2, r.reader("rewrite", "--exclude", "[x"), "--exclude"},
		{2, r.reader("rewrite", "--exclude", ""), "empty pattern"},
		{1, r.writer("rewrite", "--exclude", "*.pem"), "needs the identity"},
		{1, r.reader("rewrite", "--exclude", "*.pem", "beef"), "no snapshot ID starts with"},
		{1, r.reader("rewrite", "--exclude", "*.pem", "--host", "nobody"), "no matching snapshot (filtered by host nobody)"},
	} {
		c.fails(e.code, e.args, e.want)
	}
}

// TestRewritePruneErasesData: after 'rewrite --forget', the prune the
// output names deletes the removed file's data, even where it shares a
// pack with data that stays (a key file backed up with the rest of a
// directory: the usual case). The output said 'lifeboat prune', whose
// default --max-unused 10% leaves a small file inside a large pack:
// the secret stayed in the repository, readable with the identity,
// while find and ls no longer showed it.
func TestRewritePruneErasesData(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	dir := filepath.Join(c.dir, "d")
	secret := []byte("-----BEGIN PRIVATE KEY-----\nnot for backups\n")
	fixture.Create(t, dir, fixture.Tree{
		"data.bin": {Content: fixture.Random(5, 1<<20)},
		"id.pem":   {Content: secret},
	})
	c.ok(r.writer("backup", dir)...)
	if !indexHolds(t, r, secret) {
		t.Fatal("the key file's data is not indexed after the backup: the test finds nothing")
	}
	out := c.ok(r.reader("rewrite", "--exclude", "*.pem", "--forget")...).stdout
	i := strings.Index(out, "'lifeboat prune")
	if i < 0 {
		t.Fatalf("rewrite --forget names no prune to run:\n%s", out)
	}
	cmd := out[i+1:]
	cmd = cmd[:strings.Index(cmd, "'")]
	c.ok(r.reader(strings.Fields(cmd)[1:]...)...)
	if indexHolds(t, r, secret) {
		t.Fatalf("after rewrite --forget and %q the key file's data is still in the repository:\n%s", cmd, out)
	}
	c.ok(r.reader("check", "--read-data")...)
}

// indexHolds reports whether the index of local repository r lists the
// data blob of content (one chunk), read with the writer key.
func indexHolds(t *testing.T, r repo, content []byte) bool {
	t.Helper()
	ctx := context.Background()
	repo := openWriter(t, r)
	if err := repo.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	_, ok := repo.Index().Lookup(repo.BlobID(content))
	return ok
}
