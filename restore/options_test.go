package restore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// noElement keeps the paths none of whose elements pat matches: what a
// pattern without a slash excludes.
func noElement(pat string) func(string) bool {
	return func(p string) bool {
		for _, e := range strings.Split(p, "/") {
			if ok, _ := path.Match(pat, e); ok {
				return false
			}
		}
		return true
	}
}

func TestRestoreExclude(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	rel := strings.TrimPrefix(src, "/")

	// Excluding the first name of a hard link restores the second as a
	// plain file with the shared content and metadata.
	withoutA := subtree(tree, func(p string) bool { return p != fixture.HardlinkA })
	withoutA[fixture.HardlinkB] = tree[fixture.HardlinkA]

	tests := []struct {
		name               string
		include, exclude   []string
		want               fixture.Tree
		wantFiles, wantDir int64
	}{
		{name: "base name glob", exclude: []string{"*.txt"}, want: subtree(tree, noElement("*.txt"))},
		{name: "directory by name", exclude: []string{"modes"}, want: subtree(tree, func(p string) bool { return !under("modes")(p) })},
		{name: "whole path", exclude: []string{"/" + rel + "/deep/d01/d02"}, want: subtree(tree, func(p string) bool { return !under("deep/d01/d02")(p) })},
		{name: "with include", include: []string{rel + "/times"}, exclude: []string{"*.txt"}, want: subtree(tree, func(p string) bool {
			return under("times")(p) && noElement("*.txt")(p)
		})},
		{name: "first hard link name", exclude: []string{"/" + rel + "/" + fixture.HardlinkA}, want: withoutA},
		{name: "matching nothing", exclude: []string{"*.nothing", "/elsewhere/*"}, want: tree},
		// The directories above the backed-up path are only the way
		// there: a backup never matches them, nor does a restore.
		{name: "directory on the way, by name", exclude: []string{path.Base(path.Dir(src))}, want: tree},
		{name: "directory on the way, with **", exclude: []string{"**/" + path.Base(path.Dir(src)) + "/"}, want: tree},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			res := r.restore(t, snap, restore.Options{Target: dst, Include: tc.include, Exclude: tc.exclude})
			fixture.Compare(t, tc.want, restoredAt(dst, src))
			if want := files(tc.want); res.Files != want {
				t.Errorf("restored %d files, want %d", res.Files, want)
			}
		})
	}
	if _, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: t.TempDir(), Exclude: []string{"["}}); err == nil {
		t.Error("a malformed exclude pattern was accepted")
	}
}

