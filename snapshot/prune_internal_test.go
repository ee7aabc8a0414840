package snapshot

import (
	"math/rand/v2"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// TestChooseRepackSettles: after repacking what chooseRepack picks, the
// unreferenced bytes left are within maxUnused of what stays (so the next
// prune picks nothing), and no shorter prefix of its choice would do.
func TestChooseRepackSettles(t *testing.T) {
	// The case that made a second prune repack again: 10 % of the packs
	// before repacking allowed 1.75 MiB unused, 10 % of those after only
	// 1.45.
	const mib = 1 << 20
	partly := []partlyUsed{
		{&chunkstore.PackEntry{ID: chunkstore.ID{1}}, 6 * mib, 3 * mib},
		{&chunkstore.PackEntry{ID: chunkstore.ID{2}}, 23 * mib / 2, 3 * mib / 2},
	}
	if got := chooseRepack(partly, 0.1, 13*mib); len(got) != 2 {
		t.Errorf("chose %d packs, want both: 1.5 MiB unused of 14.5 left is over 10 %%", len(got))
	}

	rng := rand.New(rand.NewPCG(7, 11))
	for range 2000 {
		n := 1 + rng.IntN(20)
		var in []partlyUsed
		var used, unused int64
		for i := range n {
			size := int64(1 + rng.IntN(16<<20))
			waste := 1 + rng.Int64N(size)
			in = append(in, partlyUsed{&chunkstore.PackEntry{ID: chunkstore.ID{byte(i)}}, size, waste})
			used += size - waste
			unused += waste
		}
		used += rng.Int64N(200 << 20) // packs with no unreferenced data
		p := []float64{0, 0.05, 0.1, 0.5, 0.9}[rng.IntN(5)]
		got := chooseRepack(append([]partlyUsed(nil), in...), p, used)
		left := unused
		for _, q := range got {
			left -= q.unused
		}
		if float64(left) > p*float64(used+left)+1 {
			t.Fatalf("p=%v: %d bytes unused left of %d, over the share", p, left, used+left)
		}
		if k := len(got); k > 0 {
			prev := left + got[k-1].unused
			if float64(prev) <= p*float64(used+prev) {
				t.Fatalf("p=%v: repacked one pack more than needed (%d unused of %d was within)", p, prev, used+prev)
			}
		}
	}
	if got := chooseRepack(partly, -1, 13*mib); got != nil {
		t.Errorf("unlimited: chose %d packs", len(got))
	}
}

// TestOwnersOfDuplicates: a referenced blob held by several live packs
// is used in exactly one of them (the one with the most referenced blobs,
// then the least waste); a blob whose first holder is not live (marked)
// belongs to its live holder; an unindexed pack is used if it holds any
// referenced blob (another prune's repacked copy may not be indexed yet).
func TestOwnersOfDuplicates(t *testing.T) {
	id := func(b byte) chunkstore.ID { return chunkstore.ID{b} }
	blob := func(b byte) chunkstore.Blob { return chunkstore.Blob{ID: id(b), Length: 1000} }
	marked := &chunkstore.PackEntry{ID: id(0xf0), Blobs: []chunkstore.Blob{blob(5)}}
	a := &chunkstore.PackEntry{ID: id(0xa0), Blobs: []chunkstore.Blob{blob(1), blob(2), blob(9)}} // 9: junk
	b := &chunkstore.PackEntry{ID: id(0xb0), Blobs: []chunkstore.Blob{blob(1), blob(2), blob(3)}}
	c := &chunkstore.PackEntry{ID: id(0xc0), Blobs: []chunkstore.Blob{blob(3), blob(5)}}
	idx := chunkstore.NewIndex()
	idx.AddPacks([]chunkstore.PackEntry{*marked, *a, *b, *c}) // first holders: 5 in marked, 1 and 2 in a, 3 in b
	r := &referenced{blobs: map[chunkstore.ID]bool{id(1): true, id(2): true, id(3): true, id(5): true, id(7): true}}
	r.chooseOwners(idx, []*chunkstore.PackEntry{a, b, c})
	for _, tc := range []struct {
		p      *chunkstore.PackEntry
		used   int
		unused int64
	}{
		{a, 0, 3000}, // 1 and 2 belong to b (three referenced blobs), 9 is junk
		{b, 3, 0},
		{c, 1, 1000}, // 3 is b's; 5 is c's, its first holder being marked
	} {
		if used, unused := r.usage(tc.p); used != tc.used || unused != tc.unused {
			t.Errorf("pack %x: used %d, unused %d; want %d, %d", tc.p.ID[0], used, unused, tc.used, tc.unused)
		}
	}
	unindexed := &chunkstore.PackEntry{ID: id(0xd0), Blobs: []chunkstore.Blob{blob(1), blob(9)}} // 1 is b's, but referenced
	if !r.anyReferenced(unindexed) || r.anyReferenced(&chunkstore.PackEntry{ID: id(0xd1), Blobs: []chunkstore.Blob{blob(9)}}) {
		t.Error("anyReferenced")
	}
	if len(r.multi) != 4 {
		t.Errorf("%d blobs remembered as held twice, want 4 (1, 2, 3 and 5)", len(r.multi))
	}
}
