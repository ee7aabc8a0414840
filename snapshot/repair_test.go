package snapshot_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestRepairIndex damages a repository the two ways an operator meets
// (an index file that no longer decrypts, a pack deleted behind
// lifeboat's back) and checks that 'repair index', run with the writer
// key, leaves an index that describes exactly the packs there are: prune
// runs again, the intact snapshot restores, and the next backup stores
// the lost data again instead of deduplicating against it.
func TestRepairIndex(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		a, b, d := storetest.Data(11, 3<<20), storetest.Data(12, 2<<20), storetest.Data(13, 3<<20)
		writeFile(t, filepath.Join(src, "a"), a)
		writeFile(t, filepath.Join(src, "sub", "b"), b)
		first := backupDir(t, repos.Writer, src)
		index1 := listNames(t, repos.Store, chunkstore.IndexPrefix)
		packs1 := listNames(t, repos.Store, chunkstore.DataPrefix)
		writeFile(t, filepath.Join(src, "d"), d)
		second := backupDir(t, repos.Writer, src)
		lost := largestPack(t, repos.Store, packs1) // holds d
		lostBlobs := len(reopenLoaded(t, repos, repos.Store).Index().Pack(lost).Blobs)

		// The damage: the first backup's index files read back with a
		// flipped bit (S3 checks what is written, so the rot is injected
		// on reading), and the pack with d's data is gone.
		st := storetest.NewFaulty(repos.Store)
		for _, name := range index1 {
			st.FlipGet(name, 8*40+3)
		}
		removeObject(t, repos.Store, chunkstore.PackName(lost))
		_, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{})
		if !errors.Is(err, snapshot.ErrPruneUnsafe) || !strings.Contains(err.Error(), "lifeboat repair index") {
			t.Fatalf("prune with a damaged index file: %v; want a refusal naming 'lifeboat repair index'", err)
		}

		writer := func() *chunkstore.Repository {
			r, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: repos.Writer.Secrets()}, chunkstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		before := allNames(t, repos.Store)
		dry, err := snapshot.RepairIndex(ctx, writer(), snapshot.RepairOptions{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(index1)
		if !slices.Equal(dry.DamagedIndex, index1) || !slices.Equal(dry.MissingPacks, []string{chunkstore.PackName(lost)}) ||
			dry.MissingBlobs != lostBlobs || dry.Reindexed != len(packs1) || !dry.Changed() {
			t.Fatalf("dry run found %+v; want damaged %v, missing %s (%d blobs), %d packs to index", dry, index1, lost.Short(), lostBlobs, len(packs1))
		}
		if after := allNames(t, repos.Store); !slices.Equal(before, after) {
			t.Fatalf("a dry run changed the repository:\nbefore %v\nafter  %v", before, after)
		}

		res, err := snapshot.RepairIndex(ctx, writer(), snapshot.RepairOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.IndexWritten == 0 || res.IndexRemoved != dry.IndexFiles || res.Reindexed != len(packs1) {
			t.Fatalf("repair: %+v; want every one of the %d index files replaced", res, dry.IndexFiles)
		}
		for _, name := range index1 {
			if hasObject(t, repos.Store, name) {
				t.Fatalf("damaged index file %s is still there", name)
			}
		}
		r := reopenLoaded(t, repos, st)
		if p := r.IndexProblems(); len(p) > 0 {
			t.Fatalf("index problems after repair: %v", p)
		}
		if r.Index().HasPack(lost) {
			t.Fatalf("the index still lists the lost pack %s", lost.Short())
		}
		for _, name := range packs1 {
			if id, _ := chunkstore.ParsePackName(name); !r.Index().HasPack(id) {
				t.Fatalf("pack %s of the first backup is not indexed after repair", name)
			}
		}
		rep, err := r.Check(ctx, chunkstore.CheckOptions{})
		if err != nil || len(rep.Problems) > 0 || rep.UnindexedPacks > 0 {
			t.Fatalf("repository check after repair: %+v, %v", rep, err)
		}
		// The second snapshot lost d, and says so.
		probs, err := snapshot.Check(ctx, r)
		if err != nil || len(probs) != 1 || !strings.HasSuffix(probs[0].Object, "/d") {
			t.Fatalf("snapshot check after repair: %v, %v; want the lost file d named", probs, err)
		}

		// The next backup stores d again rather than pointing at the lost pack.
		third := backupDir(t, writer(), src)
		if third.Manifest.Summary.BytesAdded < uint64(len(d))/2 {
			t.Fatalf("backup after repair stored %d bytes; d (%d bytes) must be stored again", third.Manifest.Summary.BytesAdded, len(d))
		}
		forget(t, repos.Store, second.ID)
		if _, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{}); err != nil {
			t.Fatalf("prune after repair: %v", err)
		}
		rel := func(p string) string { return strings.TrimPrefix(filepath.Join(src, p), "/") }
		verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{
			first.ID: {rel("a"): a, rel("sub/b"): b},
			third.ID: {rel("a"): a, rel("sub/b"): b, rel("d"): d},
		})

		again, err := snapshot.RepairIndex(ctx, writer(), snapshot.RepairOptions{})
		if err != nil || again.Changed() || again.IndexWritten+again.IndexRemoved > 0 {
			t.Fatalf("a second repair: %+v, %v; want nothing to do", again, err)
		}
	})
}

