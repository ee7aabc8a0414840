// Restores into a target that holds an entry of another type where the
// snapshot has one, or where a directory cannot be created.

package restore_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// failedPaths returns the paths of res's failures relative to the
// restored src, and their errors by path.
func failedPaths(res *restore.Result, src string) ([]string, map[string]string) {
	var paths []string
	errs := map[string]string{}
	for _, f := range res.Failures {
		p := strings.TrimPrefix(f.Path, strings.TrimPrefix(src, "/")+"/")
		paths = append(paths, p)
		errs[p] = f.Err.Error()
	}
	return paths, errs
}

// dryThenRestore runs a dry run of snap with opts, then the restore
// itself, and returns both results.
func (r testRepo) dryThenRestore(t *testing.T, snap *snapshot.Snapshot, opts restore.Options) (dry, res *restore.Result) {
	t.Helper()
	opts.DryRun = true
	dry, err := restore.Restore(context.Background(), r.reader, snap, opts)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	opts.DryRun = false
	if res, err = restore.Restore(context.Background(), r.reader, snap, opts); err != nil {
		t.Fatalf("restore: %v", err)
	}
	return dry, res
}

// sameFailures fails t unless the dry run dry reported the failures
// the restore res met.
func sameFailures(t *testing.T, dry, res *restore.Result, src string) {
	t.Helper()
	dryFailed, _ := failedPaths(dry, src)
	if failed, _ := failedPaths(res, src); !slices.Equal(dryFailed, failed) {
		t.Errorf("the dry run's failures %v, the restore's %v", dry.Failures, res.Failures)
	}
}

// wantFiles fails t unless each file (a path under out) holds its text.
func wantFiles(t *testing.T, out string, want map[string]string) {
	t.Helper()
	for p, w := range want {
		if b, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(b) != w {
			t.Errorf("%s: %q, %v; want %q", p, b, err, w)
		}
	}
}

