package chunkstore_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// TestOpenSweepsStaleCacheTempFiles: the temporary files a process
// killed while writing to the cache left (tree packs, metadata, the
// signer pins) are removed when a repository is opened with that cache
// once they are an hour old; nothing removed them, those of the tree
// packs and signers above all. Younger ones, which a running process
// may be about to rename, are kept, and so are cached objects.
func TestOpenSweepsStaleCacheTempFiles(t *testing.T) {
	st := mem.New()
	repos := storetest.InitRepos(t, st)
	ids, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
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
	stale := []string{
		plant(filepath.Join(repoCache, "packs", ".tmp-111"), old),
		plant(filepath.Join(repoCache, "index", ".tmp-222"), old),
		plant(filepath.Join(cache, "signers", ".tmp-333"), old),
	}
	kept := []string{
		plant(filepath.Join(repoCache, "packs", ".tmp-444"), time.Now()),
		plant(filepath.Join(repoCache, "packs", "0123abcd"), old), // a cached pack, however old
		plant(filepath.Join(cache, "signers", ".tmp-555"), time.Now().Add(-time.Minute)),
	}
	if _, err := chunkstore.Open(t.Context(), st, chunkstore.Credentials{Identities: ids}, chunkstore.Options{CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	for _, p := range stale {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale temporary file %s left in the cache (%v)", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed from the cache: %v", p, err)
		}
	}
}
