package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestFilesCacheCompares: a recorded file is trusted when its size,
// times, inode and device numbers and filesystem identity are the same;
// with IgnoreInode the inode and device numbers and the identity may
// differ (a remount changes them). A change time of -1 (a file that may
// have changed unseen) is never trusted. A block's files on two
// filesystems (one bind-mounted) keep their own identities.
func TestFilesCacheCompares(t *testing.T) {
	const repoID = "0123456789abcdef"
	rec := snapshot.FileStat{Size: 100, ModTime: 1e18, CTime: 1e18 + 5, Inode: 42, Dev: 7, FSID: 0x9237685fddf05fb6}
	content := []chunkstore.ID{{1}}
	fc := snapshot.NewFilesCache(repoID)
	fc.Record("/a", rec, content)
	untrusted := rec
	untrusted.CTime = -1
	fc.Record("/b", untrusted, content)
	bound := rec
	bound.FSID = 5
	fc.RecordDir("/d", []snapshot.Recorded{{Name: "x", Stat: rec}, {Name: "y", Stat: bound}, {Name: "z", Stat: rec}})
	p := filepath.Join(t.TempDir(), "cache")
	if err := fc.Save(p); err != nil {
		t.Fatal(err)
	}
	with := func(f func(*snapshot.FileStat)) snapshot.FileStat { st := rec; f(&st); return st }
	for _, tc := range []struct {
		name        string
		path        string
		st          snapshot.FileStat
		plain, anyI bool // trusted by default, with IgnoreInode
	}{
		{"same", "/a", rec, true, true},
		{"another device", "/a", with(func(s *snapshot.FileStat) { s.Dev = 8 }), false, true},
		{"another inode", "/a", with(func(s *snapshot.FileStat) { s.Inode = 43 }), false, true},
		{"another filesystem", "/a", with(func(s *snapshot.FileStat) { s.FSID ^= 1 << 40 }), false, true},
		{"first filesystem of a block", "/d/z", rec, true, true},
		{"second filesystem of a block", "/d/y", bound, true, true},
		{"second filesystem of a block, taken for the first", "/d/y", rec, false, true},
		{"another size", "/a", with(func(s *snapshot.FileStat) { s.Size = 101 }), false, false},
		{"another mtime", "/a", with(func(s *snapshot.FileStat) { s.ModTime++ }), false, false},
		{"another ctime", "/a", with(func(s *snapshot.FileStat) { s.CTime++ }), false, false},
		{"recorded untrusted", "/b", untrusted, false, false},
		{"not recorded", "/c", rec, false, false},
	} {
		for _, ignore := range []bool{false, true} {
			loaded, err := snapshot.LoadFilesCache(p, repoID)
			if err != nil {
				t.Fatal(err)
			}
			loaded.IgnoreInode = ignore
			_, ok := loaded.Lookup(tc.path, tc.st)
			if want := map[bool]bool{false: tc.plain, true: tc.anyI}[ignore]; ok != want {
				t.Errorf("%s (IgnoreInode %v): trusted %v, want %v", tc.name, ignore, ok, want)
			}
		}
	}
}

// saveCache records files (path → size) in a new cache, in blocks of
// their directories (some directories in two blocks), saves it and
// returns its path.
func saveCache(t *testing.T, repoID string, files map[string]int64) string {
	t.Helper()
	fc := snapshot.NewFilesCache(repoID)
	byDir := map[string][]snapshot.Recorded{}
	for p, size := range files {
		dir, name := filepath.Split(p)
		dir = filepath.Clean(dir)
		byDir[dir] = append(byDir[dir], snapshot.Recorded{Name: name, Stat: snapshot.FileStat{Size: size, ModTime: 1, CTime: 2, Inode: uint64(size), Dev: 3}, Content: []chunkstore.ID{{byte(size)}}})
	}
	for dir, recs := range byDir {
		half := len(recs) / 2
		fc.RecordDir(dir, recs[:half])
		fc.RecordDir(dir, recs[half:])
	}
	p := filepath.Join(t.TempDir(), "cache")
	if err := fc.Save(p); err != nil {
		t.Fatal(err)
	}
	fc.Discard()
	return p
}

func statOfSize(size int64) snapshot.FileStat {
	return snapshot.FileStat{Size: size, ModTime: 1, CTime: 2, Inode: uint64(size), Dev: 3}
}

