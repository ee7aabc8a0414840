package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestBackupPathsBeyondPathMax backs up a tree whose deepest entries have
// paths longer than PATH_MAX, which the kernel refuses whole: the backup
// reaches them through descriptors of their directories, saves every
// entry (no warning), finds them unchanged in the files cache the second
// time, and the restore brings back the same tree.
func TestBackupPathsBeyondPathMax(t *testing.T) {
	snapshot.WithRacyMargin(t, 0) // the tree is made just before the backup
	src := t.TempDir()
	const levels = 18
	xattr := fixture.CreateDeep(t, src, levels)
	r := newRepo(t, "local")
	cache := filepath.Join(t.TempDir(), "files")
	r.backup(t, src, cache) // fails on any warning
	res := r.backup(t, src, cache)
	if s := res.Manifest.Summary; s.FilesUnmodified != levels+1 || s.FilesNew+s.FilesChanged != 0 {
		t.Errorf("second backup: %d new, %d changed, %d unmodified files; want all %d unmodified", s.FilesNew, s.FilesChanged, s.FilesUnmodified, levels+1)
	}

	ctx := context.Background()
	if err := r.reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	deepest := ""
	err := snapshot.Walk(ctx, r.reader, res.Manifest.Tree, func(p string, n *snapshot.Node) error {
		if len(p) > len(deepest) {
			deepest = p
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(deepest) < 4096 || !strings.HasPrefix(deepest, strings.TrimPrefix(src, "/")) {
		t.Fatalf("deepest path saved is %d bytes long, want one past PATH_MAX below %s", len(deepest), src)
	}

	snap, err := snapshot.Load(ctx, r.reader, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	rres, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: dst})
	if err != nil {
		t.Fatal(err)
	}
	if len(rres.Failures) > 0 {
		t.Fatalf("restore failures: %v", rres.Failures)
	}
	want, got := fixture.ReadDeep(t, src), fixture.ReadDeep(t, filepath.Join(dst, src))
	if len(want) != 2*levels+4 {
		t.Fatalf("the tree made has %d entries, want %d", len(want), 2*levels+4)
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("…%s (%d bytes): restored as %q, want %q", p[max(0, len(p)-40):], len(src+p), got[p], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("restored %d entries, want %d", len(got), len(want))
	}
	if !xattr {
		t.Log("the temporary directory's filesystem keeps no user.* attributes: not checked")
	} else if d := want[deepData(levels)]; !strings.Contains(d, `xattr "at the bottom"`) {
		t.Errorf("the fixture's data file lacks its attribute: %s", d)
	}
}

func deepData(levels int) string {
	p := ""
	for l := range levels {
		p += "/" + fixture.DeepName(l)
	}
	return p + "/data"
}

// TestBackupPathBeyondPathMax: a backup path itself too long for the
// kernel is refused, saying so and what to back up instead.
func TestBackupPathBeyondPathMax(t *testing.T) {
	src := t.TempDir()
	fixture.CreateDeep(t, src, 18)
	long := deepData(18)
	long = src + long[:strings.LastIndex(long, "/")]
	r := newRepo(t, "local")
	_, err := snapshot.Backup(context.Background(), r.writer, snapshot.BackupOptions{Paths: []string{long}, Host: "h"})
	if err == nil || !errors.Is(err, syscall.ENAMETOOLONG) || !strings.Contains(err.Error(), "PATH_MAX") || !strings.Contains(err.Error(), "back up a directory above it") {
		t.Fatalf("backup of a %d-byte path: %v; want it refused, naming PATH_MAX and what to do", len(long), err)
	}
}

// TestDeepEntriesWithoutProc: where /proc/self/fd cannot be used, the
// entries deeper than PATH_MAX are still saved, extended attributes and
// all, where the kernel reads those relative to a directory
// (listxattrat); before 6.13 they are warned of, naming /proc, rather
// than taken for removed and left out without a word.
func TestDeepEntriesWithoutProc(t *testing.T) {
	for _, listxattrat := range []bool{true, false} {
		t.Run(fmt.Sprintf("listxattrat %v", listxattrat), func(t *testing.T) {
			snapshot.WithoutProcFD(t)
			if !listxattrat {
				snapshot.WithoutListxattrat(t)
			} else if !snapshot.HasListxattrat() {
				t.Skip("the kernel has no listxattrat (Linux 6.13)")
			}
			src := t.TempDir()
			xattr := fixture.CreateDeep(t, src, 18)
			r := newRepo(t, "local")
			ctx := context.Background()
			res, err := snapshot.Backup(ctx, r.writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
			if err != nil {
				t.Fatal(err)
			}
			if !listxattrat {
				if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0].Err.Error(), "mount /proc") || len(res.Warnings[0].Path) < 4096 {
					t.Fatalf("warnings %v; want the entries beyond PATH_MAX warned of, naming /proc", res.Warnings)
				}
				return
			}
			if len(res.Warnings) != 0 {
				t.Fatalf("warnings %v, want none", res.Warnings)
			}
			// Their filesystem's identity is read without a path too
			// (a failure is not kept: each file asks again), or the
			// files cache could never trust them.
			var asked atomic.Int32
			snapshot.WithFSID(t, func(fd int) (uint64, uint64, error) {
				asked.Add(1)
				return 0, 0, errors.New("not this time")
			})
			if _, err := snapshot.Backup(ctx, r.writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"}); err != nil {
				t.Fatal(err)
			}
			if n := asked.Load(); n != 19 {
				t.Errorf("filesystem identity read for %d files, want all 19", n)
			}
			if err := r.reader.LoadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			var data *snapshot.Node
			err = snapshot.Walk(ctx, r.reader, res.Manifest.Tree, func(p string, n *snapshot.Node) error {
				if "/"+p == src+deepData(18) {
					data = n
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if data == nil || xattr && len(data.XAttrs) == 0 {
				t.Fatalf("the deepest file saved as %+v, want it with its attribute", data)
			}
		})
	}
}
