package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestRepairSnapshots loses the pack that holds one file's data, which
// two snapshots reference, and checks that after 'repair index' the
// snapshots are rewritten without that file (a dry run first), keep
// everything else byte for byte, are marked as repaired copies, and that
// the repository then checks clean and prunes again.
func TestRepairSnapshots(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		a, b, c, e := storetest.Data(21, 1<<20), []byte("b stays\n"), storetest.Data(22, 3<<20), storetest.Data(23, 2<<20)
		writeFile(t, filepath.Join(src, "keep", "a"), a)
		writeFile(t, filepath.Join(src, "keep", "sub", "b"), b)
		first := backupDir(t, repos.Writer, src)
		packs1 := listNames(t, repos.Store, chunkstore.DataPrefix)
		writeFile(t, filepath.Join(src, "lost", "c"), c)
		second := backupDir(t, repos.Writer, src)
		lost := largestPack(t, repos.Store, packs1) // c alone: a and b were deduplicated
		writeFile(t, filepath.Join(src, "new", "e"), e)
		third := backupDir(t, repos.Writer, src)

		removeObject(t, repos.Store, chunkstore.PackName(lost))
		if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); err != nil {
			t.Fatal(err)
		}
		// The lost file is named once (the snapshots share its
		// directory, checked once), and each damaged snapshot is named.
		probs, err := snapshot.Check(ctx, reopen(t, repos, repos.Store))
		if err != nil || len(probs) != 2 || !strings.HasSuffix(probs[0].Object, "lost/c") || !strings.HasSuffix(probs[1].Object, "/lost") ||
			!strings.Contains(probs[1].Err.Error(), probs[0].Object) {
			t.Fatalf("check before the repair: %v, %v; want the lost file named, then the other snapshot's directory holding it", probs, err)
		}
		for _, s := range []*snapshot.Result{second, third} {
			if !strings.HasPrefix(probs[0].Object, "snapshot "+s.ID.Short()+" ") && !strings.HasPrefix(probs[1].Object, "snapshot "+s.ID.Short()+" ") {
				t.Fatalf("check before the repair: %v; damaged snapshot %s not named", probs, s.ID.Short())
			}
		}

		rel := func(p string) string { return strings.TrimPrefix(filepath.Join(src, p), "/") }
		wantRemoved := []string{"/" + rel("lost/c")}
		before := allNames(t, repos.Store)
		dry, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RepairSnapshotsOptions{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if dry.Snapshots != 3 || len(dry.Damaged) != 2 {
			t.Fatalf("dry run: %+v; want 3 snapshots looked at, 2 damaged", dry)
		}
		for i, want := range []chunkstore.ID{second.ID, third.ID} {
			if d := dry.Damaged[i]; d.Original != want || !slices.Equal(d.Removed, wantRemoved) || !d.Repaired.IsNull() {
				t.Fatalf("dry run, damaged[%d] = %+v; want %s without %v", i, d, want.Short(), wantRemoved)
			}
		}
		if after := allNames(t, repos.Store); !slices.Equal(before, after) {
			t.Fatalf("a dry run changed the repository:\nbefore %v\nafter  %v", before, after)
		}

		res, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RepairSnapshotsOptions{Forget: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Damaged) != 2 {
			t.Fatalf("repair: %+v", res)
		}
		r := reopen(t, repos, repos.Store)
		list, errs, err := snapshot.List(ctx, r)
		if err != nil || len(errs) > 0 || len(list) != 3 {
			t.Fatalf("snapshots after repair: %d (%v, %v); want 3", len(list), errs, err)
		}
		repaired := map[chunkstore.ID]*snapshot.Snapshot{}
		for _, s := range list {
			repaired[s.ID] = s
		}
		for i, orig := range []*snapshot.Result{second, third} {
			d := res.Damaged[i]
			s := repaired[d.Repaired]
			switch {
			case !d.Forgotten || repaired[orig.ID] != nil:
				t.Fatalf("original %s was not forgotten: %+v", orig.ID.Short(), d)
			case s == nil:
				t.Fatalf("repaired copy %s of %s is not listed", d.Repaired.Short(), orig.ID.Short())
			case s.Original == nil || *s.Original != orig.ID || !slices.Contains(s.Tags, snapshot.RepairedTag) ||
				!s.Time.Equal(orig.Manifest.Time) || !slices.Equal(s.Paths, orig.Manifest.Paths) || s.Host != orig.Manifest.Host:
				t.Fatalf("repaired copy %+v does not carry over %s's metadata, or name it", s.Manifest, orig.ID.Short())
			}
			// Its summary is its own: the file left out is not counted.
			files := func(m snapshot.Summary) uint64 { return m.FilesNew + m.FilesChanged + m.FilesUnmodified }
			if o, n := orig.Manifest.Summary, s.Summary; n.BytesProcessed != o.BytesProcessed-uint64(len(c)) || files(n) != files(o)-1 || n.Dirs != o.Dirs || !n.Start.Equal(o.Start) {
				t.Errorf("repaired copy of %s: summary %+v; want the original's %+v without lost/c (%d bytes)", orig.ID.Short(), n, o, len(c))
			}
		}
		if _, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{}); err != nil {
			t.Fatalf("prune after repair: %v", err)
		}
		newThird := res.Damaged[1].Repaired
		verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{
			first.ID: {rel("keep/a"): a, rel("keep/sub/b"): b},
			newThird: {rel("keep/a"): a, rel("keep/sub/b"): b, rel("new/e"): e},
		})
		snap, err := snapshot.Load(ctx, r, newThird)
		if err != nil {
			t.Fatal(err)
		}
		dst := t.TempDir()
		if _, err := restore.Restore(ctx, r, snap, restore.Options{Target: dst}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(dst, rel("lost/c"))); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the file with lost data is in the repaired snapshot (%v)", err)
		}
		if fi, err := os.Lstat(filepath.Join(dst, rel("lost"))); err != nil || !fi.IsDir() {
			t.Fatalf("its directory is not: %v", err)
		}

		again, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RepairSnapshotsOptions{})
		if err != nil || again.Snapshots != 3 || len(again.Damaged) != 0 {
			t.Fatalf("a second repair: %+v, %v; want nothing damaged", again, err)
		}
		// Without --forget, a second run does not copy the same original
		// again.
		packs3 := listNames(t, repos.Store, chunkstore.DataPrefix)
		writeFile(t, filepath.Join(src, "lost", "c"), storetest.Data(24, 1<<20))
		fourth := backupDir(t, repos.Writer, src)
		removeObject(t, repos.Store, chunkstore.PackName(largestPack(t, repos.Store, packs3))) // the new c
		if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); err != nil {
			t.Fatal(err)
		}
		for run := range 2 {
			res, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RepairSnapshotsOptions{IDs: []chunkstore.ID{fourth.ID}})
			if err != nil || len(res.Damaged) != 1 || res.Damaged[0].AlreadyRepaired != (run == 1) {
				t.Fatalf("repair without --forget, run %d: %+v, %v", run+1, res, err)
			}
		}
		if n := countObjects(t, repos.Store, chunkstore.SnapshotsPrefix); n != 5 {
			t.Fatalf("%d snapshots after two repairs of one; want 5 (one copy)", n)
		}
	})
}

