package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/internal/sysinfo"
)

// PruneOptions tune Prune.
type PruneOptions struct {
	// DryRun reports what would be marked and repacked, and changes nothing.
	DryRun bool
	// MaxUnused is the share of the packs' bytes that may stay unreferenced
	// inside packs that also hold referenced data (0.1: 10 %). Prune
	// repacks the emptiest such packs — copies their referenced blobs into
	// new packs and marks the old ones — until the rest is within it. A
	// negative value repacks nothing.
	MaxUnused float64
	// Sessions gives the staleness of backup sessions and the margin
	// around marks; zero means chunkstore.DefaultSessionTiming.
	Sessions chunkstore.SessionTiming
	// Rewrap also repacks every pack written for recipients older than
	// the repository's current ones (see chunkstore.Repository.Rekey), so
	// that only the current recipients can open its blobs once the old
	// pack is deleted.
	Rewrap bool
	Logger *slog.Logger
}

// PruneResult says what Prune found and did.
type PruneResult struct {
	Snapshots      int   `json:"snapshots"`
	Trees          int   `json:"trees"`
	ReferencedData int   `json:"referenced_blobs"`
	Packs          int   `json:"packs"`
	PackBytes      int64 `json:"pack_bytes"`
	// Packs with both referenced and unreferenced blobs, and the bytes of
	// the unreferenced ones, before repacking (packs rewrapped aside).
	PartlyUsedPacks        int   `json:"partly_used_packs"`
	UnusedBytesInUsedPacks int64 `json:"unused_bytes_in_used_packs"`
	// Repacked are partly used packs whose referenced blobs were copied
	// into RepackWritten bytes of new packs; the old packs are marked.
	RepackedPacks int   `json:"repacked_packs"`
	RepackedBytes int64 `json:"repacked_bytes"`
	RepackWritten int64 `json:"repack_written_bytes"`
	// Rewrapped are packs of older recipients repacked for Rewrap (and
	// counted in Repacked too). OldRecipientPacks are the packs of older
	// recipients in use (those a Rewrap repacks); without Rewrap none is
	// repacked for that reason.
	RewrappedPacks    int   `json:"rewrapped_packs"`
	RewrappedBytes    int64 `json:"rewrapped_bytes"`
	OldRecipientPacks int   `json:"old_recipient_packs"`
	// KeptUnindexed are packs no index lists that hold referenced blobs:
	// kept, for a backup to adopt. After a change of recipients backups
	// no longer do (UnindexedNeedRepair): 'repair index' indexes them.
	KeptUnindexed       int  `json:"kept_unindexed_packs,omitempty"`
	UnindexedNeedRepair bool `json:"unindexed_need_repair,omitempty"`
	// Marked are the packs found unreferenced by this run (a new GC mark).
	MarkedPacks int   `json:"marked_packs"`
	MarkedBytes int64 `json:"marked_bytes"`
	// Deleted are the packs removed by this run, from this run's mark or
	// earlier ones.
	DeletedPacks int   `json:"deleted_packs"`
	DeletedBytes int64 `json:"deleted_bytes"`
	// Reused are marked packs kept because a snapshot needs a blob that
	// no pack outside the marks holds: a backup reused it meanwhile, or
	// its other copy is in a mark too.
	ReusedPacks int `json:"reused_packs"`
	// PendingMarks wait for the backups in Waiting to end.
	PendingMarks int             `json:"pending_marks"`
	PendingPacks int             `json:"pending_packs"`
	Waiting      []WaitingBackup `json:"waiting_for,omitempty"`
	IndexWritten int             `json:"index_files_written"`
	IndexRemoved int             `json:"index_files_removed"`
	SessionsGone int             `json:"sessions_removed"`
	// DamagedMarks are GC marks that could not be read (corrupt, or
	// not sealed with this repository's key): they held nothing back,
	// and are removed (in a dry run, to be removed).
	DamagedMarks int `json:"damaged_marks_removed,omitempty"`
	// Temporary files of writes that never finished (a writer killed
	// mid-write; the local store only) and the empty objects that read
	// the store's clock left by a command killed before removing one (any
	// store), untouched for TempFileAge: removed (in a dry run, to be
	// removed).
	TempFiles     int   `json:"temp_files_removed"`
	TempFileBytes int64 `json:"temp_file_bytes_removed"`
	// Of referenced blobs stored more than once whose other copy is in
	// a pack prune deletes or repacks without it, the copies it keeps
	// were read and verified first (VerifiedCopies, of VerifiedCopyBytes
	// sealed bytes); DamagedCopies failed, and another copy was kept.
	// Each copy counts once however often it was read.
	VerifiedCopies    int   `json:"verified_copies"`
	VerifiedCopyBytes int64 `json:"verified_copy_bytes"`
	DamagedCopies     int   `json:"damaged_copies"`
	DryRun            bool  `json:"dry_run,omitempty"`

	// (blob, pack) counted in DamagedCopies, VerifiedCopies: the mark,
	// the repack and the sweep may each read the same copy.
	damaged, verified map[[2]chunkstore.ID]bool
}

// WaitingBackup is a backup session that holds back the deletion of a mark.
type WaitingBackup struct {
	Session  string    `json:"session"`
	Host     string    `json:"host,omitempty"`
	PID      int       `json:"pid,omitempty"`
	Started  time.Time `json:"started"`
	LastBeat time.Time `json:"last_renewed"`
}

// ErrPruneUnsafe is returned when prune cannot tell what is referenced.
var ErrPruneUnsafe = errors.New("prune refused")

// ErrPruneBusy is returned when another prune is running on the
// repository: two would rewrite the index over each other.
var ErrPruneBusy = errors.New("another prune or repair is running")

