package restore

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// testPack returns a pack of n blobs of the given sealed length, laid
// end to end.
func testPack(seed byte, n int, length uint32) *chunkstore.PackEntry {
	p := &chunkstore.PackEntry{ID: chunkstore.ID{seed}}
	var off uint32
	for i := range n {
		id := chunkstore.ID{seed, byte(i), byte(i >> 8)}
		p.Blobs = append(p.Blobs, chunkstore.Blob{Type: chunkstore.DataBlob, ID: id, Offset: off, Length: length, RawLength: length - 40})
		off += length
	}
	p.Size = off
	return p
}

func chunkOf(p *chunkstore.PackEntry, i int, fileOff int64) chunkRef {
	b := p.Blobs[i]
	return chunkRef{offset: fileOff, length: int64(b.RawLength), loc: chunkstore.Location{Pack: p, Blob: b}}
}

// TestPackJobs checks the grouping a restore downloads by: every needed
// blob in exactly one range, with all of its targets in walk order; packs
// in the order the walk first needed them and ranges by offset; a pack
// that two index entries describe read as one; two IDs an index put at
// one offset kept apart; files skipped or failed not fetched; and each
// file's count of pending blobs.
func TestPackJobs(t *testing.T) {
	a := testPack(1, 40, 1<<20)
	b := testPack(2, 300, 4<<10)
	// The same pack as b, as a second index file would list it.
	b2 := &chunkstore.PackEntry{ID: b.ID, Size: b.Size, Blobs: slices.Clone(b.Blobs)}
	c := testPack(3, 3, 20<<20) // blobs larger than a range

	rng := rand.New(rand.NewPCG(1, 2))
	var pl plan
	type want struct {
		file *fileState
		off  int64
	}
	wantTargets := map[chunkstore.ID][]want{}
	wantPending := map[*fileState]int64{}
	addFile := func(name string, chunks []chunkRef, skip, failed bool) {
		f := &fileState{path: name, chunks: chunks, skip: skip}
		if failed {
			f.failed = fmt.Errorf("broken")
		}
		pl.files = append(pl.files, f)
		if skip || failed {
			return
		}
		for _, ch := range chunks {
			wantTargets[ch.loc.Blob.ID] = append(wantTargets[ch.loc.Blob.ID], want{f, ch.offset})
			wantPending[f]++
		}
	}
	// Small files from pack b (and its twin b2) in shuffled order, some
	// sharing a blob; large files from a, one of them twice the same
	// chunk; c's huge blobs; files whose blobs must not be fetched.
	order := rng.Perm(len(b.Blobs))
	for i, k := range order {
		p := b
		if i%3 == 0 {
			p = b2
		}
		addFile(fmt.Sprintf("small/%d", i), []chunkRef{chunkOf(p, k, 0)}, false, false)
		if i%50 == 0 {
			addFile(fmt.Sprintf("dup/%d", i), []chunkRef{chunkOf(b, k, 0)}, false, false)
		}
	}
	var big []chunkRef
	for i := 0; i < 40; i += 2 { // every other blob: gaps of one blob
		big = append(big, chunkOf(a, i, int64(len(big))<<20))
	}
	big = append(big, chunkOf(a, 0, int64(len(big))<<20))
	addFile("large", big, false, false)
	addFile("huge", []chunkRef{chunkOf(c, 2, 0), chunkOf(c, 0, 20<<20)}, false, false)
	// An index that put a second ID at the offset of b's blob 7: it must
	// stay a blob of its own (verified against its ID), not take blob 7's.
	forged := chunkOf(b, 7, 0)
	forged.loc.Blob.ID = chunkstore.ID{0xff, 7}
	addFile("forged", []chunkRef{forged}, false, false)
	addFile("identical", []chunkRef{chunkOf(a, 1, 0)}, true, false)
	addFile("lost", []chunkRef{chunkOf(a, 3, 0)}, false, true)

	jobs := pl.packJobs()

	got := map[chunkstore.ID][]want{}
	var packOrder []chunkstore.ID
	for i, j := range jobs {
		if len(packOrder) == 0 || packOrder[len(packOrder)-1] != j.pack.ID {
			if slices.Contains(packOrder, j.pack.ID) {
				t.Fatalf("job %d: pack %s comes again after another pack", i, j.pack.ID.Short())
			}
			packOrder = append(packOrder, j.pack.ID)
		} else if prev := jobs[i-1]; prev.end > j.start {
			t.Errorf("job %d: range %d-%d overlaps or precedes %d-%d", i, j.start, j.end, prev.start, prev.end)
		}
		if len(j.blobs) > 1 && j.end-j.start > maxRange {
			t.Errorf("job %d: %d bytes, more than %d", i, j.end-j.start, maxRange)
		}
		for k, bj := range j.blobs {
			if k > 0 && bj.blob.Offset <= j.blobs[k-1].blob.Offset && bj.blob.ID == j.blobs[k-1].blob.ID {
				t.Errorf("job %d: blob %s twice", i, bj.blob.ID.Short())
			}
			if k > 0 && bj.blob.Offset < j.blobs[k-1].blob.Offset {
				t.Errorf("job %d: blobs out of order", i)
			}
			if int64(bj.blob.Offset) < j.start || int64(bj.blob.Offset+bj.blob.Length) > j.end {
				t.Errorf("job %d: blob at %d outside the range %d-%d", i, bj.blob.Offset, j.start, j.end)
			}
			if _, dup := got[bj.blob.ID]; dup {
				t.Errorf("blob %s fetched twice", bj.blob.ID.Short())
			}
			got[bj.blob.ID] = nil
			for _, tg := range bj.targets {
				got[bj.blob.ID] = append(got[bj.blob.ID], want{tg.file, tg.offset})
			}
		}
	}
	// First needed: b (the first small file), then a, then c.
	if want := []chunkstore.ID{b.ID, a.ID, c.ID}; !slices.Equal(packOrder, want) {
		t.Errorf("packs in order %v, want %v", packOrder, want)
	}
	if len(got) != len(wantTargets) {
		t.Errorf("%d blobs fetched, want %d", len(got), len(wantTargets))
	}
	for id, w := range wantTargets {
		if !slices.Equal(got[id], w) {
			t.Errorf("blob %s: targets %v, want %v", id.Short(), got[id], w)
		}
	}
	for _, f := range pl.files {
		if f.pending.Load() != wantPending[f] {
			t.Errorf("%s: %d pending, want %d", f.path, f.pending.Load(), wantPending[f])
		}
	}
	// Pack b is wanted whole: 300 blobs of 4 KiB in one range.
	if jobs[0].pack.ID != b.ID || jobs[0].start != 0 || jobs[0].end != int64(b.Size) {
		t.Errorf("first range %d-%d of %s, want all of pack b (%d bytes)", jobs[0].start, jobs[0].end, jobs[0].pack.ID.Short(), b.Size)
	}
}
