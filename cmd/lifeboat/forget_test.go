package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

type forgetOut struct {
	Groups []struct {
		Host  string   `json:"host"`
		Paths []string `json:"paths"`
		Keep  []struct {
			ID      string   `json:"id"`
			Reasons []string `json:"reasons"`
		} `json:"keep"`
		Remove []struct {
			ID string `json:"id"`
		} `json:"remove"`
	} `json:"groups"`
	Removed int  `json:"removed"`
	DryRun  bool `json:"dry_run"`
	Prune   *struct {
		Deleted int `json:"deleted_packs"`
	} `json:"prune"`
}

// TestForgetAndPrune: forget applies --keep-* rules per host and paths
// (a dry run first), removes named snapshots, and with --prune deletes
// the data only forgotten snapshots used; what is left checks clean and
// restores.
func TestForgetAndPrune(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	other := filepath.Join(c.dir, "other")
	fixture.Create(t, src, smallTree())
	fixture.Create(t, other, fixture.Tree{"o.txt": {Content: []byte("other\n")}})

	var srcSnaps []string
	for i := range 3 {
		big := filepath.Join(src, "big.bin")
		if err := os.WriteFile(big, fixture.Random(uint64(i), 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		srcSnaps = append(srcSnaps, decodeJSON[backupJSON](t, c.ok(r.writer("backup", "--json", "--host", "h1", src)...).stdout).SnapshotID)
	}
	otherSnap := decodeJSON[backupJSON](t, c.ok(r.writer("backup", "--json", "--host", "h1", other)...).stdout).SnapshotID

	// Dry run: per group, the newest kept with its reason, nothing removed.
	dry := decodeJSON[forgetOut](t, c.ok(r.writer("forget", "--keep-last", "1", "--dry-run", "--json")...).stdout)
	if !dry.DryRun || dry.Removed != 0 || len(dry.Groups) != 2 {
		t.Fatalf("forget --dry-run: %+v, want two groups and nothing removed", dry)
	}
	for _, g := range dry.Groups {
		switch {
		case len(g.Paths) == 1 && g.Paths[0] == src:
			if len(g.Keep) != 1 || g.Keep[0].ID != srcSnaps[2] || len(g.Remove) != 2 || !strings.Contains(strings.Join(g.Keep[0].Reasons, ";"), "last snapshot") {
				t.Errorf("group %s: %+v, want the newest kept (last snapshot) and two removed", src, g)
			}
		case len(g.Paths) == 1 && g.Paths[0] == other:
			if len(g.Keep) != 1 || g.Keep[0].ID != otherSnap || len(g.Remove) != 0 {
				t.Errorf("group %s: %+v, want its only snapshot kept", other, g)
			}
		default:
			t.Errorf("unexpected group %+v", g)
		}
	}
	if n := strings.Count(c.ok(r.writer("snapshots")...).stdout, "h1"); n != 4 {
		t.Fatalf("%d snapshots after a dry run, want 4", n)
	}

	// Forget by ID prefix with the writer key; the snapshot is gone.
	c.ok(r.writer("forget", srcSnaps[0][:10])...)
	if out := c.ok(r.writer("snapshots")...).stdout; strings.Contains(out, srcSnaps[0][:8]) {
		t.Fatalf("forgotten snapshot still listed:\n%s", out)
	}

	// Rules and --prune: needs the identity, deletes the data.
	c.fails(1, r.writer("forget", "--keep-last", "1", "--prune"), "needs the identity")
	res := decodeJSON[forgetOut](t, c.ok(r.reader("forget", "--keep-last", "1", "--prune", "--json")...).stdout)
	if res.Removed != 1 || res.Prune == nil || res.Prune.Deleted == 0 {
		t.Fatalf("forget --keep-last 1 --prune: %+v, want one snapshot removed and packs deleted", res)
	}
	out := c.ok(r.reader("snapshots")...).stdout
	if !strings.Contains(out, srcSnaps[2][:8]) || !strings.Contains(out, otherSnap[:8]) || strings.Contains(out, srcSnaps[1][:8]) {
		t.Fatalf("snapshots after forget: %s", out)
	}
	c.ok(r.reader("check", "--read-data")...)
	dst := filepath.Join(c.dir, "restored")
	c.ok(r.reader("restore", srcSnaps[2], "--target", dst)...)
	got, err := os.ReadFile(filepath.Join(dst, strings.TrimPrefix(src, "/"), "big.bin"))
	if err != nil || string(got) != string(fixture.Random(2, 1<<20)) {
		t.Errorf("restored big.bin: %v (%d bytes)", err, len(got))
	}
	// Nothing left to prune.
	if out := c.ok(r.reader("prune")...).stdout; !strings.Contains(out, "deleted 0 packs") {
		t.Errorf("second prune:\n%s", out)
	}
}

// TestForgetPruneUsage: forget never removes everything by default, and
// bad rules are usage errors (exit 2) naming the flag.
func TestForgetPruneUsage(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	c.fails(2, r.writer("forget"), "nothing to do", "--keep-")
	c.fails(2, r.writer("forget", "abc123", "--keep-last", "1"), "not both")
	c.fails(2, r.writer("forget", "--keep-daily", "-1"), "--keep-daily -1")
	c.fails(2, r.writer("forget", "--keep-within", "soon"), `--keep-within "soon"`)
	c.fails(2, r.writer("forget", "--keep-within", "6m"), `--keep-within "6m" is 6m0s: m means minutes, not months`, "183d", `"0h6m"`)
	c.fails(1, r.writer("forget", "deadbeef"), "deadbeef")
	c.fails(1, r.writer("prune"), "needs the identity")
	// With a writer key forget alone works; it is --prune that needs
	// the identity, and the message says so.
	c.fails(1, r.writer("forget", "--keep-last", "1", "--prune"), "forget --prune needs the identity")
	c.fails(2, r.reader("prune", "--max-unused", "5"), `--max-unused: "5": a fraction must be under 1; did you mean 5%?`)
	c.fails(2, r.reader("prune", "--max-unused", "120%"), `--max-unused: "120%": must be under 100%`, "unlimited")
	c.fails(2, r.reader("prune", "--max-unused", "lots"), `--max-unused: "lots": want a percentage`, "unlimited")
	c.fails(2, []string{"prune", "--repo", r.path}, "needs the repository identity")
}

// TestForgetAndPruneReadTheStore: forget and prune judge the repository
// by what the store holds, not by the intact copies this machine's cache
// keeps. A snapshot whose manifest rotted in the store is "not
// considered" by forget (so it does not take the place a good one keeps)
// and makes prune refuse; a tree pack lost from the store makes prune
// refuse even though the cache still has it.
func TestForgetAndPruneReadTheStore(t *testing.T) {
	t.Parallel()
	c, r, src, _ := smallTreeRepo(t)
	var snaps []string
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(src, "big.bin"), fixture.Random(uint64(i), 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, decodeJSON[backupJSON](t, c.ok(r.writer("backup", "--json", src)...).stdout).SnapshotID)
	}
	c.ok(r.reader("ls", "latest")...) // the cache now holds every manifest and the tree packs
	manifest := filepath.Join(r.path, "snapshots", snaps[2])
	fixture.FlipMiddle(t, manifest)
	c.fails(1, r.reader("prune", "--dry-run"), snaps[2][:8])
	res := c.run(r.reader("forget", "--keep-last", "1", "--json")...)
	o := decodeJSON[forgetOut](t, res.stdout)
	if res.code != 0 || o.Removed != 1 || len(o.Groups) != 1 || len(o.Groups[0].Keep) != 1 || o.Groups[0].Keep[0].ID != snaps[1] || !strings.Contains(res.stderr, "not considered") {
		t.Fatalf("forget --keep-last 1 with the newest snapshot rotted in the store: exit %d, %+v; want the last good one kept\n%s", res.code, o, res.stderr)
	}
	os.Remove(manifest) // as 'repair snapshots' would after saving what it can
	c.ok(r.reader("restore", snaps[1], "--target", filepath.Join(c.dir, "t"))...)

	// The pack holding the remaining snapshot's root tree lost, after ls
	// put it in the cache.
	c.ok(r.reader("ls", snaps[1])...)
	pack := rootTreePack(t, r, snaps[1])
	if err := os.Rename(pack, pack+".away"); err != nil {
		t.Fatal(err)
	}
	c.fails(1, r.reader("prune", "--dry-run"), "cannot be read")
}

// rootTreePack returns the file of the pack holding the root tree of
// snapshot id in local repository r, found through its index with the
// writer key.
func rootTreePack(t *testing.T, r repo, id string) string {
	t.Helper()
	ctx := context.Background()
	repo := openWriter(t, r)
	if err := repo.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	sid, err := chunkstore.ParseID(id)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Load(ctx, repo, sid)
	if err != nil {
		t.Fatal(err)
	}
	loc, ok := repo.Index().Lookup(snap.Tree)
	if !ok {
		t.Fatalf("root tree %s of %s is not indexed", snap.Tree.Short(), id)
	}
	return filepath.Join(r.path, chunkstore.PackName(loc.Pack.ID))
}

// TestDamagedManifestCanBeForgotten: a snapshot manifest that rotted
// (its content no longer matches its name) makes check fail and prune
// refuse, telling the operator to forget it. check names the object and
// how to remove it; forget with its full ID removes it (a prefix does
// not: the manifest cannot be read to confirm what it is), and then
// check is clean and prune runs.
func TestDamagedManifestCanBeForgotten(t *testing.T) {
	t.Parallel()
	c, r, src, _ := backedUpSmallTree(t)
	good := decodeJSON[backupJSON](t, c.ok(r.writer("backup", "--json", src)...).stdout).SnapshotID
	var bad string
	ents, err := os.ReadDir(filepath.Join(r.path, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != good {
			bad = e.Name()
		}
	}
	p := filepath.Join(r.path, "snapshots", bad)
	fixture.FlipMiddle(t, p)
	res := c.fails(1, r.writer("check"))
	if !strings.Contains(res.stdout, "problem: snapshots/"+bad+":") || !strings.Contains(res.stdout, "lifeboat forget "+bad) {
		t.Errorf("check does not name the damaged manifest and how to remove it:\n%s", res.stdout)
	}
	c.fails(1, r.reader("prune"), "forget")
	// repair snapshots cannot mend it, and must not pass it over in silence.
	if res := c.fails(1, r.reader("repair", "snapshots"), "lifeboat forget "+bad); !strings.Contains(res.stdout, "snapshots/"+bad) {
		t.Errorf("repair snapshots does not name the unreadable manifest:\n%s", res.stdout)
	}
	c.fails(1, r.writer("forget", bad[:8]), "no snapshot ID starts with")
	c.ok(r.writer("forget", bad)...)
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("the damaged manifest is still there: %v", err)
	}
	c.ok(r.writer("check")...)
	c.ok(r.reader("prune")...)
	c.ok(r.reader("check", "--read-data")...)
}

// TestForgetPathFilter: --path is taken as backup takes its paths
// (relative to the current directory, a trailing slash dropped), so
// 'forget --path src' run where 'backup src' ran applies the rules to
// those snapshots instead of to none; a filter that matches nothing is
// named in a warning, and 'latest' under it says which filter and that
// the repository does have snapshots.
func TestForgetPathFilter(t *testing.T) {
	t.Parallel()
	c, r, src, _ := smallTreeRepo(t)
	c.ok(r.writer("backup", "src")...)
	c.ok(r.writer("backup", "src")...)

	for _, path := range []string{"src", src + "/"} {
		out := decodeJSON[forgetOut](t, c.ok(r.writer("forget", "--dry-run", "--json", "--keep-last", "1", "--path", path)...).stdout)
		if len(out.Groups) != 1 || len(out.Groups[0].Keep) != 1 || len(out.Groups[0].Remove) != 1 {
			t.Errorf("forget --keep-last 1 --path %s of two snapshots of %s: %+v, want one kept and one removed", path, src, out)
		}
	}
	res := c.ok(r.writer("forget", "--dry-run", "--keep-last", "1", "--path", "/nosuch")...)
	if !strings.Contains(res.stderr, "none of the repository's 2 snapshots matches (filtered by path /nosuch)") {
		t.Errorf("forget --path /nosuch: stderr\n%s\nwant a warning that no snapshot matches", res.stderr)
	}
	c.fails(1, r.reader("ls", "--path", "/nosuch", "latest"), "none of the repository's 2 snapshots matches (filtered by path /nosuch)")
}

// TestForgetFailsMidway: a forget whose delete fails after it removed
// other snapshots names those in its error (its report is not printed),
// not only that some were.
func TestForgetFailsMidway(t *testing.T) {
	t.Parallel()
	c, r, src, _ := smallTreeRepo(t)
	var ids []string
	for range 3 {
		ids = append(ids, decodeJSON[backupJSON](t, c.ok(r.writer("backup", "--json", src)...).stdout).SnapshotID)
	}
	// The oldest cannot be deleted; forget removes the newest first.
	stuck := filepath.Join(r.path, "snapshots", ids[0])
	if out, err := exec.Command("chattr", "+i", stuck).CombinedOutput(); err != nil {
		t.Skipf("chattr +i (needs root and a filesystem with the flag): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", stuck).Run() })
	c.fails(1, r.writer("forget", ids[2], ids[1], ids[0]), "removed 2 snapshots before it: "+ids[2][:8]+", "+ids[1][:8], "run forget again")
}
