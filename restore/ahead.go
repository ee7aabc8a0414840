package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// Read-ahead of a dump. A dump needs its blobs in one order, the order of
// the archive or the file, and a backup stores them in nearly that order:
// a directory's small files close together in one pack (in the order the
// backup's workers finished them), a large file's chunks in a row. So the
// blobs named next are taken as a window, the window's blobs in each pack
// are sorted and joined into ranges as a restore joins them
// (chunkstore.JoinRanges), and each range is read with one GET, several
// at once, while the dump writes what came before. A tar dump of the
// bench dataset's 16,832 files made one GET per file before.
const (
	aheadFetches = 4        // ranges being read at once
	aheadRange   = 8 << 20  // bytes of a pack one range reads, at most
	aheadBytes   = 32 << 20 // plaintext read ahead and not yet written, at most (the range buffers, aheadFetches of up to aheadRange kept for reuse, come on top)
	aheadWindow  = aheadBytes / 2
	aheadBlobs   = 4096 // blobs named ahead of the one being written, at most
	// aheadEager is the plaintext in a window for which it is sent
	// as soon as the producer pauses; a smaller one waits for more
	// blobs while ranges are in flight (the dump needs their blobs
	// first), and goes when none is.
	aheadEager = 4 << 20
)

// aheadLoader loads data blobs in the order a producer names them.
type aheadLoader struct {
	ctx    context.Context
	cancel context.CancelFunc
	repo   *chunkstore.Repository
	// order holds every blob named, in order, for next; wants hands the
	// same blobs to the grouper. order's capacity bounds the blobs
	// named ahead, budget the bytes.
	order  chan *aheadBlob
	wants  chan *aheadBlob
	budget *semaphore.Weighted
	bufs   chan []byte   // range buffers, reused: nothing points into one after its load
	done   chan struct{} // closed when the producer has returned
	err    error         // the producer's, once done is closed
	loads  sync.WaitGroup
}

// aheadBlob is one blob to load and, once loaded, its plaintext.
type aheadBlob struct {
	id     chunkstore.ID
	loc    chunkstore.Location
	pos    int         // in its window
	weight int64       // of the budget, given back when next takes it
	res    chan loaded // receives exactly one result
}

type loaded struct {
	b   []byte
	err error
}

// loadAhead runs produce on a goroutine of its own, with a context that
// ends when the loader is stopped; it calls want for each blob to load,
// in order, and stops when want returns false (the loader was stopped).
// Its error is walkErr's.
func loadAhead(ctx context.Context, repo *chunkstore.Repository, produce func(ctx context.Context, want func(chunkstore.ID) bool) error) *aheadLoader {
	ctx, cancel := context.WithCancel(ctx)
	l := &aheadLoader{
		ctx: ctx, cancel: cancel, repo: repo,
		order: make(chan *aheadBlob, aheadBlobs), wants: make(chan *aheadBlob, aheadBlobs),
		budget: semaphore.NewWeighted(aheadBytes), bufs: make(chan []byte, aheadFetches), done: make(chan struct{}),
	}
	want := func(id chunkstore.ID) bool {
		ab := &aheadBlob{id: id, res: make(chan loaded, 1)}
		select {
		case l.order <- ab:
		case <-ctx.Done():
			return false
		}
		select {
		case l.wants <- ab:
		case <-ctx.Done():
			return false
		}
		return true
	}
	l.loads.Add(1)
	go l.group()
	go func() {
		defer close(l.done)
		defer close(l.order)
		defer close(l.wants)
		l.err = produce(ctx, want)
	}()
	return l
}

