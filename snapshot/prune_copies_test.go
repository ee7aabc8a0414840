package snapshot_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestPruneVerifiesTheCopyItKeeps: two writers that did not see each
// other's packs store the same file twice. prune keeps one copy of each
// blob and deletes the pack of the others — after reading the copies it
// keeps. With one kept copy damaged (a flipped byte) it keeps the other
// one, and the pack holding it, whole: the file still restores, where
// deleting that pack would have lost it.
func TestPruneVerifiesTheCopyItKeeps(t *testing.T) {
	ctx := context.Background()
	root, st, repos, second := twoWriters(t)
	src := t.TempDir()
	data := storetest.Data(21, 3<<20)
	writeFile(t, filepath.Join(src, "f"), data)
	one := backupDir(t, repos.Writer, src)
	two := backupDir(t, second, src)

	// Without damage a dry run verifies the kept copies and would mark
	// the other pack.
	dry, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.VerifiedCopies == 0 || dry.DamagedCopies != 0 || dry.MarkedPacks == 0 {
		t.Fatalf("dry run: %+v; want kept copies verified and the duplicate pack to mark", dry)
	}

	// Damage the copy prune keeps of the file's first chunk: the one
	// the dry run did not mark.
	r := reopenLoaded(t, repos, st)
	_, node := nodeIn(t, r, one.ID, strings.TrimPrefix(src, "/")+"/f")
	id := node.Content[0]
	copies := r.Index().Copies(map[chunkstore.ID]bool{id: true}, nil)[id]
	if len(copies) != 2 {
		t.Fatalf("the chunk is stored %d times, want 2", len(copies))
	}
	var kept chunkstore.Location
	res, err := snapshot.Prune(ctx, reopen(t, repos, &flipFirstGet{Store: st, t: t, copies: copies, kept: &kept}), snapshot.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.DamagedCopies != 1 || kept.Pack == nil {
		t.Fatalf("prune with a damaged kept copy: %+v; want 1 damaged copy", res)
	}
	for _, l := range copies {
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(chunkstore.PackName(l.Pack.ID)))); err != nil {
			t.Errorf("pack %s holding a copy of the chunk is gone: %v", l.Pack.ID.Short(), err)
		}
	}
	r = reopenLoaded(t, repos, st)
	for _, sid := range []chunkstore.ID{one.ID, two.ID} {
		s, err := snapshot.Load(ctx, r, sid)
		if err != nil {
			t.Fatal(err)
		}
		out, err := restore.Restore(ctx, r, s, restore.Options{Target: t.TempDir()})
		if err != nil || len(out.Failures) > 0 {
			t.Fatalf("restore %s after prune: %v %v", sid.Short(), err, out)
		}
		// A restore tries first the copy whose index file has the
		// lower ID: the damaged one, or not.
		if out.BlobsFromCopies > 1 || out.BlobsFromCopies == 1 && (len(out.DamagedPacks) != 1 || out.DamagedPacks[0] != chunkstore.PackName(kept.Pack.ID)) {
			t.Errorf("restore %s: %d blobs from other copies, damaged packs %v; want at most the damaged copy's, in %s", sid.Short(), out.BlobsFromCopies, out.DamagedPacks, kept.Pack.ID.Short())
		}
	}
}

// flipFirstGet damages, on disk, the copy of a chunk (one of copies) that
// prune reads first — the copy it means to keep — just before that read.
type flipFirstGet struct {
	chunkstore.Store
	t      *testing.T
	copies []chunkstore.Location
	kept   *chunkstore.Location
	done   bool
}

func (f *flipFirstGet) Get(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if !f.done {
		for _, l := range f.copies {
			if name == chunkstore.PackName(l.Pack.ID) && int64(l.Blob.Offset) >= off && int64(l.Blob.Offset+l.Blob.Length) <= off+n {
				f.done, *f.kept = true, l
				storetest.FlipBlob(f.t, f.Store.Location(), l, 0x10)
			}
		}
	}
	return f.Store.Get(ctx, name, off, n)
}

