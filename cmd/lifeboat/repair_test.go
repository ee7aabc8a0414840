package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestRepairIndexCLI: an index file rotted on disk makes check report it
// and prune refuse, pointing at 'repair index'; repair (a dry run first,
// then for real, with the writer key) removes it and indexes its packs
// again, after which check is clean, prune runs and the snapshot restores.
func TestRepairIndexCLI(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	tree := smallTree()
	fixture.Create(t, src, tree)
	c.ok(r.writer("backup", src)...)

	idx, err := filepath.Glob(filepath.Join(r.path, "index", "*"))
	if err != nil || len(idx) != 1 {
		t.Fatalf("index files %v (%v), want one", idx, err)
	}
	b, err := os.ReadFile(idx[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(idx[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	name := "index/" + filepath.Base(idx[0])
	// Both also log a warning about the file first, so not c.fails.
	for _, args := range [][]string{r.reader("check"), r.reader("prune")} {
		res := c.run(append(args, "--no-cache")...)
		if all := res.stdout + res.stderr; res.code != 1 || !strings.Contains(all, name) || !strings.Contains(all, "lifeboat repair index") {
			t.Errorf("lifeboat %s with a damaged index file: exit %d, want 1 naming %s and 'lifeboat repair index'\nstdout:\n%s\nstderr:\n%s", args[0], res.code, name, res.stdout, res.stderr)
		}
	}

	dry := c.ok(append(r.writer("repair", "index", "--dry-run"), "--no-cache")...).stdout
	for _, want := range []string{"damaged index file " + name + ": would be removed", "would be indexed", "dry run: nothing changed"} {
		if !strings.Contains(dry, want) {
			t.Errorf("repair index --dry-run output lacks %q:\n%s", want, dry)
		}
	}
	if _, err := os.Stat(idx[0]); err != nil {
		t.Fatalf("a dry run removed the damaged index file: %v", err)
	}
	out := c.ok(append(r.writer("repair", "index"), "--no-cache")...).stdout
	for _, want := range []string{"damaged index file " + name + ": removed", "verified and indexed", "index rewritten: 1 files written, 1 removed"} {
		if !strings.Contains(out, want) {
			t.Errorf("repair index output lacks %q:\n%s", want, out)
		}
	}
	if again := c.ok(r.writer("repair", "index")...).stdout; !strings.Contains(again, "nothing to repair") {
		t.Errorf("a second repair:\n%s", again)
	}
	c.ok(r.reader("check", "--read-data")...)
	c.ok(r.reader("prune")...)
	dst := filepath.Join(c.dir, "dst")
	c.ok(r.reader("restore", "latest", "--target", dst)...)
	fixture.Compare(t, tree, filepath.Join(dst, strings.TrimPrefix(src, "/")))

	// Lose the data packs. After repair, a backup stores the files again
	// although its files cache says they are unchanged (the cache is
	// trusted only for data the index has), and the new snapshot is whole.
	packs, err := filepath.Glob(filepath.Join(r.path, "data", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var lost int
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 4096 { // not the small tree pack
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			lost++
		}
	}
	if lost == 0 {
		t.Fatalf("no data pack among %v", packs)
	}
	out = c.ok(r.writer("repair", "index")...).stdout
	if !strings.Contains(out, "missing from the repository") || !strings.Contains(out, "dropped from the index") {
		t.Errorf("repair index after losing %d packs:\n%s", lost, out)
	}
	// big.bin changes before the next backup, so its old data stays lost
	// (the other files' data is stored again under the same IDs, which
	// heals the older snapshot for them).
	tree["big.bin"] = fixture.Entry{Content: fixture.Random(2, 1<<20)}
	if err := os.WriteFile(filepath.Join(src, "big.bin"), tree["big.bin"].Content, 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok(r.writer("backup", src)...)
	dst2 := filepath.Join(c.dir, "dst2")
	c.ok(r.reader("restore", "latest", "--target", dst2)...)
	fixture.Compare(t, tree, filepath.Join(dst2, strings.TrimPrefix(src, "/")))

	// The older snapshot lost its files' data: check says so; repair
	// snapshots (identity only) rewrites it without them.
	if res := c.fails(1, r.reader("check"), "check found 1 problem"); !strings.Contains(res.stdout, "'lifeboat repair snapshots' rewrites them") {
		t.Errorf("check with a snapshot that lost data gives no hint:\n%s", res.stdout)
	}
	c.fails(1, r.writer("repair", "snapshots"), "needs the identity")
	before := decodeJSON[[]snapshotJSON](t, c.ok(r.writer("snapshots", "--json")...).stdout)
	if len(before) != 2 {
		t.Fatalf("snapshots before repair: %+v", before)
	}
	dry = c.ok(r.reader("repair", "snapshots", "--dry-run")...).stdout
	if !strings.Contains(dry, "snapshot "+before[0].ShortID) || !strings.Contains(dry, "would leave out") || !strings.Contains(dry, "2 snapshots looked at, 1 damaged") {
		t.Errorf("repair snapshots --dry-run:\n%s", dry)
	}
	out = c.ok(r.reader("repair", "snapshots", "--forget", before[0].ShortID)...).stdout
	if !strings.Contains(out, "repaired as") || !strings.Contains(out, "leaving out 1 path:\n  "+filepath.Join(src, "big.bin")+"\n") || !strings.Contains(out, "original "+before[0].ShortID+" forgotten") {
		t.Errorf("repair snapshots --forget:\n%s", out)
	}
	after := decodeJSON[[]snapshotJSON](t, c.ok(r.writer("snapshots", "--json")...).stdout)
	if len(after) != 2 || after[0].Original != before[0].ID || !slices.Contains(after[0].Tags, "repaired") || after[1].ID != before[1].ID {
		t.Fatalf("snapshots after repair: %+v; want the first replaced by its repaired copy", after)
	}
	c.ok(r.reader("check", "--read-data")...)
	c.ok(r.reader("prune")...)
}