// TestFilesCacheBlocks: entries are found by directory, whether the walk
// entered the directory or not, across the blocks a directory was
// recorded in; a damaged block loses its directory's entries only, and a
// damaged index the whole cache.
func TestFilesCacheBlocks(t *testing.T) {
	const repoID = "0123456789abcdef"
	files := map[string]int64{}
	for d := range 20 {
		for f := range 30 {
			files[fmt.Sprintf("/data/d%02d/f%02d", d, f)] = int64(d*100 + f)
		}
	}
	files["/top"] = 7
	p := saveCache(t, repoID, files)

	fc, err := snapshot.LoadFilesCache(p, repoID)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Discard()
	if fc.Len() != len(files) {
		t.Errorf("Len = %d, want %d", fc.Len(), len(files))
	}
	fc.Enter("/data/d03")
	for path, size := range files {
		content, ok := fc.Lookup(path, statOfSize(size))
		if !ok || len(content) != 1 || content[0] != (chunkstore.ID{byte(size)}) {
			t.Fatalf("Lookup(%s) = %v, %v", path, content, ok)
		}
	}
	fc.Leave("/data/d03")
	if !fc.Has("/data/d05/f07") || fc.Has("/data/d05/f99") || fc.Has("/data/d99/f01") || fc.Has("/nothing") {
		t.Error("Has answers wrongly")
	}
	if _, ok := fc.Lookup("/data/d05/f07", statOfSize(1)); ok {
		t.Error("a changed stat was trusted")
	}

	// Flip a byte in the middle of the file: one block's CRC fails.
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(b)
	bad[len(bad)/2] ^= 0x40
	if err := os.WriteFile(p, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	damaged, err := snapshot.LoadFilesCache(p, repoID)
	if err != nil {
		t.Fatalf("a damaged block discarded the whole cache: %v", err)
	}
	defer damaged.Discard()
	lost := 0
	for path, size := range files {
		if _, ok := damaged.Lookup(path, statOfSize(size)); !ok {
			lost++
		}
	}
	if lost == 0 || lost > 30 {
		t.Errorf("a flipped byte lost %d entries, want those of one block (1 to 30)", lost)
	}
	if bad := damaged.Damaged(); len(bad) != 1 || !strings.HasPrefix(bad[0], "/data/d") {
		t.Errorf("Damaged() = %q, want the one directory whose block was hit", bad)
	}
	if bad := fc.Damaged(); len(bad) != 0 {
		t.Errorf("an intact cache reports damaged blocks %q", bad)
	}

	// A damaged index, a truncated file, another repository: discarded.
	for name, mangle := range map[string]func([]byte) []byte{
		"index": func(b []byte) []byte { b = bytes.Clone(b); b[len(b)-30] ^= 1; return b },
		"cut":   func(b []byte) []byte { return b[:len(b)-10] },
		"short": func(b []byte) []byte { return b[:20] },
	} {
		if err := os.WriteFile(p, mangle(b), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := snapshot.LoadFilesCache(p, repoID)
		if err == nil || c.Len() != 0 || c.Has("/top") {
			t.Errorf("%s: loaded with %d entries, err %v", name, c.Len(), err)
		}
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := snapshot.LoadFilesCache(p, "another"); err == nil || !strings.Contains(err.Error(), "written for repository "+repoID) || c.Has("/top") {
		t.Errorf("another repository's cache: %v", err)
	}
}

// TestFilesCacheHoldsNoEntries: loading a cache costs memory for its
// directories, not for its files (the reason for the format).
func TestFilesCacheHoldsNoEntries(t *testing.T) {
	const repoID = "0123456789abcdef"
	files := map[string]int64{}
	for i := range 60_000 {
		files[fmt.Sprintf("/srv/mail/user%02d/cur/%09d.eml", i%40, i)] = int64(i)
	}
	p := saveCache(t, repoID, files)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fc, err := snapshot.LoadFilesCache(p, repoID)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	defer fc.Discard()
	if fc.Len() != len(files) {
		t.Fatalf("Len = %d", fc.Len())
	}
	// 60,000 entries held in memory would take over 10 MiB.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Errorf("loading a cache of %d files kept %d KiB on the heap", len(files), grew>>10)
	}
}

// TestFilesCacheOtherFormats: a cache written by an earlier release
// (LBFC1, one zstd stream; LBFC2, blocks) has no filesystem identities:
// it is ignored, with an error that says so, and none of its entries is
// trusted. One from a newer release is ignored too, named as such; what
// is not a cache is a bad header. Saving writes this format, which loads.
func TestFilesCacheOtherFormats(t *testing.T) {
	const repoID = "0123456789abcdef"
	uv := func(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
	raw := []byte("LBFC1\n")
	raw = uv(raw, uint64(len(repoID)))
	raw = append(raw, repoID...)
	raw = uv(raw, 1)
	raw = uv(raw, uint64(len("/etc/hosts")))
	raw = append(raw, "/etc/hosts"...)
	for _, v := range []uint64{9, 1, 2, 9, 3} { // size, mtime, ctime, inode, dev
		raw = uv(raw, v)
	}
	raw = uv(raw, 1)
	id := chunkstore.ID{0xab}
	raw = append(raw, id[:]...)
	v1 := writeLegacyCache(t, raw)
	// LBFC2: the header of a file of a block of /etc with hosts, as
	// written before filesystem identities (its index is not read).
	v2 := filepath.Join(t.TempDir(), "cache")
	b2 := append(uv([]byte("LBFC2\n"), uint64(len(repoID))), repoID...)
	if err := os.WriteFile(v2, b2, 0o600); err != nil {
		t.Fatal(err)
	}
	newer := filepath.Join(t.TempDir(), "cache")
	if err := os.WriteFile(newer, append([]byte("LBFC7\n"), b2[6:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(t.TempDir(), "cache")
	if err := os.WriteFile(junk, []byte("LBFCx\nwhatever"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"LBFC1", v1, []string{"format version 1", "earlier lifeboat", "discarded"}},
		{"LBFC2", v2, []string{"format version 2", "earlier lifeboat", "discarded"}},
		{"newer", newer, []string{"format version 7", "newer lifeboat", "reads version 3", "discarded"}},
		{"junk", junk, []string{"bad header"}},
	} {
		fc, err := snapshot.LoadFilesCache(tc.path, repoID)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v, want one saying %q", tc.name, err, w)
			}
		}
		if fc == nil {
			t.Fatalf("%s: no cache", tc.name)
		}
		if _, ok := fc.Lookup("/etc/hosts", statOfSize(9)); ok || fc.Len() != 0 || fc.Has("/etc/hosts") {
			t.Errorf("%s: an entry was used (%d entries)", tc.name, fc.Len())
		}
		fc.Record("/etc/hosts", statOfSize(9), []chunkstore.ID{id})
		if err := fc.Save(tc.path); err != nil {
			t.Fatal(err)
		}
		fc.Discard()
		again, err := snapshot.LoadFilesCache(tc.path, repoID)
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := again.Lookup("/etc/hosts", statOfSize(9)); !ok || c[0] != id {
			t.Errorf("%s: saved again, the entry is %v, %v", tc.name, c, ok)
		}
		again.Discard()
	}
}

// TestFilesCacheSpool: what a backup records goes to a spool next to
// the cache, which Save renames over it and Discard removes; a spool a
// killed backup left is swept by the next one unless its owner still
// holds it locked.
func TestFilesCacheSpool(t *testing.T) {
	const repoID = "0123456789abcdef"
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "files")
	spools := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "sub", ".filescache-*"))
		return m
	}

	fc, err := snapshot.LoadFilesCache(p, repoID)
	if err != nil {
		t.Fatal(err)
	}
	fc.Record("/a/b", statOfSize(1), nil)
	if n := len(spools()); n != 1 {
		t.Fatalf("%d spools after the first record, want 1", n)
	}
	fc.Discard()
	if n := len(spools()); n != 0 {
		t.Fatalf("Discard left %d spools", n)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Discard wrote the cache: %v", err)
	}

	// A stale spool (as kill -9 leaves it) and a live one, locked.
	stale := filepath.Join(dir, "sub", ".filescache-stale")
	live, err := snapshot.LoadFilesCache(p, repoID)
	if err != nil {
		t.Fatal(err)
	}
	live.Record("/a/c", statOfSize(2), nil)
	livePath := spools()[0]
	if err := os.WriteFile(stale, []byte("LBFC2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	for _, f := range []string{stale, livePath} {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	next, err := snapshot.LoadFilesCache(p, repoID)
	if err != nil {
		t.Fatal(err)
	}
	next.Record("/a/d", statOfSize(3), nil)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale spool was not swept: %v", err)
	}
	if _, err := os.Stat(livePath); err != nil {
		t.Errorf("a live backup's spool was swept: %v", err)
	}
	if err := next.Save(p); err != nil {
		t.Fatal(err)
	}
	next.Discard()
	live.Discard()
	if n := len(spools()); n != 0 {
		t.Errorf("%d spools left", n)
	}
	got, err := snapshot.LoadFilesCache(p, repoID)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Discard()
	if !got.Has("/a/d") || got.Has("/a/c") || got.Len() != 1 {
		t.Errorf("saved cache holds the wrong entries (Len %d)", got.Len())
	}
}

// writeLegacyCache writes raw, an LBFC1 cache before compression, as
// releases before LBFC2 did (one zstd stream), and returns its path.
func writeLegacyCache(t *testing.T, raw []byte) string {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "cache")
	if err := os.WriteFile(p, enc.EncodeAll(raw, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFilesCacheSpoolUnwritable: a spool that cannot be made fails Save
// with the reason, and recording goes on without error.
func TestFilesCacheSpoolUnwritable(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(notDir, "cache", "files") // below a regular file
	fc, err := snapshot.LoadFilesCache(p, "0123456789abcdef")
	if err == nil || fc == nil {
		t.Fatalf("LoadFilesCache = %v, %v; want an empty cache and the error", fc, err)
	}
	defer fc.Discard()
	fc.Record("/a/b", statOfSize(1), nil)
	fc.Record("/a/c", statOfSize(2), nil)
	if err := fc.Save(p); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Save with no spool = %v, want the reason it could not be made", err)
	}
}

// TestFilesCacheRecordAfterDiscard: what a failed backup's last
// directories record after the caller's Discard makes no new spool (an
// agent would otherwise keep it open and locked for its whole life).
func TestFilesCacheRecordAfterDiscard(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "files")
	fc, err := snapshot.LoadFilesCache(p, "0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	fc.Record("/a/b", statOfSize(1), nil)
	fc.Discard()
	fc.Record("/a/c", statOfSize(2), nil)
	if m, _ := filepath.Glob(filepath.Join(dir, ".filescache-*")); len(m) > 0 {
		t.Fatalf("spools left after Discard: %v", m)
	}
	if err := fc.Save(p); err == nil {
		t.Error("a discarded cache was saved")
	}
}
