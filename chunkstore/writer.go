package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"golang.org/x/sync/errgroup"
)

// WriterOptions tune a Writer.
type WriterOptions struct {
	Uploaders int // concurrent pack uploads; 0 = 2
	// IndexEvery writes an index file after this many uploaded packs, so
	// an interrupted backup leaves indexed, reusable packs; 0 = 16.
	IndexEvery int
	// OnPackUploaded is called after each pack upload (for progress and tests).
	OnPackUploaded func(id ID, size int)
	// RecheckedAtCommit says the caller checks the generation of the
	// recipients again before it commits what the writer stored
	// (CheckGeneration), as a backup and a copy do. NewWriter then
	// skips its own check, a LIST of keys/, when one passed on this
	// Repository less than 10 s before (AdoptOrphans' at the start of
	// the backup); every other writer checks.
	RecheckedAtCommit bool
	// IndexBy, if set, is asked before each index file is written for
	// the time by which that write must be done, or an error if the
	// packs it would name may be gone: a backup whose session lapsed
	// (Session.CommitBy) may have been taken for dead by a prune, which
	// then deletes its packs (unindexed, in no snapshot). An index file
	// naming them would have later backups deduplicate against data
	// that no longer exists, so none is written and the writer fails.
	IndexBy func() (time.Time, error)
}

// WriterStats counts what a Writer stored.
type WriterStats struct {
	BlobsAdded  int64 // new blobs
	RawAdded    int64 // plaintext bytes of new blobs
	StoredAdded int64 // bytes uploaded in packs (sealed, compressed, with headers)
	Packs       int64
	IndexFiles  int64
}

// Writer adds blobs to a repository. SaveBlob may be called from many
// goroutines. Compression runs in the callers, in parallel; each blob
// type has one open pack that a caller holds only while appending (AES-GCM
// sealing of a chunk takes well under a millisecond), so trees and data
// never share a pack and memory stays bounded: one open pack per type,
// one being handed over and Uploaders in flight, all in reused buffers. After every
// IndexEvery packs and at Flush the uploaded packs are recorded in a new
// index file. Nothing a Writer stores is reachable until a snapshot
// manifest that references it is saved after Flush.
type Writer struct {
	r    *Repository
	opts WriterOptions
	rs   []age.Recipient
	gen  uint32 // of rs: the recipients' generation

	g       *errgroup.Group
	gctx    context.Context
	uploads chan *packBuilder

	open [2]chan *packBuilder // the open pack of each blob type, when not held
	mu   sync.Mutex
	made [2]bool           // whether the open pack of a type exists (held or in open)
	free *freeList[[]byte] // reusable data pack buffers
	// closed is closed (and replaced) whenever an open pack is handed to
	// the uploaders, waking callers waiting in take to start the next one.
	closed chan struct{}

	idxMu     sync.Mutex
	unindexed []PackEntry

	blobsAdded, rawAdded, storedAdded, packs, indexFiles atomic.Int64
}

// NewWriter starts a writer. Call Flush to commit what it stored, or let
// ctx be cancelled to abandon it.
func (r *Repository) NewWriter(ctx context.Context, opts WriterOptions) (*Writer, error) {
	if opts.Uploaders <= 0 {
		opts.Uploaders = 2
	}
	if opts.IndexEvery <= 0 {
		opts.IndexEvery = 16
	}
	check := r.checkGeneration
	if opts.RecheckedAtCommit {
		check = r.checkGenerationRecent
	}
	if err := check(ctx); err != nil {
		return nil, err
	}
	rs, err := r.secrets.ParsedRecipients()
	if err != nil {
		return nil, err
	}
	// Full packs are handed to the uploaders directly (an unbuffered
	// channel): data packs in memory are then at most one per uploader,
	// one waiting to be handed over and the open one.
	w := &Writer{r: r, opts: opts, rs: rs, gen: r.secrets.Generation, uploads: make(chan *packBuilder), closed: make(chan struct{})}
	w.free = newFreeList(opts.Uploaders+2, func() []byte { return make([]byte, 0, r.config.PackSize+(1<<20)) })
	for t := range w.open {
		w.open[t] = make(chan *packBuilder, 1)
	}
	w.g, w.gctx = errgroup.WithContext(ctx)
	for i := 0; i < opts.Uploaders; i++ {
		w.g.Go(w.uploader)
	}
	return w, nil
}

