package chunkstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// TestSessionLifecycle: a session is stored before StartSession returns,
// renewed while it runs (each renewal a new object, so put-only
// credentials suffice), seen as live by prune, and gone after End.
func TestSessionLifecycle(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	timing := chunkstore.SessionTiming{Heartbeat: 30 * time.Millisecond, Stale: time.Minute, CommitWindow: time.Minute}
	s, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: "node-7", PID: 42}, timing)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	list, err := repos.Reader.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != s.ID() || list[0].Info.Host != "node-7" || list[0].Info.PID != 42 {
		t.Fatalf("sessions = %+v, want the one started", list)
	}
	if len(list[0].Objects) < 3 || !list[0].LastBeat.After(list[0].Started) {
		t.Errorf("session after 200 ms with 30 ms renewals: %d objects, started %v, last %v", len(list[0].Objects), list[0].Started, list[0].LastBeat)
	}
	now, err := repos.Reader.StoreNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !list[0].Live(now, timing.Stale) || list[0].Live(now.Add(2*time.Minute), timing.Stale) {
		t.Error("Live does not follow the last renewal")
	}
	if _, err := s.CommitBy(); err != nil {
		t.Errorf("CommitBy of a renewed session: %v", err)
	}
	if err := s.End(ctx); err != nil {
		t.Fatal(err)
	}
	if list, err := repos.Reader.Sessions(ctx); err != nil || len(list) != 0 {
		t.Fatalf("sessions after End: %+v %v, want none", list, err)
	}
	var left []string
	if err := repos.Store.List(ctx, "", func(oi chunkstore.ObjectInfo) error {
		if !strings.HasPrefix(oi.Name, chunkstore.DataPrefix) && oi.Name != "config" && !strings.HasPrefix(oi.Name, "keys/") {
			left = append(left, oi.Name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("objects left by a session and StoreNow: %v", left)
	}
}

// TestSessionEndWithoutDelete: with credentials that cannot delete, End
// closes the session with a "done" object, and prune no longer waits.
func TestSessionEndWithoutDelete(t *testing.T) {
	ctx := context.Background()
	faulty := storetest.NewFaulty(mem.New())
	repos := storetest.InitRepos(t, faulty)
	s, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: "h"}, chunkstore.DefaultSessionTiming)
	if err != nil {
		t.Fatal(err)
	}
	faulty.FailNext(storetest.OpDelete, 1, chunkstore.Permanent(errors.New("AccessDenied")))
	if err := s.End(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := repos.Reader.Sessions(ctx)
	if err != nil || len(list) != 1 || !list[0].Done {
		t.Fatalf("sessions = %+v %v, want one, done", list, err)
	}
	if list[0].Live(time.Now(), time.Hour) {
		t.Error("a done session counts as live")
	}
}

// TestSessionAlive: a session not renewed for CommitWindow refuses to let
// its backup commit, naming the last renewal error.
func TestSessionAlive(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	timing := chunkstore.SessionTiming{Heartbeat: time.Hour, Stale: time.Hour, CommitWindow: 100 * time.Millisecond}
	before := time.Now()
	s, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{}, timing)
	if err != nil {
		t.Fatal(err)
	}
	defer s.End(ctx)
	by, err := s.CommitBy()
	if err != nil {
		t.Fatalf("fresh session: %v", err)
	}
	// The commit must be done half-way between the window and staleness.
	if half := (timing.CommitWindow + timing.Stale) / 2; by.Before(before.Add(half)) || by.After(time.Now().Add(half)) {
		t.Errorf("CommitBy = %v, want about %v from now", by, half)
	}
	time.Sleep(150 * time.Millisecond)
	if _, err := s.CommitBy(); err == nil || !strings.Contains(err.Error(), "does not commit") {
		t.Fatalf("session unrenewed past the window: %v", err)
	}
}

