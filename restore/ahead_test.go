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
	"strings"
	"sync"
	"testing"

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
			res, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
			if err != nil {
				t.Fatal(err)
			}

			c := &getCounter{Store: repos.Store, gets: map[string]int{}}
			r := openWith(t, repos, c)
			snap, err := snapshot.Load(ctx, r, res.ID)
			if err != nil {
				t.Fatal(err)
			}
			dir, err := snapshot.Lookup(ctx, r, snap.Tree, src)
			if err != nil {
				t.Fatal(err)
			}
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
			if gets := c.dataGets(t, r); gets > 20 {
				t.Errorf("%d GETs of data packs for %d files (the large one in %d chunks); want at most 20", gets, len(want), chunks-1)
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
	res, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	r := openWith(t, repos, repos.Store)
	snap, err := snapshot.Load(ctx, r, res.ID)
	if err != nil {
		t.Fatal(err)
	}
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
	if err := os.Truncate(p, int64(loc.Blob.Offset)+int64(loc.Blob.Length)/2); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	err = restore.DumpFile(ctx, r, name, n, &out)
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), pack) {
		t.Fatalf("dump of a file in a truncated pack: %v, want an error naming %s and %s", err, name, pack)
	}
	var before int
	for _, id := range n.Content[:bad] {
		l, _ := r.Index().Lookup(id)
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