// Prune removes packs that no snapshot references, without ever removing
// data a running backup may still commit (see chunkstore's garbage
// collection protocol): it marks the unreferenced packs, then deletes the
// packs of every mark whose backups have all ended, after walking the
// snapshots again. With no backup running, one run marks and deletes;
// otherwise the mark waits for the next run after those backups end.
//
// Prune needs an identity (file names and trees are readable only with
// one). It refuses to delete anything while a snapshot, a tree or an index
// file cannot be read, or while a snapshot references a blob that no pack
// holds: that is damage for 'lifeboat check' to report, and guessing would
// delete data. Packs holding both referenced and unreferenced blobs are
// repacked as MaxUnused says.
func Prune(ctx context.Context, repo *chunkstore.Repository, opts PruneOptions) (*PruneResult, error) {
	if !repo.CanRead() {
		return nil, fmt.Errorf("%w: prune needs an identity (--identity): a writer key cannot read the trees that say which data is in use", ErrPruneUnsafe)
	}
	// What prune deletes follows from what it reads: from the store,
	// not from a cache that may hold intact copies of rotted objects.
	repo.DistrustCache()
	if opts.Rewrap {
		if err := canRewrap(ctx, repo); err != nil {
			return nil, err
		}
	}
	opts.Sessions = opts.Sessions.OrDefault()
	opts.Logger = orDiscard(opts.Logger)
	res := &PruneResult{DryRun: opts.DryRun}
	held, err := holdPruneSession(ctx, repo, opts.DryRun, opts.Sessions, opts.Logger, "prune")
	if err != nil {
		return nil, err
	}
	defer held.end()
	sweepTemp(ctx, repo, res, opts)
	if res.DamagedMarks, err = repo.RemoveDamagedGCMarks(ctx, opts.DryRun); err != nil {
		return nil, err
	}
	ref := &referenced{seen: map[chunkstore.ID]bool{}, blobs: map[chunkstore.ID]bool{}, walked: map[chunkstore.ID]bool{}}

	// Phase 1: mark. The index is loaded after the snapshots are listed
	// (manifests are written after their index files).
	if err := ref.addSnapshots(ctx, repo); err != nil {
		return nil, err
	}
	if err := loadIndexForPrune(ctx, repo); err != nil {
		return nil, err
	}
	if err := ref.walk(ctx, repo); err != nil {
		return nil, err
	}
	marks, err := repo.GCMarks(ctx)
	if err != nil {
		return nil, err
	}
	inMark := chunkstore.MarkedPacks(marks)
	present, err := repo.ListPacks(ctx)
	if err != nil {
		return nil, err
	}
	idx := repo.Index()
	var live []*chunkstore.PackEntry
	for id := range present {
		if loc := idx.Pack(id); loc != nil && !inMark[id] {
			live = append(live, loc)
		}
	}
	ref.chooseOwners(idx, live)
	if err := ref.verifyOwners(ctx, repo, live, res, opts.Logger); err != nil {
		return nil, err
	}
	var candidates []chunkstore.ID
	var partly, rewrap []partlyUsed
	var usedBytes int64 // in the packs that stay
	gen := repo.Secrets().Generation
	for id, size := range present {
		res.Packs++
		res.PackBytes += size
		if inMark[id] {
			continue
		}
		loc := idx.Pack(id)
		if loc == nil {
			continue // unindexed: looked at below
		}
		used, unused := ref.usage(loc)
		if used > 0 && loc.WrappedBefore(gen) {
			res.OldRecipientPacks++
		}
		switch {
		case ref.pinned[id]:
			// Left whole: see verifyOwners.
			unused = 0
		case used == 0:
			candidates = append(candidates, id)
			res.MarkedBytes += size
			continue
		case opts.Rewrap && loc.WrappedBefore(gen):
			rewrap = append(rewrap, partlyUsed{loc, size, unused})
			res.RewrappedPacks++
			res.RewrappedBytes += size
		case unused > 0:
			res.PartlyUsedPacks++
			res.UnusedBytesInUsedPacks += unused
			partly = append(partly, partlyUsed{loc, size, unused})
		}
		usedBytes += size - unused
	}
	// Packs no index lists: left by an interrupted backup, or being
	// uploaded by a running one (whose session the mark then waits for).
	orphans, damaged, err := repo.ReadUnindexed(ctx, present)
	if err != nil {
		return nil, err
	}
	// One holding any referenced blob is kept, even if an indexed pack
	// holds it too: it may be another prune's repacked copy whose index
	// file is not written yet (backups adopt what stays unindexed).
	for i := range orphans {
		p := &orphans[i]
		if inMark[p.ID] {
			continue
		}
		if !ref.anyReferenced(p) {
			candidates = append(candidates, p.ID)
			res.MarkedBytes += int64(p.Size)
		} else {
			res.KeptUnindexed++
		}
	}
	// After a change of recipients backups no longer adopt such packs
	// (chunkstore.AdoptOrphans), so they stay until 'repair index'.
	res.UnindexedNeedRepair = res.KeptUnindexed > 0 && gen > 0
	for _, name := range damaged {
		id, _ := chunkstore.ParsePackName(name)
		if !inMark[id] {
			candidates = append(candidates, id)
			res.MarkedBytes += present[id]
		}
	}
	res.Snapshots = ref.snapshots
	res.Trees = len(ref.walked)
	res.ReferencedData = len(ref.blobs) - len(ref.walked)
	toRepack := append(chooseRepack(partly, opts.MaxUnused, usedBytes), rewrap...)
	for _, p := range toRepack {
		res.RepackedPacks++
		res.RepackedBytes += p.size
	}
	if opts.DryRun {
		res.MarkedPacks = len(candidates) + len(toRepack)
		res.MarkedBytes += res.RepackedBytes
		return res, nil
	}
	if len(toRepack) > 0 {
		// What stays: live packs that are neither marked now nor repacked.
		// Every other indexed pack (marked, listed no more, repacked) is
		// no place to leave the only copy of a blob.
		stays := make(map[chunkstore.ID]bool, len(live))
		for _, p := range live {
			stays[p.ID] = true
		}
		for _, id := range candidates {
			delete(stays, id)
		}
		for _, p := range toRepack {
			delete(stays, p.pack.ID)
		}
		written, repacked, err := repack(ctx, repo, ref, toRepack, stays, res, opts.Logger)
		if err != nil {
			if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
				// "Free space or prune" is no help here.
				without := ""
				if opts.Rewrap {
					without = " (without --rewrap)"
				}
				err = fmt.Errorf("%w; repacking writes new packs before it frees any: run 'lifeboat prune --max-unused unlimited'%s first, which deletes the packs nothing references without writing new ones, then prune again", err, without)
			}
			return res, err
		}
		res.RepackWritten = written
		for _, p := range toRepack {
			if !slices.ContainsFunc(repacked, func(q partlyUsed) bool { return q.pack.ID == p.pack.ID }) {
				// Left whole (see dropCopies).
				res.RepackedPacks--
				res.RepackedBytes -= p.size
			}
		}
		toRepack = repacked
		for _, p := range toRepack {
			candidates = append(candidates, p.pack.ID)
			res.MarkedBytes += p.size
		}
		opts.Logger.Info("repacked partly used packs", "packs", len(toRepack), "written", written)
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].String() < candidates[j].String() })
	res.MarkedPacks = len(candidates)
	if len(candidates) > 0 {
		m, err := repo.SaveGCMark(ctx, candidates)
		if err != nil {
			return nil, err
		}
		marks = append(marks, m)
		opts.Logger.Info("marked unreferenced packs", "packs", len(candidates), "mark", m.ID.Short())
	}
	if len(marks) == 0 {
		return res, nil
	}

	// Phase 2: sweep every mark whose backups have all ended.
	now, err := repo.StoreNow(ctx)
	if err != nil {
		return nil, err
	}
	sessions, err := repo.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	var ready []chunkstore.GCMark
	waiting := map[string]bool{}
	for _, m := range marks {
		var blockers []chunkstore.SessionState
		for _, s := range sessions {
			if !s.Info.Prune && !s.Started.After(m.Created.Add(opts.Sessions.Margin)) && s.Live(now, opts.Sessions.Stale) {
				blockers = append(blockers, s)
			}
		}
		if len(blockers) == 0 {
			ready = append(ready, m)
			continue
		}
		res.PendingMarks++
		res.PendingPacks += len(m.Packs)
		for _, s := range blockers {
			if !waiting[s.ID] {
				waiting[s.ID] = true
				res.Waiting = append(res.Waiting, WaitingBackup{Session: s.ID, Host: s.Info.Host, PID: s.Info.PID, Started: s.Started, LastBeat: s.LastBeat})
			}
		}
	}
	if len(ready) > 0 {
		if err := sweep(ctx, repo, held, ref, ready, present, res, opts.Logger); err != nil {
			return res, err
		}
	}
	// Sessions that ended (closed, or silent past Stale) are only clutter.
	for _, s := range sessions {
		if s.Live(now, opts.Sessions.Stale) {
			continue
		}
		if err := repo.RemoveSession(ctx, s); err != nil {
			return res, fmt.Errorf("an ended session: %w", err)
		}
		res.SessionsGone++
	}
	return res, nil
}

