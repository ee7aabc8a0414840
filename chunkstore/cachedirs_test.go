package chunkstore_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// TestRemoveCacheRefuses: RemoveCache checks again what it is about to
// remove, since the listing the caller decided on may be stale: a name
// that is no repository ID, a directory holding what lifeboat does not
// keep there, a link, and a cache used since the cut-off are all left
// alone with an error naming the path; an unused cache is removed whole.
func TestRemoveCacheRefuses(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-48 * time.Hour)
	cutoff := time.Now().Add(-24 * time.Hour)
	mk := func(name string, subs ...string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		for _, s := range subs {
			if err := os.MkdirAll(filepath.Join(p, s), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(p, s, "x"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(filepath.Join(p, s), old, old); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	id := func(c string) string { return strings.Repeat(c, 64) }
	unused := mk(id("a"), "packs", "files")
	foreign := mk(id("b"), "packs", "music")
	fresh := mk(id("c"), "index")
	if err := os.Chtimes(filepath.Join(fresh, "index"), time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	target := mk("elsewhere", "index")
	if err := os.Symlink(target, filepath.Join(dir, id("d"))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ id, want string }{
		{"signers", "no repository ID"},
		{id("b"), foreign},
		{id("c"), "since the cut-off"},
		{id("d"), "does not look like"},
	} {
		if err := chunkstore.RemoveCache(dir, tc.id, cutoff); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("RemoveCache(%s) = %v, want an error mentioning %q", tc.id, err, tc.want)
		}
	}
	for _, p := range []string{foreign, fresh, filepath.Join(target, "index", "x")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	if err := chunkstore.RemoveCache(dir, id("a"), cutoff); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == filepath.Base(unused) || strings.HasPrefix(e.Name(), ".removing-") {
			t.Errorf("%s left in the cache directory after removing the unused cache", e.Name())
		}
	}
	list, err := chunkstore.Caches(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].RepoID != id("c") || list[0].Size != 1 {
		t.Errorf("Caches lists %+v, want only the fresh cache of 1 byte", list)
	}
}

// TestRemoveInterruptedOnlyCaches: what an interrupted cleanup left (a
// cache renamed aside, maybe half removed) goes; a directory that only
// starts like one, one holding what no cache holds, and a link to a
// directory stay, as they would in a --cache-dir set to the home
// directory by mistake.
func TestRemoveInterruptedOnlyCaches(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, subs ...string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, s := range subs {
			if err := os.MkdirAll(filepath.Join(p, s), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(p, s, "x"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	gone := []string{
		mk(".removing-0123456789abcdef", "index", "packs"),
		mk(".removing-fedcba9876543210"), // emptied before the kill
	}
	kept := []string{
		mk(".removing-notes", "index"),
		mk(".removing-0123456789abcde0", "index", "Documents"),
		mk("target", "packs"),
	}
	link := filepath.Join(dir, ".removing-00112233445566aa")
	if err := os.Symlink(kept[2], link); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, link, filepath.Join(kept[2], "packs", "x"))
	n, err := chunkstore.RemoveInterrupted(dir)
	if err != nil || n != len(gone) {
		t.Errorf("RemoveInterrupted = %d, %v; want %d, nil", n, err, len(gone))
	}
	for _, p := range gone {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s, left by an interrupted cleanup, is still there (%v)", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("RemoveInterrupted removed %s, no cache: %v", p, err)
		}
	}
}

// TestRemoveCacheOpenedMeanwhile: a cache that a command opened (Open
// marks it used) after RemoveCache found it unused, but before it was
// renamed aside, is put back and left whole, with an error saying so.
func TestRemoveCacheOpenedMeanwhile(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-48 * time.Hour)
	cutoff := time.Now().Add(-24 * time.Hour)
	p := filepath.Join(dir, strings.Repeat("e", 64))
	if err := os.MkdirAll(filepath.Join(p, "packs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "packs", "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{filepath.Join(p, "packs"), p} {
		if err := os.Chtimes(q, old, old); err != nil {
			t.Fatal(err)
		}
	}
	chunkstore.BeforeRemoveCacheForTest(func(path string) { chunkstore.MarkCacheUsedForTest(path, time.Now()) })
	t.Cleanup(func() { chunkstore.BeforeRemoveCacheForTest(nil) })
	err := chunkstore.RemoveCache(dir, strings.Repeat("e", 64), cutoff)
	if err == nil || !strings.Contains(err.Error(), "while it was being removed") || !strings.Contains(err.Error(), p) {
		t.Errorf("RemoveCache of a cache opened meanwhile = %v, want an error naming %s, used while being removed", err, p)
	}
	if _, err := os.Lstat(filepath.Join(p, "packs", "x")); err != nil {
		t.Errorf("the cache opened meanwhile lost its copies: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("the cache directory holds %d entries, want the cache alone", len(ents))
	}
}
