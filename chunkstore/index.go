package chunkstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"sort"
	"sync"
)

// PackEntry is one pack as recorded in an index file.
type PackEntry struct {
	ID         ID
	Size       uint32
	WrappedKey []byte
	Blobs      []Blob
	// Gen is the generation of the recipients the data key was wrapped
	// to (Secrets.Generation). A pack indexed from the store has 0 while
	// the repository's recipients never changed, GenUnknown after.
	Gen uint32
}

// GenUnknown is the generation of a pack indexed from the store after a
// change of recipients: the pack does not say whose it is.
const GenUnknown = math.MaxUint32

// WrappedBefore reports whether the pack's data key may be wrapped to
// recipients older than generation gen (those of an unknown generation
// may).
func (p *PackEntry) WrappedBefore(gen uint32) bool {
	return p.Gen < gen || p.Gen == GenUnknown
}

// GenName names a generation in messages.
func GenName(gen uint32) string {
	if gen == GenUnknown {
		return "an unknown generation"
	}
	return fmt.Sprintf("generation %d", gen)
}

// unindexedGen is the generation given to packs indexed from the store.
func (r *Repository) unindexedGen() uint32 {
	if r.secrets.Generation == 0 {
		return 0
	}
	return GenUnknown
}

// Index file plaintext (before sealing, docs/format.md):
//
//	"LBIDX1\n\x00" | u32 packs | per pack: id(32) u32 size u32 W key(W)
//	u32 blobs | blob entries (type, id, offset, length, raw length)
//
// Version 2 ("LBIDX2\n\x00") has a u32 generation after each pack's
// size. It is written only when a pack has a generation other than 0, so
// a repository whose recipients never changed stays readable by
// releases that know only version 1.
const (
	indexMagic   = "LBIDX1\n\x00"
	indexMagicV2 = "LBIDX2\n\x00"
)

// EncodeIndex encodes packs as index plaintext.
func EncodeIndex(packs []PackEntry) []byte {
	v2 := false
	for _, p := range packs {
		v2 = v2 || p.Gen != 0
	}
	n := len(indexMagic) + 4
	for _, p := range packs {
		n += IDSize + 16 + len(p.WrappedKey) + len(p.Blobs)*blobEntrySize
	}
	out := make([]byte, 0, n)
	if v2 {
		out = append(out, indexMagicV2...)
	} else {
		out = append(out, indexMagic...)
	}
	out = binary.LittleEndian.AppendUint32(out, uint32(len(packs)))
	for _, p := range packs {
		out = append(out, p.ID[:]...)
		out = binary.LittleEndian.AppendUint32(out, p.Size)
		if v2 {
			out = binary.LittleEndian.AppendUint32(out, p.Gen)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(p.WrappedKey)))
		out = append(out, p.WrappedKey...)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(p.Blobs)))
		for _, b := range p.Blobs {
			out = appendBlobEntry(out, b)
		}
	}
	return out
}

// magicVersion parses the version of a magic of the form prefix,
// decimal digits, "\n": how every lifeboat magic names its version, so
// that a later one is told apart from damage.
func magicVersion(b []byte, prefix string) (uint64, bool) {
	if !bytes.HasPrefix(b, []byte(prefix)) {
		return 0, false
	}
	var v uint64
	digits := 0
	for _, c := range b[len(prefix):] {
		switch {
		case c >= '0' && c <= '9' && digits < 9:
			v = v*10 + uint64(c-'0')
			digits++
		case c == '\n' && digits > 0:
			return v, true
		default:
			return 0, false
		}
	}
	return 0, false
}

