package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestRestoreFromOtherCopies: a repository in which every blob is stored
// twice (two backups that did not see each other's packs, as two hosts'
// first backups running at once), made here by hiding the first backup's
// packs and index files from the second. With either copy's packs gone,
// restore still brings back every file; the packs it could not use are
// named on stderr and in --json, with what to run.
func TestRestoreFromOtherCopies(t *testing.T) {
	// Everything the test moves around is made outside the backed-up
	// path's parent directories, and before the first backup: otherwise
	// their changed times would make the two snapshots' top trees differ.
	scratch := t.TempDir()
	aside := filepath.Join(scratch, "aside")
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	tree := smallTree()
	fixture.Create(t, src, tree)
	c.ok(r.writer("backup", "--no-cache", src)...)
	// moveAll moves the files under from/{data,index} to to/ (same
	// relative paths) and returns the packs' names.
	moveAll := func(from, to string, kinds ...string) (packs []string) {
		t.Helper()
		for _, kind := range kinds {
			err := filepath.WalkDir(filepath.Join(from, kind), func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(from, p)
				if err := os.MkdirAll(filepath.Dir(filepath.Join(to, rel)), 0o755); err != nil {
					return err
				}
				if kind == "data" {
					packs = append(packs, filepath.Join(to, rel))
				}
				return os.Rename(p, filepath.Join(to, rel))
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		return packs
	}
	first := dataPacks(moveAll(r.path, aside, "data", "index"))
	c.ok(r.writer("backup", "--no-cache", src)...)
	second := dataPacks(moveAll(r.path, filepath.Join(scratch, "second"), "data"))
	moveAll(filepath.Join(scratch, "second"), r.path, "data")
	moveAll(aside, r.path, "data", "index")
	if len(first) != 1 || len(second) != 1 {
		t.Fatalf("data packs: %v and %v, want one each", first, second)
	}

	// Only the data packs are taken away: the two snapshots' top trees
	// differ (the times of /tmp, say, changed in between), so the tree
	// packs are not copies of each other.
	// A restore tries first the copy whose index file has the lower ID:
	// the two copies' packs are taken away in turn until a restore has
	// had to fall back, which takes two restores at most (and every
	// restore must bring back every file).
	fell := false
	for i := 0; i < 2 && !fell; i++ {
		gone := [][]string{first, second}[i%2]
		hidden := filepath.Join(scratch, "hidden", fmt.Sprint(i))
		for _, p := range gone {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(hidden, p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(r.path, p), filepath.Join(hidden, p)); err != nil {
				t.Fatal(err)
			}
		}
		target := filepath.Join(scratch, "restored", fmt.Sprint(i))
		res := c.ok(r.reader("restore", "latest", "--json", "--no-cache", "--target", target)...)
		out := decodeJSON[restoreOutput](t, res.stdout)
		if len(out.Failures) > 0 {
			t.Fatalf("restore with one copy's packs gone: %v", out.Failures)
		}
		fixture.Compare(t, tree, filepath.Join(target, src))
		if len(out.DamagedPacks) > 0 {
			fell = true
			// Each data blob (big.bin's chunks, the small files) came
			// from its other copy.
			if !slices.Equal(out.DamagedPacks, gone) || out.BlobsFromCopies < int64(len(tree)-4) {
				t.Errorf("%d blobs from copies, damaged packs %v; want every data blob's, and %v", out.BlobsFromCopies, out.DamagedPacks, gone)
			}
			if !strings.Contains(res.stderr, "restored from other copies") || !strings.Contains(res.stderr, gone[0]) || !strings.Contains(res.stderr, "lifeboat repair packs") {
				t.Errorf("no warning naming the damaged pack:\n%s", res.stderr)
			}
		} else if out.BlobsFromCopies != 0 || strings.Contains(res.stderr, "other copies") {
			t.Errorf("%d blobs from copies, no damaged pack named; stderr:\n%s", out.BlobsFromCopies, res.stderr)
		}
		for _, p := range gone {
			if err := os.Rename(filepath.Join(hidden, p), filepath.Join(r.path, p)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !fell {
		t.Error("no restore fell back on the other copy, with each copy's pack taken away in turn")
	}
}

// dataPacks returns, as repository object names, those of packs (paths)
// that are larger than 1 MiB: smallTree's data pack, which holds big.bin,
// and not its tree pack.
func dataPacks(packs []string) (out []string) {
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 1<<20 {
			dir, name := filepath.Split(p)
			out = append(out, "data/"+filepath.Base(dir)+"/"+name)
		}
	}
	return out
}
