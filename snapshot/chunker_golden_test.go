package snapshot_test

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/cdc"
	"github.com/lifeboat-backup/lifeboat/snapshot"
	"github.com/restic/chunker"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// Chunk boundaries decide deduplication across every backup ever made to
// a repository: if they drift (a chunker upgrade, a changed default), new
// backups stop sharing chunks with old ones. These tests pin them.
const (
	goldenPol       = chunker.Pol(0x3DA3358B4DC173) // any fixed irreducible polynomial
	goldenInputSize = 64 << 20
	goldenFile      = "testdata/chunks.golden"
)

func goldenInput() []byte {
	var seed [32]byte
	copy(seed[:], "lifeboat chunker golden input v1")
	b := make([]byte, goldenInputSize)
	_, _ = rand.NewChaCha8(seed).Read(b)
	return b
}

type boundary struct{ offset, length uint }

// resticBoundaries chunks data with restic/chunker, whose boundaries
// lifeboat's chunker must reproduce.
func resticBoundaries(t *testing.T, data []byte) []boundary {
	t.Helper()
	ch := chunker.NewWithBoundaries(bytes.NewReader(data), goldenPol, chunkstore.DefaultChunkMin, chunkstore.DefaultChunkMax)
	ch.SetAverageBits(chunkstore.DefaultChunkAvgBits)
	buf := make([]byte, chunkstore.DefaultChunkMax)
	return boundaries(t, func() (uint, error) { c, err := ch.Next(buf); return c.Length, err })
}

// cdcBoundaries chunks data with the chunker the archiver uses.
func cdcBoundaries(t *testing.T, data []byte) []boundary {
	t.Helper()
	ch, err := cdc.New(goldenPol, chunkstore.DefaultChunkMin, chunkstore.DefaultChunkMax, chunkstore.DefaultChunkAvgBits)
	if err != nil {
		t.Fatal(err)
	}
	ch.Reset(bytes.NewReader(data))
	buf := make([]byte, chunkstore.DefaultChunkMax)
	return boundaries(t, func() (uint, error) { c, err := ch.Next(buf); return uint(len(c)), err })
}

// boundaries lists the chunks whose lengths next returns until io.EOF.
func boundaries(t *testing.T, next func() (uint, error)) []boundary {
	t.Helper()
	var out []boundary
	var off uint
	for {
		n, err := next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, boundary{off, n})
		off += n
	}
}

func readGolden(t *testing.T) []boundary {
	t.Helper()
	f, err := os.Open(goldenFile)
	if err != nil {
		t.Fatalf("%v (generate it with go test ./snapshot -run TestChunkerGolden -update)", err)
	}
	defer f.Close()
	var out []boundary
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var b boundary
		if _, err := fmt.Sscanf(line, "%d %d", &b.offset, &b.length); err != nil {
			t.Fatalf("%s: bad line %q: %v", goldenFile, line, err)
		}
		out = append(out, b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestChunkerGolden pins the boundaries of both lifeboat's chunker and
// restic/chunker, which it reproduces.
func TestChunkerGolden(t *testing.T) {
	input := goldenInput()
	got := resticBoundaries(t, input)
	if *update {
		var b strings.Builder
		fmt.Fprintf(&b, "# Chunk boundaries (offset length) of 64 MiB of ChaCha8 output seeded with\n")
		fmt.Fprintf(&b, "# \"lifeboat chunker golden input v1\", polynomial %s, min %d, max %d, avg bits %d.\n",
			goldenPol, chunkstore.DefaultChunkMin, chunkstore.DefaultChunkMax, chunkstore.DefaultChunkAvgBits)
		fmt.Fprintf(&b, "# Regenerate only for a deliberate format change: go test ./snapshot -run TestChunkerGolden -update\n")
		for _, c := range got {
			fmt.Fprintf(&b, "%d %d\n", c.offset, c.length)
		}
		if err := os.WriteFile(goldenFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readGolden(t)
	if len(want) < 32 {
		t.Fatalf("golden file has %d chunks; 64 MiB at a ~1 MiB average should give dozens", len(want))
	}
	// The golden list must tile the input, or it pins nothing.
	var end uint
	for i, c := range want {
		if c.offset != end || c.length == 0 || (i < len(want)-1 && (c.length < chunkstore.DefaultChunkMin || c.length > chunkstore.DefaultChunkMax)) {
			t.Fatalf("golden chunk %d (%d+%d) does not follow the previous one or breaks the size limits", i, c.offset, c.length)
		}
		end += c.length
	}
	if end != goldenInputSize {
		t.Fatalf("golden chunks cover %d bytes, want %d", end, goldenInputSize)
	}
	for _, impl := range []struct {
		name string
		got  []boundary
	}{{"restic/chunker", got}, {"internal/cdc", cdcBoundaries(t, input)}} {
		got := impl.got
		if len(got) != len(want) {
			t.Errorf("%s: %d chunks, golden has %d", impl.name, len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("%s: chunk %d is %d+%d, golden says %d+%d: chunk boundaries drifted, which breaks dedup against existing repositories", impl.name, i, got[i].offset, got[i].length, want[i].offset, want[i].length)
			}
		}
	}
}

// TestArchiverChunksLikeGolden backs up a prefix of the golden input and
// checks that the archiver cuts it where the golden list says, so the
// pinned chunker really is the one backups use.
func TestArchiverChunksLikeGolden(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	fixed := *repos.Writer.Secrets()
	fixed.Polynomial = goldenPol // a repository whose random polynomial happens to be this one
	w, err := chunkstore.Open(ctx, repos.Store, chunkstore.Credentials{Writer: &fixed}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const prefix = 8 << 20
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "golden"), goldenInput()[:prefix], 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := snapshot.Backup(ctx, w, snapshot.BackupOptions{Paths: []string{filepath.Join(src, "golden")}})
	if err != nil {
		t.Fatal(err)
	}
	r := repos.Reader
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	var node *snapshot.Node
	err = snapshot.Walk(ctx, r, res.Manifest.Tree, func(p string, n *snapshot.Node) error {
		if n.Name == "golden" {
			node = n
		}
		return nil
	})
	if err != nil || node == nil {
		t.Fatalf("file not found in snapshot: %v", err)
	}
	want := readGolden(t)
	var off uint
	for i, id := range node.Content {
		loc, ok := r.Index().Lookup(id)
		if !ok {
			t.Fatalf("chunk %d not in index", i)
		}
		length := uint(loc.Blob.RawLength)
		last := i == len(node.Content)-1
		if !last && (want[i].offset != off || want[i].length != length) {
			t.Fatalf("archiver chunk %d is %d+%d, golden %d+%d", i, off, length, want[i].offset, want[i].length)
		}
		off += length
	}
	if off != prefix {
		t.Fatalf("chunks cover %d bytes, file has %d", off, prefix)
	}
}