// TestExcludedPacks: a marked pack stays known (so it is not adopted as
// an orphan) but its blobs are not offered for dedup; a blob also stored
// in an unmarked pack is found there.
func TestExcludedPacks(t *testing.T) {
	x := chunkstore.NewIndex()
	only, shared := chunkstore.ID{1}, chunkstore.ID{2}
	marked, kept := chunkstore.ID{0xa}, chunkstore.ID{0xb}
	x.AddPacks([]chunkstore.PackEntry{
		{ID: marked, Blobs: []chunkstore.Blob{{ID: only}, {ID: shared}}},
		{ID: kept, Blobs: []chunkstore.Blob{{ID: shared}}},
	})
	x.SetExcluded(map[chunkstore.ID]bool{marked: true})
	if x.Has(only) || !x.Reserve(only) {
		t.Error("a blob only in a marked pack is offered for dedup")
	}
	if loc, ok := x.Lookup(shared); !ok || loc.Pack.ID != kept {
		t.Errorf("shared blob found in %v, want the unmarked pack", loc.Pack)
	}
	if !x.HasPack(marked) || !x.Excluded(marked) {
		t.Error("the marked pack should stay known and excluded")
	}
	// Packs added later follow the exclusion too.
	later := chunkstore.ID{0xc}
	x.SetExcluded(map[chunkstore.ID]bool{marked: true, later: true})
	x.AddPacks([]chunkstore.PackEntry{{ID: later, Blobs: []chunkstore.Blob{{ID: chunkstore.ID{3}}}}})
	if x.Has(chunkstore.ID{3}) {
		t.Error("a blob of a marked pack added later is offered for dedup")
	}
	x.SetExcluded(nil)
	if !x.Has(chunkstore.ID{3}) || !x.Has(only) {
		t.Error("clearing the exclusion does not bring the blobs back")
	}
}

