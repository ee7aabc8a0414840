package chunkstore_test

import (
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

func TestIndexStats(t *testing.T) {
	id := func(b byte) chunkstore.ID { var x chunkstore.ID; x[0] = b; return x }
	x := chunkstore.NewIndex()
	x.AddPacks([]chunkstore.PackEntry{
		{ID: id(1), Size: 1000, Blobs: []chunkstore.Blob{
			{Type: chunkstore.DataBlob, ID: id(10), Length: 300, RawLength: 900},
			{Type: chunkstore.DataBlob, ID: id(11), Length: 400, RawLength: 400},
		}},
		{ID: id(2), Size: 500, Blobs: []chunkstore.Blob{
			{Type: chunkstore.TreeBlob, ID: id(20), Length: 50, RawLength: 120},
			{Type: chunkstore.DataBlob, ID: id(10), Length: 300, RawLength: 900}, // a second copy
		}},
	})
	want := chunkstore.IndexStats{
		Packs: 2, PackBytes: 1500,
		Data:       chunkstore.BlobStats{Blobs: 2, RawBytes: 1300, StoredBytes: 700},
		Tree:       chunkstore.BlobStats{Blobs: 1, RawBytes: 120, StoredBytes: 50},
		Duplicates: 1,
	}
	if got := x.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	if got := chunkstore.NewIndex().Stats(); got != (chunkstore.IndexStats{}) {
		t.Errorf("empty index: %+v", got)
	}
}
