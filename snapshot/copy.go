package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// ErrCopyChunking is returned by Copy when the two repositories name
// blobs differently, so no blob of one could be used by the other.
var ErrCopyChunking = errors.New("the repositories do not share a chunk-ID key")

// ErrCopySameRepository is returned by Copy when source and destination
// are one repository.
var ErrCopySameRepository = errors.New("source and destination are the same repository")

// CopyOptions tune Copy.
type CopyOptions struct {
	// Host is this machine's name, recorded in the destination's backup
	// session; empty means os.Hostname.
	Host           string
	ProgramVersion string
	Sessions       chunkstore.SessionTiming
	Writer         chunkstore.WriterOptions
	// Fetchers is the number of source pack ranges read at once; 0 = 4.
	Fetchers int
	Logger   *slog.Logger
	// Done, if set, is called after each snapshot with its result.
	Done func(CopyResult)
	// Progress, if set, counts the plaintext bytes of data blobs read
	// from the source.
	Progress *atomic.Int64
}

// CopyResult is what Copy did with one snapshot.
type CopyResult struct {
	Source *Snapshot
	// ID is the copy's ID in the destination: the new one, or the one
	// already there when Existing.
	ID       chunkstore.ID
	Existing bool
	// Trees and Blobs are the trees and data blobs the copy added to the
	// destination, BytesAdded what they take stored there. Bytes is the
	// plaintext of the data blobs read from the source: those the
	// destination lacked.
	Trees, Blobs      int64
	Bytes, BytesAdded int64
	// Err says why the snapshot was not copied: source data that is
	// missing or damaged. No manifest was saved for it; what it did
	// upload is indexed and reused by the next copy.
	Err error
}

// maxCopyRange caps one ranged read of a source pack, and so what one
// fetcher holds: a default pack is read whole when all of it is needed.
const maxCopyRange = 16 << 20

