package restore_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// getCounter counts the GETs of each object. Wrapping a store hides its
// buffer and range readers, so every read is a Get.
type getCounter struct {
	chunkstore.Store
	mu   sync.Mutex
	gets map[string]int
}

func (c *getCounter) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	c.mu.Lock()
	c.gets[name]++
	c.mu.Unlock()
	return c.Store.Get(ctx, name, offset, length)
}

// dataGets is how many GETs went to packs that hold file data.
func (c *getCounter) dataGets(t *testing.T, r *chunkstore.Repository) int {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for name, k := range c.gets {
		id, ok := chunkstore.ParsePackName(name)
		if !ok {
			continue
		}
		if p := r.Index().Pack(id); p != nil && len(p.Blobs) > 0 && p.Blobs[0].Type == chunkstore.DataBlob {
			n += k
		}
	}
	return n
}

// manyFiles writes n small files (1-20 KiB, random) in a few
// directories, two copies of one of them, and a large random file of
// size bytes under dir, and returns every file's content by its path
// relative to dir.
func manyFiles(t *testing.T, dir string, n, size int) map[string][]byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, uint64(n)))
	files := map[string][]byte{}
	write := func(rel string, b []byte) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files[rel] = b
	}
	random := func(k int) []byte {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for i := range n {
		write(fmt.Sprintf("d%d/f%04d", i%7, i), random(1<<10+rng.IntN(19<<10)))
	}
	write("d0/copy-a", files["d0/f0000"])
	write("d0/copy-b", files["d0/f0000"])
	write("large", random(size))
	return files
}

// untar returns the regular files of a tar archive by name.
func untar(t *testing.T, archive []byte) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			got[h.Name] = b
		}
	}
}

// TestDumpReadsRanges: a tar dump of 600 small files and a 40 MiB file
// reads the packs in ranges, a few GETs in all, not one per file or
// chunk, and the archive holds every file exactly (the two copies of
// one file, stored once, included).
func TestDumpReadsRanges(t *testing.T) {
	for _, backend := range []string{"local", "minio"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			repos := storetest.NewRepos(t, backend)
			src := t.TempDir()
			want := manyFiles(t, src, 600, 40<<20)
			c := &getCounter{Store: repos.Store, gets: map[string]int{}}
			r, snap, dir := dumpDir(t, repos, c, src)
			var archive bytes.Buffer
			if err := restore.DumpTar(ctx, r, "", dir, &archive); err != nil {
				t.Fatal(err)
			}
			got := untar(t, archive.Bytes())
			if len(got) != len(want) {
				t.Errorf("archive holds %d files, want %d", len(got), len(want))
			}
			for name, b := range want {
				if !bytes.Equal(got[name], b) {
					t.Errorf("%s: %d bytes in the archive, want the file's %d", name, len(got[name]), len(b))
				}
			}

			// About 10 MiB of small files and 40 MiB in chunks of
			// ~1 MiB, in 8 MiB ranges: a handful of GETs per pack.
			// How many depends on timing: a window is sent early
			// when the walk names nothing more for now (aheadEager),
			// so a slow machine makes smaller windows. The three
			// packs took 6 to 30 GETs on a loaded 2-core machine
			// (386 binaries against MinIO). The bound still catches
			// a GET per file (600) or per blob (over 640), and a
			// large file read a chunk at a time (its 40 or so
			// chunks, with the small files' GETs on top).
			packs := map[chunkstore.ID]bool{}
			chunks := 0
			for _, n := range []string{"large", "d0/f0000"} {
				node, err := snapshot.Lookup(ctx, r, snap.Tree, filepath.Join(src, n))
				if err != nil {
					t.Fatal(err)
				}
				for _, id := range node.Content {
					loc, _ := r.Index().Lookup(id)
					packs[loc.Pack.ID] = true
					chunks++
				}
			}
			if gets := c.dataGets(t, r); gets > 40 {
				t.Errorf("%d GETs of data packs for %d files (the large one in %d chunks); want at most 40", gets, len(want), chunks-1)
			} else {
				t.Logf("%d GETs of data packs for %d files (the large one in %d chunks)", gets, len(want), chunks-1)
			}
		})
	}
}

