package chunkstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Garbage collection without a lock server.
//
// A backup may deduplicate against any blob the index lists, and it
// commits its snapshot only at the end. Deleting a pack no snapshot
// references is therefore unsafe while a backup that read the index
// before the deletion is still running. lifeboat makes it safe with two
// kinds of objects:
//
//   - A backup session (sessions/<session>/<seq>) is written by every
//     backup before it reads the index, renewed every Heartbeat while it
//     runs, and removed (or closed with a "done" object) when it ends.
//   - A GC mark (gc/<hash>) lists packs that no snapshot referenced when
//     prune looked. Backups read the marks right after registering their
//     session and never deduplicate against (or adopt) a marked pack.
//
// A mark's packs are deleted only once every session that could have read
// the index without seeing the mark has ended: those started before the
// mark (by the store's clock, with a margin) that are neither closed nor
// silent for longer than Stale. Prune then walks the snapshots again, so a
// pack such a backup did reuse is kept. A backup that could not renew its
// session for CommitWindow refuses to commit, and to write an index file
// (WriterOptions.IndexBy, AdoptOrphans), so a session taken for dead
// never commits a snapshot that needs deleted data, nor indexes packs a
// prune deleted as its unreferenced orphans.
//
// All times compared are objects' modification times (the store's clock);
// the client's clock only paces the heartbeat.

// Object prefixes of garbage collection.
const (
	SessionsPrefix = "sessions/"
	GCPrefix       = "gc/"
)

// Metadata kinds of garbage collection.
const (
	KindSession MetaKind = 4
	KindGCMark  MetaKind = 5
)

// SessionTiming paces backup sessions.
type SessionTiming struct {
	Heartbeat    time.Duration // how often a running backup renews its session
	Stale        time.Duration // a session silent this long is taken for dead by prune
	CommitWindow time.Duration // a backup whose last renewal is older refuses to commit
	// Margin covers the store's time resolution and skew between the
	// servers behind it: a session stored up to Margin after a mark still
	// counts as started before it.
	Margin time.Duration
}

// OrDefault returns t, or DefaultSessionTiming if t is the zero value.
func (t SessionTiming) OrDefault() SessionTiming {
	if t == (SessionTiming{}) {
		return DefaultSessionTiming
	}
	return t
}

// DefaultSessionTiming is used by backups and prune. Stale must be well
// above CommitWindow plus the time a commit takes.
var DefaultSessionTiming = SessionTiming{
	Heartbeat:    5 * time.Minute,
	Stale:        30 * time.Minute,
	CommitWindow: 15 * time.Minute,
	Margin:       time.Minute,
}

// SessionInfo is what a backup session says about itself (sealed with the
// metadata key; prune shows it when it waits for the session).
type SessionInfo struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"` // the client's clock, for people
	Program string    `json:"program,omitempty"`
	// Prune marks a prune's session: prunes run one at a time (the
	// oldest live one goes on), and a prune does not wait for another's.
	Prune bool `json:"prune,omitempty"`
	// Command names what holds a prune session: "prune", "repair index",
	// ... (empty in sessions stored before it was recorded).
	Command string `json:"command,omitempty"`
	// Machine is the host name of the machine the process runs on
	// (Host is a backup's --host, which may name another): whether the
	// process is still running can be told only there. StartSession
	// fills it in.
	Machine string `json:"machine,omitempty"`
}

// Session is a running backup's registration. Its methods are safe for
// concurrent use.
type Session struct {
	r      *Repository
	id     string
	timing SessionTiming

	mu       sync.Mutex
	seq      int
	names    []string
	lastBeat time.Time // client clock (monotonic) of the last stored renewal
	beatErr  error
	// expired is set for good when renewals were more than CommitWindow
	// apart (the process was paused, or cut off): prune may have taken
	// the session for dead meanwhile, and a later renewal cannot undo
	// that.
	expired error

	stop chan struct{}
	done chan struct{}
}