// Copy copies snapshots from src, opened with an identity, into dst,
// opened with an identity or a writer key. The repositories must share
// their chunk-ID key (a destination created with Init's Chunking from
// the source): a blob then has one ID in both, every tree is the same
// bytes, and only the blobs dst lacks are read. Each one is
// authenticated and its keyed ID checked in src, then sealed anew for
// dst's recipients; dst never needs src's identity, and src's recipients
// cannot read dst.
//
// A snapshot dst already holds a copy of (a manifest with the same
// origin, CopyOrigin) is not copied again. Snapshots are copied oldest
// first, each committed as Backup commits: packs, then index, then a
// manifest that keeps the source's time, host, paths, tags and summary
// and records the origin. A snapshot whose source data is missing or
// damaged is reported in its CopyResult and the others are copied; the
// error is non-nil only when copying cannot go on (dst unwritable,
// src unreachable, ctx cancelled). Results come in the order copied.
func Copy(ctx context.Context, src, dst *chunkstore.Repository, snaps []*Snapshot, opts CopyOptions) ([]CopyResult, error) {
	if !src.CanRead() {
		return nil, fmt.Errorf("copy: the source needs its identity: %w", chunkstore.ErrNoIdentity)
	}
	if src.Config().ID == dst.Config().ID {
		return nil, ErrCopySameRepository
	}
	if !chunkstore.SameBlobIDs(src, dst) {
		return nil, ErrCopyChunking
	}
	opts.Logger = orDiscard(opts.Logger)
	opts.Sessions = opts.Sessions.OrDefault()
	if opts.Fetchers <= 0 {
		opts.Fetchers = 4
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	if err := src.LoadIndex(ctx); err != nil {
		return nil, fmt.Errorf("copy: source index: %w", err)
	}
	sess, _, err := beginWrite(ctx, dst, chunkstore.SessionInfo{
		Host: opts.Host, PID: os.Getpid(), Started: time.Now(), Program: opts.ProgramVersion,
	}, opts.Sessions, opts.Logger)
	if err != nil {
		return nil, err
	}
	defer sess.end(ctx)
	// The manifests are listed once the session holds: a copy committed
	// since by another process may still be copied again, never missed.
	have, bad, err := List(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("copy: list the destination's snapshots: %w", err)
	}
	for _, e := range bad {
		opts.Logger.Warn("destination snapshot unreadable; a copy it may be is made again", "err", e)
	}
	copies := map[CopyOrigin]chunkstore.ID{}
	for _, s := range have {
		copies[s.Origin(dst.Config().ID)] = s.ID
	}
	snaps = slices.Clone(snaps)
	slices.SortStableFunc(snaps, func(a, b *Snapshot) int { return a.Time.Compare(b.Time) })
	c := &copier{src: src, dst: dst, opts: opts, done: map[chunkstore.ID]bool{}}
	var out []CopyResult
	for _, s := range snaps {
		origin := s.Origin(src.Config().ID)
		res := CopyResult{Source: s}
		if id, ok := copies[origin]; ok {
			res.ID, res.Existing = id, true
		} else {
			if err := c.copy(ctx, s, &res, sess); err != nil {
				return out, err
			}
			if res.Err == nil {
				copies[origin] = res.ID
			}
		}
		out = append(out, res)
		if opts.Done != nil {
			opts.Done(res)
		}
	}
	return out, nil
}

// copier copies the snapshots of one Copy.
type copier struct {
	src, dst *chunkstore.Repository
	opts     CopyOptions
	// done holds the trees of snapshots copied and committed in this
	// run: everything below them is in dst. (A tree dst merely has is
	// not enough: an interrupted copy or backup may have stored it
	// without all of its data.)
	done map[chunkstore.ID]bool
}

// srcDamage marks a source read that failed because of the source's
// data (missing from the index, damaged, absent from storage), which
// fails one snapshot, not the copy.
type srcDamage struct{ err error }

func (e *srcDamage) Error() string { return e.err.Error() }
func (e *srcDamage) Unwrap() error { return e.err }

func damaged(err error) bool {
	return errors.Is(err, chunkstore.ErrCorrupt) || errors.Is(err, chunkstore.ErrNotFound) ||
		errors.Is(err, ErrNotIndexed) || errors.Is(err, ErrInvalidTree)
}

// copyBatch is how many data blobs a walk gathers before it has them
// read: the list of blobs to read stays bounded however much is new,
// and data moves while the walk goes on.
const copyBatch = 1 << 16

// copy copies snapshot s into res. It returns an error only when the
// whole copy must stop; a damaged source fails just s, in res.Err.
func (c *copier) copy(ctx context.Context, s *Snapshot, res *CopyResult, sess *writeSession) error {
	// Blobs an earlier snapshot of this run reserved and never stored
	// (it failed) must not be taken for stored.
	c.dst.Index().ClearPending()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wopts := c.opts.Writer
	wopts.RecheckedAtCommit = true // writeSession.commit
	wopts.IndexBy = sess.indexBy(ctx)
	w, err := c.dst.NewWriter(wctx, wopts)
	if err != nil {
		return fmt.Errorf("destination %s: %w", c.dst.Store().Location(), err)
	}
	trees, err := c.walk(ctx, w, s, res)
	var dmg *srcDamage
	switch {
	case errors.As(err, &dmg):
		res.Err = dmg.err
	case err != nil:
		return fmt.Errorf("copy snapshot %s: %w", s.ID.Short(), err)
	}
	// Flush even after damage: what was uploaded is then indexed, and
	// the next copy need not read it again.
	if err := w.Flush(ctx); err != nil {
		return fmt.Errorf("copy snapshot %s: destination %s: %w", s.ID.Short(), c.dst.Store().Location(), err)
	}
	st := w.Stats()
	res.BytesAdded = st.StoredAdded
	if res.Err != nil {
		return nil
	}
	m := s.Manifest
	origin := s.Origin(c.src.Config().ID)
	m.CopiedFrom = &origin
	m.Original = nil // a snapshot of the source, meaningless here
	id, err := sess.commit(ctx, c.dst, m, nil)
	if err != nil {
		return fmt.Errorf("copy snapshot %s: destination %s: %w", s.ID.Short(), c.dst.Store().Location(), err)
	}
	res.ID = id
	maps.Copy(c.done, trees)
	return nil
}

// wanted is a data blob to read from the source.
type wanted struct {
	pack *chunkstore.PackEntry
	blob chunkstore.Blob
}

// walk reads every tree of s in the source (except those copied earlier
// in this run) and stores those dst lacks, as their verified plaintext,
// unchanged: a tree's ID is the same in both repositories. The data
// blobs dst lacks are reserved in its index and read in batches (fetch).
// It returns the trees it read.
func (c *copier) walk(ctx context.Context, w *chunkstore.Writer, s *Snapshot, res *CopyResult) (map[chunkstore.ID]bool, error) {
	var want []wanted
	seen := map[chunkstore.ID]bool{}
	stack := []chunkstore.ID{s.Tree}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[id] || c.done[id] {
			continue
		}
		seen[id] = true
		tree, plain, err := c.loadTree(ctx, id)
		if err != nil {
			return nil, err
		}
		n, err := w.SaveBlobID(ctx, chunkstore.TreeBlob, id, plain)
		if err != nil {
			return nil, fmt.Errorf("destination %s: %w", c.dst.Store().Location(), err)
		}
		if n > 0 {
			res.Trees++
		}
		for i := range tree.Nodes {
			nd := &tree.Nodes[i]
			if nd.Type == TypeDir && nd.Subtree != nil {
				stack = append(stack, *nd.Subtree)
			}
			for _, b := range nd.Content {
				if c.dst.Index().Has(b) {
					continue // stored, or reserved above
				}
				loc, ok := c.src.Index().Lookup(b)
				if !ok || loc.Blob.Type != chunkstore.DataBlob {
					return nil, &srcDamage{fmt.Errorf("%w: data blob %s of %s (in directory listing %s)", ErrNotIndexed, b.Short(), nd.Name, id.Short())}
				}
				if !c.dst.Index().Reserve(b) {
					continue
				}
				want = append(want, wanted{pack: loc.Pack, blob: loc.Blob})
			}
		}
		if len(want) >= copyBatch {
			if err := c.fetch(ctx, w, want, res); err != nil {
				return nil, err
			}
			want = want[:0]
		}
	}
	if err := c.fetch(ctx, w, want, res); err != nil {
		return nil, err
	}
	return seen, nil
}