// fatalIf returns a function that ends the test on a non-nil error.
func fatalIf(t *testing.T) func(error) {
	return func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// files counts the names of regular files in tree, hard links included,
// as Result.Files does.
func files(tree fixture.Tree) int64 {
	n := int64(len(tree.Regular()))
	for _, e := range tree {
		if e.HardlinkTo != "" {
			n++
		}
	}
	return n
}

// listing describes every entry under dir (type, mode, size, content
// hash, link target, mtime), to show that a dry run changed nothing.
func listing(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		}
		out[p] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRestoreDryRunAndDelete: a dry run reports exactly what a restore
// would replace and (with Delete) remove, writes nothing, and plans the
// same downloads as the restore; the restore with Delete then leaves the
// target holding exactly the snapshot, and lists what it removed.
func TestRestoreDryRunAndDelete(t *testing.T) {
	ctx := context.Background()
	r, src, tree, snap := standardSnapshot(t, "local")
	rel := strings.TrimPrefix(src, "/")

	// Into a target that does not exist: everything is new, and the
	// target is not created.
	missing := filepath.Join(t.TempDir(), "not-yet")
	dry, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: missing, DryRun: true, Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a dry run created its target: %v", err)
	}
	regular := int64(len(tree.Regular()))
	if dry.Files != regular+1 || dry.Symlinks != 4 || dry.FilesSkipped != 0 || dry.BytesWritten != dry.Bytes ||
		dry.BytesDownloaded == 0 || dry.Replaced != 0 || dry.Deleted != 0 || len(dry.Changes) != 0 || len(dry.Failures) != 0 {
		t.Fatalf("dry run into a new directory: %+v", dry)
	}

	dst := t.TempDir()
	first := r.restore(t, snap, restore.Options{Target: dst})
	if first.BytesDownloaded != dry.BytesDownloaded || first.Bytes != dry.Bytes || first.Files != dry.Files || first.Dirs != dry.Dirs {
		t.Errorf("the dry run planned %d bytes to download, %d bytes, %d files, %d dirs; the restore: %d, %d, %d, %d",
			dry.BytesDownloaded, dry.Bytes, dry.Files, dry.Dirs, first.BytesDownloaded, first.Bytes, first.Files, first.Dirs)
	}

	out := restoredAt(dst, src)
	at := func(p string) string { return filepath.Join(out, filepath.FromSlash(p)) }
	must := fatalIf(t)
	// Replaced: a file with other bytes of the same size, a file where a
	// directory holding a file was put, a directory where a file was put,
	// a symlink pointing elsewhere.
	must(os.WriteFile(at("modes/exec.sh"), []byte("#!/bin/sh\necho HI\n"), 0o755))
	must(os.Remove(at("times/2001.txt")))
	must(os.MkdirAll(at("times/2001.txt/inside"), 0o755))
	must(os.RemoveAll(at("times/olddir")))
	must(os.WriteFile(at("times/olddir"), []byte("a file now"), 0o644))
	must(os.Remove(at("links/relative")))
	must(os.Symlink("elsewhere", at("links/relative")))
	// Missing again: restored, not "replaced".
	must(os.Remove(at(fixture.HardlinkB)))
	must(os.Remove(at(fixture.UnicodeNested)))
	// Not in the snapshot: a file, a directory with contents. And beside
	// the backed-up path, which the snapshot says nothing about: a file
	// at the target's root and one next to src.
	must(os.WriteFile(at("extra.txt"), []byte("added later"), 0o644))
	must(os.MkdirAll(at("deep/d01/extra/sub"), 0o755))
	must(os.WriteFile(at("deep/d01/extra/sub/f"), nil, 0o644))
	beside := []string{filepath.Join(dst, "outside-snapshot"), out + "-sibling"}
	for _, p := range beside {
		must(os.WriteFile(p, nil, 0o644))
	}

	replaced := []restore.Change{
		{Path: rel + "/links/relative", Action: restore.ActionReplace},
		{Path: rel + "/modes/exec.sh", Action: restore.ActionReplace},
		{Path: rel + "/times/2001.txt", Action: restore.ActionReplace, Dir: true},
		{Path: rel + "/times/olddir", Action: restore.ActionReplace},
	}
	deleted := []restore.Change{ // sorted by path
		{Path: rel + "/deep/d01/extra", Action: restore.ActionDelete, Dir: true},
		{Path: rel + "/extra.txt", Action: restore.ActionDelete},
	}
	before := listing(t, dst)
	for _, del := range []bool{false, true} {
		res, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: dst, DryRun: true, Delete: del})
		if err != nil {
			t.Fatal(err)
		}
		// Without Delete, the directory holding a file where 2001.txt
		// goes is a conflict: left as it is, and the file not restored.
		want := slices.DeleteFunc(slices.Clone(replaced), func(c restore.Change) bool { return c.Dir })
		wantFailed := []string{rel + "/times/2001.txt"}
		if del {
			want = sortedChanges(append(append([]restore.Change{}, replaced...), deleted...))
			wantFailed = nil
		}
		var failed []string
		for _, f := range res.Failures {
			failed = append(failed, f.Path)
		}
		if !slices.Equal(failed, wantFailed) {
			t.Errorf("dry run (delete %v) failures %v, want %v", del, res.Failures, wantFailed)
		}
		if !reflect.DeepEqual(res.Changes, want) {
			t.Errorf("dry run (delete %v) changes:\n%v\nwant:\n%v", del, res.Changes, want)
		}
		wantDeleted := int64(0)
		if del {
			wantDeleted = int64(len(deleted))
		}
		// Skipped: every regular file but the four to write again:
		// exec.sh, 2001.txt, the nested one and times/olddir/new, whose
		// directory is now a file. (Hard link b is made as a link.)
		if res.Replaced != int64(len(want))-wantDeleted || res.Deleted != wantDeleted || res.FilesSkipped != regular-4 {
			t.Errorf("dry run (delete %v): replaced %d, deleted %d, skipped %d; want %d, %d, %d",
				del, res.Replaced, res.Deleted, res.FilesSkipped, int64(len(want))-wantDeleted, wantDeleted, regular-4)
		}
		if got := listing(t, dst); !reflect.DeepEqual(got, before) {
			t.Fatalf("a dry run changed the target")
		}
	}

	res := r.restore(t, snap, restore.Options{Target: dst, Delete: true})
	fixture.Compare(t, tree, out)
	if !reflect.DeepEqual(res.Changes, deleted) || res.Deleted != int64(len(deleted)) {
		t.Errorf("restore with delete removed %v (%d), want %v", res.Changes, res.Deleted, deleted)
	}
	for _, p := range beside {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("removed %s, beside the backed-up path: %v", p, err)
		}
	}
	again, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: dst, DryRun: true, Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changes) != 0 || again.BytesWritten != 0 || again.BytesDownloaded != 0 || again.FilesSkipped != regular {
		t.Errorf("dry run after the restore: %+v", again)
	}
}

func sortedChanges(cs []restore.Change) []restore.Change {
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j].Path < cs[j-1].Path; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
	return cs
}

