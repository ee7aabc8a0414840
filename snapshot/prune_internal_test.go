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
