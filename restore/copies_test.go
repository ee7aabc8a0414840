package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestBlobsRestoredFromOtherCopies: two writers that back up the same
// files at the same time each store them, so the index lists two copies
// of each chunk. A restore whose first copy of a chunk is damaged (a
// flipped byte) or gone (its pack deleted) takes the other copy, and says
// which packs failed; a chunk whose copies are all damaged fails its
// file alone, naming both failures; a chunk stored once and damaged
// fails its file as before. dump falls back the same way.
func TestBlobsRestoredFromOtherCopies(t *testing.T) {
	ctx := context.Background()
	dir, st, repos := localRepos(t)
	// A second writer that does not see the first one's index files:
	// it stores everything again, as two hosts' first backups of the
	// same files running at once do.
	second := storetest.UnsharedWriter(t, st, repos.Writer)

	var text strings.Builder
	for i := 0; text.Len() < 200<<10; i++ {
		fmt.Fprintf(&text, "line %d: the quick brown fox jumps over the lazy dog\n", i)
	}
	files := map[string][]byte{
		"text.txt":    []byte(text.String()),      // compressed
		"flipped.bin": fixture.Random(1, 300<<10), // raw; its first copy damaged
		"gone.bin":    fixture.Random(2, 300<<10), // its first copy's pack deleted
		"both.bin":    fixture.Random(3, 300<<10), // both copies damaged
		"intact.bin":  fixture.Random(4, 300<<10),
	}
	src := t.TempDir()
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range files {
		write(name, b)
	}
	backup := func(w *chunkstore.Repository) chunkstore.ID {
		res, err := snapshot.Backup(ctx, w, snapshot.BackupOptions{Paths: []string{src}, Host: "fixture"})
		if err != nil || len(res.Warnings) > 0 {
			t.Fatalf("backup: %v %v", err, res.Warnings)
		}
		return res.ID
	}
	backup(repos.Writer)
	backup(second)
	files["once.bin"] = fixture.Random(5, 300<<10) // stored once, damaged
	write("once.bin", files["once.bin"])
	snap, err := snapshot.Load(ctx, repos.Reader, backup(repos.Writer))
	if err != nil {
		t.Fatal(err)
	}

	rd := repos.Reader
	if err := rd.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	copies := func(name string) []chunkstore.Location {
		id := rd.BlobID(files[name])
		return rd.Index().Copies(map[chunkstore.ID]bool{id: true}, nil)[id]
	}
	for name := range files {
		want := 2
		if name == "once.bin" {
			want = 1
		}
		if n := len(copies(name)); n != want {
			t.Fatalf("%s is stored %d times, want %d", name, n, want)
		}
	}
	// First the first copies of text.txt (compressed) and flipped.bin
	// (stored raw) are damaged, both copies of both.bin, and once.bin.
	damaged := []string{
		flipInPack(t, rd, dir, rd.BlobID(files["text.txt"]), 0x08),
		flipInPack(t, rd, dir, rd.BlobID(files["flipped.bin"]), 0x08),
	}
	for _, l := range copies("both.bin") {
		storetest.FlipBlob(t, dir, l, 0x08)
	}
	flipInPack(t, rd, dir, rd.BlobID(files["once.bin"]), 0x08)
	check := func(stage string, fromCopies []string) {
		t.Helper()
		slices.Sort(damaged)
		damaged = slices.Compact(damaged)
		for _, direct := range []bool{false, true} {
			dst := t.TempDir()
			res, err := restore.Restore(ctx, rd, snap, restore.Options{Target: dst, Packs: 2, DirectIO: direct})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, f := range res.Failures {
				got[filepath.Base(f.Path)] = f.Err.Error()
			}
			if len(got) != 2 || !strings.Contains(got["both.bin"], "its other copy failed too") || !strings.Contains(got["once.bin"], "failed authentication") || strings.Contains(got["once.bin"], "other cop") {
				t.Errorf("%s: failures %q: want both.bin (naming its other copy) and once.bin", stage, got)
			}
			for name, b := range files {
				p := filepath.Join(restoredAt(dst, src), name)
				if _, failed := got[name]; failed {
					if _, err := os.Lstat(p); err == nil {
						t.Errorf("%s: %s failed but is in the target", stage, name)
					}
					continue
				}
				if r, err := os.ReadFile(p); err != nil || !bytes.Equal(r, b) {
					t.Errorf("%s: %s: restored %d bytes (%v), not the file", stage, name, len(r), err)
				}
			}
			if res.BlobsFromCopies != int64(len(fromCopies)) || !slices.Equal(res.DamagedPacks, damaged) {
				t.Errorf("%s: %d blobs from copies, damaged packs %v; want %d (%v), and %v", stage, res.BlobsFromCopies, res.DamagedPacks, len(fromCopies), fromCopies, damaged)
			}
		}
		for _, name := range append(fromCopies, "both.bin") {
			n, err := snapshot.Lookup(ctx, rd, snap.Tree, filepath.Join(src, name))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = restore.DumpFile(ctx, rd, name, n, &out)
			if name == "both.bin" {
				if err == nil || !strings.Contains(err.Error(), "its other copy failed too") {
					t.Errorf("%s: dump %s: %v, want an error naming its other copy", stage, name, err)
				}
			} else if err != nil || !bytes.Equal(out.Bytes(), files[name]) {
				t.Errorf("%s: dump %s: %v, %d bytes; want the file", stage, name, err, out.Len())
			}
		}
	}
	check("flipped bytes", []string{"text.txt", "flipped.bin"})

	// Then the pack of gone.bin's first copy is deleted: every file
	// whose first copy it held comes from the second one.
	goneLoc, _ := rd.Index().Lookup(rd.BlobID(files["gone.bin"]))
	gone := chunkstore.PackName(goneLoc.Pack.ID)
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(gone))); err != nil {
		t.Fatal(err)
	}
	damaged = append(damaged, gone)
	var fromCopies []string
	for name := range files {
		first, _ := rd.Index().Lookup(rd.BlobID(files[name]))
		if name != "both.bin" && (first.Pack.ID == goneLoc.Pack.ID || name == "text.txt" || name == "flipped.bin") {
			fromCopies = append(fromCopies, name)
		}
	}
	check("a pack deleted", fromCopies)
}