// TempFileAge is how long a temporary file of an unfinished write is
// left untouched before prune removes it: far longer than any write
// still going on takes between two of its writes.
const TempFileAge = 24 * time.Hour

// sweepTemp removes the temporary files writers killed mid-write left
// (chunkstore.SweepTemp). It only warns when it cannot: they waste
// space, they hold no data anything needs. This host's clock is good
// enough: a store's clock (a file server's, or S3's for the clock
// objects) is not a day off. It also removes the store's clock
// objects that commands killed at the wrong moment left
// (Repository.SweepClocks).
func sweepTemp(ctx context.Context, repo *chunkstore.Repository, res *PruneResult, opts PruneOptions) {
	var err error
	before := time.Now().Add(-TempFileAge)
	res.TempFiles, res.TempFileBytes, err = chunkstore.SweepTemp(ctx, repo.Store(), before, opts.DryRun)
	if err != nil && ctx.Err() == nil {
		opts.Logger.Warn("could not remove the temporary files of unfinished writes", "err", err)
	}
	// The empty objects that read the store's clock, left by a command
	// killed between writing and removing one: on every store.
	clocks, err := repo.SweepClocks(ctx, before, opts.DryRun)
	res.TempFiles += clocks
	if err != nil && ctx.Err() == nil {
		opts.Logger.Warn("could not remove the clock objects of unfinished commands", "err", err)
	}
}

// heldSession is the prune session held by a command that rewrites the
// index: prune, or a repair.
type heldSession struct {
	sess *chunkstore.Session
	log  *slog.Logger
	what string
	ctx  context.Context
}

// holdPruneSession registers the prune session (registerPrune) for a
// command that rewrites the index; what names the command in errors and
// warnings. A dry run changes nothing and holds no session: it gets nil,
// whose end does nothing.
func holdPruneSession(ctx context.Context, repo *chunkstore.Repository, dryRun bool, timing chunkstore.SessionTiming, log *slog.Logger, what string) (*heldSession, error) {
	if dryRun {
		return nil, nil
	}
	sess, err := registerPrune(ctx, repo, what, PruneOptions{Sessions: timing, Logger: log})
	if err != nil {
		return nil, err
	}
	return &heldSession{sess: sess, log: log, what: what, ctx: ctx}, nil
}

// end removes the session (nothing for a dry run's nil).
func (h *heldSession) end() {
	if h == nil {
		return
	}
	if err := h.sess.End(context.WithoutCancel(h.ctx)); err != nil {
		h.log.Warn("end "+h.what+" session", "err", err)
	}
}

// writeWindow returns a context for a rewrite of the index (and prune's
// deletions) that ends while the session is safely alive, or an error if
// it may already count as ended (this process was paused or could not
// renew it, or its session was removed: Session.Check): another prune may
// be running then, and an index written from what this one read could
// name packs that prune has deleted.
func (h *heldSession) writeWindow(ctx context.Context) (context.Context, context.CancelFunc, error) {
	return h.window(ctx, "rewriting the index")
}

// window is writeWindow for any step that needs no prune to run beside it
// (doing names it in the error).
func (h *heldSession) window(ctx context.Context, doing string) (context.Context, context.CancelFunc, error) {
	if err := h.sess.Check(ctx); err != nil {
		return nil, nil, fmt.Errorf("%s: not %s: %w; run it again", h.what, doing, err)
	}
	until, err := h.sess.HeldUntil()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not %s: %w; run it again", h.what, doing, err)
	}
	wctx, cancel := context.WithDeadline(ctx, until)
	return wctx, cancel, nil
}

// registerPrune stores this prune's session and makes sure it is the only
// prune running: of the live prune sessions, the oldest (then lowest ID)
// goes on and the others stop with ErrPruneBusy. Each stores its session
// before it lists them, so of two starting together the younger always
// sees the older. A prune session of this host whose process is gone
// (killed) is removed; one of another host holds prunes back until it is
// stale (30 minutes without renewal).
func registerPrune(ctx context.Context, repo *chunkstore.Repository, what string, opts PruneOptions) (*chunkstore.Session, error) {
	host, _ := os.Hostname()
	sess, err := repo.StartSession(ctx, chunkstore.SessionInfo{Host: host, Machine: host, PID: os.Getpid(), Started: time.Now(), Prune: true, Command: what}, opts.Sessions)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*chunkstore.Session, error) {
		if e := sess.End(context.WithoutCancel(ctx)); e != nil {
			opts.Logger.Warn("end prune session", "err", e)
		}
		return nil, err
	}
	now, err := repo.StoreNow(ctx)
	if err != nil {
		return fail(err)
	}
	sessions, err := repo.Sessions(ctx)
	if err != nil {
		return fail(err)
	}
	var mine *chunkstore.SessionState
	for i := range sessions {
		if sessions[i].ID == sess.ID() {
			mine = &sessions[i]
		}
	}
	if mine == nil {
		return fail(fmt.Errorf("prune session %s was stored but is not in the listing of %s (a store whose listings lag behind writes cannot run prune safely); try again", sess.ID(), repo.Store().Location()))
	}
	for _, s := range sessions {
		if !s.Info.Prune || s.ID == mine.ID || !s.Live(now, opts.Sessions.Stale) {
			continue
		}
		if processGone(s.Info, host) {
			opts.Logger.Info("removing the session of a prune that is gone", "session", s.ID, "pid", s.Info.PID)
			if err := repo.RemoveSession(ctx, s); err != nil {
				return fail(fmt.Errorf("a prune that is gone: %w", err))
			}
			continue
		}
		if s.Started.Before(mine.Started) || s.Started.Equal(mine.Started) && s.ID < mine.ID {
			return fail(fmt.Errorf("%w on %s: %s, session %s, host %s, pid %d, started %s, last renewed %s; try again when it has ended (one that was killed stops counting 30 minutes after its last renewal, or at once on its own host; if you know its process is gone, 'lifeboat unlock %s' removes it now)",
				ErrPruneBusy, repo.Store().Location(), pruneCommand(s.Info), s.ID, s.Info.Host, s.Info.PID, s.Info.Started.UTC().Format(time.RFC3339), s.LastBeat.UTC().Format(time.RFC3339), s.ID))
		}
	}
	return sess, nil
}

