package snapshot_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestRepairPacks flips a bit inside one blob of a pack holding two
// files, and checks that 'repair packs' copies every other blob into a
// new pack and drops the damaged one from the index: the untouched file
// restores, exactly the blob that was hit is reported lost, a new backup
// of the unchanged files makes the old snapshot whole again, and prune
// then deletes the damaged object.
func TestRepairPacks(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		a, b := storetest.Data(51, 2<<20), storetest.Data(52, 3<<20)
		writeFile(t, filepath.Join(src, "a"), a)
		writeFile(t, filepath.Join(src, "b"), b)
		first := backupDir(t, repos.Writer, src)
		damaged := largestPack(t, repos.Store, nil)
		r := reopenLoaded(t, repos, repos.Store)
		entry := r.Index().Pack(damaged)
		hit := entry.Blobs[len(entry.Blobs)/2]
		// Bit rot inside that blob's ciphertext (on reading: S3 checks
		// what is written).
		st := storetest.NewFaulty(repos.Store)
		st.FlipGet(chunkstore.PackName(damaged), 8*(int(hit.Offset)+int(hit.Length)/2))

		rep, err := reopenLoaded(t, repos, st).Check(ctx, chunkstore.CheckOptions{ReadData: true})
		if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Object != chunkstore.PackName(damaged) {
			t.Fatalf("check --read-data of the damaged pack: %+v, %v", rep, err)
		}
		before := allNames(t, repos.Store)
		dry, err := snapshot.RepairPacks(ctx, reopen(t, repos, st), []chunkstore.ID{damaged}, snapshot.RepairPacksOptions{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{hit.ID.String()}
		if len(dry.Packs) != 1 || dry.Packs[0].Lost != 1 || !slices.Equal(dry.Packs[0].LostIDs, want) || dry.Packs[0].Salvaged != len(entry.Blobs)-1 {
			t.Fatalf("dry run: %+v; want blob %s lost and the other %d salvageable", dry, hit.ID.Short(), len(entry.Blobs)-1)
		}
		if after := allNames(t, repos.Store); !slices.Equal(before, after) {
			t.Fatalf("a dry run changed the repository:\nbefore %v\nafter  %v", before, after)
		}

		res, err := snapshot.RepairPacks(ctx, reopen(t, repos, st), []chunkstore.ID{damaged}, snapshot.RepairPacksOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Packs[0].Lost != 1 || res.Written == 0 || res.IndexWritten == 0 {
			t.Fatalf("repair: %+v", res)
		}
		r = reopenLoaded(t, repos, st)
		if r.Index().HasPack(damaged) {
			t.Fatal("the damaged pack is still indexed")
		}
		for _, bl := range entry.Blobs {
			if bl.ID != hit.ID && !r.Index().Has(bl.ID) {
				t.Fatalf("salvaged blob %s is not indexed", bl.ID.Short())
			}
		}
		if !hasObject(t, repos.Store, chunkstore.PackName(damaged)) {
			t.Fatal("repair packs deleted the damaged object; prune is to")
		}
		probs, err := snapshot.Check(ctx, r)
		if err != nil || len(probs) != 1 {
			t.Fatalf("snapshot check after salvage: %v, %v; want the one file that needs the lost blob", probs, err)
		}
		lostFile, keptFile, kept := "b", "a", a
		if strings.HasSuffix(probs[0].Object, "/a") {
			lostFile, keptFile, kept = "a", "b", b
		}
		snap, err := snapshot.Load(ctx, r, first.ID)
		if err != nil {
			t.Fatal(err)
		}
		dst := t.TempDir()
		out, err := restore.Restore(ctx, r, snap, restore.Options{Target: dst})
		if err != nil || len(out.Failures) != 1 || !strings.HasSuffix(out.Failures[0].Path, "/"+lostFile) {
			t.Fatalf("restore after salvage: %+v, %v; want only %s failed", out, err, lostFile)
		}
		got, err := os.ReadFile(filepath.Join(dst, strings.TrimPrefix(filepath.Join(src, keptFile), "/")))
		if err != nil || !bytes.Equal(got, kept) {
			t.Fatalf("%s restored wrong after salvage (%v)", keptFile, err)
		}

		// The files are unchanged: the next backup stores the lost blob
		// again, and the old snapshot is whole.
		w, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: repos.Writer.Secrets()}, chunkstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		backupDir(t, w, src)
		if _, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{}); err != nil {
			t.Fatal(err)
		}
		if hasObject(t, repos.Store, chunkstore.PackName(damaged)) {
			t.Fatal("prune left the damaged, unindexed pack")
		}
		rel := func(p string) string { return strings.TrimPrefix(filepath.Join(src, p), "/") }
		verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{first.ID: {rel("a"): a, rel("b"): b}})
	})
}

