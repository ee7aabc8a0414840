package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestCopyCLI: init --from-repo, copy filtered by host, copy again (the
// first is already there), a restore of the copy with the destination's
// identity, copied_from in snapshots --json, and the usage and
// credential errors.
func TestCopyCLI(t *testing.T) {
	c := newCLI(t)
	src := initRepo(t, c, "src")
	trees := map[string]fixture.Tree{
		"h1": {"a.txt": {Content: []byte("one\n")}, "big.bin": {Content: fixture.Random(1, 3<<20)}},
		"h2": {"b.txt": {Content: []byte("two\n")}, "sub": {Dir: true}, "sub/c.bin": {Content: fixture.Random(2, 1<<20)}},
	}
	for _, h := range []string{"h1", "h2"} {
		fixture.Create(t, filepath.Join(c.dir, h), trees[h])
		c.ok(src.writer("backup", "--host", h, filepath.Join(c.dir, h))...)
	}
	type snapJSON struct {
		ID         string `json:"id"`
		Host       string `json:"host"`
		CopiedFrom *struct {
			Repository string `json:"repository"`
			Snapshot   string `json:"snapshot"`
		} `json:"copied_from"`
	}
	srcSnaps := decodeJSON[[]snapJSON](t, c.ok(src.writer("snapshots", "--json")...).stdout)

	out := c.ok("init", "--repo", filepath.Join(c.dir, "dst"), "--identity-out", "dst-identity.txt", "--key-out", "dst-writer.key",
		"--from-repo", src.path, "--from-key", src.key).stdout
	if !strings.Contains(out, "chunking:    shared with repository") {
		t.Errorf("init --from-repo does not say it shares the chunking:\n%s", out)
	}
	dst := repo{path: filepath.Join(c.dir, "dst"), identity: filepath.Join(c.dir, "dst-identity.txt"), key: filepath.Join(c.dir, "dst-writer.key")}
	// The source by environment, the destination by its writer key.
	fromEnv := c.with("LIFEBOAT_FROM_REPO="+src.path, "LIFEBOAT_FROM_IDENTITY="+src.identity)
	out = fromEnv.ok(dst.writer("copy", "--host", "h1")...).stdout
	if !strings.Contains(out, "1 snapshot copied, 0 already there, 0 failed") {
		t.Errorf("copy --host h1:\n%s", out)
	}
	type copyOut struct {
		Source   string `json:"source"`
		ID       string `json:"id"`
		Existing bool   `json:"existing"`
		Host     string `json:"host"`
		Bytes    int64  `json:"bytes_read"`
		Error    string `json:"error"`
	}
	res := decodeJSON[[]copyOut](t, fromEnv.ok(dst.writer("copy", "--json")...).stdout)
	if len(res) != 2 || !res[0].Existing || res[0].Host != "h1" || res[1].Existing || res[1].Host != "h2" ||
		res[1].Bytes != 1<<20+4 || res[1].Error != "" {
		t.Fatalf("copy --json: %+v", res)
	}
	dstSnaps := decodeJSON[[]snapJSON](t, c.ok(dst.writer("snapshots", "--json")...).stdout)
	if len(dstSnaps) != 2 {
		t.Fatalf("destination has %d snapshots, want 2", len(dstSnaps))
	}
	for i, s := range dstSnaps {
		if s.CopiedFrom == nil || s.CopiedFrom.Snapshot != srcSnaps[i].ID || s.Host != srcSnaps[i].Host {
			t.Errorf("destination snapshot %d: %+v, want a copy of %+v", i, s, srcSnaps[i])
		}
	}
	target := filepath.Join(c.dir, "restored")
	c.ok(dst.reader("restore", "--host", "h2", "--target", target, "latest")...)
	fixture.Compare(t, trees["h2"], filepath.Join(target, c.dir, "h2"))
	// The source's identity cannot read the copy.
	c.fails(1, []string{"ls", "--repo", dst.path, "--identity", src.identity, "latest"}, "the identity is not a recipient")

	// init reads --from-repo from its flag only.
	if out := fromEnv.with("LIFEBOAT_FROM_KEY="+src.key).ok("init", "--repo", filepath.Join(c.dir, "plain"), "--identity-out", "p.id", "--key-out", "p.key").stdout; strings.Contains(out, "chunking:") {
		t.Errorf("init took LIFEBOAT_FROM_REPO from the environment:\n%s", out)
	}
	other := initRepo(t, c, "other")
	for _, e := range []struct {
		code int
		args []string
		want []string
	}{
		{2, dst.writer("copy"), []string{"--from-repo"}},
		{2, dst.writer("copy", "--from-repo", src.path), []string{"--from-identity (or LIFEBOAT_FROM_IDENTITY)"}},
		{1, dst.writer("copy", "--from-repo", src.path, "--from-key", src.key), []string{"needs the identity, --from-identity", src.key}},
		{1, other.writer("copy", "--from-repo", src.path, "--from-identity", src.identity), []string{"was not created from", "lifeboat init --repo DEST --from-repo " + src.path}},
		{2, src.writer("copy", "--from-repo", src.path, "--from-identity", src.identity), []string{"one repository"}},
		{1, dst.writer("copy", "--from-repo", src.path, "--from-identity", src.identity, "deadbeef"), []string{"no snapshot ID starts with"}},
		{1, dst.writer("copy", "--from-repo", filepath.Join(c.dir, "nowhere"), "--from-identity", src.identity), []string{"source", "nowhere"}},
		{1, []string{"init", "--repo", filepath.Join(c.dir, "new"), "--identity-out", "n.id", "--key-out", "n.key", "--from-repo", filepath.Join(c.dir, "nowhere"), "--from-key", src.key}, []string{"nowhere"}},
		{2, []string{"init", "--repo", filepath.Join(c.dir, "new"), "--identity-out", "n.id", "--key-out", "n.key", "--from-key", src.key}, []string{"--from-repo, which is missing"}},
	} {
		c.fails(e.code, e.args, e.want...)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "n.id")); err == nil {
		t.Error("init with an unreadable --from-repo left an identity file")
	}
	if snaps := decodeJSON[[]snapJSON](t, c.ok(other.writer("snapshots", "--json")...).stdout); len(snaps) != 0 {
		t.Errorf("a refused copy left %d snapshots", len(snaps))
	}
	// Nothing to copy is not an error.
	r := c.ok(dst.writer("copy", "--from-repo", src.path, "--from-identity", src.identity, "--host", "h9")...)
	if !strings.Contains(r.stderr, "holds no snapshot (filtered by host h9): nothing to copy") {
		t.Errorf("copy of nothing:\n%s", r.stderr)
	}
}

