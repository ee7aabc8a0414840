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
		r := reopen(t, repos, repos.Store)
		if err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
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

func reopenLoaded(t *testing.T, repos storetest.Repos, st chunkstore.Store) *chunkstore.Repository {
	t.Helper()
	r := reopen(t, repos, st)
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}
