package chunkstore_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// entries counts what directory dir holds.
func entries(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// openCached opens the repository repos made in st, with its identity
// and the cache directory cache.
func openCached(t *testing.T, st chunkstore.Store, repos storetest.Repos, cache string) *chunkstore.Repository {
	t.Helper()
	ids, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := chunkstore.Open(t.Context(), st, chunkstore.Credentials{Identities: ids}, chunkstore.Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCacheSweepsStaleTempFiles: the temporary files a process killed
// while writing to the cache left (tree packs, metadata, the signer pins)
// are removed once they are an hour old: those of the signer pins when a
// repository is opened with that cache, those of the repository's cache
// directories by the sweep that lists each of them anyway (snapshots
// when they are listed, index and tree packs when the index is loaded),
// so no directory is read twice. Younger ones, which a running process
// may be about to rename, are kept, and so are cached objects.
func TestCacheSweepsStaleTempFiles(t *testing.T) {
	st := mem.New()
	repos := storetest.InitRepos(t, st)
	cache := t.TempDir()
	repoCache := filepath.Join(cache, repos.Writer.Config().ID)
	old := time.Now().Add(-2 * time.Hour)
	plant := func(path string, mtime time.Time) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return path
	}
	signerTemp := plant(filepath.Join(cache, "signers", ".tmp-333"), old)
	snapTemp := plant(filepath.Join(repoCache, "snapshots", ".tmp-666"), old)
	loadTemps := []string{
		plant(filepath.Join(repoCache, "packs", ".tmp-111"), old),
		plant(filepath.Join(repoCache, "index", ".tmp-222"), old),
	}
	kept := []string{
		plant(filepath.Join(repoCache, "packs", ".tmp-444"), time.Now()),
		plant(filepath.Join(repoCache, "packs", "0123abcd"), old), // no object ID: not the sweep's
		plant(filepath.Join(cache, "signers", ".tmp-555"), time.Now().Add(-time.Minute)),
		plant(filepath.Join(repoCache, "snapshots", ".tmp-777"), time.Now().Add(-time.Minute)),
	}
	gone := func(step string, paths ...string) {
		t.Helper()
		for _, p := range paths {
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after %s: stale temporary file %s left in the cache (%v)", step, p, err)
			}
		}
	}
	r := openCached(t, st, repos, cache)
	gone("open", signerTemp)
	if _, err := r.ListMeta(t.Context(), chunkstore.KindSnapshot); err != nil {
		t.Fatal(err)
	}
	gone("listing the snapshots", snapTemp)
	if err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	gone("loading the index", loadTemps...)
	for _, p := range kept {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed from the cache: %v", p, err)
		}
	}
}

// TestLoadIndexKeepsCacheTemps: loading the index removes the cached
// copies of index files that are gone from the store, but not the
// temporary file through which another command is writing a copy at that
// moment (.tmp-*, renamed moments later; Open removes those a killed
// command left once they are an hour old). It removed every name that
// was no live index file's.
func TestLoadIndexKeepsCacheTemps(t *testing.T) {
	st, err := local.Open(filepath.Join(t.TempDir(), "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	repos := storetest.InitRepos(t, st)
	if _, err := repos.Writer.SaveMeta(t.Context(), chunkstore.KindIndex, chunkstore.EncodeIndex(nil)); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	dir := filepath.Join(cache, repos.Writer.Config().ID, "index")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(dir, chunkstore.Hash([]byte("a deleted index file")).String())
	temp := filepath.Join(dir, ".tmp-123")
	for _, p := range []string{gone, temp} {
		if err := os.WriteFile(p, []byte("copy"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour) // copied by a command run earlier
	if err := os.Chtimes(gone, old, old); err != nil {
		t.Fatal(err)
	}
	r := openCached(t, st, repos, cache)
	if err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(gone); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the copy of an index file the store no longer has is still cached (%v)", err)
	}
	if _, err := os.Lstat(temp); err != nil {
		t.Errorf("a running command's temporary file was removed from the index cache: %v", err)
	}
	if n := entries(t, dir); n != 2 {
		t.Errorf("index cache holds %d files, want the stored index file's copy and the temporary file", n)
	}
}

// TestMetaRefusesKindsNotStoredByID: SaveMeta, LoadMeta and ListMeta
// work on index and snapshot objects only. A session or GC mark passed
// to them is refused; every kind but the index was taken to live under
// snapshots/, so a session saved this way was stored (and cached) as a
// snapshot, and listing GC marks listed the snapshots.
func TestMetaRefusesKindsNotStoredByID(t *testing.T) {
	st := mem.New()
	repos := storetest.InitRepos(t, st)
	cache := t.TempDir()
	r := openCached(t, st, repos, cache)
	snap, err := r.SaveMeta(t.Context(), chunkstore.KindSnapshot, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []chunkstore.MetaKind{chunkstore.KindSession, chunkstore.KindGCMark} {
		if _, err := r.SaveMeta(t.Context(), kind, []byte("{}")); err == nil || !strings.Contains(err.Error(), kind.String()) {
			t.Errorf("SaveMeta(%s) = %v, want an error naming the kind", kind, err)
		}
		if got, err := r.ListMeta(t.Context(), kind); err == nil {
			t.Errorf("ListMeta(%s) listed %v, want an error", kind, got)
		}
		if _, err := r.LoadMeta(t.Context(), kind, snap); err == nil {
			t.Errorf("LoadMeta(%s) of snapshot %s succeeded, want an error", kind, snap.Short())
		}
	}
	listed, err := r.ListMeta(t.Context(), chunkstore.KindSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0] != snap {
		t.Errorf("snapshots/ lists %v, want only %s", listed, snap.Short())
	}
	if n := entries(t, filepath.Join(cache, r.Config().ID, "snapshots")); n != 1 {
		t.Errorf("the snapshots' cache holds %d files, want the one snapshot's copy", n)
	}
}

// TestLoadIndexWithProblemsSweepsPackTemps: with an index file that
// cannot be read, the packs it lists are unknown, so loading the index
// keeps every cached tree pack; the stale temporary files beside them
// are still removed, as no other sweep reads that directory.
func TestLoadIndexWithProblemsSweepsPackTemps(t *testing.T) {
	st := mem.New()
	repos := storetest.InitRepos(t, st)
	junk := []byte("a damaged index file")
	if err := st.Put(t.Context(), chunkstore.IndexPrefix+chunkstore.Hash(junk).String(), junk); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	packs := filepath.Join(cache, repos.Writer.Config().ID, "packs")
	if err := os.MkdirAll(packs, 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	temp := filepath.Join(packs, ".tmp-1")
	unknown := filepath.Join(packs, chunkstore.Hash([]byte("a pack the damaged file may list")).String())
	for _, p := range []string{temp, unknown} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	r := openCached(t, st, repos, cache)
	if err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(r.IndexProblems()) != 1 {
		t.Fatalf("index problems %v, want the damaged file's", r.IndexProblems())
	}
	if _, err := os.Lstat(temp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file left among the cached tree packs (%v)", err)
	}
	if _, err := os.Lstat(unknown); err != nil {
		t.Errorf("a cached tree pack was removed while an index file was unread: %v", err)
	}
}