// TestRepairSnapshotsLostListings: a directory whose listing is lost is
// kept empty; a snapshot whose root listing is lost is reported and kept.
func TestRepairSnapshotsLostListings(t *testing.T) {
	ctx := context.Background()
	repos, src, a, base := oneFile(t, 31, 1<<20)
	r := reopen(t, repos, repos.Store)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	// A snapshot of a tree holding base's tree and a directory "gone"
	// whose listing no pack holds, and one whose root is nowhere.
	gone := chunkstore.ID{1, 2, 3}
	root := &snapshot.Tree{Nodes: []snapshot.Node{
		{Name: "base", Type: snapshot.TypeDir, Mode: 0o755, Subtree: &base.Manifest.Tree},
		{Name: "gone", Type: snapshot.TypeDir, Mode: 0o750, Subtree: &gone},
	}}
	enc, err := root.Encode()
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.NewWriter(ctx, chunkstore.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rootID, _, err := w.SaveBlob(ctx, chunkstore.TreeBlob, enc)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	m := base.Manifest
	m.Tree = rootID
	partly, err := snapshot.Save(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	m.Tree = chunkstore.ID{4, 5, 6}
	rootless, err := snapshot.Save(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}

	res, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RepairSnapshotsOptions{Forget: true})
	if err != nil {
		t.Fatal(err)
	}
	byOrig := map[chunkstore.ID]snapshot.RepairedSnapshot{}
	for _, d := range res.Damaged {
		byOrig[d.Original] = d
	}
	if d := byOrig[rootless]; d.Unrepairable == "" || !d.Repaired.IsNull() || d.Forgotten || len(res.Damaged) != 2 {
		t.Fatalf("snapshot without its root listing: %+v (all: %+v); want it reported and kept", d, res.Damaged)
	}
	if !hasObject(t, repos.Store, chunkstore.SnapshotsPrefix+rootless.String()) {
		t.Fatal("the unrepairable snapshot was forgotten")
	}
	d := byOrig[partly]
	if !slices.Equal(d.Removed, []string{"/gone/"}) || d.Repaired.IsNull() || !d.Forgotten {
		t.Fatalf("snapshot with a lost listing: %+v; want /gone/ emptied", d)
	}
	r = reopen(t, repos, repos.Store)
	snap, err := snapshot.Load(ctx, r, d.Repaired)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	out, err := restore.Restore(ctx, r, snap, restore.Options{Target: dst})
	if err != nil || len(out.Failures) > 0 {
		t.Fatalf("restore of the repaired snapshot: %+v, %v", out, err)
	}
	if ents, err := os.ReadDir(filepath.Join(dst, "gone")); err != nil || len(ents) != 0 {
		t.Fatalf("gone/ restored as %v (%v); want an empty directory", ents, err)
	}
	if got, err := os.ReadFile(filepath.Join(dst, "base", strings.TrimPrefix(filepath.Join(src, "a"), "/"))); err != nil || !slices.Equal(got, a) {
		t.Fatalf("base/…/a restored wrong (%v)", err)
	}
}

// TestRepairSnapshotsKeepsMarkedData: data that only packs in a GC mark
// hold is not lost (a backup reused it after the mark), so repair leaves
// the snapshot that needs it alone while it repairs another; prune then
// keeps the marked pack for it and finishes (it refused while a snapshot
// needed the lost data).
func TestRepairSnapshotsKeepsMarkedData(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	srcA, srcB := t.TempDir(), t.TempDir()
	a, b := storetest.Data(41, 2<<20), storetest.Data(42, 2<<20)
	writeFile(t, filepath.Join(srcA, "a"), a)
	snapA := backupDir(t, repos.Writer, srcA)
	packA := largestPack(t, repos.Store, nil)
	if _, err := repos.Writer.SaveGCMark(ctx, []chunkstore.ID{packA}); err != nil {
		t.Fatal(err)
	}
	packs := listNames(t, repos.Store, chunkstore.DataPrefix)
	writeFile(t, filepath.Join(srcB, "b"), b)
	snapB := backupDir(t, repos.Writer, srcB)
	removeObject(t, repos.Store, chunkstore.PackName(largestPack(t, repos.Store, packs)))
	if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{}); !errors.Is(err, snapshot.ErrPruneUnsafe) {
		t.Fatalf("prune while a snapshot needs lost data: %v; want a refusal", err)
	}

	res, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RepairSnapshotsOptions{Forget: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Damaged) != 1 || res.Damaged[0].Original != snapB.ID || !res.Damaged[0].Forgotten {
		t.Fatalf("repair: %+v; want only %s repaired (%s needs marked data, which is not lost)", res.Damaged, snapB.ID.Short(), snapA.ID.Short())
	}
	if _, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{}); err != nil {
		t.Fatalf("prune after the repair: %v", err)
	}
	if !hasObject(t, repos.Store, chunkstore.PackName(packA)) || countObjects(t, repos.Store, chunkstore.GCPrefix) != 0 {
		t.Fatalf("prune deleted the marked pack %s that %s needs, or left its mark", packA.Short(), snapA.ID.Short())
	}
	verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{
		snapA.ID: {strings.TrimPrefix(filepath.Join(srcA, "a"), "/"): a},
	})
}