// processGone reports whether the session's process ran on this machine
// (host) and no longer runs. A session that does not record its machine
// counts only if it is a prune's, whose Host is the machine's name. (A
// process of another PID namespace with the same host name can look
// gone: only prune sessions are ever removed for it.)
func processGone(info chunkstore.SessionInfo, host string) bool {
	machine := info.Machine
	if machine == "" && info.Prune {
		machine = info.Host
	}
	return machine != "" && machine == host && info.PID > 0 && !sysinfo.ProcessExists(info.PID)
}

// pruneCommand names what holds a prune session.
func pruneCommand(info chunkstore.SessionInfo) string {
	if info.Command != "" {
		return info.Command
	}
	return "prune or repair"
}

// sweep deletes the packs of marks whose backups have ended, keeping any
// that a snapshot references now.
func sweep(ctx context.Context, repo *chunkstore.Repository, held *heldSession, ref *referenced, ready []chunkstore.GCMark, present map[chunkstore.ID]int64, res *PruneResult, log *slog.Logger) error {
	// Backups that ended since the mark may have committed snapshots that
	// reuse marked packs: walk the snapshots again (the index after them).
	if err := ref.addSnapshots(ctx, repo); err != nil {
		return err
	}
	if err := loadIndexForPrune(ctx, repo); err != nil {
		return err
	}
	if err := ref.walk(ctx, repo); err != nil {
		return err
	}
	idx := repo.Index()
	drop := chunkstore.MarkedPacks(ready)
	// A blob is safe when a pack in no mark holds it: listed now, after
	// the marks are (another prune deletes a mark only after its packs).
	// Two prunes sweeping at once then never both count on the other's
	// packs: whichever lists the marks second sees the first one's mark.
	all, err := repo.GCMarks(ctx)
	if err != nil {
		return err
	}
	marked := chunkstore.MarkedPacks(all)
	listed, err := repo.ListPacks(ctx)
	if err != nil {
		return err
	}
	// Every referenced blob must stay in some pack that is kept. A marked
	// pack whose blob a backup reused (and that no pack outside the marks
	// holds) is kept; a referenced blob in no indexed pack at all is
	// damage, and then nothing is deleted.
	covered := map[chunkstore.ID]bool{}
	inOtherMark := map[chunkstore.ID]bool{} // held by a pack of a mark not swept now
	holders := map[chunkstore.ID][]*chunkstore.PackEntry{}
	coverers := map[chunkstore.ID][]*chunkstore.PackEntry{} // packs that stay holding it
	for _, p := range idx.Packs() {
		_, there := listed[p.ID]
		for _, b := range p.Blobs {
			switch {
			case !ref.blobs[b.ID]:
			case !there:
			case drop[p.ID]:
				holders[b.ID] = append(holders[b.ID], p)
			case marked[p.ID]:
				inOtherMark[b.ID] = true
			default:
				covered[b.ID] = true
				coverers[b.ID] = append(coverers[b.ID], p)
			}
		}
	}
	var missing []chunkstore.ID
	keep := map[chunkstore.ID]bool{}
	// A copy this sweep deletes goes only once a copy that stays has been
	// read and found intact now: verifyOwners read it when the mark was
	// made, maybe runs ago, and it may have rotted since.
	if err := verifyCovering(ctx, repo, ref, covered, holders, coverers, keep, res, log); err != nil {
		return err
	}
	for id := range ref.blobs {
		if covered[id] {
			continue
		}
		hs := holders[id]
		if len(hs) == 0 {
			// A pack of another mark holds it: that mark's sweep keeps it.
			if !inOtherMark[id] {
				missing = append(missing, id)
			}
			continue
		}
		// Every copy this sweep would delete is kept, not just one:
		// another prune may be deleting any one of them, counting on
		// this one (the next prune marks the spare copies again).
		for _, h := range hs {
			keep[h.ID] = true
		}
	}
	for id := range keep {
		delete(drop, id)
	}
	res.ReusedPacks = len(keep)
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool { return missing[i].String() < missing[j].String() })
		return fmt.Errorf("%w: %d blobs referenced by snapshots are in no pack that the index lists and the store holds (blob %s among them); run 'lifeboat check', which names the snapshots and files, and forget the damaged snapshots before pruning", ErrPruneUnsafe, len(missing), missing[0])
	}
	// Index first (so no index file names a deleted pack for longer than
	// the deletions take), then the packs, then the marks: a crash leaves
	// the marks for the next run, whose sweep finishes the job.
	needRewrite := false
	for p := range drop {
		if idx.HasPack(p) {
			needRewrite = true
			break
		}
	}
	// Nothing is deleted unless this prune's session is safely alive: a
	// prune paused past it may no longer be the only one.
	wctx, cancel, err := held.writeWindow(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if needRewrite {
		w, r, err := repo.RewriteIndex(wctx, drop, listed)
		res.IndexWritten, res.IndexRemoved = w, r
		if err != nil {
			return err
		}
		// Once more before deleting: the rewrite may have taken a while.
		if err := held.sess.Check(wctx); err != nil {
			return fmt.Errorf("prune: not deleting packs: %w; run it again", err)
		}
	}
	// The deletions may take longer than the window the rewrite had (tens
	// of thousands of packs on a slow store): each one checks that the
	// session, renewed meanwhile, is still safely held. Packs already gone
	// (a prune that stopped part-way) are not deleted again.
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for p := range drop {
		if _, ok := listed[p]; !ok {
			continue
		}
		g.Go(func() error {
			if until, err := held.sess.HeldUntil(); err != nil || !time.Now().Before(until) {
				if err == nil {
					err = fmt.Errorf("its session is held only until %s", until.UTC().Format(time.RFC3339))
				}
				return fmt.Errorf("prune: not deleting pack %s: %w (the index no longer lists it and its mark stays: run 'lifeboat prune' again to finish)", chunkstore.PackName(p), err)
			}
			if err := repo.Store().Delete(gctx, chunkstore.PackName(p)); err != nil {
				return fmt.Errorf("delete pack %s: %w (the index no longer lists it and its mark stays: run 'lifeboat prune' again to finish)", chunkstore.PackName(p), err)
			}
			repo.Uncache(chunkstore.PackName(p))
			mu.Lock()
			if size, ok := present[p]; ok {
				res.DeletedPacks++
				res.DeletedBytes += size
			}
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, m := range ready {
		if err := repo.DeleteGCMark(ctx, m.ID); err != nil {
			return err
		}
	}
	log.Info("deleted unreferenced packs", "packs", res.DeletedPacks, "bytes", res.DeletedBytes)
	return nil
}

type partlyUsed struct {
	pack   *chunkstore.PackEntry
	size   int64
	unused int64
}

// chooseRepack picks the partly used packs to repack: the emptiest first,
// until the unreferenced bytes left in the others are within maxUnused of
// what stays after prune (used bytes plus those unreferenced ones), so that
// a second prune finds the same share and repacks nothing more.
func chooseRepack(partly []partlyUsed, maxUnused float64, used int64) []partlyUsed {
	if maxUnused < 0 || maxUnused >= 1 || len(partly) == 0 {
		return nil
	}
	var unused int64
	for _, p := range partly {
		unused += p.unused
	}
	sort.Slice(partly, func(i, j int) bool {
		fi := float64(partly[i].unused) / float64(partly[i].size)
		fj := float64(partly[j].unused) / float64(partly[j].size)
		if fi != fj {
			return fi > fj
		}
		return partly[i].pack.ID.String() < partly[j].pack.ID.String()
	})
	// unused ≤ maxUnused·(used+unused)  ⇔  unused ≤ maxUnused/(1−maxUnused)·used
	limit := int64(maxUnused / (1 - maxUnused) * float64(used))
	var out []partlyUsed
	for _, p := range partly {
		if unused <= limit {
			break
		}
		out = append(out, p)
		unused -= p.unused
	}
	return out
}

// repack copies the referenced blobs of packs into new packs (and an
// index file listing them), verifying each blob on the way, and returns
// the bytes written and the packs it repacked. Blobs also stored in a
// pack that stays (see stays) are not copied, once that copy has been
// read and found intact; a pack holding a blob whose staying copy is
// damaged is not repacked at all (dropCopies). Copies in any other
// indexed pack do not count. The repacked packs are marked by the caller
// afterwards: until then both copies are indexed, and a crash leaves
// only duplicates, which the next prune finds (see chooseOwners).
func repack(ctx context.Context, repo *chunkstore.Repository, ref *referenced, packs []partlyUsed, stays map[chunkstore.ID]bool, res *PruneResult, log *slog.Logger) (int64, []partlyUsed, error) {
	idx := repo.Index()
	excluded := map[chunkstore.ID]bool{}
	for _, p := range idx.Packs() {
		if !stays[p.ID] {
			excluded[p.ID] = true
		}
	}
	// Excluded, their blobs are no longer "stored" for the writer, which
	// then stores each one anew; blobs kept elsewhere stay found.
	defer idx.SetExcluded(nil)
	verified := map[[2]chunkstore.ID]bool{}
	for {
		idx.SetExcluded(maps.Clone(excluded))
		skip, err := dropCopies(ctx, repo, ref, packs, verified, res, log)
		if err != nil {
			return 0, nil, err
		}
		if len(skip) == 0 {
			break
		}
		// Left whole, they stay: their copies are found, and read, in
		// the next round.
		packs = slices.DeleteFunc(slices.Clone(packs), func(p partlyUsed) bool { return skip[p.pack.ID] })
		for id := range skip {
			delete(excluded, id)
		}
	}
	if len(packs) == 0 {
		return 0, nil, nil
	}
	// On failure the writer's uploaders stop with wctx, and what they
	// held reserved is released.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := repo.NewWriter(wctx, chunkstore.WriterOptions{})
	if err != nil {
		return 0, nil, err
	}
	// Packs are handled by a worker per core, each reading one whole pack
	// and decoding, verifying and sealing its blobs again (the Writer
	// takes blobs from many goroutines): a rewrap repacks every pack.
	// Each holds a pack in memory: at most 256 MiB of them.
	workers := min(max(2, runtime.GOMAXPROCS(0)), 4, max(1, (256<<20)/repo.Config().PackSize))
	g, gctx := errgroup.WithContext(wctx)
	g.SetLimit(workers)
	for _, p := range packs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return repackOne(gctx, repo, ref, w, p.pack) })
	}
	if err := g.Wait(); err != nil {
		cancel()
		idx.ClearPending()
		return 0, nil, err
	}
	if err := w.Flush(ctx); err != nil {
		return 0, nil, fmt.Errorf("repack: %w", err)
	}
	return w.Stats().StoredAdded, packs, nil
}

