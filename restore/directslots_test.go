package restore_test

import (
	"context"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
)

// TestDirectIOSlowDisk: with direct writes slow (a slow disk), no more
// of them are under way at once than the restore's slots (a quarter of
// its fetchers), and the chunks that find none free go through the page
// cache, so the restore is not held to the disk's pace; everything comes
// back intact. With every fetcher allowed to wait on the disk, a restore
// with direct writes held to 150 MB/s took 7.6 s against 1.6-2.2 s
// through the page cache.
func TestDirectIOSlowDisk(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	tree := fixture.Tree{}
	for i, name := range []string{"a", "b", "c", "d"} {
		tree[name] = fixture.Entry{Content: fixture.Random(uint64(40+i), 12<<20)}
	}
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)
	dst := t.TempDir()
	if !restore.DirectSupported(t, dst) {
		t.Skip("the filesystem of the test's temporary directory does not support O_DIRECT")
	}
	most := restore.SlowDirectWrites(t, 30*time.Millisecond)
	const packs = 8
	res, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst, DirectIO: true, Packs: packs})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) > 0 {
		t.Fatalf("failures: %v", res.Failures)
	}
	fixture.Compare(t, tree, restoredAt(dst, src))
	if got, slots := most(), int64(restore.DirectSlots(packs)); got > slots || got == 0 {
		t.Errorf("%d direct writes under way at once, want between 1 and the %d slots", got, slots)
	}
	if res.BytesDirect == 0 || res.BytesDirect >= res.BytesWritten {
		t.Errorf("%d of %d bytes written direct: want some direct and some through the page cache", res.BytesDirect, res.BytesWritten)
	}
}