// TestDirConflicts: a directory with entries in the target where the
// snapshot has a file or a symlink is left as it is, with all it holds,
// and the entry reported (naming --delete), unless Delete asks for it to
// go; an empty one is replaced. With Overwrite never (and if-newer, for a
// newer entry), a file where the snapshot has a directory is left as it
// is too, and nothing below that directory restored, and reported; the
// default replaces it, as any changed file. Everything else is restored,
// and a dry run reports exactly what the restore then does (found by
// review: the restore removed the directories and what they held without
// a word, with --overwrite never too, and only the dry run listed them).
func TestDirConflicts(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	tree := fixture.Tree{
		"f":      {Content: []byte("the snapshot's file\n")},
		"big":    {Content: fixture.Random(5, 3<<20)}, // several chunks: created up front
		"l":      {Symlink: "f"},
		"hard/a": {Content: []byte("linked\n")},
		"hard/b": {HardlinkTo: "hard/a"},
		"empty":  {Content: []byte("where the target has an empty directory\n")},
		"d/x":    {Content: []byte("in a directory where the target has a file\n")},
		"d/y/z":  {Content: []byte("deeper\n")},
		"ok":     {Content: []byte("restored anyway\n")},
	}
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)

	for _, tc := range []struct {
		name      string
		opts      restore.Options
		failed    []string // sorted
		userFiles bool     // the target's directories at f, big, l and hard/b stay with their files
		dKept     bool     // the target's file at d stays
	}{
		{name: "if-changed", failed: []string{"big", "f", "hard/b", "l"}, userFiles: true},
		{name: "never", opts: restore.Options{Overwrite: restore.OverwriteNever}, failed: []string{"d"}, userFiles: true, dKept: true},
		{name: "delete", opts: restore.Options{Delete: true}},
		// Delete removes nothing of what never keeps, nor the file
		// standing for the directory it keeps out.
		{name: "never-delete", opts: restore.Options{Overwrite: restore.OverwriteNever, Delete: true}, failed: []string{"d"}, userFiles: true, dKept: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dst := t.TempDir()
			out := restoredAt(dst, src)
			at := func(p string) string { return filepath.Join(out, p) }
			must := fatalIf(t)
			for _, p := range []string{"f", "big", "l", "hard/b"} {
				must(os.MkdirAll(at(p), 0o755))
				must(os.WriteFile(at(p+"/user.txt"), []byte("the user's"), 0o644))
			}
			must(os.Mkdir(at("empty"), 0o755))
			must(os.WriteFile(at("d"), []byte("the user's file"), 0o644))

			opts := tc.opts
			opts.Target, opts.DryRun = dst, true
			before := listing(t, dst)
			dry, err := restore.Restore(ctx, r.reader, snap, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(listing(t, dst), before) {
				t.Fatal("the dry run changed the target")
			}
			opts.DryRun = false
			res, err := restore.Restore(ctx, r.reader, snap, opts)
			if err != nil {
				t.Fatal(err)
			}

			dryFailed, _ := failedPaths(dry, src)
			failed, errs := failedPaths(res, src)
			if !slices.Equal(failed, tc.failed) {
				t.Errorf("failures %v, want %v", res.Failures, tc.failed)
			}
			if !slices.Equal(dryFailed, failed) {
				t.Errorf("the dry run's failures %v, the restore's %v", dry.Failures, res.Failures)
			}
			if dry.Files != res.Files || dry.Dirs != res.Dirs || dry.Symlinks != res.Symlinks || dry.Kept != res.Kept {
				t.Errorf("the dry run would restore %d files, %d dirs, %d symlinks and keep %d; the restore: %d, %d, %d, %d",
					dry.Files, dry.Dirs, dry.Symlinks, dry.Kept, res.Files, res.Dirs, res.Symlinks, res.Kept)
			}
			var replaced []string
			for _, c := range dry.Changes { // replaced or deleted
				replaced = append(replaced, strings.TrimPrefix(c.Path, strings.TrimPrefix(src, "/")+"/"))
			}
			for _, p := range failed {
				if slices.Contains(replaced, p) {
					t.Errorf("the dry run lists %s as replaced or deleted (%v), which the restore left", p, dry.Changes)
				}
			}
			for _, p := range []string{"big", "f", "hard/b"} {
				if tc.userFiles && tc.opts.Overwrite == "" && !strings.Contains(errs[p], "--delete") {
					t.Errorf("%s: %q, want it to name --delete", p, errs[p])
				}
			}
			if tc.dKept && !strings.Contains(errs["d"], "nothing below it is restored") {
				t.Errorf("d: %q, want it to say nothing below it is restored", errs["d"])
			}

			for _, p := range []string{"f", "big", "l", "hard/b"} {
				b, err := os.ReadFile(at(p + "/user.txt"))
				if tc.userFiles && (err != nil || string(b) != "the user's") {
					t.Errorf("%s/user.txt: %q, %v; want the user's file left", p, b, err)
				}
				if !tc.userFiles {
					if fi, err := os.Lstat(at(p)); err != nil || fi.IsDir() {
						t.Errorf("%s with Delete: %v, %v; want the snapshot's entry", p, fi, err)
					}
				}
			}
			b, err := os.ReadFile(at("d"))
			if tc.dKept != (err == nil && string(b) == "the user's file") {
				t.Errorf("d: %q, %v; want it kept: %v", b, err, tc.dKept)
			}
			if !tc.dKept {
				if b, err := os.ReadFile(at("d/y/z")); err != nil || string(b) != "deeper\n" {
					t.Errorf("d/y/z: %q, %v", b, err)
				}
			}
			if b, err := os.ReadFile(at("ok")); err != nil || string(b) != "restored anyway\n" {
				t.Errorf("ok: %q, %v", b, err)
			}
			if b, err := os.ReadFile(at("hard/a")); err != nil || string(b) != "linked\n" {
				t.Errorf("hard/a: %q, %v", b, err)
			}
			if fi, err := os.Lstat(at("empty")); tc.opts.Overwrite != restore.OverwriteNever && (err != nil || !fi.Mode().IsRegular()) {
				t.Errorf("empty: %v, %v; want the empty directory replaced by the file", fi, err)
			}
		})
	}
}