// TestRepairSnapshotsRefusesIncompleteIndex: what the index lacks is not
// lost while an index file is damaged, an indexed pack is missing, or a
// pack no index file lists holds it; repair refuses, changing nothing.
func TestRepairSnapshotsRefusesIncompleteIndex(t *testing.T) {
	ctx := context.Background()
	repos, _, _, _ := oneFile(t, 71, 2<<20)
	index := listNames(t, repos.Store, chunkstore.IndexPrefix)
	before := allNames(t, repos.Store)
	refused := func(st chunkstore.Store, why string) {
		t.Helper()
		_, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, st), snapshot.RepairSnapshotsOptions{Forget: true})
		if !errors.Is(err, snapshot.ErrIndexIncomplete) || !strings.Contains(err.Error(), why) {
			t.Fatalf("repair snapshots: %v; want ErrIndexIncomplete naming %q", err, why)
		}
		if after := allNames(t, repos.Store); !slices.Equal(before, after) {
			t.Fatalf("a refused repair changed the repository:\nbefore %v\nafter  %v", before, after)
		}
	}
	damaged := storetest.NewFaulty(repos.Store)
	damaged.FlipGet(index[0], 8*40)
	refused(damaged, "is damaged; run 'lifeboat repair index' first")
	refused(storetest.Hiding{Store: repos.Store, Hide: chunkstore.PackName(largestPack(t, repos.Store, nil))}, "is indexed but missing")
	refused(storetest.Hiding{Store: repos.Store, Hide: index[0]}, "which no index file lists, holds blob")
}

