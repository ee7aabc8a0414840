package restore_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
)

// TestDamagedBlobsFailOnlyTheirFiles flips one byte inside a compressed
// and inside a raw blob of packs on disk, in a store that streams ranges
// into the restore's reused buffers, where blobs are decrypted in place:
// exactly the files using those blobs fail (and are removed), every
// other file, including neighbours read in the same range, comes back
// intact.
func TestDamagedBlobsFailOnlyTheirFiles(t *testing.T) {
	ctx := context.Background()
	dir, st, repos := localRepos(t)
	if _, ok := st.(chunkstore.RangeOpener); !ok {
		t.Fatalf("%T does not stream ranges; the test would not exercise the restore's main path", st)
	}
	r := testRepo{writer: repos.Writer, reader: repos.Reader}

	var text strings.Builder
	for i := 0; text.Len() < 200<<10; i++ {
		fmt.Fprintf(&text, "line %d: the quick brown fox jumps over the lazy dog\n", i)
	}
	files := map[string][]byte{
		"text-a.txt":     []byte(text.String()),
		"copy-of-a.txt":  []byte(text.String()), // same blob as text-a.txt
		"text-b.txt":     []byte(strings.ToUpper(text.String())),
		"random-a.bin":   fixture.Random(1, 300<<10),
		"random-b.bin":   fixture.Random(2, 300<<10),
		"sub/random.bin": fixture.Random(3, 100<<10),
	}
	src := t.TempDir()
	for name, b := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	snap := r.backup(t, src)

	if err := r.reader.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	flipInPack(t, r.reader, dir, r.reader.BlobID(files["text-a.txt"]), 0x40)   // compressed blob
	flipInPack(t, r.reader, dir, r.reader.BlobID(files["random-a.bin"]), 0x40) // raw blob

	dst := t.TempDir()
	res, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: dst, Packs: 2, DirectIO: true})
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, f := range res.Failures {
		if !strings.Contains(f.Err.Error(), "failed authentication") {
			t.Errorf("%s failed with %v, want an authentication failure", f.Path, f.Err)
		}
		failed = append(failed, strings.TrimPrefix(f.Path, strings.TrimPrefix(src, "/")+"/"))
	}
	sort.Strings(failed)
	if want := []string{"copy-of-a.txt", "random-a.bin", "text-a.txt"}; !slices.Equal(failed, want) {
		t.Fatalf("failed files %v, want %v", failed, want)
	}
	out := restoredAt(dst, src)
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(name)))
		switch {
		case name == "text-a.txt" || name == "copy-of-a.txt" || name == "random-a.bin":
			if err == nil {
				t.Errorf("%s: a file whose blob failed verification was left in the target", name)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case !bytes.Equal(got, want):
			t.Errorf("%s: restored content differs", name)
		}
	}
}

// flipInPack flips the bits of mask in the middle byte of blob id in its
// pack, in the local repository at dir, and returns the pack's name.
func flipInPack(t *testing.T, repo *chunkstore.Repository, dir string, id chunkstore.ID, mask byte) string {
	t.Helper()
	loc, ok := repo.Index().Lookup(id)
	if !ok {
		t.Fatalf("blob %s not indexed", id.Short())
	}
	return storetest.FlipBlob(t, dir, loc, mask)
}

// TestDamagedHardLinkGroup: the first name of a hard-link group whose
// data is damaged fails, and its other names fail as links to it; the
// restore does not download the damaged data again for them
// (restoreHeirs is for names that failed at their path, not for want of
// their data).
func TestDamagedHardLinkGroup(t *testing.T) {
	ctx := context.Background()
	dir, _, repos := localRepos(t)
	r := testRepo{writer: repos.Writer, reader: repos.Reader}
	data := fixture.Random(4, 200<<10)
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"a":  {Content: data},
		"l1": {HardlinkTo: "a"},
		"l2": {HardlinkTo: "a"},
		"ok": {Content: []byte("intact\n")},
	})
	snap := r.backup(t, src)
	if err := r.reader.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	flipInPack(t, r.reader, dir, r.reader.BlobID(data), 0x40)
	dst := t.TempDir()
	res, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: dst})
	if err != nil {
		t.Fatal(err)
	}
	failed, errs := failedPaths(res, src)
	if want := []string{"a", "l1", "l2"}; !slices.Equal(slices.Sorted(slices.Values(failed)), want) {
		t.Fatalf("failures %v, want %v", res.Failures, want)
	}
	if !strings.Contains(errs["a"], "failed authentication") {
		t.Errorf("a: %s; want the damaged blob's authentication failure", errs["a"])
	}
	for _, l := range []string{"l1", "l2"} {
		if !strings.Contains(errs[l], "which failed") {
			t.Errorf("%s: %s; want it failed as a hard link to a", l, errs[l])
		}
	}
	if res.BytesDownloaded > int64(len(data)+64<<10) {
		t.Errorf("%d bytes downloaded for a file of %d: the damaged data was read again", res.BytesDownloaded, len(data))
	}
	if b, err := os.ReadFile(filepath.Join(restoredAt(dst, src), "ok")); err != nil || string(b) != "intact\n" {
		t.Errorf("ok: %q, %v", b, err)
	}
}
