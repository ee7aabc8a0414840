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
	c, r, src, tree := backedUpSmallTree(t)

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

	dry := c.ok(r.writer("repair", "index", "--dry-run")...).stdout // with the cache that still holds the good copy
	for _, want := range []string{"damaged index file " + name + ": would be removed", "would be indexed", "dry run: nothing changed"} {
		if !strings.Contains(dry, want) {
			t.Errorf("repair index --dry-run output lacks %q:\n%s", want, dry)
		}
	}
	if _, err := os.Stat(idx[0]); err != nil {
		t.Fatalf("a dry run removed the damaged index file: %v", err)
	}
	out := c.ok(r.writer("repair", "index")...).stdout
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

// TestRepairPacksCLI: usage errors, the identity requirement, and a pack
// that is intact being left alone. (snapshot's TestRepairPacks salvages
// a damaged one.)
func TestRepairPacksCLI(t *testing.T) {
	t.Parallel()
	c, r, src, _ := backedUpSmallTree(t)
	packs, err := filepath.Glob(filepath.Join(r.path, "data", "*", "*"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("packs %v (%v)", packs, err)
	}
	name := "data/" + filepath.Base(filepath.Dir(packs[0])) + "/" + filepath.Base(packs[0])
	c.fails(2, r.reader("repair", "packs"), "name the damaged packs")
	c.fails(2, r.reader("repair", "packs", "data/zz/nothex"), "is not a pack name")
	c.fails(1, r.writer("repair", "packs", name), "needs the identity")
	c.fails(1, r.reader("repair", "packs", strings.Repeat("ab", 32)), "is not in the index", "lifeboat repair index")
	for _, arg := range []string{name, filepath.Base(packs[0])} {
		out := c.ok(r.reader("repair", "packs", arg)...).stdout
		if !strings.Contains(out, name+": intact") {
			t.Errorf("repair packs %s of an intact pack:\n%s", arg, out)
		}
	}
	c.ok(r.reader("check", "--read-data")...)

	// Real bit rot on disk in the largest pack (big.bin's data).
	big, size := "", int64(0)
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			big, size = p, fi.Size()
		}
	}
	b, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x08
	if err := os.WriteFile(big, b, 0o644); err != nil {
		t.Fatal(err)
	}
	bigName := "data/" + filepath.Base(filepath.Dir(big)) + "/" + filepath.Base(big)
	if res := c.fails(1, r.reader("check", "--read-data"), "check found"); !strings.Contains(res.stdout, "'lifeboat repair packs "+bigName+"'") {
		t.Errorf("check --read-data of a damaged pack gives no repair hint:\n%s", res.stdout)
	}
	out := c.ok(r.reader("repair", "packs", bigName)...).stdout
	if !strings.Contains(out, bigName+" (its content does not match its name)") || !strings.Contains(out, ", 1 lost") || !strings.Contains(out, "index rewritten") {
		t.Errorf("repair packs of a damaged pack:\n%s", out)
	}
	// big.bin is unchanged on the host: the next backup stores its lost
	// chunk again, and the snapshot is whole.
	c.ok(r.writer("backup", src)...)
	c.ok(r.reader("prune")...)
	c.ok(r.reader("check", "--read-data")...)
	if _, err := os.Stat(big); !os.IsNotExist(err) {
		t.Errorf("prune left the damaged pack %s (%v)", bigName, err)
	}
	dst := filepath.Join(c.dir, "dst")
	c.ok(r.reader("restore", "latest", "--target", dst)...)
	fixture.Compare(t, smallTree(), filepath.Join(dst, strings.TrimPrefix(src, "/")))
}

// TestCheckHintsReadDataForDamagedTree: a pack holding a directory
// listing rots; check without --read-data finds the listing fails
// authentication, and says how to find and salvage the pack rather than
// leaving the operator with the problem alone.
func TestCheckHintsReadDataForDamagedTree(t *testing.T) {
	t.Parallel()
	c, r, _, _ := backedUpSmallTree(t)
	packs, err := filepath.Glob(filepath.Join(r.path, "data", "*", "*"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("packs %v (%v)", packs, err)
	}
	small, size := "", int64(1<<62) // the tree pack is the smallest
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil && fi.Size() < size {
			small, size = p, fi.Size()
		}
	}
	b, err := os.ReadFile(small)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/4] ^= 0x08
	if err := os.WriteFile(small, b, 0o644); err != nil {
		t.Fatal(err)
	}
	res := c.fails(1, r.reader("check"), "check found")
	if !strings.Contains(res.stdout, "failed authentication") {
		t.Fatalf("check did not find the damaged listing:\n%s", res.stdout)
	}
	if !strings.Contains(res.stdout, "hint: ") || !strings.Contains(res.stdout, "'lifeboat check --read-data'") || !strings.Contains(res.stdout, "'lifeboat repair packs") {
		t.Errorf("check names no way to find and salvage the damaged pack:\n%s", res.stdout)
	}
}