// TestCopyDamagedCLI: a flipped byte in the source's data fails the copy
// of the snapshot (exit 1, the pack named) and saves no snapshot.
func TestCopyDamagedCLI(t *testing.T) {
	c := newCLI(t)
	src := initRepo(t, c, "src")
	fixture.Create(t, filepath.Join(c.dir, "d"), fixture.Tree{"f.bin": {Content: fixture.Random(5, 2<<20)}})
	c.ok(src.writer("backup", filepath.Join(c.dir, "d"))...)
	dst := initRepo(t, c, "dst", "--from-repo", src.path, "--from-key", src.key)
	var pack string
	var size int64
	err := filepath.WalkDir(filepath.Join(src.path, "data"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if info, err := d.Info(); err == nil && info.Size() > size {
			pack, size = p, info.Size()
		}
		return nil
	})
	if err != nil || pack == "" {
		t.Fatalf("find the data pack: %v", err)
	}
	b, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	b[1000] ^= 0x10 // inside the 2 MiB file's first chunk
	if err := os.WriteFile(pack, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.fails(1, dst.writer("copy", "--from-repo", src.path, "--from-identity", src.identity),
		"NOT copied", filepath.Base(pack), "1 of 1 snapshot could not be copied")
	if !strings.Contains(r.stdout, "0 snapshots copied, 0 already there, 1 failed") {
		t.Errorf("copy summary:\n%s", r.stdout)
	}
	if out := c.ok(dst.writer("snapshots")...).stdout; !strings.Contains(out, "0 snapshots") {
		t.Errorf("a failed copy saved a snapshot:\n%s", out)
	}
}

// TestCopyUnreadableManifestCLI: a snapshot of the source whose manifest
// no longer reads back is not copied, and copy says so as it does for
// damaged data: exit 1, the snapshot counted as failed and, in --json,
// listed with its error. A nightly copy must not report success while
// the offsite copy misses it.
func TestCopyUnreadableManifestCLI(t *testing.T) {
	c := newCLI(t)
	src := initRepo(t, c, "src")
	d := filepath.Join(c.dir, "d")
	fixture.Create(t, d, fixture.Tree{"a": {Content: []byte("one\n")}})
	c.ok(src.writer("backup", d)...)
	fixture.Create(t, d, fixture.Tree{"b": {Content: []byte("two\n")}})
	c.ok(src.writer("backup", d)...)
	dst := initRepo(t, c, "dst", "--from-repo", src.path, "--from-key", src.key)
	manifests, err := filepath.Glob(filepath.Join(src.path, "snapshots", "*"))
	if err != nil || len(manifests) != 2 {
		t.Fatalf("manifests %v: %v", manifests, err)
	}
	damaged := filepath.Base(manifests[0])
	b, err := os.ReadFile(manifests[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(manifests[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	// The backups cached the manifests as they wrote them; the copy
	// must meet the damaged one.
	if err := os.RemoveAll(filepath.Join(c.dir, "cache")); err != nil {
		t.Fatal(err)
	}

	copyArgs := dst.writer("copy", "--from-repo", src.path, "--from-identity", src.identity)
	r := c.fails(1, copyArgs, "NOT copied", damaged[:8], "1 of 2 snapshots could not be copied")
	if !strings.Contains(r.stdout, "1 snapshot copied, 0 already there, 1 failed") {
		t.Errorf("copy summary:\n%s", r.stdout)
	}
	r = c.run(append(copyArgs, "--json")...)
	if r.code != 1 {
		t.Fatalf("copy --json: exit %d, want 1\n%s", r.code, r.stderr)
	}
	got := decodeJSON[[]copyJSON](t, r.stdout)
	failed := 0
	for _, j := range got {
		if j.Error != "" {
			failed++
			if j.Source != damaged {
				t.Errorf("copy --json: snapshot %s failed, want only %s", j.Source, damaged)
			}
		}
	}
	if len(got) != 2 || failed != 1 {
		t.Errorf("copy --json: %+v; want both snapshots, the damaged one with its error", got)
	}
}