// TestUncreatableDir: a directory that cannot be created (here: its
// parent in the target belongs to root and the restore runs as another
// user) is reported, naming it and why, and nothing below it is
// restored; everything else is, and a dry run reports the same (found by
// review: the first such directory ended the whole restore).
func TestUncreatableDir(t *testing.T) {
	r := anyUserRepo(t)
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"locked/sub/f":      {Content: []byte("cannot go here\n")},
		"locked/sub/deep/g": {Content: []byte("nor here\n")},
		"open/h":            {Content: []byte("restored anyway\n")},
		"z":                 {Content: []byte("after it in the walk\n")},
	})
	snap := r.backup(t, src)
	dst := userTarget(t, nobody)
	out := restoredAt(dst, src)
	// The directories down to src, nobody's, and locked, root's.
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := out; p != dst; p = filepath.Dir(p) {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(out, "locked"), 0o755); err != nil {
		t.Fatal(err)
	}

	var dry, res *restore.Result
	asUser(t, nobody, func() { dry, res = r.dryThenRestore(t, snap, restore.Options{Target: dst}) })
	failed, errs := failedPaths(res, src)
	if want := []string{"locked/sub"}; !slices.Equal(failed, want) {
		t.Fatalf("failures %v, want %v", res.Failures, want)
	}
	if e := errs["locked/sub"]; !strings.Contains(e, "permission denied") || !strings.Contains(e, "nothing below it is restored") {
		t.Errorf("locked/sub: %q, want it to say why and that nothing below it is restored", e)
	}
	sameFailures(t, dry, res, src)
	if dry.Files != res.Files || dry.Dirs != res.Dirs || res.Files != 2 {
		t.Errorf("the dry run would restore %d files and %d dirs, the restore did %d and %d; want 2 files", dry.Files, dry.Dirs, res.Files, res.Dirs)
	}
	wantFiles(t, out, map[string]string{"open/h": "restored anyway\n", "z": "after it in the walk\n"})
}

// needChattr skips t unless it runs as root with chattr, to mark files
// immutable; it returns chattr's path.
func needChattr(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to mark a file immutable")
	}
	chattr, err := exec.LookPath("chattr")
	if err != nil {
		t.Skip("no chattr")
	}
	return chattr
}

// TestImmutableInTheWay: an immutable file (chattr +i) where the
// snapshot has a directory cannot be replaced: the directory is reported
// and nothing below it restored, everything else is, and the dry run
// says so too rather than promising to replace it.
func TestImmutableInTheWay(t *testing.T) {
	chattr := needChattr(t)
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"d/x": {Content: []byte("below\n")}, "ok": {Content: []byte("restored anyway\n")}})
	snap := r.backup(t, src)
	dst := t.TempDir()
	out := restoredAt(dst, src)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(out, "d")
	if err := os.WriteFile(d, []byte("immutable\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(chattr, "+i", d).CombinedOutput(); err != nil {
		t.Skipf("the filesystem of %s has no immutable flag: %v %s", d, err, b)
	}
	t.Cleanup(func() { _ = exec.Command(chattr, "-i", d).Run() })

	dry, res := r.dryThenRestore(t, snap, restore.Options{Target: dst})
	failed, errs := failedPaths(res, src)
	if !slices.Equal(failed, []string{"d"}) || !strings.Contains(errs["d"], "operation not permitted") {
		t.Fatalf("failures %v, want d's, saying why", res.Failures)
	}
	if dryFailed, _ := failedPaths(dry, src); !slices.Equal(dryFailed, failed) || len(dry.Changes) != 0 {
		t.Errorf("the dry run: failures %v, changes %v; the restore's failures %v", dry.Failures, dry.Changes, res.Failures)
	}
	if b, err := os.ReadFile(filepath.Join(out, "ok")); err != nil || string(b) != "restored anyway\n" {
		t.Errorf("ok: %q, %v", b, err)
	}
}

