package snapshot_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestFinder searches two snapshots with one Finder: what the first
// search remembered as empty must not hide a match in the second, and a
// subtree holding a match is searched again for each snapshot.
func TestFinder(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"etc/nginx/nginx.conf": {Content: []byte("worker_processes 2;\n")},
		"etc/hosts":            {Content: []byte("127.0.0.1 localhost\n")},
		"srv/a/nginx.conf":     {Content: []byte("copy\n")},
		"srv/b/readme":         {Content: []byte("nothing to see\n")},
		// Same content, and only the second's path matches.
		"x/same/file": {Content: []byte("same\n")},
		"y/same/file": {Content: []byte("same\n")},
	})
	first := r.backupReload(t, src)
	// srv/b gains a match; etc is unchanged.
	if err := os.WriteFile(filepath.Join(src, "srv/b/nginx.conf"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	second := r.backupReload(t, src)

	search := func(f *snapshot.Finder, res *snapshot.Result) []string {
		t.Helper()
		var got []string
		err := f.Find(ctx, res.Manifest.Tree, func(found snapshot.Found) error {
			got = append(got, strings.TrimPrefix("/"+found.Path, src+"/"))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	ex, err := snapshot.NewExcluder([]string{"nginx.conf", src + "/etc/h*", src + "/y/*/file"})
	if err != nil {
		t.Fatal(err)
	}
	f := snapshot.NewFinder(r.reader, func(p string, n *snapshot.Node) bool { return ex.Excluded(p, n.Type == snapshot.TypeDir) })
	if got, want := search(f, first), []string{"etc/hosts", "etc/nginx/nginx.conf", "srv/a/nginx.conf", "y/same/file"}; !slices.Equal(got, want) {
		t.Errorf("first snapshot: %q, want %q", got, want)
	}
	if got, want := search(f, second), []string{"etc/hosts", "etc/nginx/nginx.conf", "srv/a/nginx.conf", "srv/b/nginx.conf", "y/same/file"}; !slices.Equal(got, want) {
		t.Errorf("second snapshot, same Finder: %q, want %q", got, want)
	}
	if got := search(f, first); len(got) != 4 {
		t.Errorf("first snapshot again: %q, want its 4 matches", got)
	}
	none := snapshot.NewFinder(r.reader, func(string, *snapshot.Node) bool { return false })
	if got := search(none, first); len(got) != 0 {
		t.Errorf("a matcher that matches nothing found %q", got)
	}
	// The second snapshot differs from the first only on the way to
	// srv/b: only those trees are read again.
	before := none.TreesRead()
	search(none, second)
	if again, want := none.TreesRead()-before, strings.Count(src, "/")+1+2; again != want {
		t.Errorf("searching the second snapshot read %d trees (of %d in the first), want %d: the root, the path to the source, srv and srv/b", again, before, want)
	}
}