// TestRestoreDeleteKeepsWhatIsNotSelected: Delete removes only within
// what Include and Exclude select.
func TestRestoreDeleteKeepsWhatIsNotSelected(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	rel := strings.TrimPrefix(src, "/")
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)
	// plant creates the files extras names (path → to be removed) in
	// the target; removedAsWanted checks they went, or stayed, as told.
	plant := func(extras map[string]bool) {
		for p := range extras {
			fp := filepath.Join(out, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(fp, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	removedAsWanted := func(extras map[string]bool) {
		for p, removed := range extras {
			_, err := os.Lstat(filepath.Join(out, filepath.FromSlash(p)))
			if removed != errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: removed %v, want %v (%v)", p, !removed, removed, err)
			}
		}
	}
	extras := map[string]bool{ // path → removed
		"times/extra.txt":    true,  // selected, not in the snapshot
		"times/olddir/x.txt": true,  // the same, deeper
		"times/extra.log":    false, // excluded
		"times/logs/a":       false, // below an excluded directory
		"modes/extra":        false, // not included
		"extra-top":          false, // not included
	}
	plant(extras)
	res := r.restore(t, snap, restore.Options{Target: dst, Include: []string{rel + "/times"}, Exclude: []string{"*.log", "logs"}, Delete: true})
	want := []restore.Change{
		{Path: rel + "/times/extra.txt", Action: restore.ActionDelete},
		{Path: rel + "/times/olddir/x.txt", Action: restore.ActionDelete},
	}
	if !reflect.DeepEqual(res.Changes, want) {
		t.Errorf("removed %v, want %v", res.Changes, want)
	}
	removedAsWanted(extras)
	for p := range tree {
		if _, err := os.Lstat(filepath.Join(out, filepath.FromSlash(p))); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// A pattern of several elements reaches into directories the
	// snapshot lacks, and only as deep as it goes.
	extras = map[string]bool{
		"times/private":      true,  // selected, in a directory the snapshot holds
		"newdir/private":     true,  // selected, in one it lacks
		"newdir/other":       false, // not selected
		"newdir/sub/private": false, // deeper than the pattern
		"excl/private":       false, // below an excluded directory
	}
	plant(extras)
	for _, dry := range []bool{true, false} {
		res = r.restore(t, snap, restore.Options{Target: dst, Include: []string{rel + "/*/private"}, Exclude: []string{"excl"}, Delete: true, DryRun: dry})
		want = []restore.Change{
			{Path: rel + "/newdir/private", Action: restore.ActionDelete},
			{Path: rel + "/times/private", Action: restore.ActionDelete},
		}
		if !reflect.DeepEqual(res.Changes, want) {
			t.Errorf("dry run %v: removed %v, want %v", dry, res.Changes, want)
		}
	}
	removedAsWanted(extras)
}

// localSnapshot is a backup of fixture.Standard() in a repository in a
// local directory, whose packs a test can damage.
type localSnapshot struct {
	dir   string // the repository's directory
	st    chunkstore.Store
	repos storetest.Repos
	testRepo
	src  string
	tree fixture.Tree
	snap *snapshot.Snapshot
}

func localStandardSnapshot(t *testing.T) localSnapshot {
	t.Helper()
	l := localSnapshot{dir: filepath.Join(t.TempDir(), "repo"), src: t.TempDir(), tree: fixture.Standard()}
	var err error
	if l.st, err = location.Open(context.Background(), l.dir, true); err != nil {
		t.Fatal(err)
	}
	l.repos = storetest.InitRepos(t, l.st)
	l.testRepo = testRepo{writer: l.repos.Writer, reader: l.repos.Reader}
	fixture.Create(t, l.src, l.tree)
	l.snap = l.backup(t, l.src)
	return l
}

// subtreeID is the tree ID of directory p (slash-separated, relative to
// the snapshot's root) in snap.
func subtreeID(t *testing.T, repo *chunkstore.Repository, snap *snapshot.Snapshot, p string) chunkstore.ID {
	t.Helper()
	id := snap.Tree
	for _, name := range strings.Split(p, "/") {
		tree, err := snapshot.LoadTree(context.Background(), repo, id)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, n := range tree.Nodes {
			if n.Name == name && n.Subtree != nil {
				id, found = *n.Subtree, true
				break
			}
		}
		if !found {
			t.Fatalf("no directory %s in %s", name, p)
		}
	}
	return id
}

// TestRestoreDeleteSparesUnreadableListings: where a directory's listing
// cannot be read, what the snapshot holds below it is unknown, so Delete
// removes nothing there (and the dry run lists nothing there).
func TestRestoreDeleteSparesUnreadableListings(t *testing.T) {
	ctx := context.Background()
	l := localStandardSnapshot(t)
	dir, st, repos, r, src, snap := l.dir, l.st, l.repos, l.testRepo, l.src, l.snap
	rel := strings.TrimPrefix(src, "/")
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)
	kept := filepath.Join(out, "deep", "d01", "extra")
	gone := filepath.Join(out, "times", "extra")
	for _, p := range []string{kept, gone} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Flip a byte in the middle of deep/d01's listing.
	if err := r.reader.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	flipInPack(t, r.reader, dir, subtreeID(t, r.reader, snap, rel+"/deep/d01"), 0x40)
	reader := repos.OpenReader(t, st) // nothing of the listing in memory

	for _, dry := range []bool{true, false} {
		res, err := restore.Restore(ctx, reader, snap, restore.Options{Target: dst, Delete: true, DryRun: dry})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Failures) != 1 || res.Failures[0].Path != rel+"/deep/d01" {
			t.Fatalf("dry run %v: failures %v, want one, for deep/d01", dry, res.Failures)
		}
		want := []restore.Change{{Path: rel + "/times/extra", Action: restore.ActionDelete}}
		if !reflect.DeepEqual(res.Changes, want) {
			t.Errorf("dry run %v: changes %v, want %v", dry, res.Changes, want)
		}
	}
	if _, err := os.Lstat(kept); err != nil {
		t.Errorf("removed a file below a directory whose listing could not be read: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(out, "deep", "d01", "d02", "d03")); err != nil {
		t.Errorf("removed a directory below a listing that could not be read: %v", err)
	}
	if _, err := os.Lstat(gone); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: not removed (%v)", gone, err)
	}
}

// TestRestoreVerify: with Verify every restored file is read back; one
// whose bytes on disk changed after they were written fails and is
// removed, the rest are counted intact.
func TestRestoreVerify(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	regular := int64(len(tree.Regular()))

	res := r.restore(t, snap, restore.Options{Target: t.TempDir(), Verify: true})
	// The two names of the hard link are one file, read once, and both
	// count.
	if res.FilesVerified != regular+1 || res.FilesVerified != res.Files {
		t.Errorf("verified %d files, want %d, as many as restored (%d)", res.FilesVerified, regular+1, res.Files)
	}

	flip := func(target string) {
		p := filepath.Join(restoredAt(target, src), fixture.LargePath)
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, 9<<20); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 1
		if _, err := f.WriteAt(b, 9<<20); err != nil {
			t.Fatal(err)
		}
	}
	restore.BeforeVerify(t, flip)
	// Without Verify the damage goes unnoticed (and the hook is not run).
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	fixture.Compare(t, tree, restoredAt(dst, src))

	dst = t.TempDir()
	bad, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	rel := strings.TrimPrefix(src, "/")
	var differs *chunkstore.ContentError
	if len(bad.Failures) != 1 || bad.Failures[0].Path != rel+"/"+fixture.LargePath ||
		!errors.As(bad.Failures[0].Err, &differs) || differs.Err != nil || differs.Got == differs.Want {
		t.Fatalf("failures %v, want one for %s naming the chunk that differs", bad.Failures, fixture.LargePath)
	}
	if bad.FilesVerified != res.Files-1 || bad.Files != res.Files-1 {
		t.Errorf("verified %d, restored %d; want %d of each", bad.FilesVerified, bad.Files, res.Files-1)
	}
	if _, err := os.Lstat(filepath.Join(restoredAt(dst, src), fixture.LargePath)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the file that failed verification was left in the target: %v", err)
	}
	delete(tree, fixture.LargePath)
	fixture.Compare(t, tree, restoredAt(dst, src))
}