// TestUnreachableCopyIsNotDamage: a pack the store cannot serve (an
// outage longer than the retries, not a damaged or missing object) is
// read around like a damaged one, but the restore does not name it among
// the damaged packs that 'repair packs' should mend; with every copy
// unreachable, the file fails and still nothing is called damaged.
func TestUnreachableCopyIsNotDamage(t *testing.T) {
	ctx := context.Background()
	_, st, repos := localRepos(t)
	files := map[string][]byte{"a.bin": fixture.Random(11, 300<<10), "b.bin": fixture.Random(12, 300<<10)}
	src := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	snapID := backupTwice(t, repos, st, src)
	faulty := storetest.NewFaulty(st)
	rd := repos.OpenReader(t, faulty)
	snap, err := snapshot.Load(ctx, rd, snapID)
	if err != nil {
		t.Fatal(err)
	}
	if err := rd.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	outage := chunkstore.Permanent(errors.New("connection refused"))
	idA := rd.BlobID(files["a.bin"])
	copiesA := rd.Index().Copies(map[chunkstore.ID]bool{idA: true}, nil)[idA]
	if len(copiesA) != 2 || copiesA[0].Pack.ID == copiesA[1].Pack.ID {
		t.Fatalf("a.bin is stored in %d packs, want 2", len(copiesA))
	}
	for _, tc := range []struct {
		name        string
		unreachable []chunkstore.Location
		wantFailed  bool
	}{
		{"first copy unreachable", copiesA[:1], false},
		{"both copies unreachable", copiesA, true},
	} {
		faulty.Reset()
		for _, l := range tc.unreachable {
			faulty.FailGets(chunkstore.PackName(l.Pack.ID), outage)
		}
		dst := t.TempDir()
		res, err := restore.Restore(ctx, rd, snap, restore.Options{Target: dst, Packs: 2})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(res.DamagedPacks) != 0 {
			t.Errorf("%s: damaged packs %v, want none (the store could not be reached)", tc.name, res.DamagedPacks)
		}
		got, rerr := os.ReadFile(filepath.Join(restoredAt(dst, src), "a.bin"))
		if tc.wantFailed {
			// b.bin may share a.bin's packs and fail with it.
			failedA := false
			for _, f := range res.Failures {
				failedA = failedA || filepath.Base(f.Path) == "a.bin"
				if msg := f.Err.Error(); !strings.Contains(msg, "connection refused") || !strings.Contains(msg, "its other copy failed too") {
					t.Errorf("%s: %s failed with %q, want the outage and its other copy named", tc.name, f.Path, msg)
				}
			}
			if !failedA || rerr == nil {
				t.Errorf("%s: failures %v, a.bin read back: %v; want a.bin failed", tc.name, res.Failures, rerr)
			}
			continue
		}
		if len(res.Failures) != 0 || !bytes.Equal(got, files["a.bin"]) || res.BlobsFromCopies < 1 {
			t.Errorf("%s: failures %v, a.bin %d bytes (%v), %d blobs from copies; want a.bin restored from its other copy", tc.name, res.Failures, len(got), rerr, res.BlobsFromCopies)
		}
		if b, err := os.ReadFile(filepath.Join(restoredAt(dst, src), "b.bin")); err != nil || !bytes.Equal(b, files["b.bin"]) {
			t.Errorf("%s: b.bin not restored: %v", tc.name, err)
		}
	}
}

