package snapshot_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// testRepo is a repository opened twice, the way it is used: by a writer
// key for backups and by the identity for restores.
type testRepo struct {
	writer, reader *chunkstore.Repository
}

func newRepo(t *testing.T, backend string) testRepo {
	t.Helper()
	r := storetest.NewRepos(t, backend)
	return testRepo{writer: r.Writer, reader: r.Reader}
}

// backup runs a backup with a files cache kept in cacheFile, as the CLI does.
func (r testRepo) backup(t *testing.T, src, cacheFile string) *snapshot.Result {
	t.Helper()
	fc, err := snapshot.LoadFilesCache(cacheFile, r.writer.Config().ID)
	if err != nil {
		t.Fatalf("load files cache: %v", err)
	}
	res, err := snapshot.Backup(context.Background(), r.writer, snapshot.BackupOptions{Paths: []string{src}, Host: "fixture", FilesCache: fc})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if len(res.Warnings) > 0 {
		t.Fatalf("backup warnings: %v", res.Warnings)
	}
	if err := fc.Save(cacheFile); err != nil {
		t.Fatal(err)
	}
	return res
}

// backupReload backs src up (host "h", no files cache) and reloads the
// reader's index, so that the new snapshot's trees can be read.
func (r testRepo) backupReload(t *testing.T, src string) *snapshot.Result {
	t.Helper()
	ctx := context.Background()
	res, err := snapshot.Backup(ctx, r.writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	return res
}

func (r testRepo) restoreAndCompare(t *testing.T, id chunkstore.ID, src string, want fixture.Tree) {
	t.Helper()
	ctx := context.Background()
	snap, err := snapshot.Load(ctx, r.reader, id)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	res, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: dst})
	if err != nil {
		t.Fatalf("restore %s: %v", id.Short(), err)
	}
	if len(res.Failures) > 0 {
		t.Fatalf("restore %s: %v", id.Short(), res.Failures)
	}
	fixture.Compare(t, want, filepath.Join(dst, src))
}

// subtreeOf returns the tree ID recorded for directory dir in a snapshot.
func (r testRepo) subtreeOf(t *testing.T, res *snapshot.Result, dir string) chunkstore.ID {
	t.Helper()
	ctx := context.Background()
	if err := r.reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	want := strings.TrimPrefix(dir, "/")
	var id *chunkstore.ID
	err := snapshot.Walk(ctx, r.reader, res.Manifest.Tree, func(p string, n *snapshot.Node) error {
		if p == want {
			id = n.Subtree
			return snapshot.SkipDir
		}
		if n.Type == snapshot.TypeDir && !strings.HasPrefix(want, p+"/") {
			return snapshot.SkipDir
		}
		return nil
	})
	if err != nil || id == nil {
		t.Fatalf("find %s in snapshot %s: %v", dir, res.ID.Short(), err)
	}
	return *id
}