// StartSession registers a backup session and renews it in the background
// until End. Call it before reading the index.
func (r *Repository) StartSession(ctx context.Context, info SessionInfo, timing SessionTiming) (*Session, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	s := &Session{r: r, id: hex.EncodeToString(b[:]), timing: timing, stop: make(chan struct{}), done: make(chan struct{})}
	if info.Machine == "" {
		info.Machine, _ = os.Hostname()
	}
	plain, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	if err := s.beat(ctx, plain); err != nil {
		// It may have been stored all the same: remove it if so.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, name := range s.names {
			_ = r.store.Delete(dctx, name)
		}
		return nil, fmt.Errorf("register session in %s: %w", r.store.Location(), err)
	}
	go s.renew(plain)
	return s, nil
}

// ErrSessionRemoved: a session's objects were removed while its process
// ran ('lifeboat unlock', or a prune that took it for dead).
var ErrSessionRemoved = errors.New("session removed from the repository")

// Check returns an error wrapping ErrSessionRemoved if the session's
// first object is no longer in the store: others no longer see the
// session, so what it holds back (a prune, a sweep) may already run. The
// session then counts as expired for good (HeldUntil, CommitBy). Other
// errors (the store unreachable) are returned as they are.
func (s *Session) Check(ctx context.Context) error {
	s.mu.Lock()
	first := s.names[0]
	s.mu.Unlock()
	if _, err := s.r.store.Stat(ctx, first); err != nil {
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("check session %s: %w", s.id, err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.expired == nil {
			s.expired = fmt.Errorf("%w: session %s is no longer in %s (removed by 'lifeboat unlock'?)", ErrSessionRemoved, s.id, s.r.store.Location())
		}
		return s.expired
	}
	return nil
}

// ID returns the session's random ID.
func (s *Session) ID() string { return s.id }

func (s *Session) beat(ctx context.Context, plain []byte) error {
	s.mu.Lock()
	name := fmt.Sprintf("%s%s/%06d", SessionsPrefix, s.id, s.seq)
	s.seq++
	// Remembered before it is stored: a put that failed on our side (a
	// timeout) may still have been stored, and End must remove it too.
	s.names = append(s.names, name)
	s.mu.Unlock()
	start := time.Now()
	err := s.r.store.Put(ctx, name, sealMeta(&s.r.secrets.MetaKey, KindSession, plain))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.beatErr = err
		return err
	}
	if !s.lastBeat.IsZero() && s.expired == nil {
		if gap := elapsed(s.lastBeat, start); gap > s.timing.CommitWindow {
			s.expired = fmt.Errorf("session %s went %s without a renewal (limit %s)", s.id, gap.Round(time.Second), s.timing.CommitWindow)
		}
	}
	// The renewal counts from when it was sent: the store may have
	// stamped it any time after that.
	if start.After(s.lastBeat) {
		s.lastBeat = start
	}
	s.beatErr = nil
	return nil
}

func (s *Session) renew(plain []byte) {
	defer close(s.done)
	t := time.NewTicker(s.timing.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.timing.Heartbeat)
			removed := s.renewOnce(ctx, plain)
			cancel()
			if removed {
				return
			}
		}
	}
}

// renewOnce stores the next renewal unless the session was removed
// (Check), and reports whether it was: renewing it would store it again,
// as if it had just started, so renewal stops. Whoever removed it may
// have listed its objects before a renewal was stored (or the removal
// came between the check and the renewal): every object the session
// stored is deleted again, or it would look live.
func (s *Session) renewOnce(ctx context.Context, plain []byte) (removed bool) {
	gone := func() bool {
		err := s.Check(ctx)
		if !errors.Is(err, ErrSessionRemoved) {
			return false
		}
		s.r.log.Warn("the session was removed from the repository: it is not renewed, and what it holds back is not done", "session", s.id, "err", err)
		s.mu.Lock()
		names := append([]string(nil), s.names...)
		s.mu.Unlock()
		for _, name := range names {
			_ = s.r.store.Delete(ctx, name) // best effort: it goes stale otherwise
		}
		return true
	}
	if gone() {
		return true
	}
	if err := s.beat(ctx, plain); err != nil {
		s.r.log.Warn("could not renew the backup session; the backup will not commit if this lasts", "session", s.id, "err", err)
		return false
	}
	return gone()
}

