package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// listDir returns the names of the files under dir, recursively.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, strings.TrimPrefix(p, dir))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestNewerIndexFileIsNotDamage: an index file whose magic names a
// version after this release's (as a newer lifeboat writes) is reported
// by check as written by a newer lifeboat, with the advice to upgrade and
// not to repair; repair index refuses and removes nothing; prune refuses
// and deletes no pack (it cannot tell which packs the file names); backup
// and restore stop with the same message rather than ignore its entries.
func TestNewerIndexFileIsNotDamage(t *testing.T) {
	t.Parallel()
	c, r, src, _ := backedUpSmallTree(t)
	ctx := context.Background()

	w := openWriter(t, r)
	ids, err := w.ListMeta(ctx, chunkstore.KindIndex)
	if err != nil || len(ids) != 1 {
		t.Fatalf("index files %v (%v), want one", ids, err)
	}
	plain, err := w.LoadMeta(ctx, chunkstore.KindIndex, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	copy(plain, "LBIDX3\n\x00")
	newer, err := w.SaveMeta(ctx, chunkstore.KindIndex, plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(r.path, chunkstore.IndexPrefix, ids[0].String())); err != nil {
		t.Fatal(err)
	}
	name := chunkstore.IndexPrefix + newer.String()
	before := listDir(t, r.path)

	res := c.run(r.reader("check", "--no-cache")...)
	if res.code != 1 || !strings.Contains(res.stdout, "problem: "+name+": written by a newer lifeboat: upgrade") || !strings.Contains(res.stdout, "hint: objects written by a newer lifeboat") {
		t.Errorf("check: exit %d, want 1 naming %s as written by a newer lifeboat\nstdout:\n%s\nstderr:\n%s", res.code, name, res.stdout, res.stderr)
	}
	if strings.Contains(res.stdout, "'lifeboat repair index' replaces") || strings.Contains(res.stdout, "'lifeboat repair snapshots' rewrites them") {
		t.Errorf("check advises a repair for an index file of a newer lifeboat (or the data it indexes):\n%s", res.stdout)
	}
	for _, args := range [][]string{
		r.writer("repair", "index"),
		r.writer("repair", "index", "--dry-run"),
		r.reader("prune"),
		r.reader("prune", "--dry-run"),
		r.writer("backup", src),
		r.reader("restore", "latest", "--target", filepath.Join(c.dir, "dst")),
	} {
		res := c.run(append(args, "--no-cache")...)
		if res.code == 0 || !strings.Contains(res.stderr, name) || !strings.Contains(res.stderr, "written by a newer lifeboat: upgrade") {
			t.Errorf("lifeboat %s with an index file of a newer lifeboat: exit %d, want an error naming %s and the upgrade\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.code, name, res.stdout, res.stderr)
		}
	}
	if after := listDir(t, r.path); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("objects changed with an index file of a newer lifeboat:\nbefore %v\nafter  %v", before, after)
	}
}

// TestNewerManifestAndPackAreNotDamage: a snapshot manifest of a later
// version is reported by check as written by a newer lifeboat, not as
// damaged (no advice to forget it), prune refuses while it is there and
// repair snapshots names it with the advice to upgrade, not to forget it;
// an unindexed pack of a later pack format is neither deleted by prune
// nor dropped by repair index: both refuse, naming it.
func TestNewerManifestAndPackAreNotDamage(t *testing.T) {
	t.Parallel()
	c, r, _, _ := backedUpSmallTree(t)
	ctx := context.Background()
	w := openWriter(t, r)

	snap, err := w.SaveMeta(ctx, chunkstore.KindSnapshot, []byte(`{"version":2,"time":"2030-01-01T00:00:00Z","host":"h","tree":{"root":"x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	name := chunkstore.SnapshotsPrefix + snap.String()
	res := c.run(r.reader("check", "--no-cache")...)
	if res.code != 1 || !strings.Contains(res.stdout, "problem: "+name+": ") || !strings.Contains(res.stdout, "written by a newer lifeboat: upgrade") {
		t.Errorf("check with a newer manifest: exit %d, want 1 naming %s as written by a newer lifeboat\nstdout:\n%s\nstderr:\n%s", res.code, name, res.stdout, res.stderr)
	}
	if strings.Contains(res.stdout, "lifeboat forget") {
		t.Errorf("check advises forgetting a manifest of a newer lifeboat:\n%s", res.stdout)
	}
	res = c.run(r.reader("prune", "--no-cache")...)
	if res.code == 0 || !strings.Contains(res.stderr, "written by a newer lifeboat: upgrade") {
		t.Errorf("prune with a newer manifest: exit %d, want a refusal naming the upgrade\nstderr:\n%s", res.code, res.stderr)
	}
	res = c.run(r.reader("repair", "snapshots", "--no-cache")...)
	if res.code != 1 || !strings.Contains(res.stderr, name) || !strings.Contains(res.stderr, "written by a newer lifeboat") || strings.Contains(res.stderr, "lifeboat forget") {
		t.Errorf("repair snapshots with a newer manifest: exit %d, want 1 naming %s as a newer lifeboat's, without advising to forget it\nstdout:\n%s\nstderr:\n%s", res.code, name, res.stdout, res.stderr)
	}
	if err := os.Remove(filepath.Join(r.path, name)); err != nil {
		t.Fatal(err)
	}

	pack := append([]byte("LBPACK2\n"), make([]byte, 200)...)
	pname := chunkstore.PackName(chunkstore.Hash(pack))
	ppath := filepath.Join(r.path, pname)
	if err := os.MkdirAll(filepath.Dir(ppath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ppath, pack, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{r.reader("prune"), r.writer("repair", "index")} {
		res := c.run(append(args, "--no-cache")...)
		if res.code == 0 || !strings.Contains(res.stderr, pname) || !strings.Contains(res.stderr, "written by a newer lifeboat: upgrade") {
			t.Errorf("lifeboat %s with a pack of a newer lifeboat: exit %d, want an error naming %s and the upgrade\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.code, pname, res.stdout, res.stderr)
		}
		if _, err := os.Stat(ppath); err != nil {
			t.Fatalf("lifeboat %s removed a pack of a newer lifeboat: %v", args[0], err)
		}
	}
}

// TestCheckStrayObjects: an object whose name lifeboat never writes,
// under index/, keys/, snapshots/ or data/, is a problem check names
// with what to do, not only a log warning.
func TestCheckStrayObjects(t *testing.T) {
	t.Parallel()
	c, r, _, _ := backedUpSmallTree(t)
	strays := []string{"index/notes.txt", "keys/old-key.bak", "snapshots/0123", "data/00/stray"}
	for _, name := range strays {
		p := filepath.Join(r.path, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("not lifeboat's"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := c.run(r.writer("check")...)
	if res.code != 1 || !strings.Contains(res.stderr, "check found 4 problems") {
		t.Errorf("check with %d stray objects: exit %d, want 1 and 4 problems\nstdout:\n%s\nstderr:\n%s", len(strays), res.code, res.stdout, res.stderr)
	}
	for _, name := range strays {
		dir := name[:strings.Index(name, "/")+1]
		if want := "problem: " + name + ": unexpected object under " + dir + ": "; !strings.Contains(res.stdout, want) || !strings.Contains(res.stdout, "move it out of the repository") {
			t.Errorf("check does not report %s as a problem with what to do (%q):\n%s", name, want, res.stdout)
		}
	}
	if strings.Contains(res.stdout, "lifeboat repair index") {
		t.Errorf("check advises repair index, which leaves stray objects alone:\n%s", res.stdout)
	}
}