// localRepos initialises a repository in a directory (dir), through the
// location string users type, and opens it as writer and reader.
func localRepos(t *testing.T) (dir string, st chunkstore.Store, repos storetest.Repos) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "repo")
	st, err := location.Open(context.Background(), dir, true)
	if err != nil {
		t.Fatal(err)
	}
	return dir, st, storetest.InitRepos(t, st)
}

// countingStore counts the Gets of each object.
type countingStore struct {
	chunkstore.Store
	mu   sync.Mutex
	gets map[string]int
}

func (c *countingStore) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	c.mu.Lock()
	c.gets[name]++
	c.mu.Unlock()
	return c.Store.Get(ctx, name, offset, length)
}

// TestOutageNotSplitPerBlob: a pack range the store gave up on after
// its retries (a transient error: an outage) fails its blobs at once;
// reading each blob on its own, as for a range outside a truncated pack,
// would sit through the retries once more per blob.
func TestOutageNotSplitPerBlob(t *testing.T) {
	ctx := context.Background()
	_, st, repos := localRepos(t)
	src := t.TempDir()
	for i := range 6 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), fixture.Random(uint64(20+i), 100<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "fixture"})
	if err != nil || len(res.Warnings) > 0 {
		t.Fatalf("backup: %v %v", err, res.Warnings)
	}
	faulty := storetest.NewFaulty(st)
	counting := &countingStore{Store: faulty, gets: map[string]int{}}
	rd := repos.OpenReader(t, counting)
	snap, err := snapshot.Load(ctx, rd, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := rd.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	l, _ := rd.Index().Lookup(rd.BlobID(fixture.Random(20, 100<<10)))
	pack := chunkstore.PackName(l.Pack.ID)
	faulty.FailGets(pack, errors.New("connection refused")) // transient: what the retries gave up on
	out, err := restore.Restore(ctx, rd, snap, restore.Options{Target: t.TempDir(), Packs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Failures) != 6 {
		t.Errorf("%d files failed, want all 6 (their one pack is unreachable)", len(out.Failures))
	}
	if n := counting.gets[pack]; n != 1 {
		t.Errorf("%d Gets of the unreachable pack, want 1 (no request per blob after an outage)", n)
	}
}

// TestDumpTreesFromOtherCopies: dump reads around a damaged copy of a
// directory listing as restore does. Two writers store the same trees;
// with the first copy of two of them damaged, a lookup below them and a
// tar dump of the directory read the other copy and hold every file, and
// find and diff read those trees too, where all of them failed while
// restore of the same snapshot succeeded.
func TestDumpTreesFromOtherCopies(t *testing.T) {
	ctx := context.Background()
	dir, st, repos := localRepos(t)
	src := t.TempDir()
	files := map[string][]byte{
		"top.txt":          []byte("top\n"),
		"sub/a.txt":        fixture.Random(21, 10<<10),
		"sub/deeper/b.txt": fixture.Random(22, 10<<10),
	}
	for name, b := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	snapID := backupTwice(t, repos, st, src)
	// The trees to damage, found by a reader that is then dropped (it
	// keeps the tree packs it read).
	before := repos.OpenReader(t, st)
	snap, err := snapshot.Load(ctx, before, snapID)
	if err != nil {
		t.Fatal(err)
	}
	var trees []chunkstore.ID
	for _, p := range []string{src, filepath.Join(src, "sub")} {
		n, err := snapshot.Lookup(ctx, before, snap.Tree, p)
		if err != nil {
			t.Fatal(err)
		}
		if c := before.Index().Copies(map[chunkstore.ID]bool{*n.Subtree: true}, nil)[*n.Subtree]; len(c) != 2 {
			t.Fatalf("the tree of %s is stored %d times, want 2", p, len(c))
		}
		trees = append(trees, *n.Subtree)
	}
	for _, id := range trees {
		flipInPack(t, before, dir, id, 0x08)
	}

	rd := repos.OpenReader(t, st)
	if _, err := snapshot.Lookup(ctx, rd, snap.Tree, filepath.Join(src, "sub", "deeper", "b.txt")); err != nil {
		t.Errorf("lookup below the damaged trees: %v", err)
	}
	top, err := snapshot.Lookup(ctx, rd, snap.Tree, src)
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if err := restore.DumpTar(ctx, rd, "src", top, &archive); err != nil {
		t.Fatalf("dump: %v", err)
	}
	got := untar(t, archive.Bytes())
	for name, b := range files {
		if !bytes.Equal(got["src/"+name], b) {
			t.Errorf("dump: %s holds %d bytes, not the file", name, len(got["src/"+name]))
		}
	}
	if len(got) != len(files) {
		t.Errorf("dump holds %d files, want %d", len(got), len(files))
	}

	// find and diff read every tree below src too.
	found := 0
	finder := snapshot.NewFinder(rd, func(p string, n *snapshot.Node) bool { return n.Type == snapshot.TypeFile })
	if err := finder.Find(ctx, snap.Tree, func(snapshot.Found) error { found++; return nil }); err != nil || found != len(files) {
		t.Errorf("find: %d files found (%v), want %d", found, err, len(files))
	}
	st2, err := snapshot.Diff(ctx, rd, src, nil, top, snapshot.DiffOptions{}, func(snapshot.Change) error { return nil })
	if err != nil || st2.Added != 6 { // src, top.txt, sub, sub/a.txt, sub/deeper, sub/deeper/b.txt
		t.Errorf("diff: %+v (%v), want 6 entries added", st2, err)
	}
}

// backupTwice backs src up with repos' writer and again with a writer
// that shares none of its state (so every blob is stored twice, in
// packs of its own), and returns the second snapshot's ID.
func backupTwice(t *testing.T, repos storetest.Repos, st chunkstore.Store, src string) chunkstore.ID {
	t.Helper()
	var snapID chunkstore.ID
	for _, w := range []*chunkstore.Repository{repos.Writer, storetest.UnsharedWriter(t, st, repos.Writer)} {
		res, err := snapshot.Backup(context.Background(), w, snapshot.BackupOptions{Paths: []string{src}, Host: "fixture"})
		if err != nil || len(res.Warnings) > 0 {
			t.Fatalf("backup: %v %v", err, res.Warnings)
		}
		snapID = res.ID
	}
	return snapID
}
