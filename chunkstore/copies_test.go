package chunkstore_test

import (
	"bytes"
	"context"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
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

// TestIndexLoadOrder: of a blob two index files list in different packs,
// every process that loads the index finds the same copy first: the one
// in the index file with the lower ID, however the parallel reads finish.
func TestIndexLoadOrder(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	repos := storetest.InitRepos(t, st)
	data := storetest.Data(5, 300<<10)
	var packs []chunkstore.ID
	for _, w := range []*chunkstore.Repository{repos.Writer, storetest.UnsharedWriter(t, st, repos.Writer)} {
		wr, err := w.NewWriter(ctx, chunkstore.WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		id, _, err := wr.SaveBlob(ctx, chunkstore.DataBlob, data)
		if err != nil {
			t.Fatal(err)
		}
		if err := wr.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		loc, ok := w.Index().Lookup(id)
		if !ok {
			t.Fatal("blob not indexed by its writer")
		}
		packs = append(packs, loc.Pack.ID)
	}
	if packs[0] == packs[1] {
		t.Fatal("both writers stored the blob in the same pack")
	}
	r := repos.OpenReader(t, st)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	files, err := r.ListMeta(ctx, chunkstore.KindIndex)
	if err != nil || len(files) != 2 {
		t.Fatalf("index files: %v %v", files, err)
	}
	// The pack the lower-ID index file lists.
	low := files[0]
	if bytes.Compare(files[1][:], low[:]) < 0 {
		low = files[1]
	}
	plain, err := r.LoadMeta(ctx, chunkstore.KindIndex, low)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := chunkstore.DecodeIndex(plain)
	if err != nil || len(entries) != 1 {
		t.Fatalf("index file %s: %v %v", low.Short(), entries, err)
	}
	want := entries[0].ID
	id := r.BlobID(data)
	for i := range 20 {
		r := repos.OpenReader(t, st)
		if err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if loc, _ := r.Index().Lookup(id); loc.Pack == nil || loc.Pack.ID != want {
			t.Fatalf("load %d: the blob found first in pack %v, want %s (of the lower index file)", i, loc.Pack, want.Short())
		}
	}
}

// TestIndexCopiesMatchScan: Copies, which keeps the places of blobs
// listed more than once as packs are added once it has been asked, finds
// what a scan of every pack finds, in the same order, through random
// additions, exclusions and lifted exclusions; so does an index built
// afresh in each state, asked for the first time.
func TestIndexCopiesMatchScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	id := func(b int) chunkstore.ID { var x chunkstore.ID; x[0], x[1] = byte(b), byte(b>>8); return x }
	x := chunkstore.NewIndex()
	var packs []chunkstore.PackEntry
	excluded := map[chunkstore.ID]bool{}
	scan := func(ask, skip map[chunkstore.ID]bool) map[chunkstore.ID][]chunkstore.Location {
		out := map[chunkstore.ID][]chunkstore.Location{}
		for i := range packs {
			p := &packs[i]
			if skip[p.ID] || excluded[p.ID] {
				continue
			}
			for _, b := range p.Blobs {
				if ask[b.ID] {
					out[b.ID] = append(out[b.ID], chunkstore.Location{Pack: p, Blob: b})
				}
			}
		}
		return out
	}
	for round := range 60 {
		switch op := rng.IntN(6); {
		case op < 4: // add packs; a blob ID often comes back
			var add []chunkstore.PackEntry
			for range 1 + rng.IntN(3) {
				p := chunkstore.PackEntry{ID: id(1000 + len(packs) + len(add))}
				for k := range 1 + rng.IntN(8) {
					p.Blobs = append(p.Blobs, chunkstore.Blob{Type: chunkstore.DataBlob, ID: id(rng.IntN(40)), Offset: uint32(k * 100), Length: 100, RawLength: 100})
				}
				add = append(add, p)
			}
			x.AddPacks(add)
			packs = append(packs, add...)
		case op == 4 && len(packs) > 0: // exclude some packs
			excluded = map[chunkstore.ID]bool{}
			for range 1 + rng.IntN(3) {
				excluded[packs[rng.IntN(len(packs))].ID] = true
			}
			x.SetExcluded(maps.Clone(excluded))
		default: // lift the exclusion
			excluded = map[chunkstore.ID]bool{}
			x.SetExcluded(nil)
		}
		ask, skip := map[chunkstore.ID]bool{}, map[chunkstore.ID]bool{}
		for range 10 {
			ask[id(rng.IntN(45))] = true
		}
		for _, p := range packs {
			if rng.IntN(5) == 0 {
				skip[p.ID] = true
			}
		}
		fresh := chunkstore.NewIndex()
		if rng.IntN(2) == 0 {
			fresh.SetExcluded(maps.Clone(excluded))
			fresh.AddPacks(packs)
		} else {
			fresh.AddPacks(packs)
			fresh.SetExcluded(maps.Clone(excluded))
		}
		want := scan(ask, skip)
		for _, got := range []map[chunkstore.ID][]chunkstore.Location{x.Copies(ask, skip), fresh.Copies(ask, skip)} {
			compareCopies(t, round, want, got)
		}
	}
}

func compareCopies(t *testing.T, round int, want, got map[chunkstore.ID][]chunkstore.Location) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("round %d: copies of %d blobs, a scan finds %d", round, len(got), len(want))
	}
	for bid, w := range want {
		g := got[bid]
		if len(g) != len(w) {
			t.Fatalf("round %d: blob %x: %d copies, a scan finds %d", round, bid[:2], len(g), len(w))
		}
		for i := range w {
			if g[i].Pack.ID != w[i].Pack.ID || g[i].Blob != w[i].Blob {
				t.Fatalf("round %d: blob %x copy %d: pack %x offset %d, a scan finds pack %x offset %d", round, bid[:2], i, g[i].Pack.ID[:2], g[i].Blob.Offset, w[i].Pack.ID[:2], w[i].Blob.Offset)
			}
		}
	}
}
