package restore_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestRestoreWhilePruneRepacks: a restore holds no prune back, so a prune
// may repack the packs it planned to read from, and delete them, while
// it runs. The data is still in the repository, in new packs named by a
// new index file: the restore finds it there, and reports no damage
// (no pack damaged, no blob read from another copy for want of one).
func TestRestoreWhilePruneRepacks(t *testing.T) {
	ctx := context.Background()
	_, st, repos := localRepos(t)
	src := t.TempDir()
	files := map[string][]byte{}
	for i := range 8 {
		name := filepath.Join(src, string(rune('a'+i)))
		files[name] = fixture.Random(uint64(i+10), 200<<10)
		if err := os.WriteFile(name, files[name], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	first, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "fixture"})
	if err != nil {
		t.Fatal(err)
	}
	// Half the files go: their data is unused in packs that stay in use.
	for name := range files {
		if name[len(name)-1]%2 == 0 {
			if err := os.Remove(name); err != nil {
				t.Fatal(err)
			}
			delete(files, name)
		}
	}
	kept, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "fixture"})
	if err != nil {
		t.Fatal(err)
	}
	if err := snapshot.Forget(ctx, repos.Writer, first.ID); err != nil {
		t.Fatal(err)
	}
	rd := repos.OpenReader(t, st)
	snap, err := snapshot.Load(ctx, rd, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	restore.BeforeFetch(t, func(string) {
		res, err := snapshot.Prune(ctx, repos.OpenReader(t, st), snapshot.PruneOptions{MaxUnused: 0})
		if err != nil || res.RepackedPacks == 0 || res.DeletedPacks == 0 {
			t.Fatalf("prune: %+v, %v; want packs the restore reads repacked and deleted, or this test proves nothing", res, err)
		}
	})
	dst := t.TempDir()
	res, err := restore.Restore(ctx, rd, snap, restore.Options{Target: dst})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) > 0 || len(res.DamagedPacks) > 0 || res.BlobsFromCopies > 0 {
		t.Fatalf("restore during a prune: failures %v, damaged packs %v, %d blobs from other copies; want none", res.Failures, res.DamagedPacks, res.BlobsFromCopies)
	}
	for name, b := range files {
		got, err := os.ReadFile(filepath.Join(restoredAt(dst, src), filepath.Base(name)))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: %d bytes, %v; want it restored", name, len(got), err)
		}
	}
}
