package chunkstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"
)

// ErrPackMissing marks a check problem: the index lists a pack the store
// does not hold ('lifeboat repair index' drops such entries).
var ErrPackMissing = errors.New("pack is missing")

// CheckOptions select how deep Check goes.
type CheckOptions struct {
	// ReadData downloads packs and verifies their hash, structure and
	// (with an identity) every blob's keyed ID. ReadDataFraction in (0,1)
	// limits that to a random subset of packs; 0 or 1 means all.
	ReadData         bool
	ReadDataFraction float64
	// ReadDataGroup n of ReadDataGroups t (1 <= n <= t), if set instead,
	// limits the read to the n-th of t fixed groups of packs (by pack
	// ID), so that t checks with n = 1..t read every pack once.
	ReadDataGroup, ReadDataGroups int
	// Progress, if set, is called after each pack is read.
	Progress func(done, total int)
}

// Problem is one defect found by a check.
type Problem struct {
	Object string // object name or snapshot path the problem concerns
	Err    error
}

func (p Problem) Error() string { return fmt.Sprintf("%s: %v", p.Object, p.Err) }

// ErrUnexpectedObject marks a check problem: an object whose name
// lifeboat never writes, which every command ignores.
var ErrUnexpectedObject = errors.New("unexpected object")

// strayProblem is the problem of an object under prefix whose name
// lifeboat never writes.
func strayProblem(name, prefix string) Problem {
	return Problem{Object: name, Err: fmt.Errorf("%w under %s: lifeboat does not write such names and every command ignores it; find out where it came from, then move it out of the repository", ErrUnexpectedObject, prefix)}
}

// CheckReport is the outcome of Check.
type CheckReport struct {
	Packs, IndexFiles, Blobs int
	UnindexedPacks           int // left by interrupted backups; harmless
	PacksRead                int
	BytesRead                int64
	BlobsVerified            int // blobs decrypted and their keyed ID recomputed
	Problems                 []Problem
}