// TestRepairPacksWithCopies: two packs hold the same blobs (a backup
// raced another), one marked for deletion and each damaged in a
// different blob. Repairing one copies every blob that verifies there —
// also those the other holds, whose copy is not verified — and counts a
// blob that failed as held elsewhere, not lost; repairing the other then
// finds its failed blob in the first one's copies. Nothing is lost, and
// after prune every pack verifies and the snapshot restores.
func TestRepairPacksWithCopies(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	// More than the largest chunk (8 MiB), so at least two blobs whatever
	// the repository's random polynomial (3 MiB was one chunk once in CI).
	data := storetest.Data(81, 9<<20)
	first, _, q, p, _ := storedTwice(t, repos, src, data)
	if _, err := repos.Writer.SaveGCMark(ctx, []chunkstore.ID{q}); err != nil {
		t.Fatal(err)
	}
	r := reopenLoaded(t, repos, repos.Store)
	qe, pe := r.Index().Pack(q), r.Index().Pack(p)
	if qe == nil || pe == nil || len(pe.Blobs) < 2 {
		t.Fatalf("setup: packs %v %v", qe, pe)
	}
	st := storetest.NewFaulty(repos.Store)
	hitP := pe.Blobs[0]
	st.FlipGet(chunkstore.PackName(p), 8*(int(hitP.Offset)+int(hitP.Length)/2))

	res, err := snapshot.RepairPacks(ctx, reopen(t, repos, st), []chunkstore.ID{p}, snapshot.RepairPacksOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rp := res.Packs[0]; rp.Lost != 0 || rp.Elsewhere != 1 || rp.Salvaged != len(pe.Blobs)-1 || res.Written == 0 {
		t.Fatalf("repair of p: %+v (written %d); want one blob held elsewhere (the marked q), the rest copied", rp, res.Written)
	}
	r = reopenLoaded(t, repos, st)
	for _, bl := range pe.Blobs[1:] {
		loc, ok := r.Index().Lookup(bl.ID) // q is marked: excluded here
		if !ok || loc.Pack.ID == p {
			t.Fatalf("blob %s, intact in p, was not copied out of it (found in %v)", bl.ID.Short(), loc.Pack)
		}
	}

	// Now q is damaged too, in another blob; it is still marked, so a
	// repair refuses it — prune owns it. After the mark is gone (a
	// prune that keeps q for the snapshot), it is repaired: its failed
	// blob is in p's copies.
	hitQ := qe.Blobs[len(qe.Blobs)-1]
	st.FlipGet(chunkstore.PackName(q), 8*(int(hitQ.Offset)+int(hitQ.Length)/2))
	if _, err := snapshot.RepairPacks(ctx, reopen(t, repos, st), []chunkstore.ID{q}, snapshot.RepairPacksOptions{}); err == nil || !strings.Contains(err.Error(), "marked for deletion") {
		t.Fatalf("repair of a marked pack: %v; want a refusal", err)
	}
	if _, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{MaxUnused: -1}); err != nil {
		t.Fatal(err)
	}
	if !hasObject(t, repos.Store, chunkstore.PackName(q)) || !reopenLoaded(t, repos, st).Index().HasPack(q) || hasObject(t, repos.Store, chunkstore.PackName(p)) {
		t.Fatal("prune deleted q, whose blob only it holds now, or kept the damaged, unindexed p")
	}
	res, err = snapshot.RepairPacks(ctx, reopen(t, repos, st), []chunkstore.ID{q}, snapshot.RepairPacksOptions{})
	if err != nil || res.Packs[0].Lost != 0 || res.Packs[0].Elsewhere != 1 {
		t.Fatalf("repair of q: %+v, %v; want its failed blob found in p's copies, nothing lost", res, err)
	}
	if _, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	rel := strings.TrimPrefix(filepath.Join(src, "b"), "/")
	verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{first.ID: {rel: data}})
}

// TestRepairPacksMissing: a pack the index lists and the store lost is
// handled like a damaged one with nothing to save: its blobs are listed
// as lost and its entry is dropped.
func TestRepairPacksMissing(t *testing.T) {
	ctx := context.Background()
	repos, _, _, _ := oneFile(t, 93, 2<<20)
	p := largestPack(t, repos.Store, nil)
	blobs := len(reopenLoaded(t, repos, repos.Store).Index().Pack(p).Blobs)
	removeObject(t, repos.Store, chunkstore.PackName(p))
	res, err := snapshot.RepairPacks(ctx, reopen(t, repos, repos.Store), []chunkstore.ID{p}, snapshot.RepairPacksOptions{})
	if err != nil || res.Packs[0].Problem != "the pack is missing" || res.Packs[0].Lost != blobs || res.Packs[0].Salvaged != 0 {
		t.Fatalf("repair of a missing pack: %+v, %v; want its %d blobs lost", res, err, blobs)
	}
	if reopenLoaded(t, repos, repos.Store).Index().HasPack(p) {
		t.Fatal("the missing pack is still indexed")
	}
}
