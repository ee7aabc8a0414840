package chunkstore_test

import (
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// TestIndexCopies: Copies lists every pack holding each blob asked for,
// except the packs to skip and excluded ones (a prune's mark may be
// deleting them); blobs held once, or not at all, get what there is.
func TestIndexCopies(t *testing.T) {
	id := func(b byte) chunkstore.ID { var x chunkstore.ID; x[0] = b; return x }
	blob := func(b byte, off uint32) chunkstore.Blob {
		return chunkstore.Blob{Type: chunkstore.DataBlob, ID: id(b), Offset: off, Length: 100, RawLength: 100}
	}
	x := chunkstore.NewIndex()
	x.AddPacks([]chunkstore.PackEntry{
		{ID: id(1), Blobs: []chunkstore.Blob{blob(10, 0), blob(11, 100)}},
		{ID: id(2), Blobs: []chunkstore.Blob{blob(11, 0), blob(10, 100)}},
		{ID: id(3), Blobs: []chunkstore.Blob{blob(10, 200)}},
		{ID: id(4), Blobs: []chunkstore.Blob{blob(12, 0)}},
	})
	packsOf := func(blob byte, locs []chunkstore.Location) (out []byte) {
		for _, l := range locs {
			if l.Blob.ID != id(blob) {
				t.Fatalf("blob %d listed at a location of blob %x", blob, l.Blob.ID[0])
			}
			out = append(out, l.Pack.ID[0])
		}
		return out
	}
	ask := map[chunkstore.ID]bool{id(10): true, id(11): true, id(13): true}
	got := x.Copies(ask, map[chunkstore.ID]bool{id(1): true})
	if p := packsOf(10, got[id(10)]); string(p) != "\x02\x03" {
		t.Errorf("blob 10 without pack 1: packs %v, want 2 and 3", p)
	}
	if l := got[id(10)]; len(l) == 2 && l[0].Blob.Offset != 100 {
		t.Errorf("blob 10 in pack 2 at offset %d, want 100", l[0].Blob.Offset)
	}
	if p := packsOf(11, got[id(11)]); string(p) != "\x02" {
		t.Errorf("blob 11 without pack 1: packs %v, want 2", p)
	}
	if len(got[id(12)]) != 0 || len(got[id(13)]) != 0 {
		t.Errorf("blobs not asked for, or not stored, listed: %v", got)
	}
	x.SetExcluded(map[chunkstore.ID]bool{id(3): true})
	if p := packsOf(10, x.Copies(ask, nil)[id(10)]); string(p) != "\x01\x02" {
		t.Errorf("blob 10 with pack 3 excluded: packs %v, want 1 and 2", p)
	}
}