// SaveBlob stores data unless a blob with its keyed ID already exists.
// It returns the ID and the number of sealed bytes added (0 for a
// duplicate).
func (w *Writer) SaveBlob(ctx context.Context, t BlobType, data []byte) (ID, int, error) {
	id := w.r.hasher.SumType(t, data)
	n, err := w.SaveBlobID(ctx, t, id, data)
	return id, n, err
}

// payloads are reusable buffers for compressed blobs.
var payloads = newFreeList(runtime.GOMAXPROCS(0), func() []byte { return nil })

// SaveBlobID is SaveBlob for a caller that has already computed the ID.
func (w *Writer) SaveBlobID(ctx context.Context, t BlobType, id ID, data []byte) (int, error) {
	if err := w.gctx.Err(); err != nil {
		return 0, w.failure()
	}
	if !w.r.index.Reserve(id) {
		return 0, nil
	}
	return w.SaveReserved(ctx, t, id, data)
}

// SaveReserved stores a blob whose ID the caller has reserved with
// Index().Reserve (and so knows to be new). On error the reservation is
// dropped.
func (w *Writer) SaveReserved(ctx context.Context, t BlobType, id ID, data []byte) (int, error) {
	if t > TreeBlob {
		w.r.index.Unreserve(id)
		return 0, fmt.Errorf("save blob %s: unknown blob type %d", id.Short(), t)
	}
	if len(data) > maxMetaPlaintext {
		// Readers take a larger raw length for a corrupt index entry.
		w.r.index.Unreserve(id)
		return 0, Permanent(fmt.Errorf("save %s blob %s: %d bytes, more than any reader accepts (%d): a directory with too many entries?", t, id.Short(), len(data), maxMetaPlaintext))
	}
	if err := w.gctx.Err(); err != nil {
		w.r.index.Unreserve(id)
		return 0, w.failure()
	}
	enc, payload, zbuf := encodeBlobPayload(payloads.get(), data)
	defer payloads.put(zbuf[:0])
	p, err := w.take(ctx, t)
	if err != nil {
		w.r.index.Unreserve(id)
		return 0, err
	}
	sealed := len(payload) + BlobOverhead
	if len(p.blobs) > 0 && len(p.buf)+sealed > w.r.config.PackSize {
		// Close the pack before it would outgrow the pack size.
		if err := w.enqueue(ctx, t, p); err != nil {
			w.r.index.Unreserve(id)
			return 0, err
		}
		if p, err = w.take(ctx, t); err != nil {
			w.r.index.Unreserve(id)
			return 0, err
		}
	}
	p.add(t, id, enc, payload, len(data))
	w.blobsAdded.Add(1)
	w.rawAdded.Add(int64(len(data)))
	if len(p.buf) >= w.r.config.PackSize-w.r.config.PackSize/32 {
		if err := w.enqueue(ctx, t, p); err != nil {
			return 0, err
		}
	} else {
		w.open[t] <- p
	}
	return sealed, nil
}