// dropCopies reads and verifies the copy a staying pack holds of each
// referenced blob of packs that the repack would not copy for that
// reason, and returns the packs to leave whole: those holding a blob
// whose staying copy is damaged. Such a pack keeps what may be the only
// intact copy until 'repair packs' has dealt with the damaged one; the
// damaged pack stays too, and later prunes find it again (and warn)
// without rewriting anything. (Without this the sweep would still keep
// such a pack, see verifyCovering, but only after the repack had copied
// its other blobs, on every prune.) verified holds the copies read and
// found intact, across calls.
func dropCopies(ctx context.Context, repo *chunkstore.Repository, ref *referenced, packs []partlyUsed, verified map[[2]chunkstore.ID]bool, res *PruneResult, log *slog.Logger) (map[chunkstore.ID]bool, error) {
	idx := repo.Index()
	want := map[chunkstore.ID][]chunkstore.Blob{}
	var holders []*chunkstore.PackEntry
	seen := map[chunkstore.ID]bool{}
	for _, p := range packs {
		for _, b := range p.pack.Blobs {
			if !ref.blobs[b.ID] || seen[b.ID] {
				continue
			}
			seen[b.ID] = true
			loc, ok := idx.Lookup(b.ID)
			if !ok || verified[[2]chunkstore.ID{b.ID, loc.Pack.ID}] {
				continue // copied by the repack, or known intact
			}
			if want[loc.Pack.ID] == nil {
				holders = append(holders, loc.Pack)
			}
			want[loc.Pack.ID] = append(want[loc.Pack.ID], loc.Blob)
		}
	}
	bad := map[chunkstore.ID]bool{}
	for _, h := range holders {
		blobs := want[h.ID]
		damaged, err := verifyCopies(ctx, repo, h, blobs, res, log)
		if err != nil {
			return nil, err
		}
		for _, b := range blobs {
			if damaged[b.ID] != nil {
				bad[b.ID] = true
			} else {
				verified[[2]chunkstore.ID{b.ID, h.ID}] = true
			}
		}
	}
	skip := map[chunkstore.ID]bool{}
	for _, p := range packs {
		for _, b := range p.pack.Blobs {
			if bad[b.ID] {
				skip[p.pack.ID] = true
				log.Warn("a pack is left whole instead of repacked: it holds the intact copy of a blob whose other copy is damaged", "pack", chunkstore.PackName(p.pack.ID), "blob", b.ID.Short())
				break
			}
		}
	}
	return skip, nil
}