// loadTree reads and decodes a directory listing of the source.
func (c *copier) loadTree(ctx context.Context, id chunkstore.ID) (*Tree, []byte, error) {
	if loc, ok := c.src.Index().Lookup(id); !ok || loc.Blob.Type != chunkstore.TreeBlob {
		return nil, nil, &srcDamage{fmt.Errorf("%w: directory listing %s", ErrNotIndexed, id.Short())}
	}
	plain, err := c.src.LoadBlobAnyCopy(ctx, chunkstore.TreeBlob, id)
	if err != nil {
		if damaged(err) {
			return nil, nil, &srcDamage{fmt.Errorf("directory listing %s: %w", id.Short(), err)}
		}
		return nil, nil, fmt.Errorf("source %s: directory listing %s: %w", c.src.Store().Location(), id.Short(), err)
	}
	tree, err := DecodeTree(plain)
	if err != nil {
		return nil, nil, &srcDamage{fmt.Errorf("directory listing %s: %w", id.Short(), err)}
	}
	return tree, plain, nil
}

// copyRange is one ranged read of a source pack.
type copyRange struct {
	pack       *chunkstore.PackEntry
	start, end int64
	blobs      []chunkstore.Blob
}

// copyRanges groups blobs by pack, in the order their packs were first
// wanted, and coalesces each pack's into ranges by offset.
func copyRanges(want []wanted) []copyRange {
	order := map[chunkstore.ID]int{}
	for _, wb := range want {
		if _, ok := order[wb.pack.ID]; !ok {
			order[wb.pack.ID] = len(order)
		}
	}
	slices.SortStableFunc(want, func(a, b wanted) int {
		if c := cmp.Compare(order[a.pack.ID], order[b.pack.ID]); c != 0 {
			return c
		}
		return cmp.Compare(a.blob.Offset, b.blob.Offset)
	})
	var out []copyRange
	for i := 0; i < len(want); {
		j := i + 1
		for j < len(want) && want[j].pack.ID == want[i].pack.ID {
			j++
		}
		blobs := make([]chunkstore.Blob, j-i)
		for k := range blobs {
			blobs[k] = want[i+k].blob
		}
		start := 0
		for _, end := range chunkstore.JoinRanges(blobs, maxCopyRange) {
			first, last := blobs[start], blobs[end-1]
			out = append(out, copyRange{pack: want[i].pack, start: int64(first.Offset),
				end: int64(last.Offset) + int64(last.Length), blobs: blobs[start:end]})
			start = end
		}
		i = j
	}
	return out
}