// TestBackupRecordsFixture checks the snapshot's trees, not a restore of
// them: every entry of the standard tree is recorded with its exact
// name bytes, type, mode, mtime, size, link target and hard-link
// identity, and nothing else is.
func TestBackupRecordsFixture(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	src := t.TempDir()
	tree := fixture.Standard()
	fixture.Create(t, src, tree)
	res := r.backup(t, src, filepath.Join(t.TempDir(), "cache"))
	if err := r.reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	prefix := strings.TrimPrefix(src, "/") + "/"
	nodes := map[string]*snapshot.Node{}
	err := snapshot.Walk(ctx, r.reader, res.Manifest.Tree, func(p string, n *snapshot.Node) error {
		if rel, ok := strings.CutPrefix(p, prefix); ok {
			nodes[rel] = n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != len(tree) {
		t.Errorf("snapshot has %d entries below the source, the tree %d", len(nodes), len(tree))
	}
	for p, e := range tree {
		n := nodes[p]
		if n == nil {
			t.Errorf("%q missing from the snapshot", p)
			continue
		}
		var wantType snapshot.NodeType
		switch {
		case e.Dir:
			wantType = snapshot.TypeDir
		case e.Symlink != "":
			wantType = snapshot.TypeSymlink
			if n.LinkTarget != e.Symlink {
				t.Errorf("%q: link target %q, want %q", p, n.LinkTarget, e.Symlink)
			}
		default:
			wantType = snapshot.TypeFile
		}
		if n.Type != wantType {
			t.Errorf("%q: type %s, want %s", p, n.Type, wantType)
		}
		if !e.MTime.IsZero() && !n.ModTime.Equal(e.MTime) {
			t.Errorf("%q: mtime %v, want %v", p, n.ModTime, e.MTime)
		}
		if e.Mode != 0 && n.Mode != e.Mode {
			t.Errorf("%q: mode %v, want %v", p, n.Mode, e.Mode)
		}
		if wantType != snapshot.TypeFile {
			continue
		}
		size := int64(len(e.Content))
		if e.SparseSize > 0 {
			size = e.SparseSize
		}
		if e.HardlinkTo != "" {
			size = int64(len(tree[e.HardlinkTo].Content))
		}
		if n.Size != uint64(size) {
			t.Errorf("%q: size %d, want %d", p, n.Size, size)
		}
		if size > 0 && len(n.Content) == 0 {
			t.Errorf("%q: no content recorded", p)
		}
	}
	if big := nodes[fixture.LargePath]; big != nil && len(big.Content) < 5 {
		t.Errorf("%d MiB of random data became %d chunks, want several", fixture.LargeSize>>20, len(big.Content))
	}
	a, b := nodes[fixture.HardlinkA], nodes[fixture.HardlinkB]
	if a == nil || b == nil || a.Inode != b.Inode || a.DeviceID != b.DeviceID || a.Links != 2 || b.Links != 2 {
		t.Errorf("hard links not recorded as one inode with two links: %+v %+v", a, b)
	}
	if m := nodes[fixture.SetgidDir]; m != nil && m.Mode&fs.ModeSetgid == 0 {
		t.Errorf("setgid bit lost: %v", m.Mode)
	}
}

// TestIncrementalBackup changes, adds and deletes files between two
// backups and checks that the second reads only what changed, stores
// little, counts each kind of file right, and that both snapshots
// restore to their own tree.
func TestIncrementalBackup(t *testing.T) {
	snapshot.WithRacyMargin(t, 0) // the files are made just before the backup
	for _, backend := range []string{"local", "minio"} {
		t.Run(backend, func(t *testing.T) {
			r := newRepo(t, backend)
			src := t.TempDir()
			cache := filepath.Join(t.TempDir(), "filescache")
			// The standard tree with smaller big files: this test backs
			// it up four times on each backend.
			tree1 := fixture.Standard()
			tree1[fixture.LargePath] = fixture.Entry{Content: fixture.Random(5, 6<<20), MTime: tree1[fixture.LargePath].MTime}
			tree1[fixture.SparsePath] = fixture.Entry{SparseSize: 16 << 20, MTime: tree1[fixture.SparsePath].MTime}
			fixture.Create(t, src, tree1)
			first := r.backup(t, src, cache)
			files1 := uint64(len(tree1.Regular()) + 1) // + the second hard-link name
			if s := first.Manifest.Summary; s.FilesNew != files1 || s.FilesChanged != 0 || s.FilesUnmodified != 0 {
				t.Fatalf("first backup: new %d changed %d unmodified %d, want %d new", s.FilesNew, s.FilesChanged, s.FilesUnmodified, files1)
			}

			// Change two files (one by a single byte in the middle of the
			// large file), add two, delete two.
			tree2 := tree1.Clone()
			later := time.Date(2024, 1, 2, 3, 4, 5, 600700800, time.UTC)
			large := append([]byte(nil), tree1[fixture.LargePath].Content...)
			large[len(large)/2] ^= 0x55
			delta := fixture.Tree{
				fixture.UnicodeFile: {Content: []byte("curriculum vitæ, second edition\n"), MTime: later},
				fixture.LargePath:   {Content: large, MTime: later},
				"added":             {Dir: true, MTime: later},
				"added/new.txt":     {Content: []byte("brand new\n"), MTime: later},
				"added/random.bin":  {Content: fixture.Random(7, 3<<20), MTime: later},
			}
			deleted := []string{"times/2001.txt", "modes/exec.sh"}
			for _, p := range deleted {
				if err := os.Remove(filepath.Join(src, filepath.FromSlash(p))); err != nil {
					t.Fatal(err)
				}
				delete(tree2, p)
				// Deleting touched the parent; put its recorded mtime back.
				parent := filepath.ToSlash(filepath.Dir(p))
				delta[parent] = tree2[parent]
			}
			for p, e := range delta {
				tree2[p] = e
			}
			fixture.Create(t, src, delta)

			second := r.backup(t, src, cache)
			s := second.Manifest.Summary
			wantRead := uint64(len(delta[fixture.UnicodeFile].Content) + len(large) + len(delta["added/new.txt"].Content) + len(delta["added/random.bin"].Content))
			if s.FilesNew != 2 || s.FilesChanged != 2 || s.FilesUnmodified != files1-4 {
				t.Errorf("second backup: new %d changed %d unmodified %d, want 2, 2, %d", s.FilesNew, s.FilesChanged, s.FilesUnmodified, files1-4)
			}
			if s.BytesRead != wantRead {
				t.Errorf("second backup read %d bytes, want exactly the changed and new files' %d (the unchanged sparse file must not be read)", s.BytesRead, wantRead)
			}
			// One changed byte re-stores a chunk or two of the large file,
			// plus the new random file, plus trees.
			if max := uint64(3<<20 + chunkstore.DefaultChunkMax + 1<<20); s.BytesAdded > max {
				t.Errorf("second backup added %d bytes, want at most %d: dedup failed", s.BytesAdded, max)
			}

			// A backup of an unchanged tree reads nothing and stores only
			// trees. (Trees record directory atimes, which the previous
			// backup's reads may have moved; a fourth backup, with atimes
			// settled, must reuse src's tree blob as it is.)
			third := r.backup(t, src, cache)
			if s := third.Manifest.Summary; s.BytesRead != 0 || s.FilesUnmodified != files1 || s.FilesNew+s.FilesChanged != 0 || s.BytesAdded > 64<<10 {
				t.Errorf("unchanged backup: read %d bytes, added %d, %d unmodified of %d, %d new, %d changed", s.BytesRead, s.BytesAdded, s.FilesUnmodified, files1, s.FilesNew, s.FilesChanged)
			}
			fourth := r.backup(t, src, cache)
			// Trees above src record /tmp and friends, which other
			// processes change; src's own tree must be the same blob.
			if a, b := r.subtreeOf(t, third, src), r.subtreeOf(t, fourth, src); a != b {
				t.Errorf("unchanged tree stored again: %s then %s", a.Short(), b.Short())
			}

			r.restoreAndCompare(t, first.ID, src, tree1)
			r.restoreAndCompare(t, second.ID, src, tree2)
		})
	}
}