// TestDumpTruncatedPack: a pack cut short in the middle of one chunk of a
// large file. Its range cannot be read whole, so its blobs are read one
// by one: the dump writes exactly the chunks before the cut, then fails
// naming the file and the pack.
func TestDumpTruncatedPack(t *testing.T) {
	ctx := context.Background()
	repos := storetest.NewRepos(t, "local")
	src := t.TempDir()
	manyFiles(t, src, 0, 24<<20)
	r, snap, _ := dumpDir(t, repos, repos.Store, src)
	name := filepath.Join(src, "large")
	n, err := snapshot.Lookup(ctx, r, snap.Tree, name)
	if err != nil {
		t.Fatal(err)
	}
	// The last chunk of the file in the pack of its first: blobs
	// before it in that pack stay readable.
	first, _ := r.Index().Lookup(n.Content[0])
	bad := 0
	for i, id := range n.Content {
		if loc, _ := r.Index().Lookup(id); loc.Pack.ID == first.Pack.ID {
			bad = i
		}
	}
	if bad == 0 {
		t.Fatalf("the first pack holds one chunk of %d; want several", len(n.Content))
	}
	loc, _ := r.Index().Lookup(n.Content[bad])
	pack := chunkstore.PackName(loc.Pack.ID)
	p := filepath.Join(repos.Store.Location(), filepath.FromSlash(pack))
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, int64(loc.Blob.Offset)+int64(loc.Blob.Length)/2); err != nil { // cut, below
		t.Fatal(err)
	}

	var out bytes.Buffer
	err = restore.DumpFile(ctx, r, name, n, &out)
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), pack) {
		t.Fatalf("dump of a file in a truncated pack: %v, want an error naming %s and %s", err, name, pack)
	}
	// The chunks before the first one the cut reaches, in file order:
	// parallel sealers may have put a chunk before bad in the file after
	// it in the pack.
	cut := int64(loc.Blob.Offset) + int64(loc.Blob.Length)/2
	var before int
	for _, id := range n.Content {
		l, _ := r.Index().Lookup(id)
		if l.Pack.ID == loc.Pack.ID && int64(l.Blob.Offset)+int64(l.Blob.Length) > cut {
			break
		}
		before += int(l.Blob.RawLength)
	}
	if out.Len() != before {
		t.Errorf("wrote %d bytes before the cut chunk, want exactly the %d before it", out.Len(), before)
	}
}

// openWith opens the repository of repos through st with its identity,
// the index loaded.
func openWith(t *testing.T, repos storetest.Repos, st chunkstore.Store) *chunkstore.Repository {
	t.Helper()
	r := repos.OpenReader(t, st)
	if err := r.EnsureIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// dumpDir backs src up and returns the repository opened with the
// identity through st, the snapshot, and the node of src in it.
func dumpDir(t *testing.T, repos storetest.Repos, st chunkstore.Store, src string) (*chunkstore.Repository, *snapshot.Snapshot, *snapshot.Node) {
	t.Helper()
	ctx := context.Background()
	res, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	r := openWith(t, repos, st)
	snap, err := snapshot.Load(ctx, r, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := snapshot.Lookup(ctx, r, snap.Tree, src)
	if err != nil {
		t.Fatal(err)
	}
	return r, snap, dir
}

// TestDumpManyEntries: a small file, then more empty files than the dump
// names ahead, then another small file. While the walk waits for the
// archive to catch up, the first file's blob is a window of its own that
// must be read although it is small, or the dump never ends.
func TestDumpManyEntries(t *testing.T) {
	repos := storetest.NewRepos(t, "local")
	src := t.TempDir()
	writeFiles(t, src, map[string][]byte{"a": []byte("first"), "z": []byte("last")})
	for i := range 5000 {
		writeFiles(t, src, map[string][]byte{fmt.Sprintf("m%04d", i): nil})
	}
	r, _, dir := dumpDir(t, repos, repos.Store, src)
	done := make(chan error, 1)
	var archive bytes.Buffer
	go func() { done <- restore.DumpTar(context.Background(), r, "", dir, &archive) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the tar dump did not end in 60 s")
	}
	got := untar(t, archive.Bytes())
	if len(got) != 5002 || string(got["a"]) != "first" || string(got["z"]) != "last" {
		t.Errorf("archive holds %d files, a=%q z=%q; want 5002, first and last", len(got), got["a"], got["z"])
	}
}

// failRanges fails every GET of a pack of data blobs that is not of
// exactly one blob: ranges of several blobs, not blobs read alone.
type failRanges struct {
	chunkstore.Store
	mu     sync.Mutex
	blobs  map[string]map[[2]int64]bool // pack name → offset, length of each data blob
	failed int
}

func (f *failRanges) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	f.mu.Lock()
	in, ok := f.blobs[name]
	fail := ok && !in[[2]int64{offset, length}]
	if fail {
		f.failed++
	}
	f.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("get %s: %w", name, storetest.ErrInjected)
	}
	return f.Store.Get(ctx, name, offset, length)
}