// CommitBy returns the time by which the backup's commit must be done: an
// error if the session was last renewed longer than CommitWindow ago
// (prune may then have taken it for dead and deleted data the backup
// reused, so the backup must not commit), otherwise half-way between
// CommitWindow and Stale after the last renewal.
func (s *Session) CommitBy() (time.Time, error) {
	if err := s.alive(); err != nil {
		return time.Time{}, err
	}
	return s.HeldUntil()
}

// CommitByChecked is CommitBy once Check has found the session still in
// the store. A session whose objects were removed while its process runs
// (by hand: 'lifeboat unlock' refuses a live backup's) no longer holds
// prunes back, which may then delete the packs it reused or uploaded;
// its renewals notice only a Heartbeat later. Whatever names those packs
// (an index file, a snapshot) asks this first.
func (s *Session) CommitByChecked(ctx context.Context) (time.Time, error) {
	if err := s.Check(ctx); err != nil && !errors.Is(err, ErrSessionRemoved) {
		return time.Time{}, err
	}
	return s.CommitBy() // ErrSessionRemoved: the session has expired
}

// alive returns an error if the session was last renewed longer than
// CommitWindow ago (see CommitBy).
func (s *Session) alive() error {
	if err := s.lapsed(); err != nil {
		return fmt.Errorf("%w: a prune may have removed data this backup reused, so it does not commit; run the backup again", err)
	}
	return nil
}

// lapsed returns an error if the session may already count as ended for
// others: it was last renewed longer than CommitWindow ago.
func (s *Session) lapsed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.expired != nil {
		return s.expired
	}
	// The renewal that would notice a suspended machine is itself paced
	// by the monotonic clock, and comes only a Heartbeat after it wakes:
	// the wall clock must tell at once.
	if age := elapsed(s.lastBeat, time.Now()); age > s.timing.CommitWindow {
		msg := fmt.Sprintf("session %s was last renewed %s ago (limit %s)", s.id, age.Round(time.Second), s.timing.CommitWindow)
		if s.beatErr != nil {
			msg += fmt.Sprintf("; last renewal error: %v", s.beatErr)
		}
		return errors.New(msg)
	}
	return nil
}

// elapsed returns the time from then to now by whichever of the two
// clocks says it is longer: the monotonic one does not advance while the
// machine is suspended (a laptop's lid closed mid-backup), the wall clock
// may be stepped.
func elapsed(then, now time.Time) time.Duration {
	return max(now.Sub(then), now.Round(0).Sub(then.Round(0)))
}

// HeldUntil is CommitBy for a session that is not a backup's (a prune, or
// a repair holding the prune session): the time by which what it writes
// in its name must be done, or an error if it may already count as ended
// — another prune may then be running.
func (s *Session) HeldUntil() (time.Time, error) {
	if err := s.lapsed(); err != nil {
		return time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Counted from now by both clocks (elapsed): lastBeat plus the
	// window by the monotonic clock alone would end later than the
	// store's staleness after a suspend.
	now := time.Now()
	return now.Add((s.timing.CommitWindow+s.timing.Stale)/2 - elapsed(s.lastBeat, now)), nil
}

// End stops renewing the session and removes it. If the store refuses
// deletes (credentials that may only put), it closes the session with a
// "done" object instead, which prune removes later.
func (s *Session) End(ctx context.Context) error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	names := append([]string(nil), s.names...)
	s.mu.Unlock()
	for _, name := range names {
		if err := s.r.store.Delete(ctx, name); err != nil && !errors.Is(err, ErrNotFound) {
			done := SessionsPrefix + s.id + "/done"
			if perr := s.r.store.Put(ctx, done, sealMeta(&s.r.secrets.MetaKey, KindSession, []byte("{}"))); perr != nil {
				return fmt.Errorf("end backup session %s: delete %s: %v; put %s: %w", s.id, name, err, done, perr)
			}
			return nil
		}
	}
	return nil
}