// TestRestoreOverwrite: never leaves every entry the target holds as it
// is (content and metadata) and restores only what is missing; if-newer
// replaces only entries older than the snapshot's. Dry runs say the same,
// and Verify does not read kept files.
func TestRestoreOverwrite(t *testing.T) {
	ctx := context.Background()
	r, src, tree, snap := standardSnapshot(t, "local")
	rel := strings.TrimPrefix(src, "/")
	var entries int64 // files, hard links and symlinks: what Kept counts
	for _, e := range tree {
		if !e.Dir {
			entries++
		}
	}
	for _, mode := range []restore.Overwrite{restore.OverwriteNever, restore.OverwriteIfNewer} {
		t.Run(string(mode), func(t *testing.T) {
			dst := t.TempDir()
			r.restore(t, snap, restore.Options{Target: dst})
			out := restoredAt(dst, src)
			at := func(p string) string { return filepath.Join(out, filepath.FromSlash(p)) }
			must := fatalIf(t)
			// Older than the snapshot: if-newer replaces it.
			old := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
			must(os.WriteFile(at("modes/exec.sh"), []byte("#!/bin/sh\necho HI\n"), 0o755))
			must(os.Chtimes(at("modes/exec.sh"), old, old))
			// Newer: kept by both, with the mode it was given.
			must(os.WriteFile(at("modes/private"), []byte("edited after the backup\n"), 0o600))
			must(os.Chmod(at("modes/private"), 0o644))
			must(os.Remove(at("links/relative")))
			must(os.Symlink("elsewhere", at("links/relative")))
			// Missing: restored by both.
			must(os.Remove(at(fixture.UnicodeNested)))

			want := tree.Clone()
			want["modes/private"] = fixture.Entry{Content: []byte("edited after the backup\n"), Mode: 0o644}
			want["links/relative"] = fixture.Entry{Symlink: "elsewhere"}
			wantKept := entries - 1 // all but the missing one
			if mode == restore.OverwriteNever {
				want["modes/exec.sh"] = fixture.Entry{Content: []byte("#!/bin/sh\necho HI\n"), Mode: 0o755, MTime: old}
			} else {
				wantKept-- // exec.sh is replaced
			}

			dry, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: dst, Overwrite: mode, DryRun: true})
			if err != nil {
				t.Fatal(err)
			}
			var wantChanges []restore.Change
			if mode == restore.OverwriteIfNewer {
				wantChanges = []restore.Change{{Path: rel + "/modes/exec.sh", Action: restore.ActionReplace}}
			}
			if dry.Kept != wantKept || !reflect.DeepEqual(dry.Changes, wantChanges) {
				t.Errorf("dry run: kept %d, changes %v; want %d, %v", dry.Kept, dry.Changes, wantKept, wantChanges)
			}

			res := r.restore(t, snap, restore.Options{Target: dst, Overwrite: mode, Verify: true})
			fixture.Compare(t, want, out)
			if res.Kept != wantKept || res.Files+res.Symlinks+res.Kept != entries {
				t.Errorf("kept %d, restored %d files and %d symlinks; want %d kept of %d", res.Kept, res.Files, res.Symlinks, wantKept, entries)
			}
		})
	}
	if _, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: t.TempDir(), Overwrite: "sometimes"}); err == nil {
		t.Error("an unknown overwrite mode was accepted")
	}
}

