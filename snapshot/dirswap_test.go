package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestDirReplacedBySymlink: a directory swapped for a symlink to one
// outside the backup paths is never followed. Swapped after its parent
// was listed but before it is opened, it is left out with a warning
// that says it was replaced; swapped once it is open (while it is being
// listed), the directory opened is the one saved, entries and all,
// however its path leads elsewhere by then.
func TestDirReplacedBySymlink(t *testing.T) {
	outside := t.TempDir()
	fixture.Create(t, outside, fixture.Tree{"elsewhere": {Dir: true}, "link": {Symlink: "/etc/shadow"}, "mine": {Content: []byte("outside\n")}})
	// Where the filesystem keeps none, the check below passes anyway.
	_ = unix.Lsetxattr(filepath.Join(outside, "mine"), "user.outside", []byte("1"), 0)
	for _, tc := range []struct {
		name, at string // swap as the walk enters at
		warned   bool   // d is warned of, and left out
		backupD  bool   // back up d itself rather than its parent
	}{
		{"before opening", "d", true, false},
		{"while listing", "d/a", false, false},
		{"backup path before opening", "d", true, true},
		{"while listing, without listxattrat", "d/a", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.name, "without listxattrat") {
				snapshot.WithoutListxattrat(t)
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
			path, lookups := src, []string{"d/elsewhere", "d/link", "d/mine", "d/a"}
			if tc.backupD {
				path, lookups = d, []string{"elsewhere", "link", "mine", "a"}
			}
			res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{path}, Walkers: 1}, lookups...)
			if !swapped {
				t.Fatal("the walk never entered", filepath.Join(src, tc.at))
			}
			if nodes[0] != nil || nodes[1] != nil || nodes[2] != nil && (nodes[2].Type != snapshot.TypeDir || len(nodes[2].XAttrs) != 0) {
				t.Errorf("entries of %s, outside the backup path, saved as %s's: %v %v %+v", outside, d, nodes[0], nodes[1], nodes[2])
			}
			w := warned(res, d)
			if tc.warned {
				if len(w) != 1 || !strings.Contains(w[0], "replaced since it was listed") {
					t.Errorf("warnings %v, want one that %s was replaced", res.Warnings, d)
				}
				return
			}
			if len(res.Warnings) != 0 {
				t.Errorf("warnings %v, want none: the directory opened was saved", res.Warnings)
			}
			if nodes[2] == nil || nodes[3] == nil {
				t.Errorf("d/mine saved as %v, d/a as %v: want the directory opened saved whole", nodes[2], nodes[3])
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

// TestBackupClosesDirectories: every directory a backup opens to walk
// is closed by its end (the last of its listing, its subdirectories and
// its files to be read lets go of it), whether its files were read or
// found unchanged in the files cache: an agent runs backup after backup
// in one process.
func TestBackupClosesDirectories(t *testing.T) {
	snapshot.WithRacyMargin(t, 0) // the tree is made just before the backup
	src := t.TempDir()
	tree := fixture.Tree{}
	for _, d := range []string{"a", "a/b", "a/b/c", "e"} {
		tree[d] = fixture.Entry{Dir: true}
		tree[d+"/f"] = fixture.Entry{Content: []byte(d + "\n")}
		tree[d+"/l"] = fixture.Entry{Symlink: "f"}
	}
	fixture.Create(t, src, tree)
	r := newRepo(t, "local")
	cache := filepath.Join(t.TempDir(), "files")
	openInSrc := func() []string { return openIn(t, src) }
	r.backup(t, src, cache) // files read
	if open := openInSrc(); len(open) != 0 {
		t.Errorf("open after a backup that read the files: %q", open)
	}
	res := r.backup(t, src, cache) // files unchanged
	if res.Manifest.Summary.FilesUnmodified != 4 {
		t.Errorf("second backup: %d unmodified files, want 4", res.Manifest.Summary.FilesUnmodified)
	}
	if open := openInSrc(); len(open) != 0 {
		t.Errorf("open after a backup that found the files unchanged: %q", open)
	}
}

// TestDeepTreeBoundedDirectories: a tree deeper than the walk may hold
// directories open is saved whole, without a warning, with no more
// directories open at its deepest than that bound (each level once held
// its directory: a tree deeper than the open-file limit had its depths
// skipped as "too many open files"). Each level has a file after its
// subdirectory, read from the directory opened again.
func TestDeepTreeBoundedDirectories(t *testing.T) {
	const depth, bound = 40, 4
	snapshot.WithMaxOpenDirs(t, bound)
	src := t.TempDir()
	tree := fixture.Tree{}
	p, deepest := "", ""
	for i := 0; i < depth; i++ {
		p = filepath.Join(p, "d")
		tree[p] = fixture.Entry{Dir: true}
		tree[filepath.Join(p, "z")] = fixture.Entry{Content: []byte(p + "\n")}
		deepest = p
	}
	fixture.Create(t, src, tree)
	peak := 0
	snapshot.OnWalk(t, func(p string, enter bool) {
		if p == filepath.Join(src, deepest) && !enter {
			peak = len(openIn(t, src))
		}
	})
	repos := storetest.InitRepos(t, mem.New())
	res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{src}, Walkers: 1}, "d/z", filepath.Join(deepest, "z"))
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %v, want none", res.Warnings)
	}
	if nodes[0] == nil || nodes[1] == nil || nodes[0].Size != 2 {
		t.Errorf("d/z saved as %+v, the deepest z as %+v: want both", nodes[0], nodes[1])
	}
	if peak == 0 || peak > bound+2 {
		t.Errorf("%d directories open at depth %d, want at most %d (the bound, the deepest and its parent)", peak, depth, bound+2)
	}
	if open := openIn(t, src); len(open) != 0 {
		t.Errorf("open after the backup: %q", open)
	}
}