// DecodeIndex parses index plaintext. It validates every length against
// the bytes present and every blob against its pack's size.
func DecodeIndex(b []byte) ([]PackEntry, error) {
	bad := func(format string, args ...any) ([]PackEntry, error) {
		return nil, fmt.Errorf("%w: index: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(b) < len(indexMagic)+4 {
		return bad("bad magic")
	}
	var v2 bool
	switch string(b[:len(indexMagic)]) {
	case indexMagic:
	case indexMagicV2:
		v2 = true
	default:
		if v, ok := magicVersion(b, "LBIDX"); ok && v > 2 {
			return nil, fmt.Errorf("%w (index format version %d; this release reads up to 2)", ErrNewerFormat, v)
		}
		return bad("bad magic")
	}
	head := IDSize + 8 // id, size, W
	if v2 {
		head += 4
	}
	b = b[len(indexMagic):]
	np := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(np) > uint64(len(b))/uint64(head+4) {
		return bad("claims %d packs in %d bytes", np, len(b))
	}
	packs := make([]PackEntry, 0, np)
	anyGen := false
	for i := uint32(0); i < np; i++ {
		if len(b) < head {
			return bad("pack %d truncated", i)
		}
		var p PackEntry
		copy(p.ID[:], b)
		p.Size = binary.LittleEndian.Uint32(b[IDSize:])
		if v2 {
			p.Gen = binary.LittleEndian.Uint32(b[IDSize+4:])
			anyGen = anyGen || p.Gen != 0
		}
		w := binary.LittleEndian.Uint32(b[head-4:])
		b = b[head:]
		if uint64(w)+4 > uint64(len(b)) {
			return bad("pack %d key length %d out of range", i, w)
		}
		p.WrappedKey = append([]byte(nil), b[:w]...)
		b = b[w:]
		nb := binary.LittleEndian.Uint32(b)
		b = b[4:]
		if uint64(nb)*blobEntrySize > uint64(len(b)) {
			return bad("pack %d claims %d blobs in %d bytes", i, nb, len(b))
		}
		p.Blobs = make([]Blob, nb)
		for j := range p.Blobs {
			bl := readBlobEntry(b[j*blobEntrySize:])
			// No blob is larger than maxMetaPlaintext (a chunk is at most
			// 64 MiB): a larger raw length would ask a reader for that much
			// memory, and on 32-bit platforms overflow an int.
			if bl.Type > TreeBlob || bl.Length < BlobOverhead || uint64(bl.Offset)+uint64(bl.Length) > uint64(p.Size) || bl.RawLength > maxMetaPlaintext {
				return bad("pack %s blob %d out of range", p.ID.Short(), j)
			}
			p.Blobs[j] = bl
		}
		b = b[int(nb)*blobEntrySize:]
		packs = append(packs, p)
	}
	if len(b) != 0 {
		return bad("%d trailing bytes", len(b))
	}
	if v2 && !anyGen {
		// EncodeIndex writes version 1 then; one encoding per content.
		return bad("version 2 without a pack of generation above 0")
	}
	return packs, nil
}

// Location is where a blob lives.
type Location struct {
	Pack *PackEntry
	Blob Blob
}

type blobLoc struct {
	pack    uint32
	blobIdx uint32
}

// Index is the in-memory union of all index files plus the blobs being
// written by this process. It is safe for concurrent use.
type Index struct {
	mu      sync.RWMutex
	packs   []*PackEntry
	packIdx map[ID]uint32
	blobs   blobTable // the first place a blob is listed
	// dups holds every place, in index order, of each blob listed more
	// than once; blobs holds the first of them. It saves Copies a scan of
	// every pack, and is built by the first Copies (nil until then): a
	// process that never reads around a damaged copy does not pay for
	// it, which matters where duplicates are many (before a prune).
	dups    map[ID][]blobLoc
	pending map[ID]struct{} // reserved by a writer, not yet in a pack on storage
	// excluded packs are known (HasPack) but their blobs are not offered
	// (Has, Reserve, Lookup): a GC mark may delete them.
	excluded map[ID]bool
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{packIdx: map[ID]uint32{}, blobs: newBlobTable(), pending: map[ID]struct{}{}}
}

// place records that pack pi lists blob id as its j-th, in dups too once
// it is built; x.mu is held.
func (x *Index) place(id ID, pi uint32, j int) {
	loc := blobLoc{pack: pi, blobIdx: uint32(j)}
	first, ok := x.blobs.get(id, x.packs)
	switch {
	case !ok:
		x.blobs.add(id, loc, x.packs)
	case x.dups == nil:
	case len(x.dups[id]) == 0:
		x.dups[id] = []blobLoc{first, loc}
	default:
		x.dups[id] = append(x.dups[id], loc)
	}
}

// buildDups fills dups from every pack not excluded; x.mu is held for
// writing. The first place of each blob is blobs', which AddPacks and
// SetExcluded set in the same order.
func (x *Index) buildDups() {
	x.dups = map[ID][]blobLoc{}
	for pi, p := range x.packs {
		if x.excluded[p.ID] {
			continue
		}
		for j, b := range p.Blobs {
			loc := blobLoc{pack: uint32(pi), blobIdx: uint32(j)}
			if first, ok := x.blobs.get(b.ID, x.packs); ok && first != loc {
				if len(x.dups[b.ID]) == 0 {
					x.dups[b.ID] = []blobLoc{first}
				}
				x.dups[b.ID] = append(x.dups[b.ID], loc)
			}
		}
	}
}

// AddPacks merges packs into the index. A pack already known is skipped.
func (x *Index) AddPacks(packs []PackEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.blobs.len()
	for i := range packs {
		n += len(packs[i].Blobs)
	}
	x.blobs.grow(n, x.packs) // once, not by doublings on the way
	for i := range packs {
		if _, ok := x.packIdx[packs[i].ID]; ok {
			continue
		}
		p := packs[i]
		pi := uint32(len(x.packs))
		x.packs = append(x.packs, &p)
		x.packIdx[p.ID] = pi
		if x.excluded[p.ID] {
			continue
		}
		for j, b := range p.Blobs {
			x.place(b.ID, pi, j)
			delete(x.pending, b.ID)
		}
	}
}

// SetExcluded replaces the set of excluded packs (see ExcludeMarked) and
// rebuilds the blob map so that a blob stored in both an excluded and an
// included pack is found in the included one.
func (x *Index) SetExcluded(packs map[ID]bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(packs) == 0 && len(x.excluded) == 0 {
		return // nothing was excluded, nothing is: the common case
	}
	x.excluded = packs
	x.blobs.clear()
	if x.dups != nil {
		clear(x.dups)
	}
	for pi, p := range x.packs {
		if packs[p.ID] {
			continue
		}
		for j, b := range p.Blobs {
			x.place(b.ID, uint32(pi), j)
		}
	}
}

// ExcludedSet returns a copy of the excluded packs, for a caller that
// lifts the exclusion for a while (SetExcluded(nil)) and restores it.
func (x *Index) ExcludedSet() map[ID]bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return maps.Clone(x.excluded)
}

