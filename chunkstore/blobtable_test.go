package chunkstore

import (
	"crypto/rand"
	"testing"
)

// TestBlobTable: against a map, through growth, with IDs that share all
// but their last byte, and after clear.
func TestBlobTable(t *testing.T) {
	var packs []*PackEntry
	want := map[ID]blobLoc{}
	tab := newBlobTable()
	for pi := range 40 {
		p := &PackEntry{}
		for j := range 997 {
			var id ID
			if j%2 == 0 {
				rand.Read(id[:])
			} else {
				id = p.Blobs[j-1].ID
				id[31] ^= 0xff // the previous ID but for one byte
			}
			p.Blobs = append(p.Blobs, Blob{ID: id})
		}
		packs = append(packs, p)
		for j, b := range p.Blobs {
			l := blobLoc{pack: uint32(pi), blobIdx: uint32(j)}
			if _, ok := tab.get(b.ID, packs); ok {
				t.Fatalf("pack %d blob %d found before it was added", pi, j)
			}
			tab.add(b.ID, l, packs)
			want[b.ID] = l
		}
	}
	if tab.len() != len(want) {
		t.Fatalf("len %d, want %d", tab.len(), len(want))
	}
	if used := float64(tab.n) / float64(len(tab.tags)); used > 0.75 {
		t.Errorf("table %.2f full, want at most 0.75", used)
	}
	for id, l := range want {
		got, ok := tab.get(id, packs)
		if !ok || got != l {
			t.Fatalf("get(%s) = %v, %v; want %v", id.Short(), got, ok, l)
		}
	}
	for range 10_000 {
		var id ID
		rand.Read(id[:])
		if _, ok := tab.get(id, packs); ok {
			t.Fatalf("found %s, never added", id.Short())
		}
	}
	tab.clear()
	if tab.len() != 0 {
		t.Fatal("clear left entries")
	}
	for id := range want {
		if _, ok := tab.get(id, packs); ok {
			t.Fatal("found an entry after clear")
		}
	}
}

// TestIndexManyBlobs: an index of many packs finds every blob in the
// pack it was first listed in, also after packs are excluded and
// included again (SetExcluded rebuilds the table).
func TestIndexManyBlobs(t *testing.T) {
	x := NewIndex()
	var all []PackEntry
	for pi := range 30 {
		p := PackEntry{}
		rand.Read(p.ID[:])
		for j := range 2000 {
			var id ID
			rand.Read(id[:])
			p.Blobs = append(p.Blobs, Blob{ID: id, Offset: uint32(j)})
		}
		if pi > 0 {
			p.Blobs[0].ID = all[0].Blobs[pi].ID // a second copy, in a later pack
		}
		all = append(all, p)
	}
	x.AddPacks(all[:10])
	x.AddPacks(all[10:])
	check := func() {
		t.Helper()
		for pi, p := range all {
			for j, b := range p.Blobs {
				loc, ok := x.Lookup(b.ID)
				switch {
				case !ok:
					t.Fatalf("pack %d blob %d not found", pi, j)
				case j == 0 && pi > 0:
					if loc.Pack.ID != all[0].ID {
						t.Fatalf("a blob of two packs found in the later one")
					}
				case loc.Pack.ID != p.ID || loc.Blob.Offset != uint32(j):
					t.Fatalf("pack %d blob %d found at %s/%d", pi, j, loc.Pack.ID.Short(), loc.Blob.Offset)
				}
			}
		}
	}
	check()
	x.SetExcluded(map[ID]bool{all[0].ID: true})
	// The blobs of pack 0 that have no other copy are gone; those that
	// have one are found there.
	if _, ok := x.Lookup(all[0].Blobs[100].ID); ok {
		t.Fatal("a blob of the excluded pack only was found")
	}
	if loc, ok := x.Lookup(all[0].Blobs[5].ID); !ok || loc.Pack.ID != all[5].ID {
		t.Fatal("a blob of the excluded pack was not found in its other copy")
	}
	x.SetExcluded(nil)
	check()
	if got, want := x.Len(), 30*2000-29; got != want {
		t.Errorf("Len %d, want %d", got, want)
	}
}

// TestBlobTableTagCollision: a slot whose tag matches is taken only if
// the ID its location names is the one looked up.
func TestBlobTableTagCollision(t *testing.T) {
	p := &PackEntry{Blobs: []Blob{{ID: ID{1}}, {ID: ID{2}}}}
	packs := []*PackEntry{p}
	tab := newBlobTable()
	tab.add(p.Blobs[0].ID, blobLoc{0, 0}, packs)
	// Plant, in the slot ID{3} hashes to, its tag with blob 1's location.
	absent := ID{3}
	h, tag := tab.hashOf(&absent)
	i := h & uint64(len(tab.tags)-1)
	for tab.tags[i] != 0 {
		i = (i + 1) & uint64(len(tab.tags)-1)
	}
	tab.tags[i], tab.locs[i] = tag, blobLoc{0, 1}
	tab.n++
	if l, ok := tab.get(absent, packs); ok {
		t.Fatalf("an ID never added was found at %v, where another one is", l)
	}
	if l, ok := tab.get(ID{1}, packs); !ok || l != (blobLoc{0, 0}) {
		t.Fatalf("get(ID{1}) = %v, %v", l, ok)
	}
}