// markedAndLost makes a repository whose one snapshot (second) holds a
// file m whose data only a pack in a GC mark holds (marked: as if a
// backup that started before the mark reused it) and a file l whose pack
// is lost; the index is repaired, so repair snapshots would cut l and
// keep m in a copy that references the marked pack.
func markedAndLost(t *testing.T) (repos storetest.Repos, second *snapshot.Result, marked chunkstore.ID, src2 string, m []byte) {
	t.Helper()
	ctx := context.Background()
	repos = storetest.InitRepos(t, mem.New())
	src1, src2 := t.TempDir(), t.TempDir()
	m, l := storetest.Data(51, 2<<20), storetest.Data(52, 2<<20)
	writeFile(t, filepath.Join(src1, "m"), m)
	first := backupDir(t, repos.Writer, src1)
	marked = largestPack(t, repos.Store, nil)
	packs := listNames(t, repos.Store, chunkstore.DataPrefix)
	writeFile(t, filepath.Join(src2, "m"), m) // deduplicated into the first pack
	writeFile(t, filepath.Join(src2, "l"), l)
	second = backupDir(t, repos.Writer, src2)
	forget(t, repos.Store, first.ID)
	if _, err := repos.Writer.SaveGCMark(ctx, []chunkstore.ID{marked}); err != nil {
		t.Fatal(err)
	}
	removeObject(t, repos.Store, chunkstore.PackName(largestPack(t, repos.Store, packs)))
	if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	return repos, second, marked, src2, m
}