// TestRestoreDeleteSpares: Delete leaves a mounted file system and the
// directories holding a protected path, and says so; a restore never
// removes an entry of the target named like its writability probe.
func TestRestoreDeleteSpares(t *testing.T) {
	ctx := context.Background()
	r, src, _, snap := standardSnapshot(t, "local")
	dst := t.TempDir()
	probe := filepath.Join(dst, ".lifeboat-write-test")
	if err := os.WriteFile(probe, []byte("the user's"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.restore(t, snap, restore.Options{Target: dst})
	if b, err := os.ReadFile(probe); err != nil || string(b) != "the user's" {
		t.Fatalf("the restore removed or changed a file named like its probe: %q, %v", b, err)
	}
	out := restoredAt(dst, src)
	rel := strings.TrimPrefix(src, "/")
	repoDir := filepath.Join(out, "deep", "holder", "repo")
	if err := os.MkdirAll(filepath.Join(repoDir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(out, "mnt")
	fixture.MountTmpfs(t, mnt, "size=1m")
	important := filepath.Join(mnt, "important")
	if err := os.WriteFile(important, []byte("on another file system"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantSpared := []string{rel + "/deep/holder", rel + "/mnt"}
	for _, dry := range []bool{true, false} {
		res, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: dst, Delete: true, DryRun: dry, Protect: []string{repoDir}})
		if err != nil {
			t.Fatal(err)
		}
		var spared []string
		for _, s := range res.Spared {
			spared = append(spared, s.Path)
		}
		if !reflect.DeepEqual(spared, wantSpared) || len(res.Changes) != 0 || len(res.Failures) != 0 {
			t.Errorf("dry run %v: spared %v, changes %v, failures %v; want spared %v and nothing else", dry, res.Spared, res.Changes, res.Failures, wantSpared)
		}
		if len(res.Spared) == 2 && (!strings.Contains(res.Spared[0].Err.Error(), "repo") || !strings.Contains(res.Spared[1].Err.Error(), "mounted")) {
			t.Errorf("reasons: %v", res.Spared)
		}
	}
	for _, p := range []string{important, filepath.Join(repoDir, "data"), probe} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestRestoreDeleteRefusesIncompleteSnapshots: a partial snapshot lacks
// what its backup could not read, a repaired one what was lost; Delete
// would remove those from the target, so it is refused (a plain restore
// is not).
func TestRestoreDeleteRefusesIncompleteSnapshots(t *testing.T) {
	ctx := context.Background()
	r, _, _, snap := standardSnapshot(t, "local")
	partial := *snap
	partial.Summary.Errors = 2
	repaired := *snap
	repaired.Original, repaired.OriginalBy = &snap.ID, snapshot.OriginalByRepair
	for _, tc := range []struct {
		snap *snapshot.Snapshot
		want string
	}{{&partial, "is partial"}, {&repaired, "repaired"}} {
		for _, dry := range []bool{true, false} {
			_, err := restore.Restore(ctx, r.reader, tc.snap, restore.Options{Target: t.TempDir(), Delete: true, DryRun: dry})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--delete") {
				t.Errorf("delete from a snapshot that %s (dry run %v): %v", tc.want, dry, err)
			}
		}
		r.restore(t, tc.snap, restore.Options{Target: t.TempDir()})
	}
}

// nodeAt loads the node at p (slash-separated, relative to the
// snapshot's root) in snap.
func nodeAt(t *testing.T, repo *chunkstore.Repository, snap *snapshot.Snapshot, p string) *snapshot.Node {
	t.Helper()
	dir, name := path.Split(p)
	id := snap.Tree
	if dir != "" {
		id = subtreeID(t, repo, snap, strings.TrimSuffix(dir, "/"))
	}
	tree, err := snapshot.LoadTree(context.Background(), repo, id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tree.Nodes {
		if tree.Nodes[i].Name == name {
			return &tree.Nodes[i]
		}
	}
	t.Fatalf("no %s in the snapshot", p)
	return nil
}

// TestRestoreLeavesTheTargetsCopyOfAFailedFile: a file the target
// already holds (with other content) is replaced only once its new
// content is complete, so when that content cannot be read the target's
// copy is left as it was, for files of one chunk and of many; a
// directory where a file goes is replaced by it.
func TestRestoreLeavesTheTargetsCopyOfAFailedFile(t *testing.T) {
	ctx := context.Background()
	l := localStandardSnapshot(t)
	dir, st, repos, r, src, tree, snap := l.dir, l.st, l.repos, l.testRepo, l.src, l.tree, l.snap
	rel := strings.TrimPrefix(src, "/")
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)

	// The target's own versions: edited in place, and a directory where
	// a file goes.
	large := append([]byte(nil), tree[fixture.LargePath].Content...)
	large[5<<20] ^= 0xff
	edited := map[string][]byte{fixture.LargePath: large, "modes/exec.sh": []byte("#!/bin/sh\necho edited\n")}
	for p, b := range edited {
		if err := os.WriteFile(filepath.Join(out, p), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(out, "times", "1990.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(out, "times", "1990.txt"), 0o755); err != nil { // empty: replaced
		t.Fatal(err)
	}

	// The repository loses a chunk of each edited file.
	if err := r.reader.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	flipInPack(t, r.reader, dir, nodeAt(t, r.reader, snap, rel+"/"+fixture.LargePath).Content[2], 0x40)
	flipInPack(t, r.reader, dir, r.reader.BlobID(tree["modes/exec.sh"].Content), 0x40)

	res, err := restore.Restore(ctx, repos.OpenReader(t, st), snap, restore.Options{Target: dst})
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, f := range res.Failures {
		failed = append(failed, f.Path)
		if !strings.Contains(f.Err.Error(), "left as it was") {
			t.Errorf("%s: %v, want it to say the target's copy is left", f.Path, f.Err)
		}
	}
	if want := []string{rel + "/" + fixture.LargePath, rel + "/modes/exec.sh"}; !reflect.DeepEqual(failed, want) {
		t.Fatalf("failures %v, want %v", failed, want)
	}
	for p, want := range edited {
		if got, err := os.ReadFile(filepath.Join(out, p)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: the target's copy was not left as it was (%d bytes, %v)", p, len(got), err)
		}
	}
	// Everything else is the snapshot's, 1990.txt a file again, and no
	// temporary file is left behind.
	want := tree.Clone()
	for p, b := range edited {
		e := want[p]
		e.Content, e.Mode, e.MTime = b, 0o755, time.Time{}
		want[p] = e
	}
	for _, d := range fixture.Diff(want, out) {
		// The edited files keep the times and modes the edit left.
		metaOfEdited := (strings.Contains(d, "mtime") || strings.Contains(d, "mode")) &&
			(strings.HasPrefix(d, fmt.Sprintf("%q", fixture.LargePath)) || strings.HasPrefix(d, `"modes/exec.sh"`))
		if !metaOfEdited {
			t.Error(d)
		}
	}
}

// TestRestoreKeepsADirectoryAFileCannotReplace: when a file cannot take
// the place of the directory the target holds at its path, the
// directory stays, with all it holds, and the file is reported failed.
func TestRestoreKeepsADirectoryAFileCannotReplace(t *testing.T) {
	for _, exchange := range []bool{true, false} {
		t.Run(fmt.Sprintf("exchange=%v", exchange), func(t *testing.T) {
			if !exchange {
				restore.RefuseExchange(t) // moved aside, and back
			}
			testKeepsADirectory(t)
		})
	}
}

func testKeepsADirectory(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	dst := t.TempDir()
	out := restoredAt(dst, src)
	held := filepath.Join(out, "times", "1990.txt", "sub", "keep")
	if err := os.MkdirAll(filepath.Dir(held), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(held, []byte("the target's own"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The file's temporary copy vanishes just before it would take the
	// directory's place, so it cannot.
	restore.BeforeReplaceDir(t, func(tmp string) {
		if err := os.Remove(filepath.Join(dst, tmp)); err != nil {
			t.Error(err)
		}
	})
	// Delete: a directory with entries is replaced only when asked to.
	res, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst, Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	rel := strings.TrimPrefix(src, "/")
	if len(res.Failures) != 1 || res.Failures[0].Path != rel+"/times/1990.txt" {
		t.Fatalf("failures %v, want times/1990.txt alone", res.Failures)
	}
	if got, err := os.ReadFile(held); err != nil || string(got) != "the target's own" {
		t.Fatalf("the directory's file: %q, %v; want it kept", got, err)
	}
	ents, err := os.ReadDir(filepath.Join(out, "times"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, ok := tree["times/"+e.Name()]; !ok {
			t.Errorf("times/%s left behind", e.Name())
		}
	}

	// Once the file can, it replaces the directory, and nothing of
	// either is left under another name.
	restore.BeforeReplaceDir(t, nil)
	r.restore(t, snap, restore.Options{Target: dst, Delete: true})
	fixture.Compare(t, tree, out)
}

// TestRestoreDeleteRefusesAnIncludeMatchingNothing: with Delete, an
// include pattern that matches nothing in the snapshot (a typo, most
// likely) would have everything it matches in the target removed.
func TestRestoreDeleteRefusesAnIncludeMatchingNothing(t *testing.T) {
	r, src, _, snap := standardSnapshot(t, "local")
	rel := strings.TrimPrefix(src, "/")
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	victim := filepath.Join(restoredAt(dst, src), "times", "extra")
	if err := os.WriteFile(victim, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dry := range []bool{true, false} {
		_, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst, Delete: true, DryRun: dry,
			Include: []string{rel + "/modes", rel + "/times/extra*"}})
		if err == nil || !strings.Contains(err.Error(), `"`+rel+`/times/extra*" matches nothing`) {
			t.Errorf("dry run %v: %v, want a refusal naming the pattern", dry, err)
		}
	}
	if _, err := os.Lstat(victim); err != nil {
		t.Errorf("removed: %v", err)
	}
	// The refused restore changes nothing, not even the directories it
	// would have made: an empty target stays empty, and a symlink where
	// the snapshot has a directory stays a symlink.
	empty := t.TempDir()
	modes := filepath.Join(restoredAt(dst, src), "modes")
	if err := os.Rename(modes, modes+".real"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("modes.real", modes); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{empty, dst} {
		_, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: target, Delete: true,
			Include: []string{rel + "/modes", rel + "/times/extra*"}})
		if err == nil {
			t.Fatalf("restore into %s with a pattern matching nothing was not refused", target)
		}
	}
	if left, _ := os.ReadDir(empty); len(left) != 0 {
		t.Errorf("a refused restore made %v in an empty target", left)
	}
	if fi, err := os.Lstat(modes); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("a refused restore replaced the symlink at %s: %v %v", modes, fi.Mode(), err)
	}
	if err := os.Remove(modes); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(modes+".real", modes); err != nil {
		t.Fatal(err)
	}
	// A pattern that matches is not hidden by another matching the same
	// path first.
	r.restore(t, snap, restore.Options{Target: dst, Delete: true, DryRun: true, Include: []string{rel + "/*", rel + "/times"}})
	// Without Delete such a pattern only restores nothing, and is named.
	res := r.restore(t, snap, restore.Options{Target: t.TempDir(), Include: []string{rel + "/modes", rel + "/times/extra*"}})
	if len(res.UnmatchedIncludes) != 1 || res.UnmatchedIncludes[0] != rel+"/times/extra*" {
		t.Errorf("UnmatchedIncludes = %q, want the pattern that matched nothing", res.UnmatchedIncludes)
	}
	if len(res.ExcludedIncludes) != 0 {
		t.Errorf("ExcludedIncludes = %q, want none: nothing was excluded", res.ExcludedIncludes)
	}
	dry, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: t.TempDir(), DryRun: true, Include: []string{rel + "/times/extra*"}})
	if err != nil || len(dry.UnmatchedIncludes) != 1 {
		t.Errorf("dry run: %v, UnmatchedIncludes %q", err, dry.UnmatchedIncludes)
	}
	// A pattern whose every match an exclude pattern leaves out restores
	// nothing too, and is named as such, not as matching nothing.
	for _, dry := range []bool{false, true} {
		opts := restore.Options{Target: t.TempDir(), DryRun: dry, Include: []string{rel + "/modes", rel + "/times", rel + "/times/extra*"}, Exclude: []string{"modes"}}
		res := r.restore(t, snap, opts)
		if want := []string{rel + "/modes", rel + "/times/extra*"}; !slices.Equal(res.UnmatchedIncludes, want) {
			t.Errorf("dry run %v: UnmatchedIncludes = %q, want %q", dry, res.UnmatchedIncludes, want)
		}
		if want := []string{rel + "/modes"}; !slices.Equal(res.ExcludedIncludes, want) {
			t.Errorf("dry run %v: ExcludedIncludes = %q, want %q", dry, res.ExcludedIncludes, want)
		}
		opts.Delete, opts.Include = true, opts.Include[:2]
		_, err := restore.Restore(context.Background(), r.reader, snap, opts)
		if err == nil || !strings.Contains(err.Error(), `"`+rel+`/modes" matches only paths of snapshot`) {
			t.Errorf("dry run %v with --delete: %v, want a refusal saying --exclude left out the pattern's matches", dry, err)
		}
	}
}

// TestDryRunFindsMissingPacks: a dry run lists the repository's packs
// and names the files whose data lies in a missing one, exactly those a
// restore then fails.
func TestDryRunFindsMissingPacks(t *testing.T) {
	ctx := context.Background()
	l := localStandardSnapshot(t)
	dir, st, repos, r, src, tree, snap := l.dir, l.st, l.repos, l.testRepo, l.src, l.tree, l.snap
	if err := r.reader.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	loc, ok := r.reader.Index().Lookup(r.reader.BlobID(tree["modes/exec.sh"].Content))
	if !ok {
		t.Fatal("blob not indexed")
	}
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(chunkstore.PackName(loc.Pack.ID)))); err != nil {
		t.Fatal(err)
	}
	paths := func(fs []restore.Failure) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.Path)
		}
		return out
	}
	dst := t.TempDir()
	dry, err := restore.Restore(ctx, repos.OpenReader(t, st), snap, restore.Options{Target: dst, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := restore.Restore(ctx, repos.OpenReader(t, st), snap, restore.Options{Target: dst})
	if err != nil {
		t.Fatal(err)
	}
	rel := strings.TrimPrefix(src, "/")
	if got := paths(dry.Failures); len(got) == 0 || !slices.Contains(got, rel+"/modes/exec.sh") || !reflect.DeepEqual(got, paths(res.Failures)) {
		t.Errorf("the dry run named %v, the restore failed %v", got, paths(res.Failures))
	}
	if dry.Files != res.Files {
		t.Errorf("the dry run would restore %d files, the restore did %d", dry.Files, res.Files)
	}
	for _, f := range dry.Failures {
		if !strings.Contains(f.Err.Error(), "missing from the repository") && !strings.Contains(f.Err.Error(), "hard link to") {
			t.Errorf("%s: %v", f.Path, f.Err)
		}
	}
}

// TestRestoreDeleteKeepsExcludedBelowExtraDirs: a directory the snapshot
// lacks goes with all it holds only if an exclude pattern protects
// nothing in it; otherwise what the patterns select in it goes and the
// rest stays ("--exclude '*.pid' would keep every .pid file"), in the
// dry run as in the restore.
func TestRestoreDeleteKeepsExcludedBelowExtraDirs(t *testing.T) {
	r, src, _, snap := standardSnapshot(t, "local")
	rel := strings.TrimPrefix(src, "/")
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)
	extras := map[string]bool{ // path → removed
		"times/new/x.pid":        false, // excluded, in a directory the snapshot lacks
		"times/new/other":        true,
		"times/new/keep/f":       false, // below keep/: '**/keep/**'
		"times/new/sub/deep.pid": false,
		"times/new/sub/gone":     true,
		"times/gone/a/b/c":       true, // nothing excluded: the directory goes whole
		"newtop/keep/g":          false,
		"newtop/h":               true,
	}
	for p := range extras {
		fp := filepath.Join(out, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fp, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := []restore.Change{
		{Path: rel + "/newtop/h", Action: restore.ActionDelete},
		{Path: rel + "/times/gone", Action: restore.ActionDelete, Dir: true},
		{Path: rel + "/times/new/other", Action: restore.ActionDelete},
		{Path: rel + "/times/new/sub/gone", Action: restore.ActionDelete},
	}
	for _, dry := range []bool{true, false} {
		res := r.restore(t, snap, restore.Options{Target: dst, Exclude: []string{"*.pid", "**/keep/**"}, Delete: true, DryRun: dry})
		if !reflect.DeepEqual(res.Changes, want) {
			t.Errorf("dry run %v: removed %v, want %v", dry, res.Changes, want)
		}
	}
	for p, removed := range extras {
		_, err := os.Lstat(filepath.Join(out, filepath.FromSlash(p)))
		if removed != errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: removed %v, want %v (%v)", p, !removed, removed, err)
		}
	}
}

// TestRestoreDeleteKeepsLeftoversBelowExtraDirs: a directory the
// snapshot lacks that holds an entry named like a restore's temporary
// file (another restore's in progress, or a killed one's) is not removed
// whole: what else it holds goes, the entry and the directories above it
// stay and are named in Spared, in a dry run too.
func TestRestoreDeleteKeepsLeftoversBelowExtraDirs(t *testing.T) {
	r, src, _, snap := standardSnapshot(t, "local")
	rel := strings.TrimPrefix(src, "/")
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)
	tmp := fmt.Sprintf(".lifeboat-restore-%d-1", os.Getpid())
	extras := map[string]bool{ // path → removed
		"times/new/" + tmp:           false,
		"times/new/other":            true,
		"times/new/sub/" + tmp + "x": true, // not such a name
		"times/new/deep/a/" + tmp:    false,
		"times/new/deep/b":           true,
		"times/gone/a/b/c":           true, // none: the directory goes whole
	}
	for p := range extras {
		fp := filepath.Join(out, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fp, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := []restore.Change{
		{Path: rel + "/times/gone", Action: restore.ActionDelete, Dir: true},
		{Path: rel + "/times/new/deep/b", Action: restore.ActionDelete},
		{Path: rel + "/times/new/other", Action: restore.ActionDelete},
		{Path: rel + "/times/new/sub", Action: restore.ActionDelete, Dir: true},
	}
	wantSpared := []string{rel + "/times/new/" + tmp, rel + "/times/new/deep/a/" + tmp}
	for _, dry := range []bool{true, false} {
		res := r.restore(t, snap, restore.Options{Target: dst, Delete: true, DryRun: dry})
		if !reflect.DeepEqual(res.Changes, want) {
			t.Errorf("dry run %v: removed %v, want %v", dry, res.Changes, want)
		}
		var spared []string
		for _, s := range res.Spared {
			spared = append(spared, s.Path)
		}
		slices.Sort(spared)
		slices.Sort(wantSpared)
		if !reflect.DeepEqual(spared, wantSpared) {
			t.Errorf("dry run %v: spared %v, want %v", dry, res.Spared, wantSpared)
		}
	}
	for p, removed := range extras {
		_, err := os.Lstat(filepath.Join(out, filepath.FromSlash(p)))
		if removed != errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: removed %v, want %v (%v)", p, !removed, removed, err)
		}
	}
}

// TestRestoreDeleteIncludeDirOnly: an include pattern ending in "/"
// matches directories only, as it does in find and in exclude patterns:
// "**/olddir/" restores, and with Delete removes, directories named
// olddir, never a file of that name.
func TestRestoreDeleteIncludeDirOnly(t *testing.T) {
	r, src, _, snap := standardSnapshot(t, "local")
	rel := strings.TrimPrefix(src, "/")
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)
	extras := map[string]bool{ // path → removed
		"modes/olddir":       false, // a file: not selected
		"newdir/olddir/x":    true,  // the directory goes whole
		"times/olddir/extra": true,  // below a selected directory
	}
	for p := range extras {
		fp := filepath.Join(out, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fp, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := []restore.Change{
		{Path: rel + "/newdir/olddir", Action: restore.ActionDelete, Dir: true},
		{Path: rel + "/times/olddir/extra", Action: restore.ActionDelete},
	}
	for _, dry := range []bool{true, false} {
		res := r.restore(t, snap, restore.Options{Target: dst, Include: []string{"**/olddir/"}, Delete: true, DryRun: dry})
		if !reflect.DeepEqual(res.Changes, want) {
			t.Errorf("dry run %v: removed %v, want %v", dry, res.Changes, want)
		}
	}
	for p, removed := range extras {
		_, err := os.Lstat(filepath.Join(out, filepath.FromSlash(p)))
		if removed != errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: removed %v, want %v (%v)", p, !removed, removed, err)
		}
	}
}
