package chunkstore

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// TestIndexDifferential: the index against a plain model of it, over
// random packs, repeated and near-duplicate IDs, and exclusions.
func TestIndexDifferential(t *testing.T) {
	for seed := uint64(0); seed < 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		x := NewIndex()
		var all []PackEntry // in index order (first add wins)
		var pool []ID
		newID := func() ID {
			var id ID
			for i := range id {
				id[i] = byte(rng.IntN(256))
			}
			if rng.IntN(4) == 0 && len(pool) > 0 { // near-duplicate
				id = pool[rng.IntN(len(pool))]
				id[rng.IntN(32)] ^= 1
			}
			pool = append(pool, id)
			return id
		}
		excluded := map[ID]bool{}
		known := map[ID]bool{}
		check := func(round int) {
			// model
			first := map[ID][2]int{}
			var locs = map[ID][][2]int{}
			for pi, p := range all {
				if excluded[p.ID] {
					continue
				}
				for j, b := range p.Blobs {
					if _, ok := first[b.ID]; !ok {
						first[b.ID] = [2]int{pi, j}
					}
					locs[b.ID] = append(locs[b.ID], [2]int{pi, j})
				}
			}
			if x.Len() != len(first) {
				t.Fatalf("seed %d round %d: Len %d want %d", seed, round, x.Len(), len(first))
			}
			for _, id := range pool {
				f, ok := first[id]
				loc, got := x.Lookup(id)
				if ok != got || x.Has(id) != ok {
					t.Fatalf("seed %d round %d: Lookup ok=%v want %v", seed, round, got, ok)
				}
				if ok && (loc.Pack.ID != all[f[0]].ID || loc.Blob != all[f[0]].Blobs[f[1]]) {
					t.Fatalf("seed %d round %d: wrong location", seed, round)
				}
			}
			if rng.IntN(2) == 0 {
				ids := map[ID]bool{}
				for _, id := range pool {
					ids[id] = true
				}
				cp := x.Copies(ids, nil)
				for _, id := range pool {
					want := locs[id]
					got := cp[id]
					if len(want) != len(got) {
						t.Fatalf("seed %d round %d: Copies %d want %d", seed, round, len(got), len(want))
					}
					for k := range want {
						if got[k].Pack.ID != all[want[k][0]].ID || got[k].Blob != all[want[k][0]].Blobs[want[k][1]] {
							t.Fatalf("seed %d: Copies order", seed)
						}
					}
				}
			}
		}
		for round := 0; round < 25; round++ {
			var batch []PackEntry
			for range rng.IntN(6) {
				var p PackEntry
				if rng.IntN(10) == 0 && len(all) > 0 {
					p = all[rng.IntN(len(all))] // re-add known pack: skipped
				} else {
					p.ID = newID()
					for j := range rng.IntN(400) {
						var id ID
						if rng.IntN(3) == 0 && len(pool) > 0 {
							id = pool[rng.IntN(len(pool))]
						} else {
							id = newID()
						}
						p.Blobs = append(p.Blobs, Blob{ID: id, Offset: uint32(j), Length: 100})
					}
				}
				batch = append(batch, p)
			}
			x.AddPacks(batch)
			for _, p := range batch {
				if !known[p.ID] {
					known[p.ID] = true
					all = append(all, p)
				}
			}
			switch rng.IntN(4) {
			case 0:
				excluded = map[ID]bool{}
				for _, p := range all {
					if rng.IntN(3) == 0 {
						excluded[p.ID] = true
					}
				}
				x.SetExcluded(excluded)
			case 1:
				excluded = map[ID]bool{}
				x.SetExcluded(nil)
			}
			check(round)
		}
	}
}

// TestIndexConcurrent: packs added and exclusions changed while readers
// look blobs up (run with -race); every blob is found at the end.
func TestIndexConcurrent(t *testing.T) {
	x := NewIndex()
	var wg sync.WaitGroup
	ids := make([]ID, 20000)
	for i := range ids {
		ids[i][0], ids[i][1], ids[i][2] = byte(i), byte(i>>8), 7
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		for k := 0; k < 200; k++ {
			p := PackEntry{ID: ID{9, byte(k), byte(k >> 8)}}
			for j := 0; j < 100; j++ {
				p.Blobs = append(p.Blobs, Blob{ID: ids[k*100+j]})
			}
			x.AddPacks([]PackEntry{p})
		}
	}()
	go func() {
		defer wg.Done()
		for k := 0; k < 50; k++ {
			x.SetExcluded(map[ID]bool{{9, byte(k)}: true})
			x.SetExcluded(nil)
		}
	}()
	go func() {
		defer wg.Done()
		for k := 0; k < 100000; k++ {
			x.Has(ids[k%len(ids)])
			x.Lookup(ids[(k*7)%len(ids)])
			x.Reserve(ID{1, byte(k)})
		}
	}()
	wg.Wait()
	for _, id := range ids {
		if !x.Has(id) {
			t.Fatalf("blob %s missing after the concurrent adds", id.Short())
		}
	}
}
