package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestLsDamagedListing: a directory listing that cannot be read makes ls
// exit 1 with an error naming the directory, after listing what came
// before it; the error named only the blob and its pack.
func TestLsDamagedListing(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	fixture.Create(t, src, fixture.Tree{
		"a/f": {Content: []byte("a")},
		"b/x": {Content: []byte("b")},
		"c/y": {Content: []byte("c")},
	})
	c.ok(r.writer("backup", src)...)

	ctx := context.Background()
	st, err := local.Open(r.path, false)
	if err != nil {
		t.Fatal(err)
	}
	idf, err := os.ReadFile(r.identity)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := chunkstore.ParseIdentityFile(idf, nil)
	if err != nil {
		t.Fatal(err)
	}
	rd := storetest.OpenIndexed(t, st, ids)
	list, _, err := snapshot.List(ctx, rd)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %d snapshots, %v", len(list), err)
	}
	b, err := snapshot.Lookup(ctx, rd, list[0].Tree, filepath.Join(src, "b"))
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := rd.Index().Lookup(*b.Subtree)
	storetest.FlipBlob(t, r.path, loc, 0x01)

	res := c.fails(1, r.reader("ls", "--no-cache", "latest", src), "listing of directory "+src+"/b: ", "corrupt")
	if want := src + "/b/x"; !strings.Contains(res.stdout, src+"/a/f") || strings.Contains(res.stdout, want) {
		t.Errorf("ls: want what comes before b listed, and nothing below it:\n%s", res.stdout)
	}
}