// repackOne copies the referenced blobs of pack that no pack staying
// holds (see repack) into w.
func repackOne(ctx context.Context, repo *chunkstore.Repository, ref *referenced, w *chunkstore.Writer, pack *chunkstore.PackEntry) error {
	idx := repo.Index()
	name := chunkstore.PackName(pack.ID)
	b, err := repo.Store().Get(ctx, name, 0, -1)
	if err != nil {
		return fmt.Errorf("repack: read %s: %w", name, err)
	}
	if chunkstore.Hash(b) != pack.ID {
		return fmt.Errorf("%w: repack: %s does not match its hash (damaged); run 'lifeboat check'", ErrPruneUnsafe, name)
	}
	key, err := repo.PackKey(pack)
	if err != nil {
		return fmt.Errorf("%w: repack %s: %v", ErrPruneUnsafe, name, err)
	}
	var plain []byte
	for _, bl := range pack.Blobs {
		if !ref.blobs[bl.ID] || !idx.Reserve(bl.ID) {
			continue
		}
		plain, err = openPackBlob(repo, key, bl, b, name, plain)
		if err != nil {
			idx.Unreserve(bl.ID)
			return fmt.Errorf("%w: repack %s: blob %s: %v; run 'lifeboat check'", ErrPruneUnsafe, name, bl.ID.Short(), err)
		}
		if _, err := w.SaveReserved(ctx, bl.Type, bl.ID, plain); err != nil {
			return fmt.Errorf("repack: %w", err)
		}
	}
	return nil
}

// openPackBlob authenticates and decodes blob bl of pack name, whose
// bytes b were read whole (they may be short: a truncated pack), into
// plain's space, and checks its keyed ID.
func openPackBlob(repo *chunkstore.Repository, key *[32]byte, bl chunkstore.Blob, b []byte, name string, plain []byte) ([]byte, error) {
	end := int64(bl.Offset) + int64(bl.Length)
	if end > int64(len(b)) {
		return nil, fmt.Errorf("blob %s lies beyond the end of %s (%d bytes)", bl.ID.Short(), name, len(b))
	}
	return repo.OpenBlob(key, bl, b[bl.Offset:end], plain)
}

// canRewrap refuses a rewrap with an identity that opened the
// repository through an older generation's key envelope (left by an
// interrupted change of recipients): it would wrap packs to those older
// recipients, and a dry run would count the wrong packs.
func canRewrap(ctx context.Context, repo *chunkstore.Repository) error {
	cur, err := repo.KeyGeneration(ctx)
	if err != nil {
		return err
	}
	own := repo.Secrets().Generation
	if own >= cur {
		return nil
	}
	if err := loadIndexForPrune(ctx, repo); err != nil {
		return err
	}
	n := 0
	for _, p := range repo.Index().Packs() {
		if p.WrappedBefore(cur) {
			n++
		}
	}
	return fmt.Errorf("%w: --rewrap: this identity is a recipient only of generation %d, and the recipients are of generation %d since 'lifeboat key' changed them: it cannot wrap the %d packs written for older recipients to the current ones; run 'lifeboat prune --rewrap' with an identity of the current recipients ('lifeboat key list' shows them)", ErrPruneUnsafe, own, cur, n)
}

// loadIndexForPrune loads new index files and refuses to go on when one
// is damaged: its packs would look unreferenced.
func loadIndexForPrune(ctx context.Context, repo *chunkstore.Repository) error {
	if err := repo.LoadIndex(ctx); err != nil {
		return err
	}
	if probs := repo.IndexProblems(); len(probs) > 0 {
		return fmt.Errorf("%w: index file %s is damaged (%v); run 'lifeboat repair index' (it removes the damaged file and indexes its packs again from the packs), then prune", ErrPruneUnsafe, probs[0].Object, probs[0].Err)
	}
	return nil
}

// referenced is the set of blobs the snapshots reference.
type referenced struct {
	snapshots int
	seen      map[chunkstore.ID]bool // snapshots already added
	roots     []chunkstore.ID        // trees not walked yet
	blobs     map[chunkstore.ID]bool // every referenced tree and data blob
	walked    map[chunkstore.ID]bool // trees walked
	// Ownership (see chooseOwners).
	idx   *chunkstore.Index
	live  map[chunkstore.ID]bool
	multi map[chunkstore.ID]chunkstore.ID // blob held more than once → owning pack
	// bad holds the copies of duplicated blobs found damaged
	// (verifyOwners): blob → packs. A blob with no intact copy left is
	// kept in every pack holding it (keepAll).
	bad     map[chunkstore.ID]map[chunkstore.ID]bool
	keepAll map[chunkstore.ID]bool
	// pinned packs hold a copy of a blob with a damaged copy: neither
	// deleted nor repacked, whatever else they hold, until 'repair
	// packs' has dealt with the damage.
	pinned map[chunkstore.ID]bool
}

// addSnapshots lists the snapshots and queues the roots of new ones. A
// snapshot that cannot be read stops prune: its data would look unused.
func (r *referenced) addSnapshots(ctx context.Context, repo *chunkstore.Repository) error {
	snaps, errs, err := List(ctx, repo)
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %v; run 'lifeboat check', and forget the snapshot if it cannot be repaired", ErrPruneUnsafe, errs[0])
	}
	for _, s := range snaps {
		if !r.seen[s.ID] {
			r.seen[s.ID] = true
			r.snapshots++
			r.roots = append(r.roots, s.Tree)
		}
	}
	return nil
}