// TestHardLinkFirstNameLeftOut: when the first name of a hard-link group
// is left out of the restore (below a directory that cannot be created,
// or where the target holds a directory with entries), its other names
// are restored all the same: the first of them carries the content and
// the rest are linked to it, and a dry run says the same (found by
// review: they failed as "hard link to /x, which failed").
func TestHardLinkFirstNameLeftOut(t *testing.T) {
	r := anyUserRepo(t)
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"locked/sub/a": {Content: []byte("first under a blocked directory\n")},
		"m":            {HardlinkTo: "locked/sub/a"},
		"n":            {HardlinkTo: "locked/sub/a"},
		"c":            {Content: []byte("first where the target has a directory\n")},
		"d":            {HardlinkTo: "c"},
		"e":            {HardlinkTo: "c"},
	})
	snap := r.backup(t, src)
	dst := userTarget(t, nobody)
	out := restoredAt(dst, src)
	must := fatalIf(t)
	must(os.MkdirAll(filepath.Join(out, "c"), 0o755))
	must(os.WriteFile(filepath.Join(out, "c", "user.txt"), []byte("the user's"), 0o644))
	for _, p := range []string{filepath.Join(out, "c", "user.txt"), filepath.Join(out, "c")} {
		must(os.Chown(p, nobody, nobody))
	}
	for p := out; p != dst; p = filepath.Dir(p) {
		must(os.Chown(p, nobody, nobody))
	}
	must(os.Mkdir(filepath.Join(out, "locked"), 0o755)) // root's

	var dry, res *restore.Result
	asUser(t, nobody, func() { dry, res = r.dryThenRestore(t, snap, restore.Options{Target: dst}) })
	failed, _ := failedPaths(res, src)
	if want := []string{"c", "locked/sub"}; !slices.Equal(failed, want) {
		t.Fatalf("failures %v, want %v", res.Failures, want)
	}
	sameFailures(t, dry, res, src)
	if dry.Files != res.Files || res.Files != 4 {
		t.Errorf("the dry run would restore %d files, the restore did %d; want 4", dry.Files, res.Files)
	}
	for _, group := range [][]string{{"m", "n"}, {"d", "e"}} {
		want, err := os.ReadFile(filepath.Join(src, group[0]))
		must(err)
		var first os.FileInfo
		for _, p := range group {
			b, err := os.ReadFile(filepath.Join(out, p))
			if err != nil || !bytes.Equal(b, want) {
				t.Errorf("%s: %q, %v; want %q", p, b, err, want)
				continue
			}
			fi, err := os.Lstat(filepath.Join(out, p))
			must(err)
			if first == nil {
				first = fi
			} else if !os.SameFile(first, fi) {
				t.Errorf("%s is not a hard link to %s", p, group[0])
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(out, "c", "user.txt")); err != nil || string(b) != "the user's" {
		t.Errorf("c/user.txt: %q, %v; want the user's file left", b, err)
	}
}

// TestHardLinkFirstNameFailsWhenWritten: where the first name of a
// hard-link group fails only when its content is put in place (its
// directory made read-only after the restore planned), the content is
// restored at the group's next name and the others are linked to it,
// for a file of one chunk (linked in when its blob arrives) and one of
// several (renamed into place once complete). Before, every name of
// the group failed with "hard link to ..., which failed".
func TestHardLinkFirstNameFailsWhenWritten(t *testing.T) {
	r := anyUserRepo(t)
	src := t.TempDir()
	big := make([]byte, 6<<20) // several chunks (at least 512 KiB each)
	rand.NewChaCha8([32]byte{3}).Read(big)
	fixture.Create(t, src, fixture.Tree{
		"a/small": {Content: []byte("one chunk, first name in a\n")},
		"b/s1":    {HardlinkTo: "a/small"},
		"b/s2":    {HardlinkTo: "a/small"},
		"c/big":   {Content: big},
		"d/b1":    {HardlinkTo: "c/big"},
		"d/b2":    {HardlinkTo: "c/big"},
		"ok":      {Content: []byte("restored anyway\n")},
	})
	snap := r.backup(t, src)
	dst := userTarget(t, nobody)
	out := restoredAt(dst, src)
	restore.BeforeFetch(t, func(string) {
		// The restore runs as nobody, who owns these directories and
		// may not write in them from now on.
		for _, d := range []string{"a", "c"} {
			if err := os.Chmod(filepath.Join(out, d), 0o555); err != nil {
				t.Error(err)
			}
		}
	})
	var res *restore.Result
	asUser(t, nobody, func() {
		var err error
		if res, err = restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst}); err != nil {
			t.Fatal(err)
		}
	})
	failed, errs := failedPaths(res, src)
	if want := []string{"a/small", "c/big"}; !slices.Equal(slices.Sorted(slices.Values(failed)), want) {
		t.Fatalf("failures %v, want %v", res.Failures, want)
	}
	for _, p := range failed {
		if !strings.Contains(errs[p], "permission denied") {
			t.Errorf("%s: %s; want the directory's refusal", p, errs[p])
		}
	}
	for _, group := range [][]string{{"b/s1", "b/s2"}, {"d/b1", "d/b2"}} {
		want, err := os.ReadFile(filepath.Join(src, group[0]))
		if err != nil {
			t.Fatal(err)
		}
		var first os.FileInfo
		for _, p := range group {
			b, err := os.ReadFile(filepath.Join(out, p))
			if err != nil || !bytes.Equal(b, want) {
				t.Errorf("%s: %d bytes, %v; want the group's %d", p, len(b), err, len(want))
				continue
			}
			fi, err := os.Lstat(filepath.Join(out, p))
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = fi
			} else if !os.SameFile(first, fi) {
				t.Errorf("%s is not a hard link to %s", p, group[0])
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(out, "ok")); err != nil || string(b) != "restored anyway\n" {
		t.Errorf("ok: %q, %v", b, err)
	}
	if res.Files != 5 {
		t.Errorf("%d files restored, want 5 (ok and the four other names)", res.Files)
	}
}