// TestParkedDirMoved: a directory that let go of its descriptor while
// its subdirectory was walked is opened again through that
// subdirectory, wherever it was moved, and its remaining entries are
// saved; where the subdirectory was moved elsewhere meanwhile, by its
// path, if that still leads to the directory. Where it leads to another
// directory, they are left out with a warning that says so, never read
// from either place.
func TestParkedDirMoved(t *testing.T) {
	for _, move := range []string{"a moved", "b moved", "b moved, a replaced"} {
		t.Run(move, func(t *testing.T) {
			replaced := strings.HasSuffix(move, "replaced")
			snapshot.WithMaxOpenDirs(t, 0)
			outside := t.TempDir()
			src := t.TempDir()
			fixture.Create(t, src, fixture.Tree{"a": {Dir: true}, "a/b": {Dir: true}, "a/b/c": {Dir: true}, "a/b/c/d": {Dir: true}, "a/z": {Content: []byte("z\n")}})
			fixture.Create(t, outside, fixture.Tree{"z": {Content: []byte("outside\n")}})
			a := filepath.Join(src, "a")
			moved := false
			snapshot.OnWalk(t, func(p string, enter bool) {
				if p == filepath.Join(a, "b/c/d") && enter && !moved {
					moved = true
					if move == "a moved" {
						if err := os.Rename(a, filepath.Join(outside, "a")); err != nil {
							t.Fatal(err)
						}
						return
					}
					if err := os.Rename(filepath.Join(a, "b"), filepath.Join(outside, "b")); err != nil {
						t.Fatal(err)
					}
					if replaced {
						if err := os.Rename(a, a+".old"); err != nil {
							t.Fatal(err)
						}
						fixture.Create(t, src, fixture.Tree{"a": {Dir: true}, "a/z": {Content: []byte("another\n")}})
					}
				}
			})
			repos := storetest.InitRepos(t, mem.New())
			res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{src}, Walkers: 1}, "a/z", "a/b/c/d")
			if !moved {
				t.Fatal("the walk never entered a/b/c/d")
			}
			if nodes[1] == nil {
				t.Error("a/b/c/d, opened before the move, not saved")
			}
			w := warned(res, a)
			if replaced {
				if nodes[0] != nil {
					t.Errorf("a/z saved as %+v, want it left out: its directory could not be found again", nodes[0])
				}
				if len(w) != 1 || len(res.Warnings) != 1 || !strings.Contains(w[0], "replaced since it was listed") || !strings.Contains(w[0], "moved elsewhere") {
					t.Errorf("warnings %v, want one that a's remaining entries were not saved", res.Warnings)
				}
			} else {
				if nodes[0] == nil || nodes[0].Size != 2 {
					t.Errorf("a/z saved as %+v, want it saved: a was found again", nodes[0])
				}
				if len(res.Warnings) != 0 {
					t.Errorf("warnings %v, want none", res.Warnings)
				}
			}
			if open := openIn(t, src); len(open) != 0 {
				t.Errorf("open after the backup: %q", open)
			}
		})
	}
}

