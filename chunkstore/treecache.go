package chunkstore

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Tree blobs live in their own packs, which are small: a snapshot of
// millions of files has a few hundred MiB of trees at most, usually far
// less. Walking a snapshot reads thousands of tree blobs; fetching each
// with its own ranged GET would cost a round trip per directory. Instead
// the first tree read from a pack downloads the whole pack, checks it
// against its name, and keeps it — in memory (bounded) and, when a cache
// directory is configured, on disk, so a later ls or restore of the
// same repository needs no tree downloads at all.
type treePackCache struct {
	mu    sync.Mutex
	packs map[ID][]byte
	order []ID
	size  int64
	limit int64
}

const treeCacheLimit = 128 << 20

func (c *treePackCache) get(id ID) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.packs[id]
	return b, ok
}

// reset forgets every pack kept.
func (c *treePackCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.packs, c.order, c.size = nil, nil, 0
}

func (c *treePackCache) put(id ID, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.packs == nil {
		c.packs = map[ID][]byte{}
		c.limit = treeCacheLimit
	}
	if _, ok := c.packs[id]; ok || int64(len(b)) > c.limit {
		return
	}
	for c.size+int64(len(b)) > c.limit && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		c.size -= int64(len(c.packs[old]))
		delete(c.packs, old)
	}
	c.packs[id] = b
	c.order = append(c.order, id)
	c.size += int64(len(b))
}

// ReleaseTrees drops the tree packs kept in memory: a caller done
// walking trees (a restore once planned) gives back up to 128 MiB. Trees
// read later are fetched again, from the disk cache where there is one.
func (r *Repository) ReleaseTrees() { r.trees.reset() }

// treePack returns the verified bytes of a tree pack, or an error if the
// pack cannot be fetched whole or does not match its name (the caller
// then falls back to reading single blobs, so one damaged region does
// not hide the intact trees of the pack).
func (r *Repository) treePack(ctx context.Context, p *PackEntry) ([]byte, error) {
	if b, ok := r.trees.get(p.ID); ok {
		return b, nil
	}
	var disk string
	if r.cache != "" {
		disk = filepath.Join(r.cache, "packs", p.ID.String())
		// After DistrustCache the pack is read from the store (and the
		// copy on disk refreshed).
		if !r.storeOnly.Load() {
			if b, err := os.ReadFile(disk); err == nil && Hash(b) == p.ID {
				r.trees.put(p.ID, b)
				return b, nil
			}
		}
	}
	b, err := r.store.Get(ctx, PackName(p.ID), 0, int64(p.Size))
	if err != nil {
		return nil, err
	}
	if Hash(b) != p.ID {
		return nil, ErrCorrupt
	}
	r.trees.put(p.ID, b)
	if disk != "" {
		if err := writeCacheFile(disk, b); err != nil {
			r.log.Debug("tree pack not cached on disk", "path", disk, "err", err)
		}
	}
	return b, nil
}

// writeCacheFile writes b to path atomically through a uniquely named
// temporary file, so concurrent writers never interleave.
func writeCacheFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// cacheTempAge is how old a temporary file of writeCacheFile must be for
// a sweep of its directory to remove it. A writer renames its own within
// moments of creating it, so one that old was left by a process killed
// mid-write (nothing else ever removes it); a running process's are
// never that old.
const cacheTempAge = time.Hour

// sweepCacheTemp removes the temporary files of writeCacheFile older
// than cacheTempAge at now from the signers directory under cacheDir.
// Open calls it: the repository's own cache directories are read anyway
// when the snapshots are listed or the index loaded, and that sweep
// (sweepCache) removes their stale temporary files in the same pass. A
// cache is only a copy: what cannot be removed is logged and left.
func sweepCacheTemp(log *slog.Logger, cacheDir string, now time.Time) {
	dir := filepath.Join(cacheDir, "signers")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return // not made yet
	}
	for _, e := range ents {
		if staleCacheTemp(e, now) {
			removeCached(log, filepath.Join(dir, e.Name()), "a stale temporary file")
		}
	}
}

// staleCacheTemp reports whether the directory entry e is a temporary
// file of writeCacheFile older than cacheTempAge at now.
func staleCacheTemp(e fs.DirEntry, now time.Time) bool {
	if !strings.HasPrefix(e.Name(), ".tmp-") || !e.Type().IsRegular() {
		return false
	}
	fi, err := e.Info()
	return err == nil && now.Sub(fi.ModTime()) >= cacheTempAge
}

// removeCached removes a file from the cache; what cannot be removed is
// only logged (the cache is a copy, and the next sweep tries again).
func removeCached(log *slog.Logger, path, what string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Debug("could not remove "+what+" from the cache", "path", path, "err", err)
	}
}

// cacheListSlack is how long before a listing of the store a cached copy
// must have been written for a sweep after that listing to remove it
// when the listing leaves its object out. A command running beside
// this one may cache an object it has just stored, after the listing
// began: that copy is kept (its time may be rounded down by up to two
// seconds, on FAT). Keeping a stale copy until the next listing costs
// some disk; removing a fresh one costs a download.
const cacheListSlack = 10 * time.Second

// sweepCache removes from the cache directory dir the copies of objects
// that a listing of the store begun at listedAt showed gone (live reports
// false for their ID), so the cache does not grow with every object
// ever read, and in the same pass the temporary files (.tmp-*) a killed
// command left there (see cacheTempAge): the directory is read once per
// command. Younger temporary files, which a running command is about to
// rename, and names that are no object ID are left alone, and so are
// copies written since shortly before the listing. A cache is only a
// copy: what cannot be removed is logged and left, and a command that
// finds a copy removed reads the object from the store.
func sweepCache(log *slog.Logger, dir string, listedAt time.Time, live func(ID) bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return // not made yet
	}
	before := listedAt.Add(-cacheListSlack)
	for _, e := range ents {
		if staleCacheTemp(e, listedAt) {
			removeCached(log, filepath.Join(dir, e.Name()), "a stale temporary file")
			continue
		}
		id, err := ParseID(e.Name())
		if err != nil || !e.Type().IsRegular() || live(id) {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(before) {
			continue
		}
		removeCached(log, filepath.Join(dir, e.Name()), "a copy of a deleted object")
	}
}

// Uncache removes this machine's cached copy of the object name (a tree
// pack, an index file or a snapshot), if there is one. Commands call it
// after deleting the object from the store; other machines' caches lose
// their copies when they next list the index or the snapshots.
func (r *Repository) Uncache(name string) {
	if r.cache == "" {
		return
	}
	var path string
	if id, ok := ParsePackName(name); ok {
		path = filepath.Join(r.cache, "packs", id.String())
	} else if rest, ok := strings.CutPrefix(name, IndexPrefix); ok {
		if id, err := ParseID(rest); err == nil {
			path = r.cachePath(KindIndex, id)
		}
	} else if rest, ok := strings.CutPrefix(name, SnapshotsPrefix); ok {
		if id, err := ParseID(rest); err == nil {
			path = r.cachePath(KindSnapshot, id)
		}
	}
	if path == "" {
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.log.Debug("could not remove a copy of a deleted object from the cache", "path", path, "err", err)
	}
}