// TestDirGainsEntriesDuringRestore: an empty directory of the target
// where the snapshot has a file (of one chunk or several), a symlink or
// a hard link's second name is replaced, but one that gains an entry
// after the restore looked at it (here once the files are created,
// before any download) is left as it is, with the entry, and that name
// fails naming --delete, with or without RENAME_EXCHANGE. Before, it was
// removed with what it had gained.
func TestDirGainsEntriesDuringRestore(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"f":      {Content: []byte("the snapshot's file\n")},
		"big":    {Content: fixture.Random(6, 3<<20)},
		"l":      {Symlink: "f"},
		"hard/a": {Content: []byte("linked\n")},
		"hard/b": {HardlinkTo: "hard/a"},
		"ok":     {Content: []byte("restored anyway\n")},
	})
	snap := r.backup(t, src)
	gaining := []string{"big", "f", "hard/b", "l"}
	for _, exchange := range []bool{true, false} {
		t.Run(fmt.Sprintf("exchange=%v", exchange), func(t *testing.T) {
			if !exchange {
				restore.RefuseExchange(t)
			}
			dst := t.TempDir()
			out := restoredAt(dst, src)
			must := fatalIf(t)
			for _, p := range gaining {
				must(os.MkdirAll(filepath.Join(out, p), 0o755))
			}
			restore.BeforeFetch(t, func(string) {
				for _, p := range gaining {
					must(os.WriteFile(filepath.Join(out, p, "new.txt"), []byte("written meanwhile"), 0o644))
				}
			})
			res, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst})
			if err != nil {
				t.Fatal(err)
			}
			failed, errs := failedPaths(res, src)
			if !slices.Equal(slices.Sorted(slices.Values(failed)), gaining) {
				t.Fatalf("failures %v, want %v", res.Failures, gaining)
			}
			for _, p := range gaining {
				if !strings.Contains(errs[p], "did not hold, or was empty") || !strings.Contains(errs[p], "--delete") {
					t.Errorf("%s: %s; want it to say the directory gained entries, naming --delete", p, errs[p])
				}
				if b, err := os.ReadFile(filepath.Join(out, p, "new.txt")); err != nil || string(b) != "written meanwhile" {
					t.Errorf("%s/new.txt: %q, %v; want it kept", p, b, err)
				}
			}
			if b, err := os.ReadFile(filepath.Join(out, "ok")); err != nil || string(b) != "restored anyway\n" {
				t.Errorf("ok: %q, %v", b, err)
			}
			ents, err := os.ReadDir(out)
			must(err)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".lifeboat") {
					t.Errorf("%s left in the target", e.Name())
				}
			}
		})
	}
}