// TestCheckNoRepairHintForPacksOfOtherRecipients: after 'key add', an
// added identity cannot open the packs written before (until a rewrap).
// check --read-data with it says so, but must not send the operator to
// 'repair packs' as if those intact packs were damaged.
func TestCheckNoRepairHintForPacksOfOtherRecipients(t *testing.T) {
	t.Parallel()
	c, r, _, _ := backedUpSmallTree(t)
	other := addOtherIdentity(t, c, r)
	res := c.fails(1, []string{"check", "--read-data", "--repo", r.path, "--identity", other.identity}, "check found")
	if !strings.Contains(res.stdout, "prune --rewrap") {
		t.Errorf("check does not say how the added identity gets to read the older packs:\n%s", res.stdout)
	}
	if strings.Contains(res.stdout, "repair packs") {
		t.Errorf("check sends the operator to 'repair packs' for intact packs of other recipients:\n%s", res.stdout)
	}
}

// TestCheckSaysStaleKey: after 'key add', check with the writer key of
// the generation before finds the repository fine, but says that this
// key can no longer back up and how to get a current one, instead of a
// bare "no problems found" while every backup with it fails.
func TestCheckSaysStaleKey(t *testing.T) {
	t.Parallel()
	c, r, _, _ := backedUpSmallTree(t)
	addOtherIdentity(t, c, r)
	out := c.ok(r.writer("check")...).stdout
	if !strings.Contains(out, "out of date") || !strings.Contains(out, "lifeboat key writer-key") {
		t.Errorf("check with a stale writer key does not say so:\n%s", out)
	}
	js := decodeJSON[struct {
		StaleKey bool `json:"stale_key"`
	}](t, c.ok(r.writer("check", "--json")...).stdout)
	if !js.StaleKey {
		t.Error("check --json with a stale writer key: stale_key is not true")
	}
	if out := c.ok("check", "--repo", r.path, "--key", filepath.Join(c.dir, "gen1.key")).stdout; strings.Contains(out, "out of date") {
		t.Errorf("check with the current writer key calls it out of date:\n%s", out)
	}
}

// TestRepairIndexWrongSizePack: a pack the store holds with another size
// than the index records is kept, and repair index says so, with what
// to do next, and exits 1 (a problem remains) instead of "nothing to
// repair"; a dry run says the same.
func TestRepairIndexWrongSizePack(t *testing.T) {
	t.Parallel()
	c, r, _, _ := backedUpSmallTree(t)
	packs, err := filepath.Glob(filepath.Join(r.path, "data", "*", "*"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("packs %v (%v)", packs, err)
	}
	b, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(packs[0], b[:len(b)-10], 0o644); err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(packs[0], r.path+string(filepath.Separator))
	for _, args := range [][]string{r.writer("repair", "index", "--dry-run"), r.writer("repair", "index")} {
		res := c.run(args...)
		if res.code != 1 || strings.Contains(res.stdout, "nothing to repair") ||
			!strings.Contains(res.stdout, "pack "+name+" has another size than the index records") || !strings.Contains(res.stdout, "kept in the index") ||
			!strings.Contains(res.stderr, name) || !strings.Contains(res.stderr, "lifeboat repair packs "+name) {
			t.Errorf("lifeboat %s with a truncated pack: exit %d, want 1 saying it kept %s and naming 'repair packs'\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.code, name, res.stdout, res.stderr)
		}
	}
	if got, err := os.ReadFile(packs[0]); err != nil || len(got) != len(b)-10 {
		t.Errorf("repair index changed the truncated pack: %d bytes (%v)", len(got), err)
	}
}

// TestRepairPacksDryRunCannotOpen: a dry run of repair packs on a
// damaged pack whose data key this identity cannot open says what a
// real run would do (stop there, the index untouched) instead of that it
// "stopped before the index was rewritten", which only a real run does.
func TestRepairPacksDryRunCannotOpen(t *testing.T) {
	t.Parallel()
	c, r, _, _ := backedUpSmallTree(t)
	other := addOtherIdentity(t, c, r)
	packs, err := filepath.Glob(filepath.Join(r.path, "data", "*", "*"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("packs %v (%v)", packs, err)
	}
	pb, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	pb[len(pb)/2] ^= 0x10
	if err := os.WriteFile(packs[0], pb, 0o644); err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(packs[0], r.path+string(filepath.Separator))
	as := func(args ...string) []string {
		return append(args, "--repo", r.path, "--identity", other.identity)
	}
	res := c.fails(1, as("repair", "packs", "--dry-run", name), name)
	if strings.Contains(res.stdout, "stopped before the index was rewritten") || !strings.Contains(res.stdout, "dry run: nothing changed; a real run would stop at the same error, before rewriting the index") {
		t.Errorf("repair packs --dry-run on a pack it cannot open:\n%s", res.stdout)
	}
	res = c.fails(1, as("repair", "packs", name), name)
	if !strings.Contains(res.stdout, "stopped before the index was rewritten") {
		t.Errorf("repair packs on a pack it cannot open:\n%s", res.stdout)
	}
}