// TestDamagedTreeCopyReportedNotReadAround: of a directory listing stored
// twice, the copy found first is damaged. check and prune, which must see
// damage, report it (prune refuses, as for any tree it cannot read); a
// restore reads the other copy and brings everything back.
func TestDamagedTreeCopyReportedNotReadAround(t *testing.T) {
	ctx := context.Background()
	root, st, repos, second := twoWriters(t)
	src := t.TempDir()
	data := storetest.Data(31, 200<<10)
	writeFile(t, filepath.Join(src, "sub", "f"), data)
	one := backupDir(t, repos.Writer, src)
	backupDir(t, second, src)

	r := reopenLoaded(t, repos, st)
	snap, err := snapshot.Load(ctx, r, one.ID)
	if err != nil {
		t.Fatal(err)
	}
	node, err := snapshot.Lookup(ctx, r, snap.Tree, strings.TrimPrefix(src, "/")+"/sub")
	if err != nil || node.Subtree == nil {
		t.Fatalf("sub: %v", err)
	}
	tid := *node.Subtree
	if n := len(r.Index().Copies(map[chunkstore.ID]bool{tid: true}, nil)[tid]); n != 2 {
		t.Fatalf("sub's listing is stored %d times, want 2", n)
	}
	first, _ := r.Index().Lookup(tid)
	pack := storetest.FlipBlob(t, root, first, 0x10)

	r = reopenLoaded(t, repos, st)
	probs, err := snapshot.Check(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range probs {
		found = found || strings.Contains(p.Error(), tid.Short()) || strings.Contains(p.Error(), pack)
	}
	if !found {
		t.Errorf("check: %v; want the damaged listing %s named", probs, tid.Short())
	}
	if _, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{MaxUnused: 0}); err == nil || !errors.Is(err, snapshot.ErrPruneUnsafe) {
		t.Errorf("prune with a damaged listing: %v, want it refused", err)
	}
	out, err := restore.Restore(ctx, r, snap, restore.Options{Target: t.TempDir()})
	if err != nil || len(out.Failures) > 0 {
		t.Fatalf("restore around the damaged listing: %v %v", err, out)
	}
}

// TestSweepVerifiesTheCopyThatStays: a running backup holds the mark of
// a duplicate pack back; by the next prune the copy that stays has been
// damaged. The sweep reads it before deleting the marked copy, finds it
// damaged and keeps the marked pack: the file still restores.
func TestSweepVerifiesTheCopyThatStays(t *testing.T) {
	ctx := context.Background()
	root, st, repos, second := twoWriters(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), storetest.Data(22, 3<<20))
	one := backupDir(t, repos.Writer, src)
	backupDir(t, second, src)
	backup, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: "busy"}, chunkstore.DefaultSessionTiming)
	if err != nil {
		t.Fatal(err)
	}
	res, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{})
	if err != nil || res.PendingMarks != 1 || res.VerifiedCopies == 0 {
		t.Fatalf("prune while a backup runs: %+v %v; want the copies verified and the mark pending", res, err)
	}

	r := reopenLoaded(t, repos, st)
	snap, node := nodeIn(t, r, one.ID, strings.TrimPrefix(src, "/")+"/f")
	id := node.Content[0]
	marks, err := r.GCMarks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	marked := chunkstore.MarkedPacks(marks)
	goes, stays := twoCopies(t, r, id, func(pack chunkstore.ID) bool { return marked[pack] })
	storetest.FlipBlob(t, root, *stays, 0x10)
	if err := backup.End(ctx); err != nil {
		t.Fatal(err)
	}

	res, err = snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.DamagedCopies != 1 || res.ReusedPacks == 0 {
		t.Errorf("sweep: %+v; want the damaged copy found and its marked twin kept", res)
	}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(chunkstore.PackName(goes.Pack.ID)))); err != nil {
		t.Errorf("the marked pack holding the intact copy was deleted: %v", err)
	}
	r = reopenLoaded(t, repos, st)
	out, err := restore.Restore(ctx, r, snap, restore.Options{Target: t.TempDir()})
	if err != nil || len(out.Failures) > 0 {
		t.Fatalf("restore after the sweep: %v %v", err, out)
	}
}

// twoWriters makes a local repository at root and opens a second writer
// of it that does not see the first one's packs: what both back up is
// stored twice.
func twoWriters(t *testing.T) (root string, st chunkstore.Store, repos storetest.Repos, second *chunkstore.Repository) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "repo")
	st, err := local.Open(root, true)
	if err != nil {
		t.Fatal(err)
	}
	repos = storetest.InitRepos(t, st)
	return root, st, repos, storetest.UnsharedWriter(t, st, repos.Writer)
}