// group forms the windows and starts the loads of their ranges. A window
// is sent when it is full (aheadWindow; the capacity of order bounds its
// blobs, aheadBlobs), when the producer is done, and when the producer
// has named nothing more for now and either the window is worth it
// (aheadEager) or nothing is in flight. So once the dump has written
// every blob loaded, it waits only for the window it needs to be read,
// never for one still being formed: the producer may be blocked until
// the dump writes more (order is full, or DumpTar's entries are).
func (l *aheadLoader) group() {
	defer l.loads.Done()
	var win []*aheadBlob
	var weight int64 // win's plaintext
	indexErr := l.repo.EnsureIndex(l.ctx)
	inflight := 0
	finished := make(chan struct{}, aheadFetches)
	send := func() bool {
		if err := l.budget.Acquire(l.ctx, weight); err != nil {
			return false
		}
		for _, rg := range windowRanges(win) {
			for inflight == aheadFetches {
				select {
				case <-finished:
					inflight--
				case <-l.ctx.Done():
					return false
				}
			}
			inflight++
			l.loads.Add(1)
			go func() {
				defer l.loads.Done()
				l.load(rg)
				finished <- struct{}{}
			}()
		}
		win, weight = nil, 0
		return true
	}
	for {
		var ab *aheadBlob
		var ok bool
		if len(win) > 0 && (inflight == 0 || weight >= aheadEager) {
			select {
			case ab, ok = <-l.wants:
			case <-finished:
				inflight--
				continue
			default:
				if !send() {
					return
				}
				continue
			}
		} else {
			select {
			case ab, ok = <-l.wants:
			case <-finished:
				inflight--
				continue
			case <-l.ctx.Done():
				return
			}
		}
		if !ok { // the producer is done
			if len(win) > 0 {
				send()
			}
			return
		}
		if indexErr != nil {
			ab.res <- loaded{err: indexErr}
			continue
		}
		loc, found := l.repo.Index().Lookup(ab.id)
		if !found || loc.Blob.Type != chunkstore.DataBlob {
			ab.res <- loaded{err: fmt.Errorf("data blob %s is not in the index; run 'lifeboat check'", ab.id.Short())}
			continue
		}
		// Chunks are at most 8 MiB by default and 64 MiB at most
		// (Config.ChunkMax); a heavier blob than the budget would wait
		// for it forever, so it is counted as the whole budget. A blob
		// heavier than a window is a window of its own.
		ab.loc, ab.weight = loc, min(int64(loc.Blob.RawLength), aheadBytes)
		if weight+ab.weight > aheadWindow && !send() {
			return
		}
		ab.pos = len(win)
		win = append(win, ab)
		weight += ab.weight
	}
}

// packRange is one ranged GET of a pack and the blobs it holds, sorted
// by offset.
type packRange struct {
	pack       *chunkstore.PackEntry
	start, end uint32
	blobs      []*aheadBlob
	first      int // the least pos of its blobs: the first the dump writes
}

// windowRanges joins the blobs of a window into ranges of their packs,
// in the order the dump needs them: by the first blob of each that it
// writes.
func windowRanges(win []*aheadBlob) []*packRange {
	var packs []chunkstore.ID
	byPack := map[chunkstore.ID][]*aheadBlob{}
	for _, ab := range win {
		id := ab.loc.Pack.ID
		if _, ok := byPack[id]; !ok {
			packs = append(packs, id)
		}
		byPack[id] = append(byPack[id], ab)
	}
	var out []*packRange
	for _, id := range packs {
		bs := byPack[id]
		slices.SortStableFunc(bs, func(a, b *aheadBlob) int { return cmp.Compare(a.loc.Blob.Offset, b.loc.Blob.Offset) })
		locs := make([]chunkstore.Blob, len(bs))
		for i, ab := range bs {
			locs[i] = ab.loc.Blob
		}
		from := 0
		for _, to := range chunkstore.JoinRanges(locs, aheadRange) {
			rg := &packRange{pack: bs[from].loc.Pack, start: locs[from].Offset, blobs: bs[from:to], first: len(win)}
			for i, b := range locs[from:to] {
				rg.end = max(rg.end, b.Offset+b.Length)
				rg.first = min(rg.first, rg.blobs[i].pos)
			}
			out = append(out, rg)
			from = to
		}
	}
	slices.SortFunc(out, func(a, b *packRange) int { return cmp.Compare(a.first, b.first) })
	return out
}