// TestRepairIndexWaitsForPrune: repair rewrites the index as prune does,
// so it does not run beside one.
func TestRepairIndexWaitsForPrune(t *testing.T) {
	ctx := context.Background()
	repos, _, _, _ := oneFile(t, 14, 1<<20)
	other, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: "elsewhere", Machine: "elsewhere", PID: 4242, Prune: true}, chunkstore.DefaultSessionTiming)
	if err != nil {
		t.Fatal(err)
	}
	before := allNames(t, repos.Store)
	_, err = snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{})
	if !errors.Is(err, snapshot.ErrPruneBusy) || !strings.Contains(err.Error(), "host elsewhere, pid 4242") {
		t.Fatalf("repair beside a prune: %v", err)
	}
	if after := allNames(t, repos.Store); !slices.Equal(before, after) {
		t.Fatalf("a repair that found a prune running changed the repository:\nbefore %v\nafter  %v", before, after)
	}
	if err := other.End(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); err != nil {
		t.Fatalf("repair after the prune ended: %v", err)
	}
}

// allNames lists every object but the sessions (each command's own).
func allNames(t *testing.T, st chunkstore.Store) []string {
	t.Helper()
	var names []string
	for _, n := range listNames(t, st, "") {
		if !strings.HasPrefix(n, chunkstore.SessionsPrefix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// TestRepairIndexKeepsWhatIsThere: a pack the listing misses but the
// store holds is not dropped, and a marked pack whose index file is
// damaged is indexed again (prune's sweep needs its entry to keep it if a
// backup reused its data).
func TestRepairIndexKeepsWhatIsThere(t *testing.T) {
	ctx := context.Background()
	repos, _, _, _ := oneFile(t, 61, 2<<20)
	p := largestPack(t, repos.Store, nil)

	res, err := snapshot.RepairIndex(ctx, reopen(t, repos, storetest.Hiding{Store: repos.Store, Hide: chunkstore.PackName(p)}), snapshot.RepairOptions{})
	if err != nil || res.Changed() || len(res.MissingPacks) != 0 {
		t.Fatalf("repair with a pack the listing misses: %+v, %v; want it kept", res, err)
	}

	if _, err := repos.Writer.SaveGCMark(ctx, []chunkstore.ID{p}); err != nil {
		t.Fatal(err)
	}
	st := storetest.NewFaulty(repos.Store)
	for _, name := range listNames(t, repos.Store, chunkstore.IndexPrefix) {
		st.FlipGet(name, 8*40)
	}
	res, err = snapshot.RepairIndex(ctx, reopen(t, repos, st), snapshot.RepairOptions{})
	if err != nil || res.Reindexed != 2 { // the data pack and the tree pack
		t.Fatalf("repair with every index file damaged: %+v, %v; want both packs indexed again", res, err)
	}
	if r := reopenLoaded(t, repos, repos.Store); !r.Index().HasPack(p) {
		t.Fatal("the marked pack is not indexed after the repair")
	}
}

// oneFile initialises an in-memory repository and backs up a directory
// holding one file, "a", of n seeded bytes.
func oneFile(t *testing.T, seed uint64, n int) (repos storetest.Repos, src string, a []byte, snap *snapshot.Result) {
	t.Helper()
	repos = storetest.InitRepos(t, mem.New())
	src = t.TempDir()
	a = storetest.Data(seed, n)
	writeFile(t, filepath.Join(src, "a"), a)
	return repos, src, a, backupDir(t, repos.Writer, src)
}

// TestIndexRewritesNeedAHeldSession: prune and the repairs rewrite the
// index only while their session was renewed within the commit window;
// one that was not (paused, or cut off from the store) may no longer be
// the only one, and stops before it rewrites or deletes anything.
func TestIndexRewritesNeedAHeldSession(t *testing.T) {
	ctx := context.Background()
	lapsed := chunkstore.DefaultSessionTiming
	lapsed.CommitWindow = time.Nanosecond // and no renewal for 5 minutes
	repos, src, _, first := oneFile(t, 91, 2<<20)
	packs1 := listNames(t, repos.Store, chunkstore.DataPrefix)
	writeFile(t, filepath.Join(src, "a"), storetest.Data(92, 2<<20))
	backupDir(t, repos.Writer, src)
	live := largestPack(t, repos.Store, packs1) // the second snapshot's data
	forget(t, repos.Store, first.ID)

	before := allNames(t, repos.Store)
	_, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{Sessions: lapsed})
	if err == nil || !strings.Contains(err.Error(), "not rewriting the index") {
		t.Fatalf("prune with a lapsed session: %v", err)
	}
	for _, name := range before {
		if !hasObject(t, repos.Store, name) {
			t.Fatalf("prune with a lapsed session deleted %s", name)
		}
	}

	removeObject(t, repos.Store, chunkstore.PackName(live))
	index := listNames(t, repos.Store, chunkstore.IndexPrefix)
	slices.Sort(index) // the in-memory store lists in no order
	_, err = snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{Sessions: lapsed})
	if err == nil || !strings.Contains(err.Error(), "not rewriting the index") {
		t.Fatalf("repair index with a lapsed session: %v", err)
	}
	if after := listNames(t, repos.Store, chunkstore.IndexPrefix); !slices.Equal(index, slices.Sorted(slices.Values(after))) {
		t.Fatalf("repair index with a lapsed session changed the index files: %v → %v", index, after)
	}
	if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); err != nil {
		t.Fatalf("repair index with a held session: %v", err)
	}
}
