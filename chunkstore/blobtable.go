package chunkstore

import "hash/maphash"

// blobTable maps blob IDs to where the index lists them, without storing
// the IDs a second time: each slot holds a location in the index's packs
// and a tag of the ID's hash, and a probe whose tag matches compares the
// ID the pack entry holds. It takes 12 bytes a slot, at most three
// quarters full, against about 60 bytes a blob for a map keyed by ID, so
// a repository of a million small files keeps some 40 MB less in memory
// in every command that loads its index (docs/benchmarks.md, "Many small
// files").
//
// Open addressing with linear probing; the hash is seeded per process,
// so IDs chosen to collide (a writer key holder can choose contents)
// cannot be made to collide here. Entries are only added, or all
// cleared at once: Index never removes one blob.
type blobTable struct {
	seed maphash.Seed
	tags []uint32 // 0: an empty slot
	locs []blobLoc
	n    int
}

func newBlobTable() blobTable { return blobTable{seed: maphash.MakeSeed()} }

// hashOf returns id's slot hash and its tag (never 0).
func (t *blobTable) hashOf(id *ID) (uint64, uint32) {
	h := maphash.Bytes(t.seed, id[:])
	return h, uint32(h>>32) | 1
}

// get returns where id is listed; packs are the index's.
func (t *blobTable) get(id ID, packs []*PackEntry) (blobLoc, bool) {
	if t.n == 0 {
		return blobLoc{}, false
	}
	h, tag := t.hashOf(&id)
	mask := uint64(len(t.tags) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch t.tags[i] {
		case 0:
			return blobLoc{}, false
		case tag:
			l := t.locs[i]
			if packs[l.pack].Blobs[l.blobIdx].ID == id {
				return l, true
			}
		}
	}
}

// add records l as id's location; id must not be in the table yet.
func (t *blobTable) add(id ID, l blobLoc, packs []*PackEntry) {
	if (t.n+1)*4 > len(t.tags)*3 {
		t.grow(t.n+1, packs)
	}
	t.put(id, l)
	t.n++
}

func (t *blobTable) put(id ID, l blobLoc) {
	h, tag := t.hashOf(&id)
	mask := uint64(len(t.tags) - 1)
	i := h & mask
	for t.tags[i] != 0 {
		i = (i + 1) & mask
	}
	t.tags[i], t.locs[i] = tag, l
}

// grow makes room for n entries: a power of two of slots, at most three
// quarters used, every entry placed again.
func (t *blobTable) grow(n int, packs []*PackEntry) {
	size := 1024
	for n*4 > size*3 {
		size *= 2
	}
	if size <= len(t.tags) {
		return
	}
	oldTags, oldLocs := t.tags, t.locs
	t.tags, t.locs = make([]uint32, size), make([]blobLoc, size)
	for i, tag := range oldTags {
		if tag != 0 {
			l := oldLocs[i]
			t.put(packs[l.pack].Blobs[l.blobIdx].ID, l)
		}
	}
}

// clear empties the table, keeping its slots.
func (t *blobTable) clear() {
	clear(t.tags)
	t.n = 0
}

func (t *blobTable) len() int { return t.n }