// openIn lists the files this process has open in the tree src (the
// files cache, the repository's, are another matter).
func openIn(t *testing.T, src string) []string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd to count open files in")
	}
	var open []string
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, src) {
			open = append(open, l)
		}
	}
	return open
}

// TestBackupClosesDirectoriesCancelled: a backup cancelled while it
// walks, or while files wait to be read (each holding its directory),
// leaves no directory open; nor does one whose files were replaced by
// symlinks before they were read (skipped with a warning), with
// excluded entries and backup paths that are a file and a symlink.
func TestBackupClosesDirectoriesCancelled(t *testing.T) {
	for _, tc := range []struct {
		name    string
		walkers int
	}{{"walk", 1}, {"walk", 4}, {"open", 1}, {"open", 4}, {"replaced", 2}} {
		t.Run(fmt.Sprintf("%s, %d walkers", tc.name, tc.walkers), func(t *testing.T) {
			repos := storetest.InitRepos(t, mem.New())
			src, other := t.TempDir(), t.TempDir()
			tree := fixture.Tree{}
			for i := range 10 {
				d := fmt.Sprintf("d%d", i)
				tree[d] = fixture.Entry{Dir: true}
				tree[d+"/x.tmp"] = fixture.Entry{Content: []byte("excluded\n")}
				for j := range 10 {
					tree[fmt.Sprintf("%s/f%d", d, j)] = fixture.Entry{Content: []byte(d + "\n")}
				}
			}
			fixture.Create(t, src, tree)
			fixture.Create(t, other, fixture.Tree{"file": {Content: []byte("file\n")}, "link": {Symlink: "file"}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			switch tc.name {
			case "walk":
				snapshot.OnWalk(t, func(p string, enter bool) {
					if p == filepath.Join(src, "d5") && enter {
						cancel()
					}
				})
			case "open":
				// Cancelled as the first file is opened, once the walk
				// has filled the queue of files to read (64) and waits
				// to add more.
				var once sync.Once
				snapshot.BeforeOpen(t, func(p string) {
					once.Do(func() {
						time.Sleep(100 * time.Millisecond)
						cancel()
					})
				})
			case "replaced":
				snapshot.BeforeOpen(t, func(p string) {
					if strings.HasPrefix(p, src+"/") {
						if err := os.Remove(p); err != nil {
							t.Fatal(err)
						}
						if err := os.Symlink("/etc/passwd", p); err != nil {
							t.Fatal(err)
						}
					}
				})
			}
			opts := snapshot.BackupOptions{
				Paths: []string{src, filepath.Join(other, "file"), filepath.Join(other, "link")}, Host: "h",
				Excludes: []string{"*.tmp"}, Walkers: tc.walkers, Readers: 1,
			}
			res, err := snapshot.Backup(ctx, repos.Writer, opts)
			if tc.name == "replaced" {
				if err != nil || len(res.Warnings) != 100 {
					t.Fatalf("backup: %v, %d warnings; want one for each of the 100 files replaced", err, len(res.Warnings))
				}
			} else if !errors.Is(err, context.Canceled) {
				t.Fatalf("backup: %v, want it cancelled", err)
			}
			if open := openIn(t, src); len(open) != 0 {
				t.Errorf("%d open after the backup: %q", len(open), open[:min(3, len(open))])
			}
		})
	}
}
