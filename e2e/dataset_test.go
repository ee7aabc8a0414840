package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// datasetSpec describes a deterministic tree of files.
type datasetSpec struct {
	Seed       uint64
	Dirs       int   // directories the small files are spread over (0: all in the root)
	SmallFiles int   // files of 0..SmallMax bytes, half text, half random
	SmallMax   int   // bytes
	LargeFiles int   // pseudo-random files of LargeSize bytes each
	LargeSize  int64 // bytes
	Extras     bool  // an empty file, a symlink, a sparse-ish zero file
}

// dataset is a generated tree.
type dataset struct {
	Root  string
	Bytes int64         // total size of regular files
	Large []string      // paths of the large files, relative to Root
	Small []string      // paths of the small files, relative to Root
	cc    *rand.ChaCha8 // bulk bytes
	rng   *rand.Rand    // decisions
	text  []byte        // word corpus for text files
}

var words = []string{"lifeboat", "backup", "restore", "snapshot", "pack", "index", "chunk",
	"drill", "repository", "identity", "writer", "key", "recovery", "the", "a", "of", "node",
	"cluster", "agent", "coordinator", "policy", "retention", "storage", "bucket", "object"}

// genDataset writes the tree described by spec under root (created).
// Pseudo-random bytes come from ChaCha8, which generates faster than the
// disk writes them.
func genDataset(t testing.TB, root string, spec datasetSpec) *dataset {
	t.Helper()
	ds := &dataset{Root: root, cc: rand.NewChaCha8(seed32(spec.Seed)), rng: rand.New(rand.NewPCG(spec.Seed, 1))}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	dirs := []string{"."}
	for i := 0; i < spec.Dirs; i++ {
		d := fmt.Sprintf("dir%02d", i)
		if i%3 == 2 {
			d = filepath.Join(dirs[len(dirs)-1], fmt.Sprintf("sub%02d", i)) // some depth
		}
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	for i := 0; i < spec.SmallFiles; i++ {
		rel := filepath.Join(dirs[i%len(dirs)], fmt.Sprintf("small-%04d.%s", i, []string{"txt", "bin"}[i%2]))
		ds.Small = append(ds.Small, rel)
		ds.write(t, rel, ds.smallContent(i%2 == 0, spec.SmallMax))
	}
	buf := make([]byte, 1<<20)
	for i := 0; i < spec.LargeFiles; i++ {
		rel := fmt.Sprintf("large-%02d.bin", i)
		ds.Large = append(ds.Large, rel)
		f, err := os.Create(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		for left := spec.LargeSize; left > 0; {
			n := min(left, int64(len(buf)))
			ds.fill(buf[:n])
			if _, err := f.Write(buf[:n]); err != nil {
				t.Fatal(err)
			}
			left -= n
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		ds.Bytes += spec.LargeSize
	}
	if spec.Extras {
		ds.write(t, "empty", nil)
		ds.write(t, "zeros.img", make([]byte, 3<<20))
		if err := os.Symlink("large-00.bin", filepath.Join(root, "link-to-large")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/nonexistent/target", filepath.Join(root, "dangling")); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, ds.Small[0]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ds
}

func seed32(s uint64) [32]byte {
	var b [32]byte
	for i := range 4 {
		v := s + uint64(i)*0x9e3779b97f4a7c15
		for j := range 8 {
			b[i*8+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// fill fills b with pseudo-random bytes. ChaCha8.Read works in bulk,
// which keeps generation fast under the race detector too.
func (ds *dataset) fill(b []byte) {
	_, _ = ds.cc.Read(b)
}

func (ds *dataset) smallContent(text bool, maxSize int) []byte {
	n := ds.rng.IntN(maxSize + 1)
	if !text {
		b := make([]byte, n)
		ds.fill(b)
		return b
	}
	if len(ds.text) < 2*n {
		// A corpus of words once; files are slices of it at random
		// offsets, compressible but not identical to each other.
		var b bytes.Buffer
		for b.Len() < max(1<<20, 2*n) {
			b.WriteString(words[ds.rng.IntN(len(words))])
			if ds.rng.IntN(12) == 0 {
				b.WriteByte('\n')
			} else {
				b.WriteByte(' ')
			}
		}
		ds.text = b.Bytes()
	}
	off := ds.rng.IntN(len(ds.text) - n + 1)
	return bytes.Clone(ds.text[off : off+n])
}

func (ds *dataset) write(t testing.TB, rel string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(ds.Root, rel), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ds.Bytes += int64(len(data))
}

// modify changes the dataset the way a live system does between backups:
// rewrites a few small files, overwrites a region in the middle of one
// large file, deletes a small file and adds one. It returns roughly how
// many bytes of new content it wrote.
func (ds *dataset) modify(t testing.TB, round int) int64 {
	t.Helper()
	var written int64
	for k := 0; k < 3 && len(ds.Small) > 0; k++ {
		rel := ds.Small[ds.rng.IntN(len(ds.Small))]
		old, err := os.ReadFile(filepath.Join(ds.Root, rel))
		if err != nil {
			t.Fatal(err)
		}
		data := ds.smallContent(k%2 == 0, 16<<10)
		ds.Bytes += int64(len(data)) - int64(len(old))
		if err := os.WriteFile(filepath.Join(ds.Root, rel), data, 0o644); err != nil {
			t.Fatal(err)
		}
		written += int64(len(data))
	}
	if len(ds.Large) > 0 {
		// Patch the middle of one large file and rewrite another one
		// completely, so the next backups have real uploading to do.
		rel := ds.Large[round%len(ds.Large)]
		f, err := os.OpenFile(filepath.Join(ds.Root, rel), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		patch := make([]byte, 64<<10)
		ds.fill(patch)
		if _, err := f.WriteAt(patch, fi.Size()/2+int64(ds.rng.IntN(1<<20))); err != nil {
			t.Fatal(err)
		}
		f.Close()
		written += int64(len(patch))

		rel = ds.Large[(round+1)%len(ds.Large)]
		fi, err = os.Stat(filepath.Join(ds.Root, rel))
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, fi.Size())
		ds.fill(data)
		if err := os.WriteFile(filepath.Join(ds.Root, rel), data, 0o644); err != nil {
			t.Fatal(err)
		}
		written += int64(len(data))
	}
	if len(ds.Small) > 1 {
		i := ds.rng.IntN(len(ds.Small))
		rel := ds.Small[i]
		if fi, err := os.Stat(filepath.Join(ds.Root, rel)); err == nil {
			ds.Bytes -= fi.Size()
		}
		if err := os.Remove(filepath.Join(ds.Root, rel)); err != nil {
			t.Fatal(err)
		}
		ds.Small = slices.Delete(ds.Small, i, i+1)
	}
	rel := fmt.Sprintf("added-%03d.txt", round)
	data := ds.smallContent(true, 32<<10)
	ds.write(t, rel, data)
	ds.Small = append(ds.Small, rel)
	return written + int64(len(data))
}

// entryInfo is what compareTrees checks of one entry.
type entryInfo struct {
	kind fs.FileMode // type bits
	perm fs.FileMode
	size int64
	hash [32]byte // regular files
	link string   // symlinks
}

func scanTree(t testing.TB, root string) map[string]entryInfo {
	t.Helper()
	out := map[string]entryInfo{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := entryInfo{kind: fi.Mode().Type(), perm: fi.Mode().Perm()}
		switch {
		case fi.Mode().IsRegular():
			e.size = fi.Size()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			copy(e.hash[:], h.Sum(nil))
		case fi.Mode()&fs.ModeSymlink != 0:
			e.link, err = os.Readlink(p)
			if err != nil {
				return err
			}
		}
		if rel == "." {
			e.perm = 0 // the root's own mode is the target's business
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}
	return out
}

// compareTrees asserts that got holds exactly want's entries with the
// same types, permissions, content and link targets, except the paths in
// skip (relative to want), which must be absent from got.
func compareTrees(t testing.TB, want, got string, skip map[string]bool) {
	t.Helper()
	w, g := scanTree(t, want), scanTree(t, got)
	bad := 0
	for p, we := range w {
		if skip[p] {
			if _, ok := g[p]; ok {
				t.Errorf("%s: restored although its data is damaged", p)
				bad++
			}
			continue
		}
		ge, ok := g[p]
		switch {
		case !ok:
			t.Errorf("%s: missing from the restore", p)
		case ge.kind != we.kind:
			t.Errorf("%s: type %v, want %v", p, ge.kind, we.kind)
		case ge.perm != we.perm:
			t.Errorf("%s: mode %v, want %v", p, ge.perm, we.perm)
		case ge.size != we.size || ge.hash != we.hash:
			t.Errorf("%s: content differs (%d bytes, want %d)", p, ge.size, we.size)
		case ge.link != we.link:
			t.Errorf("%s: link target %q, want %q", p, ge.link, we.link)
		default:
			continue
		}
		bad++
		if bad > 20 {
			t.Fatal("too many differences")
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: in the restore but not in the source", p)
		}
	}
}

// restoredRoot is where restore puts a backed-up absolute path src
// inside target: snapshots record absolute paths.
func restoredRoot(target, src string) string {
	return filepath.Join(target, src)
}