// TestGCMarks: marks round-trip with the store's time; a damaged mark is
// skipped (it protects nothing and deletes nothing).
func TestGCMarks(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	before := time.Now().Add(-time.Minute)
	m, err := repos.Reader.SaveGCMark(ctx, []chunkstore.ID{{1}, {2}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Created.Before(before) || m.Created.After(time.Now().Add(time.Minute)) {
		t.Errorf("mark created at %v", m.Created)
	}
	if err := repos.Store.Put(ctx, chunkstore.GCPrefix+chunkstore.Hash([]byte("junk")).String(), []byte("junk")); err != nil {
		t.Fatal(err)
	}
	marks, err := repos.Writer.GCMarks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 1 || marks[0].ID != m.ID || len(marks[0].Packs) != 2 || marks[0].Packs[1] != (chunkstore.ID{2}) {
		t.Fatalf("marks = %+v, want the one saved", marks)
	}
	if err := repos.Writer.ExcludeMarked(ctx); err != nil {
		t.Fatal(err)
	}
	if !repos.Writer.Index().Excluded(chunkstore.ID{2}) {
		t.Error("ExcludeMarked did not exclude a marked pack")
	}
	if err := repos.Reader.DeleteGCMark(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if marks, err := repos.Writer.GCMarks(ctx); err != nil || len(marks) != 0 {
		t.Errorf("marks after delete: %+v %v", marks, err)
	}
}

// TestSessionExpiresForGood: renewals further apart than CommitWindow (a
// paused process) expire the session even though the late renewal
// succeeds: prune may have deleted data meanwhile.
func TestSessionExpiresForGood(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	timing := chunkstore.SessionTiming{Heartbeat: 300 * time.Millisecond, Stale: time.Hour, CommitWindow: 100 * time.Millisecond}
	s, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{}, timing)
	if err != nil {
		t.Fatal(err)
	}
	defer s.End(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := repos.Reader.Sessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 && len(list[0].Objects) >= 2 {
			break // renewed
		}
		if time.Now().After(deadline) {
			t.Fatal("the session was not renewed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := s.CommitBy(); err == nil || !strings.Contains(err.Error(), "without a renewal") {
		t.Fatalf("CommitBy right after a late renewal: %v, want the session expired", err)
	}
}

// TestSessionRemovedStopsRenewing: a session whose objects are removed
// while its process runs ('lifeboat unlock') is not stored again by its
// renewals, and no longer lets its holder commit or rewrite.
func TestSessionRemovedStopsRenewing(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	timing := chunkstore.SessionTiming{Heartbeat: 20 * time.Millisecond, Stale: time.Minute, CommitWindow: time.Minute}
	s, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: "node-7", PID: 42, Prune: true}, timing)
	if err != nil {
		t.Fatal(err)
	}
	defer s.End(ctx)
	if err := s.Check(ctx); err != nil {
		t.Fatalf("check of a stored session: %v", err)
	}
	time.Sleep(60 * time.Millisecond)
	list, err := repos.Reader.Sessions(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("sessions: %+v, %v", list, err)
	}
	if err := repos.Reader.RemoveSession(ctx, list[0]); err != nil {
		t.Fatal(err)
	}
	// The next renewal finds the session removed (however late it comes
	// on a busy machine); then a few more periods pass without any.
	deadline := time.Now().Add(10 * time.Second)
	for _, err := s.CommitBy(); !errors.Is(err, chunkstore.ErrSessionRemoved); _, err = s.CommitBy() {
		if time.Now().After(deadline) {
			t.Fatalf("CommitBy 10 s after the removal, with 20 ms renewals: %v, want ErrSessionRemoved", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if list, err := repos.Reader.Sessions(ctx); err != nil || len(list) != 0 {
		t.Fatalf("sessions after the removal was noticed and 100 ms of 20 ms renewals: %+v, %v; want none", list, err)
	}
	if _, err := s.HeldUntil(); !errors.Is(err, chunkstore.ErrSessionRemoved) {
		t.Errorf("HeldUntil of a removed session: %v, want ErrSessionRemoved", err)
	}
}

// TestRewriteIndexLeavesOutGonePacks: a pack deleted after the index was
// loaded (by a prune overlapping this one) is not named by the rewritten
// index; one the listing misses but that is there is kept.
func TestRewriteIndexLeavesOutGonePacks(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	var packs []chunkstore.ID
	for seed := range uint64(3) {
		storeBlob(t, repos.Writer, seed)
	}
	r := repos.Reader
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Index().Packs() {
		packs = append(packs, p.ID)
	}
	if len(packs) != 3 {
		t.Fatalf("%d packs indexed, want 3", len(packs))
	}
	if err := repos.Store.Delete(ctx, chunkstore.PackName(packs[0])); err != nil {
		t.Fatal(err)
	}
	hidden := storetest.Hiding{Store: repos.Store, Hide: chunkstore.PackName(packs[1])}
	ids, _ := chunkstore.ParseIdentityFile(repos.Identity, nil)
	r2, err := chunkstore.Open(ctx, hidden, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r2.RewriteIndex(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	r3, err := chunkstore.Open(ctx, repos.Store, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r3.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if r3.Index().HasPack(packs[0]) || !r3.Index().HasPack(packs[1]) || !r3.Index().HasPack(packs[2]) {
		t.Fatalf("rewritten index: gone pack %s kept %v, listed-late pack %s kept %v, third kept %v", packs[0].Short(), r3.Index().HasPack(packs[0]),
			packs[1].Short(), r3.Index().HasPack(packs[1]), r3.Index().HasPack(packs[2]))
	}
}

// storeBlob stores 1000 bytes of data made from seed in a pack of their
// own, with its index file.
func storeBlob(t *testing.T, repo *chunkstore.Repository, seed uint64) {
	t.Helper()
	ctx := context.Background()
	w, err := repo.NewWriter(ctx, chunkstore.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.SaveBlob(ctx, chunkstore.DataBlob, storetest.Data(seed, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRemoveDamagedGCMarks: marks that cannot be read (bytes that do not
// match their name, or not a sealed mark) are removed, after a dry run
// that only counts them; a readable mark stays.
func TestRemoveDamagedGCMarks(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	good, err := repos.Reader.SaveGCMark(ctx, []chunkstore.ID{{1}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := repos.Store.Get(ctx, chunkstore.GCPrefix+good.ID.String(), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	rotted := chunkstore.GCPrefix + chunkstore.Hash([]byte("rotted")).String()
	junk := chunkstore.GCPrefix + chunkstore.Hash([]byte("junk")).String()
	for name, data := range map[string][]byte{rotted: b, junk: []byte("junk")} {
		if err := repos.Store.Put(ctx, name, data); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := repos.Reader.RemoveDamagedGCMarks(ctx, true); err != nil || n != 2 {
		t.Fatalf("dry run: %d, %v; want 2 damaged marks counted", n, err)
	}
	if got := len(gcNames(t, repos.Store)); got != 3 {
		t.Fatalf("%d marks after a dry run, want all 3", got)
	}
	if n, err := repos.Reader.RemoveDamagedGCMarks(ctx, false); err != nil || n != 2 {
		t.Fatalf("RemoveDamagedGCMarks: %d, %v; want 2", n, err)
	}
	if names := gcNames(t, repos.Store); len(names) != 1 || names[0] != chunkstore.GCPrefix+good.ID.String() {
		t.Fatalf("marks left: %v, want only the readable one", names)
	}
}

// gcNames lists the names under gc/.
func gcNames(t *testing.T, st chunkstore.Store) []string {
	t.Helper()
	var names []string
	if err := st.List(context.Background(), chunkstore.GCPrefix, func(oi chunkstore.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return names
}