// TestDumpRangeFallback: when a range of several blobs cannot be read,
// its blobs are read one by one and the dump is whole.
func TestDumpRangeFallback(t *testing.T) {
	repos := storetest.NewRepos(t, "local")
	src := t.TempDir()
	want := manyFiles(t, src, 200, 3<<20)
	st := &failRanges{Store: repos.Store}
	r, _, dir := dumpDir(t, repos, st, src)
	st.mu.Lock()
	st.blobs = map[string]map[[2]int64]bool{}
	for _, p := range r.Index().Packs() {
		for _, b := range p.Blobs {
			if b.Type == chunkstore.DataBlob {
				name := chunkstore.PackName(p.ID)
				if st.blobs[name] == nil {
					st.blobs[name] = map[[2]int64]bool{}
				}
				st.blobs[name][[2]int64{int64(b.Offset), int64(b.Length)}] = true
			}
		}
	}
	st.mu.Unlock()
	var archive bytes.Buffer
	if err := restore.DumpTar(context.Background(), r, "", dir, &archive); err != nil {
		t.Fatal(err)
	}
	if st.failed == 0 {
		t.Fatal("no range of several blobs was read: the test tests nothing")
	}
	got := untar(t, archive.Bytes())
	for name, b := range want {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s: %d bytes in the archive, want the file's %d", name, len(got[name]), len(b))
		}
	}
}

// TestDumpMemoryBound: small incompressible files stored between large
// ones that a later snapshot no longer has. Its dump reads ranges full of
// gaps for a few KiB of each; with the archive's reader stalled, what the
// dump holds must stay near its plaintext read-ahead, not the ranges'
// bytes.
func TestDumpMemoryBound(t *testing.T) {
	repos := storetest.NewRepos(t, "local")
	src := t.TempDir()
	rng := rand.NewChaCha8([32]byte{1})
	const n = 600
	for i := range n {
		small, large := make([]byte, 2<<10), make([]byte, 200<<10)
		_, _ = rng.Read(small)
		_, _ = rng.Read(large)
		writeFiles(t, src, map[string][]byte{fmt.Sprintf("f%04d_a", i): small, fmt.Sprintf("f%04d_b", i): large})
	}
	if _, err := snapshot.Backup(context.Background(), repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := os.Remove(filepath.Join(src, fmt.Sprintf("f%04d_b", i))); err != nil {
			t.Fatal(err)
		}
	}
	c := &getCounter{Store: repos.Store, gets: map[string]int{}}
	r, _, dir := dumpDir(t, repos, c, src)

	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	w := &stalledWriter{gate: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- restore.DumpTar(context.Background(), r, "", dir, w) }()
	// Wait until the dump stops reading: it holds all it may.
	for last := -1; ; {
		time.Sleep(300 * time.Millisecond)
		c.mu.Lock()
		gets := 0
		for _, k := range c.gets {
			gets += k
		}
		c.mu.Unlock()
		if gets == last {
			break
		}
		last = gets
	}
	held := int64(heap()) - int64(before)
	close(w.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// 1.2 MiB of plaintext in ranges of about 8 MiB, and the loads'
	// range buffers, kept for reuse (aheadFetches of them, 32 MiB): 90
	// MiB or more if the ranges were kept for their blobs.
	if held > 48<<20 {
		t.Errorf("a stalled dump of %d files of 2 KiB holds %d MiB", n, held>>20)
	} else {
		t.Logf("a stalled dump of %d files of 2 KiB holds %d KiB", n, held>>10)
	}
}

// stalledWriter blocks every write until gate is closed.
type stalledWriter struct{ gate chan struct{} }

func (w *stalledWriter) Write(p []byte) (int, error) {
	<-w.gate
	return len(p), nil
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
