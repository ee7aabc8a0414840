package restore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestRestoreWithConstantEviction restores many directories while the
// descriptor cache holds only two, so workers evict descriptors others
// may be using: every file must still land in its own directory (a closed
// and reused descriptor number would put it in another one).
func TestRestoreWithConstantEviction(t *testing.T) {
	old := maxCachedDirs
	maxCachedDirs = 2
	t.Cleanup(func() { maxCachedDirs = old })
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	for d := range 60 {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 5 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", f)), []byte(dir+"/"+fmt.Sprint(f)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	res, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Load(ctx, repos.Reader, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	out, err := Restore(ctx, repos.Reader, snap, Options{Target: dst, Packs: 8})
	if err != nil || len(out.Failures) > 0 {
		t.Fatalf("restore: %v %v", err, out.Failures)
	}
	for d := range 60 {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", d))
		ents, err := os.ReadDir(filepath.Join(dst, dir))
		if err != nil || len(ents) != 5 {
			t.Fatalf("%s: %d entries, %v", dir, len(ents), err)
		}
		for f := range 5 {
			got, err := os.ReadFile(filepath.Join(dst, dir, fmt.Sprintf("f%d", f)))
			if err != nil || !bytes.Equal(got, []byte(dir+"/"+fmt.Sprint(f))) {
				t.Fatalf("%s/f%d: %q %v", dir, f, got, err)
			}
		}
	}
}