// TestRepackVerifiesTheCopyThatStays: a partly used pack holds a copy of
// a file another pack holds too, and prune would repack it without that
// copy since the other pack stays. It reads the staying copy first:
// found damaged, it leaves the partly used pack whole (it holds the
// intact copy), and so does every later prune, warning each time but
// writing nothing; the file still restores. (Without the check, the
// sweep would keep the pack too, but only after the repack had copied
// the rest of it, on every prune.)
func TestRepackVerifiesTheCopyThatStays(t *testing.T) {
	ctx := context.Background()
	root, st, repos, second := twoWriters(t)
	f := storetest.Data(41, 2<<20)
	srcA, srcB := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(srcA, "f"), f)
	writeFile(t, filepath.Join(srcA, "k"), storetest.Data(42, 4<<20)) // more in use: A's pack owns f
	one := backupDir(t, repos.Writer, srcA)
	writeFile(t, filepath.Join(srcB, "f"), f)
	writeFile(t, filepath.Join(srcB, "g"), storetest.Data(43, 4<<20))
	writeFile(t, filepath.Join(srcB, "h"), storetest.Data(44, 256<<10))
	first := backupDir(t, second, srcB)
	if err := os.Remove(filepath.Join(srcB, "g")); err != nil {
		t.Fatal(err)
	}
	backupDir(t, second, srcB)
	forget(t, st, first.ID) // g is no longer used: B's pack is partly used

	r := reopenLoaded(t, repos, st)
	snap, node := nodeIn(t, r, one.ID, strings.TrimPrefix(srcA, "/")+"/f")
	id := node.Content[0]
	hnode, err := snapshot.Lookup(ctx, r, latestTree(t, r), strings.TrimPrefix(srcB, "/")+"/h")
	if err != nil {
		t.Fatal(err)
	}
	hloc, _ := r.Index().Lookup(hnode.Content[0])
	repacked, stays := twoCopies(t, r, id, func(pack chunkstore.ID) bool { return pack == hloc.Pack.ID })
	storetest.FlipBlob(t, root, *stays, 0x10)

	for run := 1; run <= 3; run++ {
		res, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{MaxUnused: 0})
		if err != nil {
			t.Fatal(err)
		}
		if res.RepackedPacks != 0 || res.RepackWritten != 0 || res.DamagedCopies != 1 {
			t.Errorf("prune %d: %+v; want the damaged staying copy found and nothing repacked", run, res)
		}
		for _, l := range []*chunkstore.Location{stays, repacked} {
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(chunkstore.PackName(l.Pack.ID)))); err != nil {
				t.Errorf("prune %d: pack %s is gone: %v", run, l.Pack.ID.Short(), err)
			}
		}
	}
	r = reopenLoaded(t, repos, st)
	out, err := restore.Restore(ctx, r, snap, restore.Options{Target: t.TempDir()})
	if err != nil || len(out.Failures) > 0 {
		t.Fatalf("restore after the prunes: %v %+v", err, out)
	}
}

// latestTree is the root tree of the latest snapshot in r.
func latestTree(t *testing.T, r *chunkstore.Repository) chunkstore.ID {
	t.Helper()
	snaps, _, err := snapshot.List(context.Background(), r)
	if err != nil || len(snaps) == 0 {
		t.Fatalf("list snapshots: %v", err)
	}
	latest := snaps[0]
	for _, s := range snaps {
		if s.Time.After(latest.Time) {
			latest = s
		}
	}
	return latest.Tree
}

// nodeIn loads snapshot id of r and the node at path p in it.
func nodeIn(t *testing.T, r *chunkstore.Repository, id chunkstore.ID, p string) (*snapshot.Snapshot, *snapshot.Node) {
	t.Helper()
	ctx := context.Background()
	snap, err := snapshot.Load(ctx, r, id)
	if err != nil {
		t.Fatal(err)
	}
	node, err := snapshot.Lookup(ctx, r, snap.Tree, p)
	if err != nil {
		t.Fatalf("%s in snapshot %s: %v", p, id.Short(), err)
	}
	return snap, node
}

// twoCopies returns the two copies the index lists of blob id: the one
// in a pack in says holds, and the other one.
func twoCopies(t *testing.T, r *chunkstore.Repository, id chunkstore.ID, in func(pack chunkstore.ID) bool) (inside, outside *chunkstore.Location) {
	t.Helper()
	for _, l := range r.Index().Copies(map[chunkstore.ID]bool{id: true}, nil)[id] {
		if in(l.Pack.ID) {
			inside = &l
		} else {
			outside = &l
		}
	}
	if inside == nil || outside == nil {
		t.Fatalf("blob %s: want one copy in the packs asked for and one elsewhere", id.Short())
	}
	return inside, outside
}