// TestRepairSnapshotsStopsWhenUnlocked: the race of
// TestRepairSnapshotsExcludesPrunes with the repair's prune session
// removed meanwhile (by 'lifeboat unlock' on another machine), so the
// prune runs and deletes the marked pack. The repair must then not save a
// copy that references the deleted pack.
func TestRepairSnapshotsStopsWhenUnlocked(t *testing.T) {
	ctx := context.Background()
	repos, second, marked, _, _ := markedAndLost(t)
	noMargin := chunkstore.DefaultSessionTiming
	noMargin.Margin = 0
	time.Sleep(10 * time.Millisecond)
	var pruneErr error
	fired := false
	racing := &hookStore{Store: repos.Store, beforePut: func(name string) {
		// The index file of the new listings: stored before any copy.
		if fired || !strings.HasPrefix(name, chunkstore.IndexPrefix) {
			return
		}
		fired = true
		removePruneSessions(t, repos.Writer)
		forget(t, repos.Store, second.ID)
		_, pruneErr = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{Sessions: noMargin})
	}}
	_, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, racing), snapshot.RepairSnapshotsOptions{})
	if pruneErr != nil || hasObject(t, repos.Store, chunkstore.PackName(marked)) {
		t.Fatalf("the racing prune: %v; want it to run and delete the marked pack %s (the scenario)", pruneErr, marked.Short())
	}
	if !errors.Is(err, chunkstore.ErrSessionRemoved) || !strings.Contains(err.Error(), "not committing") {
		t.Fatalf("repair snapshots whose prune session was removed: %v; want it to refuse to commit", err)
	}
	if n := countObjects(t, repos.Store, chunkstore.SnapshotsPrefix); n != 0 {
		t.Fatalf("%d snapshots saved; want none (the copy would reference the deleted pack)", n)
	}
}

// TestRepairSnapshotsExcludesPrunes: a repaired copy may reference data
// that only a pack in a GC mark holds, which nothing but the absence of a
// prune keeps. Here someone forgets the original while its copy is being
// saved and runs prune: the prune must stop (repair holds the prune
// session), not delete the marked pack under the copy. Nor does repair
// start while a prune runs.
func TestRepairSnapshotsExcludesPrunes(t *testing.T) {
	ctx := context.Background()
	repos, second, marked, src2, m := markedAndLost(t)

	// While a prune runs, repair refuses and changes nothing.
	other, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: "elsewhere", Machine: "elsewhere", PID: 4242, Prune: true}, chunkstore.DefaultSessionTiming)
	if err != nil {
		t.Fatal(err)
	}
	before := allNames(t, repos.Store)
	if _, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RepairSnapshotsOptions{}); !errors.Is(err, snapshot.ErrPruneBusy) || !strings.Contains(err.Error(), "host elsewhere, pid 4242") {
		t.Fatalf("repair snapshots beside a prune: %v; want ErrPruneBusy naming it", err)
	}
	if after := allNames(t, repos.Store); !slices.Equal(before, after) {
		t.Fatalf("a repair that found a prune running changed the repository:\nbefore %v\nafter  %v", before, after)
	}
	if err := other.End(ctx); err != nil {
		t.Fatal(err)
	}

	// Without a margin for clock skew, the repair's backup session, which
	// starts after the mark, does not hold the mark back: only the prune
	// session does.
	noMargin := chunkstore.DefaultSessionTiming
	noMargin.Margin = 0
	time.Sleep(10 * time.Millisecond)
	var pruneErr error
	racing := &hookStore{Store: repos.Store, beforePut: func(name string) {
		if !strings.HasPrefix(name, chunkstore.SnapshotsPrefix) {
			return
		}
		forget(t, repos.Store, second.ID)
		_, pruneErr = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{Sessions: noMargin})
	}}
	res, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, racing), snapshot.RepairSnapshotsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(pruneErr, snapshot.ErrPruneBusy) || !strings.Contains(pruneErr.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("prune while repair snapshots saved its copy: %v; want ErrPruneBusy naming the repair", pruneErr)
	}
	if len(res.Damaged) != 1 || res.Damaged[0].Repaired.IsNull() {
		t.Fatalf("repair: %+v", res.Damaged)
	}
	if !hasObject(t, repos.Store, chunkstore.PackName(marked)) {
		t.Fatalf("the marked pack %s that the repaired copy needs was deleted", marked.Short())
	}
	if _, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{}); err != nil {
		t.Fatalf("prune after the repair: %v", err)
	}
	verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{
		res.Damaged[0].Repaired: {strings.TrimPrefix(filepath.Join(src2, "m"), "/"): m},
	})
}

// hookStore calls beforePut with the name of each object before it is put.
type hookStore struct {
	chunkstore.Store
	beforePut func(name string)
}

func (h *hookStore) Put(ctx context.Context, name string, data []byte) error {
	h.beforePut(name)
	return h.Store.Put(ctx, name, data)
}
