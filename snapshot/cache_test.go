package snapshot_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// openCached opens the repository with its identity and the cache
// directory cache, as a command of a machine with that cache would.
func openCached(t *testing.T, repos storetest.Repos, cache string) *chunkstore.Repository {
	t.Helper()
	ids, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := chunkstore.Open(context.Background(), repos.Store, chunkstore.Credentials{Identities: ids}, chunkstore.Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// readAll lists the snapshots and walks every tree of each through a
// repository opened with cache, which leaves a copy of every manifest
// and tree pack there (as 'lifeboat snapshots' and 'ls' do).
func readAll(t *testing.T, repos storetest.Repos, cache string) {
	t.Helper()
	ctx := context.Background()
	r := openCached(t, repos, cache)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	snaps, errs, err := snapshot.List(ctx, r)
	if err != nil || len(errs) > 0 {
		t.Fatalf("list snapshots: %v %v", err, errs)
	}
	for _, s := range snaps {
		if err := snapshot.Walk(ctx, r, s.Tree, func(string, *snapshot.Node) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

// cached lists the names in a folder of the repository's cache.
func cached(t *testing.T, repos storetest.Repos, cache, folder string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(cache, repos.Writer.Config().ID, folder))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// ageCache sets the time of every file in the repository's cache an hour
// back, as if the copies had been made by commands run earlier that day.
func ageCache(t *testing.T, repos storetest.Repos, cache string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	err := filepath.WalkDir(filepath.Join(cache, repos.Writer.Config().ID), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chtimes(path, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// twoSnapshotsOneForgettable backs up src twice, with a file of its own
// in each, and returns both; once the first is forgotten, its tree pack
// holds nothing the second uses.
func twoSnapshotsOneForgettable(t *testing.T, repos storetest.Repos, src string) (first, second *snapshot.Result) {
	t.Helper()
	writeFile(t, filepath.Join(src, "a"), storetest.Data(1, 1<<20))
	first = backupDir(t, repos.Writer, src)
	removeFile(t, filepath.Join(src, "a"))
	writeFile(t, filepath.Join(src, "b"), storetest.Data(2, 1<<20))
	second = backupDir(t, repos.Writer, src)
	return first, second
}

// checkCacheMatchesStore fails unless every tree pack, index file and
// snapshot copy in the cache is an object the store still holds, and
// returns how many tree packs are cached.
func checkCacheMatchesStore(t *testing.T, repos storetest.Repos, cache string) int {
	t.Helper()
	stored := listNames(t, repos.Store, "")
	packs := cached(t, repos, cache, "packs")
	for _, name := range packs {
		id, err := chunkstore.ParseID(name)
		if err != nil {
			t.Fatalf("cache packs/%s: %v", name, err)
		}
		if !slices.Contains(stored, chunkstore.PackName(id)) {
			t.Errorf("the cache keeps tree pack %s, which is no longer in the store", name)
		}
	}
	for _, prefix := range []string{chunkstore.IndexPrefix, chunkstore.SnapshotsPrefix} {
		for _, name := range cached(t, repos, cache, filepath.Clean(prefix)) {
			if !slices.Contains(stored, prefix+name) {
				t.Errorf("the cache keeps a copy of %s%s, which is no longer in the store", prefix, name)
			}
		}
	}
	return len(packs)
}

// TestForgetAndPruneShrinkTheirCache: forget removes this machine's
// cached copy of the snapshot, and prune those of the tree packs and
// index files it deletes. The cache kept every tree pack and snapshot
// ever read, so it grew without bound.
func TestForgetAndPruneShrinkTheirCache(t *testing.T) {
	for _, backend := range []string{"local", "minio"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			repos := pruneRepos(t, backend)
			cache := t.TempDir()
			first, second := twoSnapshotsOneForgettable(t, repos, t.TempDir())
			readAll(t, repos, cache)
			before := len(cached(t, repos, cache, "packs"))
			if before < 2 || len(cached(t, repos, cache, "snapshots")) != 2 {
				t.Fatalf("cache after reading both snapshots: packs %v, snapshots %v; want both snapshots' tree packs and manifests",
					cached(t, repos, cache, "packs"), cached(t, repos, cache, "snapshots"))
			}

			if err := snapshot.Forget(ctx, openCached(t, repos, cache), first.ID); err != nil {
				t.Fatal(err)
			}
			if got := cached(t, repos, cache, "snapshots"); !slices.Equal(got, []string{second.ID.String()}) {
				t.Errorf("cached snapshots after forgetting %s: %v, want only %s", first.ID.Short(), got, second.ID.Short())
			}
			res, err := snapshot.Prune(ctx, openCached(t, repos, cache), snapshot.PruneOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.DeletedPacks == 0 {
				t.Fatalf("prune: %+v, want the forgotten snapshot's packs deleted", res)
			}
			if after := checkCacheMatchesStore(t, repos, cache); after >= before {
				t.Errorf("%d tree packs cached after prune, %d before: the forgotten snapshot's stayed", after, before)
			}
			verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{second.ID: nil})
		})
	}
}

// TestCacheForgetsWhatOthersDeleted: a machine whose cache holds copies
// of a snapshot and tree packs that another machine forgot and pruned
// drops them when it next lists the snapshots and loads the index. Copies
// of objects still stored are kept, and so are temporary files, which a
// command running beside it is about to rename.
func TestCacheForgetsWhatOthersDeleted(t *testing.T) {
	for _, backend := range []string{"local", "minio"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			repos := pruneRepos(t, backend)
			cache, other := t.TempDir(), t.TempDir()
			first, second := twoSnapshotsOneForgettable(t, repos, t.TempDir())
			readAll(t, repos, cache)
			packs := cached(t, repos, cache, "packs")

			// The other machine forgets the first snapshot and prunes.
			if err := snapshot.Forget(ctx, openCached(t, repos, other), first.ID); err != nil {
				t.Fatal(err)
			}
			if res, err := snapshot.Prune(ctx, openCached(t, repos, other), snapshot.PruneOptions{}); err != nil || res.DeletedPacks == 0 {
				t.Fatalf("prune: %+v, %v; want the forgotten snapshot's packs deleted", res, err)
			}
			ageCache(t, repos, cache)
			temps := []string{
				filepath.Join(cache, repos.Writer.Config().ID, "packs", ".tmp-1"),
				filepath.Join(cache, repos.Writer.Config().ID, "snapshots", ".tmp-2"),
				filepath.Join(cache, repos.Writer.Config().ID, "index", ".tmp-3"),
			}
			for _, p := range temps {
				writeFile(t, p, []byte("being written"))
			}

			r := openCached(t, repos, cache)
			if _, err := r.ListMeta(ctx, chunkstore.KindSnapshot); err != nil {
				t.Fatal(err)
			}
			if got := cached(t, repos, cache, "snapshots"); !slices.Equal(got, []string{".tmp-2", second.ID.String()}) {
				t.Errorf("cached snapshots after listing: %v, want .tmp-2 and %s", got, second.ID.Short())
			}
			if err := r.LoadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			for _, p := range temps {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("a running command's temporary file was removed: %v", err)
				}
				removeFile(t, p)
			}
			left := checkCacheMatchesStore(t, repos, cache)
			if left == 0 || left >= len(packs) {
				t.Errorf("%d tree packs cached after loading the index, %d before: want the deleted ones gone, the others kept", left, len(packs))
			}
			// What is left is what the remaining snapshot reads: no download.
			readAll(t, repos, cache)
			if got := len(cached(t, repos, cache, "packs")); got != left {
				t.Errorf("reading the remaining snapshot cached %d tree packs more: a kept one was removed", got-left)
			}
		})
	}
}
