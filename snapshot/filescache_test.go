package snapshot_test

import (
	"path/filepath"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestFilesCacheCompares: a recorded file is trusted when its size,
// times, inode and device numbers are the same; with IgnoreInode the
// inode and device numbers may differ (a remount changes them). A change
// time of -1 (a file that may have changed unseen) is never trusted.
func TestFilesCacheCompares(t *testing.T) {
	const repoID = "0123456789abcdef"
	rec := snapshot.FileStat{Size: 100, ModTime: 1e18, CTime: 1e18 + 5, Inode: 42, Dev: 7}
	content := []chunkstore.ID{{1}}
	fc := snapshot.NewFilesCache(repoID)
	fc.Record("/a", rec, content)
	untrusted := rec
	untrusted.CTime = -1
	fc.Record("/b", untrusted, content)
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
