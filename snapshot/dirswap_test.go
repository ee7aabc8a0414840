package snapshot_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestDirReplacedBySymlink: a directory swapped for a symlink to one
// outside the backup paths after its parent was listed (before it is
// listed itself, or while it is) does not get the other directory's
// entries saved as its own without a word: a warning says it was
// replaced, and before its listing nothing of the other is saved.
func TestDirReplacedBySymlink(t *testing.T) {
	outside := t.TempDir()
	fixture.Create(t, outside, fixture.Tree{"elsewhere": {Dir: true}, "link": {Symlink: "/etc/shadow"}})
	for _, tc := range []struct {
		name, at    string // swap as the walk enters at
		saved       bool   // entries of outside may be saved (with the warning)
		withOpenat2 bool
		backupD     bool // back up d itself rather than its parent
	}{
		{"before listing", "d", false, true, false},
		{"while listing", "d/a", true, true, false},
		{"before listing without openat2", "d", false, false, false},
		{"while listing without openat2", "d/a", true, false, false},
		{"backup path before listing", "d", false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.withOpenat2 {
				snapshot.WithoutOpenat2(t)
			}
			repos := storetest.InitRepos(t, mem.New())
			src := t.TempDir()
			fixture.Create(t, src, fixture.Tree{"d": {Dir: true}, "d/a": {Dir: true}, "d/mine": {Dir: true}})
			d := filepath.Join(src, "d")
			swapped := false
			snapshot.OnWalk(t, func(p string, enter bool) {
				if p == filepath.Join(src, tc.at) && enter && !swapped {
					swapped = true
					if err := os.Rename(d, d+".old"); err != nil {
						t.Fatal(err)
					}
					if err := os.Symlink(outside, d); err != nil {
						t.Fatal(err)
					}
				}
			})
			path, lookups := src, []string{"d/elsewhere", "d/link"}
			if tc.backupD {
				path, lookups = d, []string{"elsewhere", "link"}
			}
			res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{path}, Walkers: 1}, lookups...)
			if !tc.saved && (nodes[0] != nil || nodes[1] != nil) {
				t.Errorf("entries of %s, outside the backup path, saved as %s's: %v %v", outside, d, nodes[0], nodes[1])
			}
			if w := warned(res, d); len(w) != 1 || !strings.Contains(w[0], "replaced since it was listed") {
				t.Errorf("warnings %v, want one that %s was replaced", res.Warnings, d)
			}
		})
	}
}

// TestDirRemovedAfterListing: a directory removed after its parent was
// listed is left out without a warning, as a removed file is (it was
// saved empty, and the backup was partial, exit 3); a backup path
// removed so is still a warning.
func TestDirRemovedAfterListing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backupD bool
	}{{"below a backup path", false}, {"backup path", true}} {
		t.Run(tc.name, func(t *testing.T) {
			repos := storetest.InitRepos(t, mem.New())
			src := t.TempDir()
			fixture.Create(t, src, fixture.Tree{"d": {Dir: true}, "d/f": {Content: []byte("f\n")}, "e": {Content: []byte("e\n")}})
			d := filepath.Join(src, "d")
			snapshot.OnWalk(t, func(p string, enter bool) {
				if p == d && enter {
					if err := os.RemoveAll(d); err != nil {
						t.Fatal(err)
					}
				}
			})
			paths := []string{src}
			if tc.backupD {
				paths = []string{d, filepath.Join(src, "e")}
			}
			res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: paths, Walkers: 1}, "d", "e")
			w := warned(res, d)
			if tc.backupD {
				if len(w) != 1 {
					t.Errorf("warnings %v, want one about the backup path %s", res.Warnings, d)
				}
				return
			}
			if len(res.Warnings) != 0 {
				t.Errorf("warnings %v, want none", res.Warnings)
			}
			if nodes[0] != nil {
				t.Errorf("removed d saved as %+v", nodes[0])
			}
			if nodes[1] == nil {
				t.Error("e left out")
			}
		})
	}
}

// TestFileRemovedWhileRead: a file removed while a backup reads it (its
// change time moves as it is unlinked, nothing else) is saved as read,
// whole, without a warning; it was "changed while it was read".
func TestFileRemovedWhileRead(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"f": {Content: []byte("whole\n")}})
	f := filepath.Join(src, "f")
	snapshot.AfterOpen(t, func(p string) {
		if p == f {
			time.Sleep(10 * time.Millisecond) // a change time the unlink moves
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	})
	res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{src}}, "f")
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %v, want none", res.Warnings)
	}
	if nodes[0] == nil || nodes[0].Size != uint64(len("whole\n")) {
		t.Errorf("f saved as %+v, want its whole content", nodes[0])
	}
}