// take returns the open pack of type t, waiting while another caller
// holds it, or starts a new one when there is none (the previous one was
// handed to the uploaders).
func (w *Writer) take(ctx context.Context, t BlobType) (*packBuilder, error) {
	for {
		select {
		case p := <-w.open[t]:
			return p, nil
		default:
		}
		w.mu.Lock()
		if !w.made[t] {
			w.made[t] = true
			w.mu.Unlock()
			var buf []byte // tree packs are small: grown as needed
			if t == DataBlob {
				buf = w.free.get()
			}
			p, err := newPackBuilder(w.rs, buf)
			if err != nil {
				w.packClosed(t)
			}
			return p, err
		}
		closed := w.closed
		w.mu.Unlock()
		select {
		case p := <-w.open[t]:
			return p, nil
		case <-closed:
			// The holder closed the pack instead of putting it back:
			// look again, and start the next one if nobody has.
		case <-w.gctx.Done():
			return nil, w.failure()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// packClosed records that type t has no open pack any more and wakes the
// callers waiting for one.
func (w *Writer) packClosed(t BlobType) {
	w.mu.Lock()
	w.made[t] = false
	close(w.closed)
	w.closed = make(chan struct{})
	w.mu.Unlock()
}

// enqueue hands a full pack of type t to the uploaders; the next take
// starts a new pack.
func (w *Writer) enqueue(ctx context.Context, t BlobType, p *packBuilder) error {
	w.packClosed(t)
	select {
	case w.uploads <- p:
		return nil
	case <-w.gctx.Done():
		return w.failure()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failure returns the error that stopped the upload group.
func (w *Writer) failure() error {
	if err := w.g.Wait(); err != nil {
		return err
	}
	return context.Canceled
}

func (w *Writer) uploader() error {
	for {
		select {
		case p, ok := <-w.uploads:
			if !ok {
				return nil
			}
			if err := w.upload(w.gctx, p); err != nil {
				return err
			}
		case <-w.gctx.Done():
			return w.gctx.Err()
		}
	}
}

func (w *Writer) upload(ctx context.Context, p *packBuilder) error {
	id := p.finish(&w.r.secrets.MetaKey)
	name := PackName(id)
	if err := w.r.store.Put(ctx, name, p.buf); err != nil {
		return fmt.Errorf("upload pack %s: %w", name, err)
	}
	size := len(p.buf)
	w.storedAdded.Add(int64(size))
	w.packs.Add(1)
	entry := PackEntry{ID: id, Size: uint32(size), WrappedKey: p.wrappedKey, Blobs: p.blobs, Gen: w.gen}
	if cap(p.buf) >= w.r.config.PackSize {
		w.free.put(p.buf[:0])
	}
	p.buf = nil
	w.r.index.AddPacks([]PackEntry{entry})
	if w.opts.OnPackUploaded != nil {
		w.opts.OnPackUploaded(id, size)
	}
	w.idxMu.Lock()
	w.unindexed = append(w.unindexed, entry)
	var batch []PackEntry
	if len(w.unindexed) >= w.opts.IndexEvery {
		batch, w.unindexed = w.unindexed, nil
	}
	w.idxMu.Unlock()
	if batch != nil {
		return w.writeIndex(ctx, batch)
	}
	return nil
}

func (w *Writer) writeIndex(ctx context.Context, packs []PackEntry) error {
	if len(packs) == 0 {
		return nil
	}
	if w.opts.IndexBy != nil {
		by, err := w.opts.IndexBy()
		if err != nil {
			return fmt.Errorf("not indexing %d uploaded packs: %w", len(packs), err)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, by)
		defer cancel()
	}
	if _, err := w.r.SaveMeta(ctx, KindIndex, EncodeIndex(packs)); err != nil {
		return err
	}
	w.indexFiles.Add(1)
	return nil
}

// Flush uploads every open pack and writes the index for all uploaded
// packs. No SaveBlob may run concurrently or afterwards.
func (w *Writer) Flush(ctx context.Context) error {
	var err error
	for t := range w.open {
		select {
		case p := <-w.open[t]:
			if len(p.blobs) > 0 && err == nil {
				err = w.enqueue(ctx, BlobType(t), p)
			}
		default:
		}
	}
	close(w.uploads)
	if werr := w.g.Wait(); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	w.idxMu.Lock()
	batch := w.unindexed
	w.unindexed = nil
	w.idxMu.Unlock()
	return w.writeIndex(ctx, batch)
}

// Stats returns what the writer has stored so far.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		BlobsAdded: w.blobsAdded.Load(), RawAdded: w.rawAdded.Load(), StoredAdded: w.storedAdded.Load(),
		Packs: w.packs.Load(), IndexFiles: w.indexFiles.Load(),
	}
}

// AdoptOrphans finds packs on storage that no index lists — left by a
// backup that was interrupted after uploading them — verifies each one
// (hash and trailer) and records it in a new index file, so their blobs
// are reused instead of uploaded again. A damaged orphan is skipped and
// logged. Call after LoadIndex. indexBy, if not nil, is asked before the
// index file is written, as WriterOptions.IndexBy: a backup paused
// between reading the orphans and indexing them, past its session's
// staleness, may find them deleted by a prune.
func (r *Repository) AdoptOrphans(ctx context.Context, indexBy func() (time.Time, error)) (adopted int, err error) {
	// A stale credential is refused here, as NewWriter would refuse
	// it: past this check, its generation is the repository's.
	if err := r.checkGeneration(ctx); err != nil {
		return 0, err
	}
	if r.secrets.Generation > 0 {
		// Which recipients an orphan is wrapped to is not recorded in
		// it: after a change of recipients it may be the old ones only.
		// Deduplicating against it could leave a new snapshot's data to
		// removed identities; 'repair index' indexes orphans with
		// generation GenUnknown instead.
		return 0, nil
	}
	entries, _, err := r.UnindexedPacks(ctx)
	if err != nil || len(entries) == 0 {
		return 0, err
	}
	if indexBy != nil {
		by, err := indexBy()
		if err != nil {
			return 0, fmt.Errorf("not adopting %d packs left by an interrupted backup: %w", len(entries), err)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, by)
		defer cancel()
	}
	if _, err := r.SaveMeta(ctx, KindIndex, EncodeIndex(entries)); err != nil {
		return 0, fmt.Errorf("index adopted packs: %w", err)
	}
	r.index.AddPacks(entries)
	r.log.Info("reused packs left by an interrupted backup", "packs", len(entries))
	return len(entries), nil
}

// IndexUnindexed adds packs that no readable index file lists to the
// in-memory index only, writing nothing. Restore uses it to reach data
// whose index file was lost or damaged. It returns how many packs it added.
func (r *Repository) IndexUnindexed(ctx context.Context) (int, error) {
	entries, _, err := r.UnindexedPacks(ctx)
	if err != nil {
		return 0, err
	}
	r.index.AddPacks(entries)
	return len(entries), nil
}

// ListPacks returns every pack object on storage with its size.
func (r *Repository) ListPacks(ctx context.Context) (map[ID]int64, error) {
	present := map[ID]int64{}
	err := r.store.List(ctx, DataPrefix, func(oi ObjectInfo) error {
		if id, ok := ParsePackName(oi.Name); ok {
			present[id] = oi.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs in %s: %w", r.store.Location(), err)
	}
	return present, nil
}

// UnindexedPacks reads and verifies every pack on storage missing from the
// index (see ReadUnindexed).
func (r *Repository) UnindexedPacks(ctx context.Context) (good []PackEntry, damaged []string, err error) {
	present, err := r.ListPacks(ctx)
	if err != nil {
		return nil, nil, err
	}
	return r.ReadUnindexed(ctx, present)
}

// ReadUnindexed reads and verifies the packs of present (a ListPacks
// result) that the index does not list and no GC mark excludes. It returns
// the readable ones as index entries and the names of the damaged ones.
func (r *Repository) ReadUnindexed(ctx context.Context, present map[ID]int64) (good []PackEntry, damaged []string, err error) {
	return r.readUnindexed(ctx, present, false)
}

// ReadEveryUnindexed is ReadUnindexed including the packs GC marks name.
func (r *Repository) ReadEveryUnindexed(ctx context.Context, present map[ID]int64) (good []PackEntry, damaged []string, err error) {
	return r.readUnindexed(ctx, present, true)
}

func (r *Repository) readUnindexed(ctx context.Context, present map[ID]int64, marked bool) (good []PackEntry, damaged []string, err error) {
	var orphans []ObjectInfo
	for id, size := range present {
		if !r.index.HasPack(id) && (marked || !r.index.Excluded(id)) {
			orphans = append(orphans, ObjectInfo{Name: PackName(id), Size: size})
		}
	}
	var mu sync.Mutex
	var entries []PackEntry
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, oi := range orphans {
		g.Go(func() error {
			id, _ := ParsePackName(oi.Name)
			b, err := r.store.Get(gctx, oi.Name, 0, -1)
			if errors.Is(err, ErrNotFound) {
				return nil // removed meanwhile
			}
			if err != nil {
				return fmt.Errorf("read unindexed pack %s: %w", oi.Name, err)
			}
			if Hash(b) != id {
				r.log.Warn("unindexed pack is damaged; not using it", "pack", oi.Name)
				mu.Lock()
				damaged = append(damaged, oi.Name)
				mu.Unlock()
				return nil
			}
			info, err := ParsePack(b, &r.secrets.MetaKey)
			if errors.Is(err, ErrNewerFormat) {
				// Not garbage: a newer lifeboat's, which this one
				// can neither index nor let a prune delete.
				return fmt.Errorf("unindexed pack %s: %w", oi.Name, err)
			}
			if err != nil {
				r.log.Warn("unindexed pack is unreadable; not using it", "pack", oi.Name, "err", err)
				mu.Lock()
				damaged = append(damaged, oi.Name)
				mu.Unlock()
				return nil
			}
			mu.Lock()
			entries = append(entries, PackEntry{ID: id, Size: uint32(len(b)), WrappedKey: info.WrappedKey, Blobs: info.Blobs, Gen: r.unindexedGen()})
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return string(entries[i].ID[:]) < string(entries[j].ID[:]) })
	sort.Strings(damaged)
	return entries, damaged, nil
}