// walk reads the queued trees and everything below them, a level at a
// time with several trees in flight.
func (r *referenced) walk(ctx context.Context, repo *chunkstore.Repository) error {
	level := r.roots
	r.roots = nil
	for len(level) > 0 {
		var todo []chunkstore.ID
		for _, id := range level {
			if !r.walked[id] {
				r.walked[id] = true
				r.blobs[id] = true
				todo = append(todo, id)
			}
		}
		var mu sync.Mutex
		var next []chunkstore.ID
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for _, id := range todo {
			g.Go(func() error {
				tree, err := LoadTree(gctx, repo, id)
				if err != nil {
					if gctx.Err() != nil {
						return gctx.Err()
					}
					if errors.Is(err, chunkstore.ErrNotRecipient) {
						// Nothing is lost: the error says whose
						// identity reads the pack.
						return fmt.Errorf("%w: tree %s cannot be read with this identity, so what it references is unknown: %v", ErrPruneUnsafe, id.Short(), err)
					}
					return fmt.Errorf("%w: tree %s cannot be read, so what it references is unknown: %v (if an index file was lost, 'lifeboat repair index' indexes its packs again from the packs; then prune)", ErrPruneUnsafe, id.Short(), err)
				}
				mu.Lock()
				defer mu.Unlock()
				for i := range tree.Nodes {
					n := &tree.Nodes[i]
					for _, c := range n.Content {
						r.blobs[c] = true
					}
					if n.Subtree != nil {
						next = append(next, *n.Subtree)
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		level = next
	}
	return nil
}

// chooseOwners gives each referenced blob one owner among the live
// packs (indexed, listed, in no mark): the holder with the most
// referenced blobs, then the fewest unreferenced bytes, then the lowest
// ID. A blob stored twice — left by a crash during repacking, or by two
// backups racing — then counts as used in one pack only and as unused in
// the other, which prune deletes or repacks. Only blobs held by more than
// one pack are remembered (the index finds the first holder of each), so
// this costs memory for duplicates only.
func (r *referenced) chooseOwners(idx *chunkstore.Index, packs []*chunkstore.PackEntry) {
	type score struct {
		gen   int64 // -1: unknown
		refs  int
		waste int64
	}
	r.idx = idx
	r.live = make(map[chunkstore.ID]bool, len(packs))
	scores := make(map[chunkstore.ID]score, len(packs))
	for _, p := range packs {
		r.live[p.ID] = true
		s := score{gen: int64(p.Gen)}
		if p.Gen == chunkstore.GenUnknown {
			s.gen = -1
		}
		for _, b := range p.Blobs {
			if r.blobs[b.ID] {
				s.refs++
			} else {
				s.waste += int64(b.Length)
			}
		}
		scores[p.ID] = s
	}
	better := func(a, b chunkstore.ID) bool {
		sa, sb := scores[a], scores[b]
		if sa.gen != sb.gen {
			// Packs of the current recipients first: those of older
			// ones are what a prune with Rewrap replaces.
			return sa.gen > sb.gen
		}
		if sa.refs != sb.refs {
			return sa.refs > sb.refs
		}
		if sa.waste != sb.waste {
			return sa.waste < sb.waste
		}
		return a.String() < b.String()
	}
	// A referenced blob whose first holder is another pack is held twice
	// (or its first holder is not live): choose among the live holders.
	r.multi = map[chunkstore.ID]chunkstore.ID{}
	for _, p := range packs {
		for _, b := range p.Blobs {
			if !r.blobs[b.ID] {
				continue
			}
			if loc, ok := idx.Lookup(b.ID); ok && loc.Pack.ID != p.ID {
				r.multi[b.ID] = p.ID
			}
		}
	}
	for _, p := range packs {
		for _, b := range p.Blobs {
			cur, ok := r.multi[b.ID]
			if !ok || r.bad[b.ID][p.ID] {
				continue
			}
			if r.bad[b.ID][cur] || better(p.ID, cur) {
				r.multi[b.ID] = p.ID
			}
		}
	}
	r.keepAll = map[chunkstore.ID]bool{}
	for b, o := range r.multi {
		if r.bad[b][o] { // every live copy is damaged
			r.keepAll[b] = true
		}
	}
}

// verifyOwners reads and verifies the copy chooseOwners kept of every
// referenced blob whose other copy is in a pack prune is about to delete
// (nothing else in it is in use): that copy must be intact. A damaged
// kept copy gives the ownership to the next holder, which is verified in
// turn; a blob whose every copy is damaged is kept in all of them, for
// 'repair packs'. Only such duplicates are read, so this costs nothing
// in a repository without any. Copies dropped by repacking a partly
// used pack are verified when it is repacked (dropCopies).
func (r *referenced) verifyOwners(ctx context.Context, repo *chunkstore.Repository, live []*chunkstore.PackEntry, res *PruneResult, log *slog.Logger) error {
	verified := map[[2]chunkstore.ID]bool{} // (blob, pack) read and intact
	for {
		// The kept copies of blobs whose other copy is in a pack prune
		// deletes, having nothing else in use.
		want := map[[2]chunkstore.ID]bool{}
		for _, p := range live {
			if used, _ := r.usage(p); used > 0 {
				continue
			}
			for _, b := range p.Blobs {
				if o, ok := r.multi[b.ID]; ok && r.blobs[b.ID] && o != p.ID && !r.keepAll[b.ID] && !verified[[2]chunkstore.ID{b.ID, o}] {
					want[[2]chunkstore.ID{b.ID, o}] = true
				}
			}
		}
		byPack := map[chunkstore.ID][]chunkstore.Blob{}
		for _, p := range live {
			for _, b := range p.Blobs {
				if k := [2]chunkstore.ID{b.ID, p.ID}; want[k] {
					byPack[p.ID] = append(byPack[p.ID], b)
					delete(want, k) // a pack holding it twice: read once
				}
			}
		}
		if len(byPack) == 0 {
			break
		}
		damaged := false
		for _, p := range live {
			blobs := byPack[p.ID]
			if len(blobs) == 0 {
				continue
			}
			bad, err := verifyCopies(ctx, repo, p, blobs, res, log)
			if err != nil {
				return err
			}
			for _, b := range blobs {
				if bad[b.ID] != nil {
					if r.bad == nil {
						r.bad = map[chunkstore.ID]map[chunkstore.ID]bool{}
					}
					if r.bad[b.ID] == nil {
						r.bad[b.ID] = map[chunkstore.ID]bool{}
					}
					r.bad[b.ID][p.ID] = true
					damaged = true
					continue
				}
				verified[[2]chunkstore.ID{b.ID, p.ID}] = true
			}
		}
		if !damaged {
			break
		}
		r.chooseOwners(r.idx, live)
	}
	// Every pack holding a copy of a blob with a damaged copy is left
	// whole: the damaged ones (repacking one would fail on its hash, and
	// 'repair packs' needs it), the one now kept, and any other, whose
	// copy may be the only intact one left if the kept one was never
	// read (it is verified only when another copy's pack is deleted).
	r.pinned = map[chunkstore.ID]bool{}
	if len(r.bad) > 0 {
		for _, p := range live {
			for _, pb := range p.Blobs {
				if r.bad[pb.ID] != nil {
					r.pinned[p.ID] = true
					break
				}
			}
		}
	}
	return nil
}

// verifyCovering reads, for each referenced blob that a pack this sweep
// deletes holds (holders) and a pack that stays holds too (coverers), a
// copy in a pack that stays; if none of those is intact, the deleted
// packs holding it are kept (keep).
func verifyCovering(ctx context.Context, repo *chunkstore.Repository, ref *referenced, covered map[chunkstore.ID]bool, holders, coverers map[chunkstore.ID][]*chunkstore.PackEntry, keep map[chunkstore.ID]bool, res *PruneResult, log *slog.Logger) error {
	var need []chunkstore.ID
	for id := range ref.blobs {
		if covered[id] && len(holders[id]) > 0 {
			need = append(need, id)
		}
	}
	for try := 0; len(need) > 0; try++ {
		byPack := map[*chunkstore.PackEntry][]chunkstore.Blob{}
		var next []chunkstore.ID
		for _, id := range need {
			cs := coverers[id]
			if try >= len(cs) {
				// No copy that stays is intact: keep the ones this
				// sweep would delete.
				for _, h := range holders[id] {
					keep[h.ID] = true
				}
				continue
			}
			for _, b := range cs[try].Blobs {
				if b.ID == id {
					byPack[cs[try]] = append(byPack[cs[try]], b)
					break
				}
			}
			next = append(next, id)
		}
		need = need[:0]
		failed := map[chunkstore.ID]bool{}
		for p, blobs := range byPack {
			bad, err := verifyCopies(ctx, repo, p, blobs, res, log)
			if err != nil {
				return err
			}
			for _, b := range blobs {
				if bad[b.ID] != nil {
					failed[b.ID] = true
				}
			}
		}
		for _, id := range next {
			if failed[id] {
				need = append(need, id)
			}
		}
	}
	return nil
}

// verifyCopies is verifyBlobs for copies of duplicated blobs that prune
// counts on: it counts them in res and warns, naming the pack, of each
// damaged one.
func verifyCopies(ctx context.Context, repo *chunkstore.Repository, p *chunkstore.PackEntry, blobs []chunkstore.Blob, res *PruneResult, log *slog.Logger) (map[chunkstore.ID]error, error) {
	bad, err := verifyBlobs(ctx, repo, p, blobs)
	if err != nil {
		return nil, err
	}
	for _, b := range blobs {
		if err := bad[b.ID]; err != nil {
			if k := [2]chunkstore.ID{b.ID, p.ID}; !res.damaged[k] {
				if res.damaged == nil {
					res.damaged = map[[2]chunkstore.ID]bool{}
				}
				res.damaged[k] = true
				res.DamagedCopies++
				log.Warn("a copy of a blob stored more than once is damaged; prune keeps the other copies: run 'lifeboat check --read-data', then 'lifeboat repair packs' on this pack", "pack", chunkstore.PackName(p.ID), "blob", b.ID.Short(), "err", err)
			}
			continue
		}
		if k := [2]chunkstore.ID{b.ID, p.ID}; !res.verified[k] {
			if res.verified == nil {
				res.verified = map[[2]chunkstore.ID]bool{}
			}
			res.verified[k] = true
			res.VerifiedCopies++
			res.VerifiedCopyBytes += int64(b.Length)
		}
	}
	return bad, nil
}

// verifyBlobs reads blobs of pack p, in ranges, and checks each one
// (authenticated, its keyed ID recomputed). It returns the blobs found
// damaged or missing, with why; the error is for a read that failed
// otherwise (the network, the store), which stops prune.
func verifyBlobs(ctx context.Context, repo *chunkstore.Repository, p *chunkstore.PackEntry, blobs []chunkstore.Blob) (map[chunkstore.ID]error, error) {
	name := chunkstore.PackName(p.ID)
	bad := map[chunkstore.ID]error{}
	key, err := repo.PackKey(p)
	if err != nil {
		for _, b := range blobs {
			bad[b.ID] = err
		}
		return bad, nil
	}
	slices.SortFunc(blobs, func(a, b chunkstore.Blob) int { return cmp.Compare(a.Offset, b.Offset) })
	var buf, plain []byte
	from := 0
	for _, to := range chunkstore.JoinRanges(blobs, 16<<20) {
		start := int64(blobs[from].Offset)
		end := int64(blobs[to-1].Offset) + int64(blobs[to-1].Length)
		data, getErr := chunkstore.GetInto(ctx, repo.Store(), name, start, end-start, buf[:0])
		switch {
		case getErr != nil && !errors.Is(getErr, chunkstore.ErrNotFound) && !errors.Is(getErr, chunkstore.ErrCorrupt):
			return nil, fmt.Errorf("verify the copies prune keeps: read %s: %w", name, getErr)
		case getErr != nil:
			data = nil
		}
		if cap(data) > cap(buf) {
			buf = data[:0]
		}
		for _, b := range blobs[from:to] {
			off := int64(b.Offset) - start
			if getErr != nil {
				bad[b.ID] = fmt.Errorf("read %s: %w", name, getErr)
				continue
			}
			if off+int64(b.Length) > int64(len(data)) {
				bad[b.ID] = fmt.Errorf("%w: %s: blob %s lies beyond the %d bytes read (truncated pack?)", chunkstore.ErrCorrupt, name, b.ID.Short(), len(data))
				continue
			}
			var err error
			if plain, err = repo.OpenBlob(key, b, data[off:off+int64(b.Length)], plain[:0]); err != nil {
				bad[b.ID] = fmt.Errorf("%s: %w", name, err)
			}
		}
		from = to
	}
	return bad, nil
}

// owner returns the live pack that owns a referenced blob, if one holds it.
func (r *referenced) owner(blob chunkstore.ID) (chunkstore.ID, bool) {
	if id, ok := r.multi[blob]; ok {
		return id, true
	}
	if loc, ok := r.idx.Lookup(blob); ok && r.live[loc.Pack.ID] {
		return loc.Pack.ID, true
	}
	return chunkstore.ID{}, false
}

// anyReferenced reports whether a snapshot references a blob of the pack.
func (r *referenced) anyReferenced(p *chunkstore.PackEntry) bool {
	for _, b := range p.Blobs {
		if r.blobs[b.ID] {
			return true
		}
	}
	return false
}

// usage returns how many of a live pack's blobs are referenced and owned
// by it (see chooseOwners), and the sealed bytes of the others.
func (r *referenced) usage(p *chunkstore.PackEntry) (used int, unused int64) {
	for _, b := range p.Blobs {
		if !r.blobs[b.ID] {
			unused += int64(b.Length)
			continue
		}
		if o, ok := r.owner(b.ID); !ok || o == p.ID || r.keepAll[b.ID] {
			used++
		} else {
			unused += int64(b.Length)
		}
	}
	return used, unused
}