// Excluded reports whether a GC mark excludes the pack.
func (x *Index) Excluded(id ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.excluded[id]
}

// Has reports whether a blob is stored (or being stored by this process).
func (x *Index) Has(id ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if _, ok := x.blobs.get(id, x.packs); ok {
		return true
	}
	_, ok := x.pending[id]
	return ok
}

// Reserve marks id as being written and reports true if the caller should
// write it; false means it is already stored or another writer has it.
func (x *Index) Reserve(id ID) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.blobs.get(id, x.packs); ok {
		return false
	}
	if _, ok := x.pending[id]; ok {
		return false
	}
	x.pending[id] = struct{}{}
	return true
}

// ClearPending drops every reservation. A writer that failed or was
// abandoned leaves the blobs of its unfinished packs reserved; the next
// writer on the same Repository must not take them as stored.
func (x *Index) ClearPending() {
	x.mu.Lock()
	clear(x.pending)
	x.mu.Unlock()
}

// Unreserve drops a reservation after a failed write.
func (x *Index) Unreserve(id ID) {
	x.mu.Lock()
	delete(x.pending, id)
	x.mu.Unlock()
}

// Lookup finds a stored blob.
func (x *Index) Lookup(id ID) (Location, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	l, ok := x.blobs.get(id, x.packs)
	if !ok {
		return Location{}, false
	}
	p := x.packs[l.pack]
	return Location{Pack: p, Blob: p.Blobs[l.blobIdx]}, true
}

// Copies returns, for each of ids, every location the index lists for
// it, in index order, other than in the packs of skip, and other than in
// excluded packs (which a prune may be deleting). A blob is stored twice
// when two backups wrote it at the same time, or a backup's pack was
// indexed again by a repair: a reader whose first copy is damaged or
// missing falls back on another. It costs a map lookup per blob asked
// for, and a scan of every pack the first time.
func (x *Index) Copies(ids map[ID]bool, skip map[ID]bool) map[ID][]Location {
	// The write lock: the first call builds dups. Calls are rare (a
	// damaged or unreadable copy), so readers waiting is no cost.
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.dups == nil {
		x.buildDups()
	}
	out := map[ID][]Location{}
	var one [1]blobLoc
	for id, want := range ids {
		if !want {
			continue
		}
		locs := x.dups[id]
		if len(locs) == 0 {
			l, ok := x.blobs.get(id, x.packs)
			if !ok {
				continue
			}
			one[0] = l
			locs = one[:]
		}
		for _, l := range locs {
			p := x.packs[l.pack]
			if !skip[p.ID] {
				out[id] = append(out[id], Location{Pack: p, Blob: p.Blobs[l.blobIdx]})
			}
		}
	}
	return out
}

// Pack returns the index entry of a pack, or nil.
func (x *Index) Pack(id ID) *PackEntry {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if pi, ok := x.packIdx[id]; ok {
		return x.packs[pi]
	}
	return nil
}

// HasPack reports whether an index file lists the pack.
func (x *Index) HasPack(id ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.packIdx[id]
	return ok
}

// Packs returns every known pack, sorted by ID.
func (x *Index) Packs() []*PackEntry {
	x.mu.RLock()
	out := append([]*PackEntry(nil), x.packs...)
	x.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return string(out[i].ID[:]) < string(out[j].ID[:]) })
	return out
}

// Len returns the number of stored blobs.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.blobs.len()
}

// IndexStats sums up what the index lists. A blob held by more than one
// pack (left by an interrupted backup, or before a prune repacks) counts
// once in the per-type figures, with its first location's stored size;
// Duplicates counts the extra copies.
type IndexStats struct {
	Packs      int
	PackBytes  int64
	Data, Tree BlobStats
	Duplicates int
}

// BlobStats counts the unique blobs of one type.
type BlobStats struct {
	Blobs       int
	RawBytes    int64 // plaintext
	StoredBytes int64 // sealed: compressed, with nonce and tag
}

// Stats sums up the index.
func (x *Index) Stats() IndexStats {
	var st IndexStats
	seen := make(map[ID]struct{}, x.Len())
	for _, p := range x.Packs() {
		st.Packs++
		st.PackBytes += int64(p.Size)
		for _, b := range p.Blobs {
			if _, ok := seen[b.ID]; ok {
				st.Duplicates++
				continue
			}
			seen[b.ID] = struct{}{}
			bs := &st.Data
			if b.Type == TreeBlob {
				bs = &st.Tree
			}
			bs.Blobs++
			bs.RawBytes += int64(b.RawLength)
			bs.StoredBytes += int64(b.Length)
		}
	}
	return st
}