// SessionState is a backup session as prune sees it.
type SessionState struct {
	ID       string
	Info     SessionInfo // zero if unreadable, or the session is done
	Started  time.Time   // store time of the first object
	LastBeat time.Time   // store time of the newest renewal
	Done     bool        // closed with a "done" object
	Objects  []string
}

// Live reports whether the session may still be running at store time now.
func (s SessionState) Live(now time.Time, stale time.Duration) bool {
	return !s.Done && now.Sub(s.LastBeat) < stale
}

// Sessions lists the backup sessions in the repository, oldest first.
func (r *Repository) Sessions(ctx context.Context) ([]SessionState, error) {
	byID := map[string]*SessionState{}
	newest := map[string]string{}
	err := r.store.List(ctx, SessionsPrefix, func(oi ObjectInfo) error {
		id, obj, ok := strings.Cut(strings.TrimPrefix(oi.Name, SessionsPrefix), "/")
		if !ok || id == "" {
			r.log.Warn("ignoring unexpected object", "name", oi.Name)
			return nil
		}
		s := byID[id]
		if s == nil {
			s = &SessionState{ID: id, Started: oi.ModTime, LastBeat: oi.ModTime}
			byID[id] = s
		}
		s.Objects = append(s.Objects, oi.Name)
		if obj == "done" {
			s.Done = true
			return nil
		}
		if oi.ModTime.Before(s.Started) {
			s.Started = oi.ModTime
		}
		if !oi.ModTime.Before(s.LastBeat) {
			s.LastBeat = oi.ModTime
			newest[id] = oi.Name
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions in %s: %w", r.store.Location(), err)
	}
	out := make([]SessionState, 0, len(byID))
	for id, s := range byID {
		// Only sessions that may still run are described (prune names the
		// ones it waits for); closed ones pile up with put-only
		// credentials until prune removes them, and are not read.
		if name := newest[id]; name != "" && !s.Done {
			if b, err := r.store.Get(ctx, name, 0, -1); err == nil {
				if plain, err := openMeta(&r.secrets.MetaKey, KindSession, b); err == nil {
					_ = json.Unmarshal(plain, &s.Info)
				}
			}
		}
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// RemoveSession deletes the objects of session s (as Sessions listed
// them), for a session whose process no longer runs.
func (r *Repository) RemoveSession(ctx context.Context, s SessionState) error {
	for _, name := range s.Objects {
		if err := r.store.Delete(ctx, name); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("remove session %s (%s): %w", s.ID, name, err)
		}
	}
	return nil
}

// packGone reports whether pack id is not in the store, asking for the
// object itself: listings may lag behind writes.
func (r *Repository) packGone(ctx context.Context, id ID) (bool, error) {
	_, err := r.store.Stat(ctx, PackName(id))
	switch {
	case err == nil:
		r.log.Warn("indexed pack missing from the listing but there; kept", "pack", PackName(id))
		return false, nil
	case errors.Is(err, ErrNotFound):
		return true, nil
	}
	return false, fmt.Errorf("is %s missing? %w", PackName(id), err)
}

// GCMark is a set of packs prune found unreferenced, waiting for the
// backups that might still reuse them to end.
type GCMark struct {
	ID      ID
	Created time.Time // store time
	Packs   []ID
}

type gcMarkJSON struct {
	Packs []ID `json:"packs"`
}

// SaveGCMark stores a mark for packs and returns it with the store's time.
func (r *Repository) SaveGCMark(ctx context.Context, packs []ID) (GCMark, error) {
	plain, err := json.Marshal(gcMarkJSON{Packs: packs})
	if err != nil {
		return GCMark{}, err
	}
	sealed := sealMeta(&r.secrets.MetaKey, KindGCMark, plain)
	id := Hash(sealed)
	name := GCPrefix + id.String()
	if err := r.store.Put(ctx, name, sealed); err != nil {
		return GCMark{}, fmt.Errorf("save GC mark %s: %w", name, err)
	}
	created, err := r.listedModTime(ctx, name)
	if err != nil {
		return GCMark{}, fmt.Errorf("save GC mark %s: %w", name, err)
	}
	return GCMark{ID: id, Created: created, Packs: packs}, nil
}

// listedModTime returns an object's modification time as List reports
// it. GC takes every time from listings: S3 reports them to the
// millisecond there, but to the second in a HEAD's Last-Modified header,
// and mixing the two could move a mark before a session that preceded it.
func (r *Repository) listedModTime(ctx context.Context, name string) (time.Time, error) {
	var t time.Time
	found := false
	err := r.store.List(ctx, name, func(oi ObjectInfo) error {
		if oi.Name == name {
			t, found = oi.ModTime, true
		}
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("%s: %w (stored, then not listed)", name, ErrNotFound)
	}
	return t, err
}

// GCMarks loads every mark, oldest first. A damaged mark is skipped with
// a warning: nothing can be deleted under it, and its packs are found
// unreferenced again by the next prune. A mark sealed by a newer lifeboat
// is an error (ErrNewerFormat): skipping it, a backup would reuse the
// packs that release's prune is about to delete.
func (r *Repository) GCMarks(ctx context.Context) ([]GCMark, error) {
	marks, _, err := r.gcMarks(ctx)
	return marks, err
}

// RemoveDamagedGCMarks removes the marks GCMarks skips as damaged: bytes
// that do not match their name, or not sealed with this repository's key
// for a mark. Such a mark holds nothing back (backups do not exclude its
// packs, no prune deletes under it), and every backup, check and prune
// would warn about it forever. It returns how many it removed, or in a
// dry run would remove. (A mark that opens but does not parse is left:
// some lifeboat with this key wrote it.)
func (r *Repository) RemoveDamagedGCMarks(ctx context.Context, dryRun bool) (int, error) {
	_, damaged, err := r.gcMarks(ctx)
	if err != nil || dryRun {
		return len(damaged), err
	}
	for i, name := range damaged {
		if err := r.store.Delete(ctx, name); err != nil && !errors.Is(err, ErrNotFound) {
			return i, fmt.Errorf("remove the damaged GC mark %s: %w", name, err)
		}
	}
	return len(damaged), nil
}

// gcMarks is GCMarks, also returning the names of the marks that are
// corrupt (ErrCorrupt: see RemoveDamagedGCMarks).
func (r *Repository) gcMarks(ctx context.Context) (marks []GCMark, damaged []string, err error) {
	var infos []ObjectInfo
	err = r.store.List(ctx, GCPrefix, func(oi ObjectInfo) error {
		infos = append(infos, oi)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list GC marks in %s: %w", r.store.Location(), err)
	}
	for _, oi := range infos {
		rest := strings.TrimPrefix(oi.Name, GCPrefix)
		if strings.HasPrefix(rest, "clock-") {
			continue // StoreNow's, removed at once
		}
		id, err := ParseID(rest)
		if err != nil {
			r.log.Warn("ignoring unexpected object", "name", oi.Name)
			continue
		}
		b, err := r.store.Get(ctx, oi.Name, 0, -1)
		if errors.Is(err, ErrNotFound) {
			continue // swept meanwhile
		}
		if err != nil {
			return nil, nil, fmt.Errorf("load GC mark %s: %w", oi.Name, err)
		}
		var m gcMarkJSON
		var plain []byte
		if Hash(b) != id {
			err = fmt.Errorf("%w: does not match its hash", ErrCorrupt)
		} else {
			plain, err = openMeta(&r.secrets.MetaKey, KindGCMark, b)
		}
		if errors.Is(err, ErrNewerFormat) {
			// A newer lifeboat's mark, intact: its prune deletes the
			// packs once the backups that started before it end, so a
			// backup that reused them, not knowing the mark, would
			// commit a snapshot naming deleted data.
			return nil, nil, fmt.Errorf("load GC mark %s: %w", oi.Name, err)
		}
		if err == nil {
			err = json.Unmarshal(plain, &m)
		}
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				r.log.Warn("ignoring damaged GC mark; the next prune removes it", "name", oi.Name, "err", err)
				damaged = append(damaged, oi.Name)
			} else {
				r.log.Warn("ignoring damaged GC mark", "name", oi.Name, "err", err)
			}
			continue
		}
		marks = append(marks, GCMark{ID: id, Created: oi.ModTime, Packs: m.Packs})
	}
	sort.Slice(marks, func(i, j int) bool { return marks[i].Created.Before(marks[j].Created) })
	return marks, damaged, nil
}

// DeleteGCMark removes a swept mark.
func (r *Repository) DeleteGCMark(ctx context.Context, id ID) error {
	if err := r.store.Delete(ctx, GCPrefix+id.String()); err != nil {
		return fmt.Errorf("delete GC mark %s: %w", id.Short(), err)
	}
	return nil
}

// ExcludeMarked reads the GC marks and stops the index from offering
// their packs' blobs for deduplication, and AdoptOrphans from adopting
// them. Backups call it after StartSession.
func (r *Repository) ExcludeMarked(ctx context.Context) error {
	marks, err := r.GCMarks(ctx)
	if err != nil {
		return err
	}
	r.index.SetExcluded(MarkedPacks(marks))
	return nil
}

// MarkedPacks returns the set of packs the marks list.
func MarkedPacks(marks []GCMark) map[ID]bool {
	set := map[ID]bool{}
	for _, m := range marks {
		for _, p := range m.Packs {
			set[p] = true
		}
	}
	return set
}

// ErrClockRefused is wrapped by StoreNow's error when the store refused
// to write or remove its clock object for what the request is, not for a
// passing fault: a read-only filesystem or credentials, credentials that
// may not delete, denied access, a full store. Read-only listings may
// then go on (StoreNow still returns the store's time when only the
// removal was refused, else they fall back to this machine's clock);
// whatever removes data must not.
var ErrClockRefused = errors.New("the store refused to write or remove its clock object")

// StoreNow returns the store's current time: the modification time of a
// small object written and removed for the purpose. When the store
// refuses only the removal (ErrClockRefused), it returns the time with
// the error.
func (r *Repository) StoreNow(ctx context.Context) (time.Time, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return time.Time{}, err
	}
	name := GCPrefix + "clock-" + hex.EncodeToString(b[:])
	if err := r.store.Put(ctx, name, nil); err != nil {
		if refusedWrite(err) {
			err = fmt.Errorf("%w: %w", ErrClockRefused, err)
		}
		return time.Time{}, fmt.Errorf("read the store's clock: %w", err)
	}
	now, err := r.listedModTime(ctx, name)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the store's clock: %w", err)
	}
	if err := r.store.Delete(ctx, name); err != nil {
		if refusedWrite(err) {
			// Credentials that may put but not delete (a backup
			// agent's): the time is the store's all the same, and
			// prune removes the object a day later (SweepClocks).
			return now, fmt.Errorf("read the store's clock: %w: %w", ErrClockRefused, err)
		}
		return time.Time{}, fmt.Errorf("read the store's clock: %w", err)
	}
	return now, nil
}

// refusedWrite reports whether err, from a Put, refuses the write for
// good (read-only, denied, full) rather than failing on the way
// (network, cancellation) or for a missing repository.
func refusedWrite(err error) bool {
	return IsPermanent(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrBucketNotFound)
}

// SweepClocks removes the objects StoreNow writes and removes at once
// that a process killed in between left behind (nothing else ever
// removes them), stored before before; in a dry run it only counts them.
func (r *Repository) SweepClocks(ctx context.Context, before time.Time, dryRun bool) (int, error) {
	var old []string
	err := r.store.List(ctx, GCPrefix+"clock-", func(oi ObjectInfo) error {
		if oi.ModTime.Before(before) {
			old = append(old, oi.Name)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list clock objects in %s: %w", r.store.Location(), err)
	}
	if dryRun {
		return len(old), nil
	}
	for i, name := range old {
		if err := r.store.Delete(ctx, name); err != nil {
			return i, fmt.Errorf("remove the clock object %s: %w", name, err)
		}
	}
	return len(old), nil
}

// indexPacksPerFile bounds the packs one rewritten index file lists
// (about 15 blobs of 45 bytes each per pack: under 1 MiB per file).
const indexPacksPerFile = 1000

// RewriteIndex replaces the index files LoadIndex read with new ones that
// list every known pack except those in drop, and returns how many files
// it wrote and removed. New files are all written before any old one is
// removed, so a crash leaves duplicates, never a pack that drops out of
// the index while it is still needed. Index files written by others after
// LoadIndex are left alone. Indexed packs that are gone are left out (see
// rewriteIndex); present is a listing of the packs (ListPacks) the caller
// took after loading the index and after writing any pack it adds, or nil
// to have one taken now.
func (r *Repository) RewriteIndex(ctx context.Context, drop map[ID]bool, present map[ID]int64) (written, removed int, err error) {
	return r.rewriteIndex(ctx, drop, present, false)
}

// rewriteIndex is RewriteIndex; with removeDamaged the index files
// LoadIndex could not read are removed too (RepairIndex, which has
// described their packs again from the packs), instead of refusing.
func (r *Repository) rewriteIndex(ctx context.Context, drop map[ID]bool, present map[ID]int64, removeDamaged bool) (written, removed int, err error) {
	// An index file of a newer release is never removed: this one
	// cannot describe its packs as that one did.
	if err := r.newerIndexErr(); err != nil {
		return 0, 0, fmt.Errorf("rewrite index: %w", err)
	}
	if len(r.indexProblems) > 0 && !removeDamaged {
		return 0, 0, fmt.Errorf("rewrite index: %d index files are damaged (%s among them: %v); run 'lifeboat repair index' first", len(r.indexProblems), r.indexProblems[0].Object, r.indexProblems[0].Err)
	}
	// A pack deleted since the index was loaded must not be named by
	// the new files, or backups would deduplicate against data that is
	// gone. Only another prune deletes packs, and prunes run one at a
	// time; but one whose session was removed ('lifeboat unlock') while
	// it still ran can overlap this one.
	if present == nil {
		if present, err = r.ListPacks(ctx); err != nil {
			return 0, 0, fmt.Errorf("rewrite index: %w", err)
		}
	}
	var keep []PackEntry
	for _, p := range r.index.Packs() {
		if drop[p.ID] {
			continue
		}
		if _, ok := present[p.ID]; !ok {
			gone, err := r.packGone(ctx, p.ID)
			if err != nil {
				return 0, 0, fmt.Errorf("rewrite index: %w", err)
			}
			if gone {
				r.log.Warn("indexed pack is gone (deleted by a prune running beside this one?): the new index leaves it out", "pack", PackName(p.ID))
				continue
			}
		}
		keep = append(keep, *p)
	}
	// Every file LoadIndex read, the damaged ones included (they are
	// read too, and only get here with removeDamaged).
	var old []string
	for id := range r.indexRead {
		old = append(old, IndexPrefix+id.String())
	}
	for len(keep) > 0 {
		n := min(len(keep), indexPacksPerFile)
		if _, err := r.SaveMeta(ctx, KindIndex, EncodeIndex(keep[:n])); err != nil {
			return written, 0, fmt.Errorf("rewrite index: %w", err)
		}
		keep = keep[n:]
		written++
	}
	for _, name := range old {
		if err := r.store.Delete(ctx, name); err != nil {
			return written, removed, fmt.Errorf("rewrite index: remove %s: %w", name, err)
		}
		r.Uncache(name)
		if id, err := ParseID(strings.TrimPrefix(name, IndexPrefix)); err == nil {
			delete(r.indexRead, id)
		}
		removed++
	}
	if removeDamaged {
		r.indexProblems = nil
	}
	return written, removed, nil
}