// fetch reads the wanted blobs, reserved in dst's index, from the
// source, verifies each and saves it in dst. The first damaged blob
// fails the snapshot (the error names it and its pack): no more ranges
// are started, and those being read stop. Blobs are saved with ctx,
// never with the group's context, which that failure cancels: a save
// cancelled half-way would lose a pack whose blobs stay reserved.
func (c *copier) fetch(ctx context.Context, w *chunkstore.Writer, want []wanted, res *CopyResult) error {
	if len(want) == 0 {
		return nil
	}
	ranges := copyRanges(want)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Fetchers)
	// One pair of buffers per fetcher, reused: a copy reads hundreds of
	// MiB, and fresh ones would each be page-faulted and zeroed.
	bufs := make(chan *fetchBufs, c.opts.Fetchers)
	for range c.opts.Fetchers {
		bufs <- &fetchBufs{}
	}
	var mu sync.Mutex
	for _, r := range ranges {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			b := <-bufs
			defer func() { bufs <- b }()
			blobs, bytes, err := c.fetchRange(ctx, gctx, w, r, b)
			mu.Lock()
			res.Blobs += blobs
			res.Bytes += bytes
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// Ranges not started because ctx ended leave their blobs unread.
	return ctx.Err()
}

// fromCopy reads a blob whose copy in the range failed on its own, with
// LoadBlobAnyCopy, which reads that copy again and then the other copies the
// source's index lists. Damage it cannot get around is srcDamage.
func (c *copier) fromCopy(ctx context.Context, bl chunkstore.Blob) ([]byte, error) {
	plain, lerr := c.src.LoadBlobAnyCopy(ctx, chunkstore.DataBlob, bl.ID)
	switch {
	case lerr == nil:
		return plain, nil // LoadBlobAnyCopy warned, naming the pack
	case damaged(lerr):
		return nil, &srcDamage{lerr}
	default:
		return nil, fmt.Errorf("source %s: %w", c.src.Store().Location(), lerr)
	}
}

// fetchBufs are one fetcher's buffers: a range of a pack as read, and
// one blob's plaintext.
type fetchBufs struct{ sealed, plain []byte }

// fetchRange reads one range with readCtx and saves its blobs with ctx.
func (c *copier) fetchRange(ctx, readCtx context.Context, w *chunkstore.Writer, r copyRange, b *fetchBufs) (blobs, bytes int64, err error) {
	name := chunkstore.PackName(r.pack.ID)
	key, err := c.src.PackKey(r.pack)
	if err != nil {
		return 0, 0, &srcDamage{fmt.Errorf("%s: %w", name, err)}
	}
	sealed, err := chunkstore.GetInto(readCtx, c.src.Store(), name, r.start, r.end-r.start, b.sealed[:cap(b.sealed)])
	if cap(sealed) > cap(b.sealed) {
		b.sealed = sealed[:0]
	}
	var rangeErr error // the range is damaged: each blob from another copy (fromCopy)
	switch {
	case err != nil && damaged(err):
		rangeErr = fmt.Errorf("read %s: %w", name, err)
	case err != nil:
		return 0, 0, fmt.Errorf("source %s: read %s: %w", c.src.Store().Location(), name, err)
	case int64(len(sealed)) != r.end-r.start:
		rangeErr = fmt.Errorf("%w: %s: read %d bytes at offset %d, the index lists %d (truncated pack?)",
			chunkstore.ErrCorrupt, name, len(sealed), r.start, r.end-r.start)
	}
	op := c.src.Opener(key)
	for _, bl := range r.blobs {
		var plain []byte
		if rangeErr == nil {
			off := int64(bl.Offset) - r.start
			if need := int(bl.RawLength) + chunkstore.DecodeSlack; cap(b.plain) < need {
				b.plain = make([]byte, 0, need)
			}
			plain, err = op.OpenInto(bl, sealed[off:off+int64(bl.Length)], b.plain)
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
		} else {
			err = rangeErr
		}
		if err != nil {
			if plain, err = c.fromCopy(readCtx, bl); err != nil {
				return blobs, bytes, err
			}
		}
		if _, err := w.SaveReserved(ctx, chunkstore.DataBlob, bl.ID, plain); err != nil {
			return blobs, bytes, fmt.Errorf("destination %s: %w", c.dst.Store().Location(), err)
		}
		blobs++
		bytes += int64(len(plain))
		if c.opts.Progress != nil {
			c.opts.Progress.Add(int64(len(plain)))
		}
	}
	return blobs, bytes, nil
}