// load reads rg and hands each of its blobs its plaintext or its error.
// If the range cannot be read, each blob is read on its own, in the
// order the dump needs them, so that only those that cannot fail, and
// the dump can report the first failure without waiting for the others.
//
// Each blob's plaintext gets a buffer of its own (OpenInto), so nothing
// points into the range's buffer once the range is handled, and the next
// load reuses it: a blob stored raw left in it would keep all of it (up
// to aheadRange, gaps included) until the dump writes that blob, beyond
// the budget's count.
func (l *aheadLoader) load(rg *packRange) {
	name := chunkstore.PackName(rg.pack.ID)
	key, err := l.repo.PackKey(rg.pack)
	if err != nil {
		for _, ab := range rg.blobs {
			ab.res <- loaded{err: err}
		}
		return
	}
	var buf []byte
	select {
	case buf = <-l.bufs:
	default:
	}
	data, err := chunkstore.GetInto(l.ctx, l.repo.Store(), name, int64(rg.start), int64(rg.end-rg.start), buf)
	if cap(data) > cap(buf) {
		buf = data[:0]
	}
	defer func() {
		select {
		case l.bufs <- buf:
		default:
		}
	}()
	if err == nil && len(data) != int(rg.end-rg.start) {
		err = fmt.Errorf("read %s: %d bytes at %d, want %d", name, len(data), rg.start, rg.end-rg.start)
	}
	if err != nil {
		if l.ctx.Err() != nil {
			for _, ab := range rg.blobs {
				ab.res <- loaded{err: l.ctx.Err()}
			}
			return
		}
		for _, ab := range slices.SortedFunc(slices.Values(rg.blobs), func(a, b *aheadBlob) int { return cmp.Compare(a.pos, b.pos) }) {
			b, err := l.repo.LoadBlobAnyCopy(l.ctx, chunkstore.DataBlob, ab.id)
			ab.res <- loaded{b, err}
		}
		return
	}
	op := l.repo.Opener(key)
	var prev *chunkstore.Blob // the last blob opened, and what it gave
	var got loaded
	for _, ab := range rg.blobs {
		if prev == nil || ab.loc.Blob != *prev {
			off := ab.loc.Blob.Offset - rg.start
			b, err := op.OpenInto(ab.loc.Blob, data[off:off+ab.loc.Blob.Length], nil)
			if err != nil {
				// Damaged here: LoadBlobAnyCopy reads it again and, failing
				// that, another copy if the index lists one.
				b, err = l.repo.LoadBlobAnyCopy(l.ctx, chunkstore.DataBlob, ab.id)
			}
			prev, got = &ab.loc.Blob, loaded{b, err}
		}
		// else the same blob again (a file stored twice in the
		// window), which a compressed one's decryption in place
		// has overwritten: it gets the same plaintext.
		ab.res <- got
	}
}

// next returns the next blob's plaintext.
func (l *aheadLoader) next() ([]byte, error) {
	ab, ok := <-l.order
	if !ok {
		<-l.done
		if l.err != nil {
			return nil, l.err
		}
		if err := l.ctx.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("the snapshot's trees list more chunks than were loaded")
	}
	var res loaded
	select {
	case res = <-ab.res:
	case <-l.ctx.Done():
		return nil, l.ctx.Err()
	}
	l.budget.Release(ab.weight)
	return res.b, res.err
}

// walkErr waits for the producer and returns its error.
func (l *aheadLoader) walkErr() error {
	<-l.done
	return l.err
}

// stop cancels the loads still in flight and waits for them and for the
// producer.
func (l *aheadLoader) stop() {
	l.cancel()
	<-l.done
	l.loads.Wait()
}
