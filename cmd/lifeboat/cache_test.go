package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCacheCleanup: 'lifeboat cache' lists the repository caches under
// the cache directory, a backup mentions those of other repositories
// unused for 30 days, and --cleanup removes them. The cache of a
// repository a command opens is marked used by it, however old it was,
// so it is kept; a directory that does not look like a repository
// cache (other contents) and signers/ are never touched.
func TestCacheCleanup(t *testing.T) {
	t.Parallel()
	c, r, src, _ := smallTreeRepo(t)
	c.ok(r.writer("backup", src)...)
	c.ok(r.reader("snapshots")...) // an identity pins the signer under signers/
	cacheDir := filepath.Join(c.dir, "cache", "lifeboat")
	repoID := decodeJSON[struct{ ID string }](t, c.ok("cat", "config", "--repo", r.path).stdout).ID
	old := time.Now().Add(-60 * 24 * time.Hour)
	age := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	plant := func(id, sub string) string {
		t.Helper()
		dir := filepath.Join(cacheDir, id)
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sub, "f"), make([]byte, 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		age(filepath.Join(dir, sub, "f"), filepath.Join(dir, sub), dir)
		return dir
	}
	gone := plant(strings.Repeat("a", 64), "packs")
	odd := plant(strings.Repeat("b", 64), "photos") // not what lifeboat keeps there
	mine := filepath.Join(cacheDir, repoID)
	ents, err := os.ReadDir(mine)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		age(filepath.Join(mine, e.Name()))
	}
	age(mine, filepath.Join(cacheDir, "signers"))

	out := c.ok("cache").stdout
	if !strings.Contains(out, "aaaaaaaaaaaa") || strings.Contains(out, "bbbbbbbbbbbb") || !strings.Contains(out, repoID[:12]) {
		t.Errorf("lifeboat cache lists the wrong caches:\n%s", out)
	}
	if !strings.Contains(out, "2 of 2 caches not used for 30 days") {
		t.Errorf("lifeboat cache does not count both old caches:\n%s", out)
	}

	// Any command that opens the repository marks its cache used, one
	// that only reads from it too.
	c.ok(r.reader("snapshots")...)
	if out := c.ok("cache").stdout; !strings.Contains(out, "1 of 2 caches not used for 30 days") {
		t.Errorf("listing the snapshots did not mark the repository's cache used:\n%s", out)
	}

	// A backup mentions the other one.
	b := c.ok(r.writer("backup", src)...)
	if !strings.Contains(b.stderr, "1 repository cache under "+cacheDir+" not used for 30 days") {
		t.Errorf("backup does not mention the old cache:\n%s", b.stderr)
	}

	// What a cleanup killed while removing left renamed aside goes
	// with the next one.
	interrupted := filepath.Join(cacheDir, ".removing-0123456789abcdef")
	if err := os.MkdirAll(filepath.Join(interrupted, "packs"), 0o700); err != nil {
		t.Fatal(err)
	}
	cl := c.ok("cache", "--cleanup", "--json")
	if _, err := os.Lstat(interrupted); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("what an interrupted cleanup left, %s, is still there (%v)", interrupted, err)
	}
	list := decodeJSON[[]struct {
		RepoID  string `json:"repo_id"`
		Size    int64  `json:"size"`
		Removed bool   `json:"removed"`
	}](t, cl.stdout)
	if len(list) != 2 {
		t.Fatalf("cache --cleanup --json lists %d caches, want 2:\n%s", len(list), cl.stdout)
	}
	for _, e := range list {
		if e.Removed != (e.RepoID == strings.Repeat("a", 64)) || e.Size <= 0 {
			t.Errorf("cache --cleanup: %+v", e)
		}
	}
	if _, err := os.Lstat(gone); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the unused cache %s is still there (%v)", gone, err)
	}
	for _, keep := range []string{odd, filepath.Join(mine, "index"), filepath.Join(cacheDir, "signers")} {
		if _, err := os.Lstat(keep); err != nil {
			t.Errorf("cache --cleanup removed %s: %v", keep, err)
		}
	}
	if b := c.ok(r.writer("backup", src)...); strings.Contains(b.stderr, "not used for") {
		t.Errorf("backup still mentions old caches after the cleanup:\n%s", b.stderr)
	}
	c.fails(exitUsage, []string{"cache", "--max-age", "0"}, "--max-age must be at least 1 day")
}
