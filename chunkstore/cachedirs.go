package chunkstore

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// A cache directory holds one subdirectory per repository opened with it,
// named by the repository's ID, and nothing removes the one of a
// repository that was deleted or is no longer used here. Open marks its
// repository's as used (its modification time); these functions find
// and remove the ones unused for long.

// CacheInfo describes one repository's cache under a cache directory.
type CacheInfo struct {
	RepoID   string    `json:"repo_id"`
	Path     string    `json:"path"`
	Size     int64     `json:"size"` // bytes of the files in it (0 from OldCaches)
	LastUsed time.Time `json:"last_used"`
}

// repoCacheSubdirs are the names a repository's cache holds: the copies
// of metadata and tree packs, and the backups' files caches.
var repoCacheSubdirs = map[string]bool{"index": true, "snapshots": true, "packs": true, "files": true}

// Caches lists the repository caches under cacheDir, least recently used
// first, with their sizes. Only what looks like one is listed: a
// directory (not a link) named by a repository ID that holds nothing but
// the subdirectories lifeboat makes there; signers/ and anything else
// are left out, and never removed by RemoveCache.
func Caches(cacheDir string) ([]CacheInfo, error) { return listCaches(cacheDir, true) }

// OldCaches lists the repository caches under cacheDir last used before
// cutoff, other than the one of repository current, without reading
// their contents (Size is 0): cheap enough for a backup to check.
func OldCaches(cacheDir, current string, cutoff time.Time) []CacheInfo {
	all, err := listCaches(cacheDir, false)
	if err != nil {
		return nil
	}
	var old []CacheInfo
	for _, c := range all {
		if c.RepoID != current && c.LastUsed.Before(cutoff) {
			old = append(old, c)
		}
	}
	return old
}

func listCaches(cacheDir string, withSize bool) ([]CacheInfo, error) {
	ents, err := os.ReadDir(cacheDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the cache directory: %w", err)
	}
	var out []CacheInfo
	for _, e := range ents {
		if !e.IsDir() || !isRepoID(e.Name()) {
			continue
		}
		c, ok := inspectCache(filepath.Join(cacheDir, e.Name()), withSize)
		if ok {
			c.RepoID = e.Name()
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.Before(out[j].LastUsed) })
	return out, nil
}

// inspectCache returns what is known of the repository cache at path,
// and false if it holds anything lifeboat does not put there. Its last
// use is its own modification time (set by Open) or, for a cache last
// used by a release that did not set it, the latest of its
// subdirectories' (changed whenever a copy is added or removed).
func inspectCache(path string, withSize bool) (CacheInfo, bool) {
	c := CacheInfo{Path: path}
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() {
		return c, false
	}
	c.LastUsed = fi.ModTime()
	ents, err := os.ReadDir(path)
	if err != nil {
		return c, false
	}
	for _, e := range ents {
		if !e.IsDir() || !repoCacheSubdirs[e.Name()] {
			return c, false
		}
		sub := filepath.Join(path, e.Name())
		if si, err := os.Lstat(sub); err == nil && si.ModTime().After(c.LastUsed) {
			c.LastUsed = si.ModTime()
		}
		if !withSize {
			continue
		}
		_ = filepath.WalkDir(sub, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if i, err := d.Info(); err == nil {
					c.Size += i.Size()
				}
			}
			return nil
		})
	}
	return c, true
}

// isRepoID reports whether s is a repository ID: 64 lowercase hex digits.
func isRepoID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// RemoveCache removes the cache of repository repoID under cacheDir if it
// still looks like a repository cache and was last used before cutoff.
// It is first renamed aside, so a command that opens that repository
// meanwhile starts a fresh cache instead of filling one being removed.
func RemoveCache(cacheDir, repoID string, cutoff time.Time) error {
	if !isRepoID(repoID) {
		return fmt.Errorf("%q is no repository ID", repoID)
	}
	path := filepath.Join(cacheDir, repoID)
	c, ok := inspectCache(path, false)
	if !ok {
		return fmt.Errorf("%s does not look like a lifeboat repository cache (it holds more than index/, snapshots/, packs/ and files/): left alone; remove it by hand if it is not needed", path)
	}
	if !c.LastUsed.Before(cutoff) {
		return fmt.Errorf("%s was used at %s, since the cut-off: left alone", path, c.LastUsed.Format(time.RFC3339))
	}
	if beforeRemoveCache != nil {
		beforeRemoveCache(path)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	aside := filepath.Join(cacheDir, removingPrefix+hex.EncodeToString(b[:]))
	if err := os.Rename(path, aside); err != nil {
		return fmt.Errorf("remove cache %s: %w", path, err)
	}
	// A command that opened the repository between the check above and
	// the rename marked the cache used (markCacheUsed) and uses it: it
	// goes back, unless that command has made a fresh one meanwhile.
	if fi, err := os.Lstat(aside); err == nil && !fi.ModTime().Before(cutoff) {
		if err := os.Rename(aside, path); err == nil {
			return fmt.Errorf("%s was used at %s, while it was being removed: left alone", path, fi.ModTime().Format(time.RFC3339))
		}
	}
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("remove cache %s (renamed to %s): %w", path, aside, err)
	}
	return nil
}

// beforeRemoveCache, if set (by tests), is called by RemoveCache between
// checking the cache at path and renaming it aside.
var beforeRemoveCache func(path string)

// markCacheUsed records that the repository cache at path is in use (see
// CacheInfo.LastUsed). A cache is only a copy: failing to is no error.
func markCacheUsed(path string, now time.Time) {
	_ = os.Chtimes(path, now, now)
}

// removingPrefix names a cache RemoveCache renamed aside to remove.
const removingPrefix = ".removing-"

// isRemovingName reports whether s is a name RemoveCache renames a cache
// aside to: removingPrefix and 16 lowercase hex digits.
func isRemovingName(s string) bool {
	rest, ok := strings.CutPrefix(s, removingPrefix)
	if !ok || len(rest) != 16 {
		return false
	}
	for _, c := range rest {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// RemoveInterrupted removes what a RemoveCache that was interrupted (the
// process killed, the machine down) left renamed aside under cacheDir,
// and returns how many it removed. Only a directory (not a link) with
// the name RemoveCache gives, holding nothing but what a repository
// cache holds, is removed: a --cache-dir set to a directory that holds
// other things (the home directory, by mistake) keeps them.
func RemoveInterrupted(cacheDir string) (int, error) {
	ents, err := os.ReadDir(cacheDir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the cache directory: %w", err)
	}
	n := 0
	for _, e := range ents {
		if !e.IsDir() || !isRemovingName(e.Name()) {
			continue
		}
		p := filepath.Join(cacheDir, e.Name())
		if _, ok := inspectCache(p, false); !ok {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return n, fmt.Errorf("remove %s, a cache whose removal was interrupted: %w", p, err)
		}
		n++
	}
	return n, nil
}
