package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/snapshot"
	"golang.org/x/sys/unix"
)

// walkTree makes a tree of nested directories (three levels, up to 7
// wide) with files, symlinks, an empty directory and a hard link across
// directories, and dates every entry's access time after its change
// time, so that reading it (a file's content, a directory's listing, a
// symlink's target) does not change the access time (relatime) and two
// backups of it store the same trees.
func walkTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	for i := range 7 {
		for j := range i % 4 {
			d := filepath.Join(src, fmt.Sprintf("d%d", i), fmt.Sprintf("s%d", j), "deep")
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for k := range 5 {
				for _, dir := range []string{d, filepath.Dir(d), filepath.Dir(filepath.Dir(d))} {
					p := filepath.Join(dir, fmt.Sprintf("f%d-%d", j, k))
					if err := os.WriteFile(p, fmt.Appendf(nil, "%s %d\n", p, k), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := os.Symlink("../f0-0", filepath.Join(d, "up")); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range []string{"d0", "empty"} {
		if err := os.MkdirAll(filepath.Join(src, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(src, "d3", "f0-0"), filepath.Join(src, "d0", "linked")); err != nil {
		t.Fatal(err)
	}
	mtime, atime := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		// A symlink's own times: readlink reads it.
		return unix.Lutimes(p, []unix.Timeval{unix.NsecToTimeval(atime.UnixNano()), unix.NsecToTimeval(mtime.UnixNano())})
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// walkTreeDirs is how many directories a snapshot of walkTree's tree at
// src holds: its 26, and those above it, one per slash of its path ("/",
// "/tmp", "/tmp/TestX" for /tmp/TestX/001; more under another TMPDIR).
func walkTreeDirs(src string) uint64 { return uint64(26 + strings.Count(src, "/")) }

// TestParallelWalkSameTrees: a backup that walks up to eight directories
// at once stores the same trees as one that walks them one at a time
// (the backup path's tree IDs match; the directories above it, /tmp,
// change meanwhile), and finds every file.
func TestParallelWalkSameTrees(t *testing.T) {
	src := walkTree(t)
	repos := storetest.InitRepos(t, mem.New())
	var first *snapshot.Result
	var firstTree chunkstore.ID
	dirs := walkTreeDirs(src)
	for _, walkers := range []int{1, 8, 2, 0} {
		res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{src}, Walkers: walkers}, ".")
		if nodes[0] == nil || nodes[0].Subtree == nil {
			t.Fatalf("walkers %d: the backup path is not a directory in the snapshot", walkers)
		}
		tree := *nodes[0].Subtree
		if len(res.Warnings) > 0 {
			t.Fatalf("walkers %d: warnings %v", walkers, res.Warnings)
		}
		s := res.Manifest.Summary
		if first == nil {
			first, firstTree = res, tree
			if s.FilesNew != 136 || s.Dirs != dirs {
				t.Fatalf("walkers %d: %d new files in %d directories, want 136 in %d (with those above the backup path)", walkers, s.FilesNew, s.Dirs, dirs)
			}
			continue
		}
		if tree != firstTree {
			t.Errorf("walkers %d: tree %s, one at a time %s", walkers, tree.Short(), firstTree.Short())
		}
		if s.FilesNew+s.FilesUnmodified+s.FilesChanged != 136 || s.Dirs != dirs {
			t.Errorf("walkers %d: summary %+v", walkers, s)
		}
	}
}

// TestParallelWalkCancelled: a backup cancelled while several directories
// are being walked returns the context's error, never a panic (a walker
// sending to the readers after they were told to stop) or a snapshot.
func TestParallelWalkCancelled(t *testing.T) {
	src := walkTree(t)
	repos := storetest.InitRepos(t, mem.New())
	cancelled := 0
	for i := range 30 {
		ctx, cancel := context.WithCancel(context.Background())
		stop := time.AfterFunc(time.Duration(i)*100*time.Microsecond, cancel)
		res, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h", Walkers: 8})
		stop.Stop()
		cancel()
		switch {
		case err == nil:
			if want := walkTreeDirs(src); res.Manifest.Summary.Dirs != want {
				t.Errorf("run %d: a snapshot of %d directories, want %d", i, res.Manifest.Summary.Dirs, want)
			}
		case errors.Is(err, context.Canceled):
			cancelled++
		default:
			t.Errorf("run %d: %v, want nil or context.Canceled", i, err)
		}
	}
	if cancelled == 0 {
		t.Errorf("no backup of 30 was cancelled while it ran")
	}
}

// TestWalkersAtOnce: a backup with Walkers n lists exactly n directories
// at once, never more, whether the directories are found in a backup path
// or are backup paths themselves. There are more of them than any n tried; a gate holds each of them as it is entered until n
// are in (a walk of fewer than n at once can never get there: the test
// fails after 10 s), then for a further 200 ms, in which a walker beyond
// the n (the backup path's own, still listing) would enter one more.
// Correct walkers cannot: each of the n holds one directory at the gate,
// the backup path's walker among them. The backup path's own listing is
// not counted: it pauses while its walker lists a child in its stead.
func TestWalkersAtOnce(t *testing.T) {
	const width, timeout, grace = 12, 10 * time.Second, 200 * time.Millisecond
	src := t.TempDir()
	var dirs []string
	for i := range width {
		d := filepath.Join(src, fmt.Sprintf("d%02d", i))
		dirs = append(dirs, d)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for k := range 3 {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", k)), fmt.Appendf(nil, "%s %d\n", d, k), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	repos := storetest.InitRepos(t, mem.New())
	// The directories are found by a walker listing src, or, given as
	// backup paths, by the goroutine that starts the walk, which holds
	// no token of its own.
	for _, c := range []struct {
		paths   []string
		walkers int
	}{{[]string{src}, 3}, {[]string{src}, 1}, {dirs, 3}, {dirs, 1}} {
		walkers := c.walkers
		var (
			mu        sync.Mutex
			in, most  int
			full      = make(chan struct{})
			open      = make(chan struct{})
			timedOut  atomic.Bool
			fullSoFar bool
		)
		go func() {
			select {
			case <-full:
				time.Sleep(grace)
			case <-time.After(timeout):
				timedOut.Store(true)
			}
			close(open)
		}()
		snapshot.OnWalk(t, func(path string, enter bool) {
			if filepath.Dir(path) != src {
				return
			}
			mu.Lock()
			if !enter {
				in--
				mu.Unlock()
				return
			}
			in++
			most = max(most, in)
			if in == walkers && !fullSoFar {
				fullSoFar = true
				close(full)
			}
			mu.Unlock()
			<-open
		})
		res, _ := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: c.paths, Walkers: walkers})
		<-open
		// The walkers have ended (Backup waits for them): most is final.
		if timedOut.Load() {
			t.Fatalf("%d paths, walkers %d: at most %d directories were listed at once in %v, want %d", len(c.paths), walkers, most, timeout, walkers)
		}
		if most != walkers {
			t.Errorf("%d paths, walkers %d: %d directories were listed at once, want %d", len(c.paths), walkers, most, walkers)
		}
		if len(res.Warnings) > 0 {
			t.Errorf("walkers %d: warnings %v", walkers, res.Warnings)
		}
		if s := res.Manifest.Summary; s.FilesNew+s.FilesUnmodified != 3*width {
			t.Errorf("walkers %d: summary %+v, want %d files", walkers, s, 3*width)
		}
	}
}