// Check verifies the repository's structure without any lock, after
// LoadIndex: every index file decrypted and parsed, every indexed pack
// exists with the recorded size, and, with ReadData, pack contents: the
// hash matches the name, the header and trailer parse, the trailer agrees
// with the index and, with an identity, every blob authenticates and
// hashes to its ID. Snapshots are checked by snapshot.Check.
func (r *Repository) Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	rep := &CheckReport{IndexFiles: r.indexFiles, Blobs: r.index.Len()}
	rep.Problems = append(rep.Problems, r.indexProblems...)
	intact, bad, older, err := r.checkKeys(ctx)
	if err != nil {
		return nil, err
	}
	noIntact := -1 // the generation CheckEnvelopes found no intact envelope of
	if intact != nil {
		rep.Problems = append(rep.Problems, Problem{Object: KeysPrefix, Err: intact})
		if ni := (*noIntactError)(nil); errors.As(intact, &ni) {
			noIntact = int(ni.gen)
		}
	}
	for _, e := range bad {
		if int(e.Gen) == noIntact {
			continue // named above, with the advice to put keys/ back
		}
		rep.Problems = append(rep.Problems, Problem{Object: e.Name, Err: fmt.Errorf("%w: %v; every lifeboat ignores it, but 'lifeboat key' did not write it so: it was damaged, or planted by someone with write access to keys/ (look at the bucket's access log); 'lifeboat key cleanup' removes it", ErrCorrupt, e.Err)})
	}
	for _, e := range older {
		rep.Problems = append(rep.Problems, Problem{Object: e.Name, Err: fmt.Errorf("key envelope of generation %d, older than the current recipients': a change of recipients ('lifeboat key add/remove') was interrupted before removing it, and an identity that change removed can still open the repository with it; 'lifeboat key cleanup' (with an identity of the current recipients) removes it", e.Gen)})
	}
	// Objects lifeboat does not name so are ignored by every command
	// (each logs a warning); check makes them problems, as under data/,
	// so that they are looked at rather than scrolled past.
	for _, c := range []struct {
		prefix string
		ours   func(string) bool
	}{
		{IndexPrefix, func(n string) bool { _, err := ParseID(n[len(IndexPrefix):]); return err == nil }},
		{SnapshotsPrefix, func(n string) bool { _, err := ParseID(n[len(SnapshotsPrefix):]); return err == nil }},
	} {
		err := r.store.List(ctx, c.prefix, func(oi ObjectInfo) error {
			if !c.ours(oi.Name) {
				rep.Problems = append(rep.Problems, strayProblem(oi.Name, c.prefix))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list %s in %s: %w", c.prefix, r.store.Location(), err)
		}
	}
	// keys/ was listed by checkKeys, above.
	r.strayMu.Lock()
	rep.Problems = append(rep.Problems, r.strayKeys...)
	r.strayMu.Unlock()
	sizes := map[ID]int64{}
	err = r.store.List(ctx, DataPrefix, func(oi ObjectInfo) error {
		id, ok := ParsePackName(oi.Name)
		if !ok {
			rep.Problems = append(rep.Problems, strayProblem(oi.Name, DataPrefix))
			return nil
		}
		sizes[id] = oi.Size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs in %s: %w", r.store.Location(), err)
	}
	packs := r.index.Packs()
	rep.Packs = len(packs)
	var present []*PackEntry
	for _, p := range packs {
		size, ok := sizes[p.ID]
		switch {
		case !ok:
			rep.Problems = append(rep.Problems, Problem{Object: PackName(p.ID), Err: fmt.Errorf("%w (listed in the index with %d blobs)", ErrPackMissing, len(p.Blobs))})
		case size != int64(p.Size):
			rep.Problems = append(rep.Problems, Problem{Object: PackName(p.ID), Err: fmt.Errorf("%w: pack has %d bytes, index says %d (truncated?)", ErrCorrupt, size, p.Size)})
		default:
			present = append(present, p)
		}
	}
	for id := range sizes {
		if !r.index.HasPack(id) {
			rep.UnindexedPacks++
		}
	}
	if !opts.ReadData {
		return rep, nil
	}
	sel := present
	if opts.ReadDataGroups > 0 {
		sel = nil
		for _, p := range present {
			if PackGroup(p.ID, opts.ReadDataGroups) == opts.ReadDataGroup {
				sel = append(sel, p)
			}
		}
	} else if opts.ReadDataFraction > 0 && opts.ReadDataFraction < 1 {
		n := int(float64(len(present))*opts.ReadDataFraction + 0.999999)
		sel = append([]*PackEntry(nil), present...)
		rand.Shuffle(len(sel), func(i, j int) { sel[i], sel[j] = sel[j], sel[i] })
		sel = sel[:n]
	}
	var mu sync.Mutex
	const readers = 4
	// Pack and plaintext buffers, reused: a fresh 16 MiB buffer per
	// pack kept the heap (and the peak RSS) at twice what is live.
	bufs := make(chan *checkBufs, readers)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readers)
	for _, p := range sel {
		g.Go(func() error {
			var cb *checkBufs
			select {
			case cb = <-bufs:
			default:
				cb = &checkBufs{}
			}
			probs, verified, err := r.checkPack(gctx, p, cb)
			select {
			case bufs <- cb:
			default:
			}
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			rep.PacksRead++
			rep.BytesRead += int64(p.Size)
			rep.BlobsVerified += verified
			rep.Problems = append(rep.Problems, probs...)
			if opts.Progress != nil {
				opts.Progress(rep.PacksRead, len(sel))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Slice(rep.Problems, func(i, j int) bool { return rep.Problems[i].Object < rep.Problems[j].Object })
	return rep, nil
}

// PackGroup is the group, 1 to groups, that pack id falls in for
// CheckOptions.ReadDataGroup: pack IDs are SHA-256 hashes, so the groups
// are about even.
func PackGroup(id ID, groups int) int {
	return int(binary.BigEndian.Uint32(id[:4])%uint32(groups)) + 1
}

// checkBufs are one pack reader's buffers: the pack, and one blob's
// plaintext.
type checkBufs struct{ pack, plain []byte }

// checkPack reads one pack in full into cb. Read failures other than
// cancellation and an unreachable store become problems, so one bad
// pack does not stop the check.
func (r *Repository) checkPack(ctx context.Context, p *PackEntry, cb *checkBufs) ([]Problem, int, error) {
	name := PackName(p.ID)
	prob := func(err error) ([]Problem, int, error) { return []Problem{{Object: name, Err: err}}, 0, nil }
	b, err := GetInto(ctx, r.store, name, 0, -1, cb.pack)
	if cap(b) > cap(cb.pack) {
		cb.pack = b[:0]
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		if errors.Is(err, ErrUnreachable) {
			// Not a problem of this pack: every other read would
			// fail the same way, so the check stops here.
			return nil, 0, err // names the pack
		}
		return prob(fmt.Errorf("read: %w", err))
	}
	if Hash(b) != p.ID {
		return prob(fmt.Errorf("%w: content does not match its name (SHA-256 %s)", ErrCorrupt, Hash(b).Short()))
	}
	info, err := ParsePack(b, &r.secrets.MetaKey)
	if err != nil {
		return prob(err)
	}
	if len(info.Blobs) != len(p.Blobs) {
		return prob(fmt.Errorf("%w: pack holds %d blobs, index says %d", ErrCorrupt, len(info.Blobs), len(p.Blobs)))
	}
	for i := range info.Blobs {
		if info.Blobs[i] != p.Blobs[i] {
			return prob(fmt.Errorf("%w: blob %d differs between pack trailer and index", ErrCorrupt, i))
		}
	}
	// Restores unwrap the index's copy of the pack's key.
	if !bytes.Equal(info.WrappedKey, p.WrappedKey) {
		return prob(fmt.Errorf("%w: the pack's wrapped data key differs from the index's copy, which restores unwrap: an index file lists the pack wrong", ErrCorrupt))
	}
	if !r.CanRead() {
		return nil, 0, nil
	}
	key, err := r.PackKey(p)
	if err != nil {
		return prob(err)
	}
	// Room to decode the largest compressed blob (stored shorter than
	// its plaintext; one stored raw is decrypted in place) without
	// allocating, up to the default chunk size (the index's lengths are
	// not trusted with an allocation; a larger blob is decoded into a
	// buffer of its own).
	need := 0
	for _, bl := range p.Blobs {
		if bl.Length < bl.RawLength {
			need = max(need, min(int(bl.RawLength), DefaultChunkMax)+DecodeSlack)
		}
	}
	if cap(cb.plain) < need {
		cb.plain = make([]byte, 0, need)
	}
	var probs []Problem
	verified := 0
	op := r.Opener(key)
	for _, bl := range p.Blobs {
		// The pack's hash and trailer are checked: its blobs may be
		// decrypted where they lie.
		if _, err := op.OpenInPlace(bl, b[bl.Offset:bl.Offset+bl.Length], cb.plain); err != nil {
			probs = append(probs, Problem{Object: name, Err: err})
			continue
		}
		verified++
	}
	return probs, verified, nil
}
