package snapshot_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestManifestKeepsBytesNotUTF8: a backed-up path, host and tags that are
// not UTF-8 (a Latin-1 directory name) come back from the manifest byte
// for byte. JSON wrote U+FFFD for each such byte, so two such
// directories became one path: --path matched neither, and retention
// grouped their snapshots together, keeping only the newest of both.
func TestManifestKeepsBytesNotUTF8(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	base := t.TempDir()
	host, tags := "h\xff", []string{"t\xfe", "daily"}
	var paths []string
	for _, name := range []string{"caf\xe9", "caf\xe8"} {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Skipf("a name that is not UTF-8: %v", err)
		}
		writeFile(t, filepath.Join(p, "f"), []byte(name))
		if _, err := snapshot.Backup(ctx, r.writer, snapshot.BackupOptions{Paths: []string{p}, Host: host, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	list, bad, err := snapshot.List(ctx, r.reader)
	if err != nil || len(bad) > 0 || len(list) != 2 {
		t.Fatalf("list: %d snapshots, %v %v", len(list), bad, err)
	}
	for _, s := range list {
		if s.Host != host || !slices.Contains(s.Tags, "t\xfe") || len(s.Paths) != 1 || !slices.Contains(paths, s.Paths[0]) {
			t.Errorf("snapshot %s: host %q, tags %q, paths %q; want %q, %q, one of %q", s.ID.Short(), s.Host, s.Tags, s.Paths, host, tags, paths)
		}
	}
	for _, p := range paths {
		if _, err := snapshot.Find(list, "latest", snapshot.Filter{Hosts: []string{host}, Paths: []string{p}, Tags: []string{"t\xfe"}}); err != nil {
			t.Errorf("latest --path %q: %v", p, err)
		}
	}
	if g := snapshot.Groups(list, snapshot.Filter{}); len(g) != 2 {
		t.Errorf("%d retention groups, want one per path", len(g))
	}
}
