package snapshot_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// pruneBackends are the stores the garbage-collection tests run on: the
// protocol compares stores' modification times, so it is tested against
// each real implementation, MinIO included.
var pruneBackends = []string{"mem", "local", "minio"}

func pruneRepos(t *testing.T, backend string) storetest.Repos {
	if backend == "mem" {
		return storetest.InitRepos(t, mem.New())
	}
	return storetest.NewRepos(t, backend)
}

// onEachBackend runs fn as a subtest per backend, with a new repository
// and an empty source directory.
func onEachBackend(t *testing.T, fn func(t *testing.T, repos storetest.Repos, src string)) {
	for _, backend := range pruneBackends {
		t.Run(backend, func(t *testing.T) { fn(t, pruneRepos(t, backend), t.TempDir()) })
	}
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// reopen opens the repository again with the identity, as a new process
// would: nothing cached from earlier commands.
func reopen(t *testing.T, repos storetest.Repos, st chunkstore.Store) *chunkstore.Repository {
	t.Helper()
	return repos.OpenReader(t, st)
}

// reopenLoaded is reopen with the index loaded.
func reopenLoaded(t *testing.T, repos storetest.Repos, st chunkstore.Store) *chunkstore.Repository {
	t.Helper()
	r := reopen(t, repos, st)
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func backupDir(t *testing.T, repo *chunkstore.Repository, dir string) *snapshot.Result {
	t.Helper()
	res, err := snapshot.Backup(context.Background(), repo, snapshot.BackupOptions{Paths: []string{dir}, Host: "h"})
	if err != nil {
		t.Fatalf("backup %s: %v", dir, err)
	}
	return res
}

func forget(t *testing.T, st chunkstore.Store, id chunkstore.ID) {
	t.Helper()
	if err := st.Delete(context.Background(), chunkstore.SnapshotsPrefix+id.String()); err != nil {
		t.Fatal(err)
	}
}

func countObjects(t *testing.T, st chunkstore.Store, prefix string) int {
	t.Helper()
	return len(listNames(t, st, prefix))
}

func listNames(t *testing.T, st chunkstore.Store, prefix string) []string {
	t.Helper()
	var names []string
	if err := st.List(context.Background(), prefix, func(oi chunkstore.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

// verifyRestores checks the whole repository (structure and every pack's
// data) and restores each snapshot in want, comparing every file.
func verifyRestores(t *testing.T, repos storetest.Repos, want map[chunkstore.ID]map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	r := reopenLoaded(t, repos, repos.Store)
	rep, err := r.Check(ctx, chunkstore.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	probs, err := snapshot.Check(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if probs = append(probs, rep.Problems...); len(probs) > 0 {
		t.Fatalf("check after prune: %v", probs)
	}
	for id, files := range want {
		snap, err := snapshot.Load(ctx, r, id)
		if err != nil {
			t.Fatalf("snapshot %s: %v", id.Short(), err)
		}
		dst := t.TempDir()
		res, err := restore.Restore(ctx, r, snap, restore.Options{Target: dst})
		if err != nil {
			t.Fatalf("restore %s: %v", id.Short(), err)
		}
		if len(res.Failures) > 0 {
			t.Fatalf("restore %s: failed files %v", id.Short(), res.Failures)
		}
		for path, data := range files {
			got, err := os.ReadFile(filepath.Join(dst, path))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("snapshot %s: %s restored wrong (%v, %d bytes, want %d)", id.Short(), path, err, len(got), len(data))
			}
		}
	}
}

// TestPruneDeletesOnlyUnreferenced: after forgetting a snapshot, prune
// deletes the packs only it used, keeps shared data, and leaves a
// repository that checks clean and restores the remaining snapshot.
func TestPruneDeletesOnlyUnreferenced(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		a, shared, c := storetest.Data(1, 3<<20), storetest.Data(2, 2<<20), storetest.Data(3, 2<<20)
		// shared alone, then with a (a's data in packs of its own),
		// then with c instead of a; the middle snapshot is forgotten.
		writeFile(t, filepath.Join(src, "shared"), shared)
		first := backupDir(t, repos.Writer, src)
		writeFile(t, filepath.Join(src, "a"), a)
		middle := backupDir(t, repos.Writer, src)
		removeFile(t, filepath.Join(src, "a"))
		writeFile(t, filepath.Join(src, "c"), c)
		second := backupDir(t, repos.Writer, src)
		forget(t, repos.Store, middle.ID)

		// A dry run changes nothing.
		before := countObjects(t, repos.Store, "")
		dry, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if dry.MarkedPacks == 0 || dry.DeletedPacks != 0 {
			t.Fatalf("dry run: %+v, want packs to mark and none deleted", dry)
		}
		if after := countObjects(t, repos.Store, ""); after != before {
			t.Fatalf("dry run changed the store: %d objects, then %d", before, after)
		}

		res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.MarkedPacks != dry.MarkedPacks || res.DeletedPacks != res.MarkedPacks || res.PendingMarks != 0 {
			t.Fatalf("prune: %+v, want every marked pack deleted at once (dry run marked %d)", res, dry.MarkedPacks)
		}
		if res.DeletedBytes < 3<<20 || res.DeletedBytes > 3<<20+64<<10 {
			t.Errorf("deleted %d bytes, want the forgotten file's 3 MiB and a tree or two", res.DeletedBytes)
		}
		if n := countObjects(t, repos.Store, chunkstore.GCPrefix); n != 0 {
			t.Errorf("%d GC objects left after a complete prune", n)
		}
		// The forgotten file's blobs are gone from the index too.
		r := reopenLoaded(t, repos, repos.Store)
		if r.Index().Has(r.BlobID(a[:512<<10])) {
			t.Error("a blob of the forgotten file is still in the index")
		}
		verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{
			first.ID: {strings.TrimPrefix(filepath.Join(src, "shared"), "/"): shared},
			second.ID: {
				strings.TrimPrefix(filepath.Join(src, "shared"), "/"): shared,
				strings.TrimPrefix(filepath.Join(src, "c"), "/"):      c,
			},
		})

		// Nothing left to do: a second prune deletes nothing.
		again, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if again.MarkedPacks != 0 || again.DeletedPacks != 0 {
			t.Errorf("second prune: %+v, want nothing to do", again)
		}
	})
}

// blockingStore holds every snapshot manifest upload until released, so a
// test can keep a backup running between its dedup and its commit.
type blockingStore struct {
	chunkstore.Store
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *blockingStore) Put(ctx context.Context, name string, data []byte) error {
	if strings.HasPrefix(name, chunkstore.SnapshotsPrefix) {
		s.once.Do(func() { close(s.arrived) })
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Put(ctx, name, data)
}

// TestPruneWaitsForRunningBackup is the race garbage collection exists
// for: a backup reads the index, reuses the data of a snapshot that is
// then forgotten, and commits after prune has run. Prune must keep that
// data while the backup runs and after it commits.
func TestPruneWaitsForRunningBackup(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		a, junk := storetest.Data(11, 3<<20), storetest.Data(12, 2<<20)
		writeFile(t, filepath.Join(src, "a"), a)
		writeFile(t, filepath.Join(src, "junk"), junk)
		old := backupDir(t, repos.Writer, src)
		removeFile(t, filepath.Join(src, "junk"))

		// A second backup of the same "a", in its own process (its own
		// Repository), held just before its commit.
		bs := &blockingStore{Store: repos.Store, arrived: make(chan struct{}), release: make(chan struct{})}
		w2, err := chunkstore.Open(ctx, bs, chunkstore.Credentials{Writer: repos.Writer.Secrets()}, chunkstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		type outcome struct {
			res *snapshot.Result
			err error
		}
		done := make(chan outcome, 1)
		go func() {
			res, err := snapshot.Backup(ctx, w2, snapshot.BackupOptions{Paths: []string{src}, Host: "running"})
			done <- outcome{res, err}
		}()
		select {
		case <-bs.arrived:
		case o := <-done:
			t.Fatalf("backup ended before its commit: %v", o.err)
		}
		// Now the old snapshot is forgotten: "a" is referenced only by
		// the backup that has not committed.
		forget(t, repos.Store, old.ID)
		res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.MarkedPacks == 0 || res.DeletedPacks != 0 || res.PendingMarks != 1 || len(res.Waiting) != 1 {
			t.Fatalf("prune during a backup: %+v, want packs marked, none deleted, one backup waited for", res)
		}
		if res.Waiting[0].Host != "running" {
			t.Errorf("prune waits for %+v, want the running backup's session", res.Waiting[0])
		}
		// The mark stays until the backup ends, however often prune runs.
		res, err = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
		if err != nil || res.DeletedPacks != 0 || res.PendingMarks != 1 {
			t.Fatalf("second prune during the backup: %+v %v", res, err)
		}

		close(bs.release)
		o := <-done
		if o.err != nil {
			t.Fatalf("backup: %v", o.err)
		}
		if added := o.res.Manifest.Summary.BytesAdded; added >= 1<<20 {
			t.Fatalf("the running backup stored %d bytes: it should have reused a's data, or this test proves nothing", added)
		}
		res, err = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.PendingMarks != 0 || res.ReusedPacks == 0 || res.DeletedPacks == 0 {
			t.Fatalf("prune after the backup: %+v, want the reused packs kept and the junk deleted", res)
		}
		if res.DeletedBytes >= 5<<20 {
			t.Errorf("deleted %d bytes: more than junk's 2 MiB and the old tree", res.DeletedBytes)
		}
		verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{o.res.ID: {
			strings.TrimPrefix(filepath.Join(src, "a"), "/"): a,
		}})
	})
}

// TestBackupAfterMarkDoesNotReuse: a backup that starts after packs were
// marked stores their data again instead of reusing it, so deleting the
// marked packs later cannot break it.
func TestBackupAfterMarkDoesNotReuse(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	a := storetest.Data(21, 3<<20)
	writeFile(t, filepath.Join(src, "a"), a)
	old := backupDir(t, repos.Writer, src)
	forget(t, repos.Store, old.ID)

	// A backup session that started before the mark and is still running
	// (renewing) keeps the mark from being swept.
	holder, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: "holder"}, chunkstore.DefaultSessionTiming)
	if err != nil {
		t.Fatal(err)
	}
	res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
	if err != nil || res.MarkedPacks == 0 || res.PendingMarks != 1 {
		t.Fatalf("prune: %+v %v, want a pending mark", res, err)
	}

	w2, err := chunkstore.Open(ctx, repos.Store, chunkstore.Credentials{Writer: repos.Writer.Secrets()}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	next, err := snapshot.Backup(ctx, w2, snapshot.BackupOptions{Paths: []string{src}, Host: "h",
		FilesCache: nil})
	if err != nil {
		t.Fatal(err)
	}
	if added := next.Manifest.Summary.BytesAdded; added < 3<<20 {
		t.Fatalf("backup after the mark stored %d bytes; it must store a's 3 MiB again, not reuse marked packs", added)
	}
	if err := holder.End(ctx); err != nil {
		t.Fatal(err)
	}
	res, err = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
	if err != nil || res.DeletedPacks == 0 || res.ReusedPacks != 0 {
		t.Fatalf("prune after the holder ended: %+v %v, want the marked packs deleted", res, err)
	}
	verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{next.ID: {
		strings.TrimPrefix(filepath.Join(src, "a"), "/"): a,
	}})
}

// TestPruneStaleSession: a backup that died without ending its session
// (kill -9, a lost host) holds prune back only until the session is stale;
// prune then deletes the marked packs and removes the dead session.
func TestPruneStaleSession(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		writeFile(t, filepath.Join(src, "a"), storetest.Data(31, 2<<20))
		old := backupDir(t, repos.Writer, src)
		forget(t, repos.Store, old.ID)
		// What a killed backup leaves: a session object nobody renews.
		if err := repos.Store.Put(ctx, chunkstore.SessionsPrefix+"0123456789abcdef/000000", []byte("killed")); err != nil {
			t.Fatal(err)
		}
		timing := chunkstore.DefaultSessionTiming
		timing.Stale = 3 * time.Second
		timing.Margin = 0
		res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{Sessions: timing})
		if err != nil || res.PendingMarks != 1 || res.DeletedPacks != 0 {
			t.Fatalf("prune with a fresh dead session: %+v %v, want the mark pending", res, err)
		}
		time.Sleep(timing.Stale + time.Second)
		res, err = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{Sessions: timing})
		if err != nil || res.PendingMarks != 0 || res.DeletedPacks == 0 || res.SessionsGone != 1 {
			t.Fatalf("prune after the session went stale: %+v %v, want the packs deleted and the session removed", res, err)
		}
		if n := countObjects(t, repos.Store, chunkstore.SessionsPrefix); n != 0 {
			t.Errorf("%d session objects left", n)
		}
	})
}

// stallingStore delays pack uploads and refuses session renewals, as a
// backup cut off from the store (or paused) would see it.
type stallingStore struct {
	chunkstore.Store
	delay time.Duration
	mu    sync.Mutex
	beats int
}

func (s *stallingStore) Put(ctx context.Context, name string, data []byte) error {
	switch {
	case strings.HasPrefix(name, chunkstore.SessionsPrefix):
		s.mu.Lock()
		s.beats++
		n := s.beats
		s.mu.Unlock()
		if n > 1 {
			return chunkstore.Permanent(errors.New("injected: renewal refused"))
		}
	case strings.HasPrefix(name, chunkstore.DataPrefix):
		time.Sleep(s.delay)
	}
	return s.Store.Put(ctx, name, data)
}

// TestBackupDoesNotCommitAfterLosingItsSession: a backup that could not
// renew its session for the commit window writes no snapshot (prune may
// have taken it for dead), and says why.
func TestBackupDoesNotCommitAfterLosingItsSession(t *testing.T) {
	ctx := context.Background()
	st := &stallingStore{Store: mem.New(), delay: 1200 * time.Millisecond}
	repos := storetest.InitRepos(t, st)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), storetest.Data(41, 1<<20))
	timing := chunkstore.SessionTiming{Heartbeat: 50 * time.Millisecond, Stale: 2 * time.Second, CommitWindow: time.Second, Margin: time.Second}
	_, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Sessions: timing})
	if err == nil || !strings.Contains(err.Error(), "does not commit") || !strings.Contains(err.Error(), "renewal refused") {
		t.Fatalf("backup whose session lapsed: err = %v, want a refusal to commit naming the renewal error", err)
	}
	ids, err := repos.Writer.ListMeta(ctx, chunkstore.KindSnapshot)
	if err != nil || len(ids) != 0 {
		t.Fatalf("snapshots: %v %v, want none", ids, err)
	}
	// With renewals working, the same slow backup commits.
	st.mu.Lock()
	st.beats = -1 << 30
	st.mu.Unlock()
	if _, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Sessions: timing}); err != nil {
		t.Fatalf("backup with working renewals: %v", err)
	}
}

// TestPruneRefusesDamage: a snapshot or index file prune cannot read, or
// a writer key instead of the identity, stop prune before it deletes
// anything.
func TestPruneRefusesDamage(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), storetest.Data(51, 2<<20))
	old := backupDir(t, repos.Writer, src)
	writeFile(t, filepath.Join(src, "b"), storetest.Data(52, 2<<20))
	backupDir(t, repos.Writer, src)
	forget(t, repos.Store, old.ID)

	if _, err := snapshot.Prune(ctx, repos.Writer, snapshot.PruneOptions{}); !errors.Is(err, snapshot.ErrPruneUnsafe) || !strings.Contains(err.Error(), "identity") {
		t.Errorf("prune with a writer key: %v, want a refusal naming the identity", err)
	}

	damage := func(t *testing.T, name string) {
		t.Helper()
		b, err := repos.Store.Get(ctx, name, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1
		if err := repos.Store.Put(ctx, name, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, prefix := range []string{chunkstore.IndexPrefix, chunkstore.SnapshotsPrefix} {
		t.Run(strings.TrimSuffix(prefix, "/"), func(t *testing.T) {
			var name string
			if err := repos.Store.List(ctx, prefix, func(oi chunkstore.ObjectInfo) error { name = oi.Name; return nil }); err != nil {
				t.Fatal(err)
			}
			orig, err := repos.Store.Get(ctx, name, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			damage(t, name)
			before := countObjects(t, repos.Store, chunkstore.DataPrefix)
			_, err = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
			if !errors.Is(err, snapshot.ErrPruneUnsafe) || !strings.Contains(err.Error(), name) {
				t.Errorf("prune with %s damaged: %v, want a refusal naming it", name, err)
			}
			if after := countObjects(t, repos.Store, chunkstore.DataPrefix); after != before {
				t.Errorf("prune deleted packs (%d, then %d) although it refused", before, after)
			}
			if err := repos.Store.Put(ctx, name, orig); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The index lost its data packs (trees still listed): the snapshots'
	// data blobs are in no pack of the index, so nothing may be deleted,
	// and prune says which blob. It lost its tree packs: what the trees
	// reference is unknown, and prune points to 'repair index'.
	for _, tc := range []struct {
		name string
		typ  chunkstore.BlobType
		want string
	}{
		{"data packs missing from the index", chunkstore.DataBlob, "in no pack that the index lists and the store holds (blob "},
		{"tree packs missing from the index", chunkstore.TreeBlob, "'lifeboat repair index' indexes its packs again"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := map[string][]byte{}
			if err := repos.Store.List(ctx, chunkstore.IndexPrefix, func(oi chunkstore.ObjectInfo) error {
				b, err := repos.Store.Get(ctx, oi.Name, 0, -1)
				saved[oi.Name] = b
				return err
			}); err != nil {
				t.Fatal(err)
			}
			r := reopenLoaded(t, repos, repos.Store)
			lost := map[chunkstore.ID]bool{}
			for _, p := range r.Index().Packs() {
				if p.Blobs[0].Type == tc.typ {
					lost[p.ID] = true
				}
			}
			if _, _, err := r.RewriteIndex(ctx, lost, nil); err != nil {
				t.Fatal(err)
			}
			before := countObjects(t, repos.Store, chunkstore.DataPrefix)
			_, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
			if !errors.Is(err, snapshot.ErrPruneUnsafe) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("prune with the index lost: %v, want a refusal saying %q", err, tc.want)
			}
			if after := countObjects(t, repos.Store, chunkstore.DataPrefix); after != before {
				t.Errorf("prune deleted packs (%d, then %d) although it refused", before, after)
			}
			for _, name := range listNames(t, repos.Store, chunkstore.IndexPrefix) {
				if err := repos.Store.Delete(ctx, name); err != nil {
					t.Fatal(err)
				}
			}
			for name, b := range saved {
				if err := repos.Store.Put(ctx, name, b); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	// Repaired, it runs.
	if res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{}); err != nil || res.DeletedPacks == 0 {
		t.Fatalf("prune after repair: %+v %v", res, err)
	}
}

// partlyForgotten backs up files a and b of src, then b alone, and
// forgets the first snapshot: a's data is left unreferenced, in packs it
// may share with b's. It returns the second snapshot.
func partlyForgotten(t *testing.T, repos storetest.Repos, src string, a, b []byte) *snapshot.Result {
	t.Helper()
	writeFile(t, filepath.Join(src, "a"), a)
	writeFile(t, filepath.Join(src, "b"), b)
	old := backupDir(t, repos.Writer, src)
	removeFile(t, filepath.Join(src, "a"))
	kept := backupDir(t, repos.Writer, src)
	forget(t, repos.Store, old.ID)
	return kept
}

// TestPruneRepacks: a pack holding a forgotten file beside a kept one is
// kept whole while MaxUnused tolerates it, and otherwise repacked: the
// kept file's blobs are copied into a new pack, the old pack deleted, and
// everything still restores.
func TestPruneRepacks(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		b := storetest.Data(62, 3<<20)
		kept := partlyForgotten(t, repos, src, storetest.Data(61, 3<<20), b)

		res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{MaxUnused: 0.6})
		if err != nil {
			t.Fatal(err)
		}
		if res.PartlyUsedPacks != 1 || res.RepackedPacks != 0 || res.UnusedBytesInUsedPacks < 3<<20 {
			t.Fatalf("prune tolerating 60%% unused: %+v, want the shared pack found and kept", res)
		}
		packs := countObjects(t, repos.Store, chunkstore.DataPrefix)
		res, err = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{MaxUnused: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		if res.RepackedPacks != 1 || res.DeletedPacks != 1 || res.RepackWritten < 3<<20 || res.RepackWritten > 3<<20+64<<10 {
			t.Fatalf("prune tolerating 10%%: %+v, want the shared pack repacked (b's 3 MiB written) and deleted", res)
		}
		if n := countObjects(t, repos.Store, chunkstore.DataPrefix); n != packs {
			t.Errorf("%d packs after repacking one, want %d (one new, one deleted)", n, packs)
		}
		verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{kept.ID: {
			strings.TrimPrefix(filepath.Join(src, "b"), "/"): b,
		}})
	})
}

// markRefusingStore fails the upload of GC marks, as a prune killed after
// repacking and before storing its mark leaves the repository.
type markRefusingStore struct{ chunkstore.Store }

func (s markRefusingStore) Put(ctx context.Context, name string, data []byte) error {
	if strings.HasPrefix(name, chunkstore.GCPrefix) && !strings.HasPrefix(name, chunkstore.GCPrefix+"clock-") {
		return chunkstore.Permanent(errors.New("injected: mark refused"))
	}
	return s.Store.Put(ctx, name, data)
}

// TestPruneAfterCrashDuringRepack: a prune that repacked and then failed
// before marking leaves every repacked blob stored twice. The next prune
// deletes the old copies without copying anything again — although, with
// the copies counted as used, the old pack's unreferenced share (0.5 of
// 6.5 MiB) is now under --max-unused — and a prune after it finds nothing
// to do.
func TestPruneAfterCrashDuringRepack(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		b := storetest.Data(72, 3<<20)
		kept := partlyForgotten(t, repos, src, storetest.Data(71, 512<<10), b)

		before := countObjects(t, repos.Store, chunkstore.DataPrefix)
		_, err := snapshot.Prune(ctx, reopen(t, repos, markRefusingStore{repos.Store}), snapshot.PruneOptions{MaxUnused: 0.1})
		if err == nil || !strings.Contains(err.Error(), "mark refused") {
			t.Fatalf("prune whose mark is refused: %v", err)
		}
		if n := countObjects(t, repos.Store, chunkstore.DataPrefix); n != before+1 {
			t.Fatalf("%d packs after the interrupted repack, want %d (the copy of b added)", n, before+1)
		}

		res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{MaxUnused: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		if res.RepackWritten != 0 || res.DeletedPacks < 1 || res.DeletedBytes < 7<<19 || res.DeletedBytes > 7<<19+64<<10 {
			t.Fatalf("prune after the interrupted repack: %+v, want the old pack (a and b, 3.5 MiB) and the forgotten trees deleted, nothing copied again", res)
		}
		again, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{MaxUnused: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		if again.MarkedPacks != 0 || again.RepackedPacks != 0 || again.DeletedPacks != 0 || again.PartlyUsedPacks != 0 {
			t.Errorf("a prune after a complete one: %+v, want nothing to do", again)
		}
		verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{kept.ID: {
			strings.TrimPrefix(filepath.Join(src, "b"), "/"): b,
		}})
	})
}

// largestPack returns the ID of the biggest pack in the store that is not
// among the names in before.
func largestPack(t *testing.T, st chunkstore.Store, before []string) chunkstore.ID {
	t.Helper()
	var best chunkstore.ObjectInfo
	if err := st.List(context.Background(), chunkstore.DataPrefix, func(oi chunkstore.ObjectInfo) error {
		if oi.Size > best.Size && !slices.Contains(before, oi.Name) {
			best = oi
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	id, ok := chunkstore.ParsePackName(best.Name)
	if !ok {
		t.Fatalf("no new pack in the store (largest new object %q)", best.Name)
	}
	return id
}

// storedTwice backs up src/b twice, the second time while a GC mark
// hides the first pack from dedup, so that b is stored in two packs: q
// (first) and p (second). newIndex are the index files the second backup
// wrote.
func storedTwice(t *testing.T, repos storetest.Repos, src string, b []byte) (first, second *snapshot.Result, q, p chunkstore.ID, newIndex []string) {
	t.Helper()
	ctx := context.Background()
	writeFile(t, filepath.Join(src, "b"), b)
	first = backupDir(t, repos.Writer, src)
	q = largestPack(t, repos.Store, nil)
	hide, err := repos.Writer.SaveGCMark(ctx, []chunkstore.ID{q})
	if err != nil {
		t.Fatal(err)
	}
	w2, err := chunkstore.Open(ctx, repos.Store, chunkstore.Credentials{Writer: repos.Writer.Secrets()}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	packs, index := listNames(t, repos.Store, chunkstore.DataPrefix), listNames(t, repos.Store, chunkstore.IndexPrefix)
	second = backupDir(t, w2, src)
	if err := repos.Writer.DeleteGCMark(ctx, hide.ID); err != nil {
		t.Fatal(err)
	}
	for _, name := range listNames(t, repos.Store, chunkstore.IndexPrefix) {
		if !slices.Contains(index, name) {
			newIndex = append(newIndex, name)
		}
	}
	return first, second, q, largestPack(t, repos.Store, packs), newIndex
}

// TestSweepDoesNotCountOnMarkedPacks: a blob stored in two packs, each in
// its own mark, one mark ready and one held back by a running backup. The
// sweep keeps its pack: the other copy is marked too, and another prune
// sweeping that mark at the same moment would count on this one. Once the
// backup ends, the second mark's pack goes and one copy stays.
func TestSweepDoesNotCountOnMarkedPacks(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		b := storetest.Data(81, 3<<20)
		first, second, q, p, _ := storedTwice(t, repos, src, b)

		timing := chunkstore.SessionTiming{Heartbeat: time.Hour, Stale: time.Hour, CommitWindow: time.Hour, Margin: 50 * time.Millisecond}
		if _, err := repos.Writer.SaveGCMark(ctx, []chunkstore.ID{p}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		holder, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: "holder"}, timing)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if _, err := repos.Writer.SaveGCMark(ctx, []chunkstore.ID{q}); err != nil {
			t.Fatal(err)
		}
		res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{Sessions: timing})
		if err != nil {
			t.Fatal(err)
		}
		if res.PendingMarks != 1 || res.ReusedPacks == 0 || !hasObject(t, repos.Store, chunkstore.PackName(p)) {
			t.Fatalf("prune with p's mark ready and q's held back: %+v; want p kept (q, b's other copy, is marked)", res)
		}
		if err := holder.End(ctx); err != nil {
			t.Fatal(err)
		}
		res, err = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{Sessions: timing})
		if err != nil {
			t.Fatal(err)
		}
		if hasObject(t, repos.Store, chunkstore.PackName(q)) || !hasObject(t, repos.Store, chunkstore.PackName(p)) || res.PendingMarks != 0 {
			t.Fatalf("prune after the backup ended: %+v; want q deleted, p kept", res)
		}
		name := strings.TrimPrefix(filepath.Join(src, "b"), "/")
		verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{first.ID: {name: b}, second.ID: {name: b}})
	})
}

func hasObject(t *testing.T, st chunkstore.Store, name string) bool {
	t.Helper()
	for _, n := range listNames(t, st, name) {
		if n == name {
			return true
		}
	}
	return false
}

// TestSweepKeepsEveryCopy: a referenced blob whose only copies are all in
// the marks being swept keeps every copy (another prune may be deleting
// any one of them); the next prune then finds them duplicates and deletes
// all but one.
func TestSweepKeepsEveryCopy(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		b := storetest.Data(91, 3<<20)
		first, second, q, p, _ := storedTwice(t, repos, src, b)
		if _, err := repos.Writer.SaveGCMark(ctx, []chunkstore.ID{p, q}); err != nil {
			t.Fatal(err)
		}
		res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.ReusedPacks != 2 || !hasObject(t, repos.Store, chunkstore.PackName(p)) || !hasObject(t, repos.Store, chunkstore.PackName(q)) {
			t.Fatalf("prune with both copies of b in a ready mark: %+v; want both kept", res)
		}
		res, err = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if hasObject(t, repos.Store, chunkstore.PackName(p)) == hasObject(t, repos.Store, chunkstore.PackName(q)) || res.DeletedBytes < 3<<20 {
			t.Fatalf("the next prune: %+v; want exactly one copy of b deleted", res)
		}
		name := strings.TrimPrefix(filepath.Join(src, "b"), "/")
		verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{first.ID: {name: b}, second.ID: {name: b}})
	})
}

// TestRepackCopiesWhatOnlyMarkedPacksHold: a partly used pack is repacked
// while the other copy of its referenced blob sits in a mark that waits
// for a running backup. That copy may go when the mark is swept, so the
// blob is copied.
func TestRepackCopiesWhatOnlyMarkedPacksHold(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		b := storetest.Data(95, 3<<20)
		// q holds a (forgotten) and b; p holds b again.
		writeFile(t, filepath.Join(src, "a"), storetest.Data(96, 3<<20))
		_, second, q, p, _ := storedTwice(t, repos, src, b)
		removeFile(t, filepath.Join(src, "a"))
		kept := backupDir(t, repos.Writer, src)
		forget(t, repos.Store, second.ID)
		ids, err := repos.Writer.ListMeta(ctx, chunkstore.KindSnapshot)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if id != kept.ID {
				forget(t, repos.Store, id)
			}
		}
		if _, err := repos.Writer.SaveGCMark(ctx, []chunkstore.ID{p}); err != nil {
			t.Fatal(err)
		}
		holder, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: "holder"}, chunkstore.DefaultSessionTiming)
		if err != nil {
			t.Fatal(err)
		}
		res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{MaxUnused: 0})
		if err != nil {
			t.Fatal(err)
		}
		if res.RepackedPacks != 1 || res.RepackWritten < 3<<20 || res.DeletedPacks != 0 {
			t.Fatalf("repack of %s while b's other copy %s is marked: %+v; want b's 3 MiB copied, nothing deleted yet", q.Short(), p.Short(), res)
		}
		if err := holder.End(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{MaxUnused: 0}); err != nil {
			t.Fatal(err)
		}
		if hasObject(t, repos.Store, chunkstore.PackName(p)) || hasObject(t, repos.Store, chunkstore.PackName(q)) {
			t.Error("the marked and the repacked pack are still there after the backup ended")
		}
		verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{kept.ID: {strings.TrimPrefix(filepath.Join(src, "b"), "/"): b}})
	})
}

// TestPruneOneAtATime: a prune finds another running (a live prune
// session of another host) and stops, naming it, before it changes
// anything; when that one has ended it runs. The session of a prune of
// this host whose process is gone (killed) is removed, not waited for.
func TestPruneOneAtATime(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), storetest.Data(97, 1<<20))
	forget(t, repos.Store, backupDir(t, repos.Writer, src).ID)

	other, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: "elsewhere", Machine: "elsewhere", PID: 4242, Prune: true}, chunkstore.DefaultSessionTiming)
	if err != nil {
		t.Fatal(err)
	}
	packs := countObjects(t, repos.Store, chunkstore.DataPrefix)
	_, err = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
	if !errors.Is(err, snapshot.ErrPruneBusy) || !strings.Contains(err.Error(), "host elsewhere, pid 4242") {
		t.Fatalf("prune beside another host's prune: %v", err)
	}
	if n := countObjects(t, repos.Store, chunkstore.DataPrefix); n != packs || countObjects(t, repos.Store, chunkstore.GCPrefix) != 0 {
		t.Fatalf("a prune that found another running changed the repository (%d packs of %d)", n, packs)
	}
	if err := other.End(ctx); err != nil {
		t.Fatal(err)
	}

	// A killed prune of this host: a PID no process has.
	host, _ := os.Hostname()
	dead, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: host, PID: 1 << 30, Prune: true}, chunkstore.DefaultSessionTiming)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.End(ctx)
	res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
	if err != nil || res.DeletedPacks == 0 {
		t.Fatalf("prune after the other ended, beside a killed one of this host: %+v %v", res, err)
	}
	if n := countObjects(t, repos.Store, chunkstore.SessionsPrefix); n != 0 {
		t.Errorf("%d session objects left: the killed prune's and this prune's must be gone", n)
	}
}

// TestPruneKeepsUnindexedCopies: an unindexed pack holding a referenced
// blob is kept even when an indexed pack holds the blob too: it may be
// another prune's repacked copy whose index file is not written yet.
func TestPruneKeepsUnindexedCopies(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	b := storetest.Data(99, 3<<20)
	first, second, q, p, newIndex := storedTwice(t, repos, src, b)
	// Unindex p: remove the index files the second backup wrote, and its
	// snapshot (whose trees are the first one's).
	for _, name := range newIndex {
		removeObject(t, repos.Store, name)
	}
	forget(t, repos.Store, second.ID)
	r := reopen(t, repos, repos.Store)
	if err := r.LoadIndex(ctx); err != nil || r.Index().HasPack(p) || !r.Index().HasPack(q) {
		t.Fatalf("setup: p indexed %v, q indexed %v (%v)", r.Index().HasPack(p), r.Index().HasPack(q), err)
	}
	res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !hasObject(t, repos.Store, chunkstore.PackName(p)) || !hasObject(t, repos.Store, chunkstore.PackName(q)) {
		t.Fatalf("prune: %+v; the unindexed copy %s (or the indexed one) was deleted", res, p.Short())
	}
	verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{first.ID: {strings.TrimPrefix(filepath.Join(src, "b"), "/"): b}})
}

func removeObject(t *testing.T, st chunkstore.Store, name string) {
	t.Helper()
	if err := st.Delete(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

// silencedStore refuses every session renewal (each session's objects
// after its first): they stop, as when the process is paused or cut off.
type silencedStore struct {
	chunkstore.Store
}

func (s *silencedStore) Put(ctx context.Context, name string, data []byte) error {
	if strings.HasPrefix(name, chunkstore.SessionsPrefix) && !strings.HasSuffix(name, "/000000") {
		return chunkstore.Permanent(errors.New("injected: renewal refused"))
	}
	return s.Store.Put(ctx, name, data)
}

// TestBackupPausedPastStaleWritesNoIndex: a backup paused after
// uploading a pack, long enough for its session to go stale, finds on
// resuming that prune has deleted the pack (unindexed and unreferenced,
// its mark no longer waits). It must not write an index file naming it:
// the next backup would deduplicate against data that is gone, instead
// of storing it again.
func TestBackupPausedPastStaleWritesNoIndex(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), storetest.Data(61, 1<<20))
	w2, st := pausedWriter(t, repos, false) // paused after its first pack
	done := make(chan error, 1)
	go func() {
		_, err := snapshot.Backup(ctx, w2, snapshot.BackupOptions{Paths: []string{src}, Host: "paused", Sessions: pausedTiming})
		done <- err
	}()
	pruneWhilePaused(t, repos, "backup", st, done)
	// The next backup stores the data again.
	if next := backupDir(t, repos.Writer, src); next.Manifest.Summary.BytesAdded < 1<<20 {
		t.Errorf("the next backup stored %d bytes: it deduplicated against the deleted pack", next.Manifest.Summary.BytesAdded)
	}
}

// TestPruneRemovesDamagedMarks: a GC mark that cannot be read holds
// nothing back, and would be warned about by every backup forever: prune
// removes it (a dry run only counts it).
func TestPruneRemovesDamagedMarks(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), storetest.Data(65, 1<<10))
	backupDir(t, repos.Writer, src)
	junk := chunkstore.GCPrefix + chunkstore.Hash([]byte("junk")).String()
	if err := repos.Store.Put(ctx, junk, []byte("junk")); err != nil {
		t.Fatal(err)
	}
	res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{DryRun: true})
	if err != nil || res.DamagedMarks != 1 || len(listNames(t, repos.Store, chunkstore.GCPrefix)) != 1 {
		t.Fatalf("dry run: %+v, %v; want the damaged mark counted and left", res, err)
	}
	res, err = snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{})
	if err != nil || res.DamagedMarks != 1 {
		t.Fatalf("prune: %+v, %v; want the damaged mark removed", res, err)
	}
	if names := listNames(t, repos.Store, chunkstore.GCPrefix); len(names) != 0 {
		t.Errorf("left under gc/: %v", names)
	}
}

// TestBackupWhoseSessionWasRemovedDoesNotCommit: a backup paused after
// uploading a pack, well within its session's timing, whose session
// objects are removed meanwhile by hand (as one removes a lock file)
// no longer holds prune back, which deletes the pack. On resuming, before
// any renewal notices, it must neither index the pack nor commit.
func TestBackupWhoseSessionWasRemovedDoesNotCommit(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), storetest.Data(64, 1<<20))
	w2, st := pausedWriter(t, repos, false) // paused after its first pack
	// No renewal comes, and none is missed, while the test runs.
	timing := chunkstore.SessionTiming{Heartbeat: time.Hour, Stale: 2 * time.Hour, CommitWindow: time.Hour, Margin: 100 * time.Millisecond}
	done := make(chan error, 1)
	go func() {
		_, err := snapshot.Backup(ctx, w2, snapshot.BackupOptions{Paths: []string{src}, Host: "paused", Sessions: timing})
		done <- err
	}()
	<-st.arrived
	sessions, err := repos.Reader.Sessions(ctx)
	if err != nil || len(sessions) != 1 {
		t.Fatalf("sessions: %+v, %v; want the paused backup's", sessions, err)
	}
	if err := repos.Reader.RemoveSession(ctx, sessions[0]); err != nil {
		t.Fatal(err)
	}
	res, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{Sessions: timing})
	if err != nil {
		t.Fatal(err)
	}
	if res.DeletedPacks == 0 {
		t.Fatalf("prune: %+v, want the paused backup's unindexed pack deleted, or this test proves nothing", res)
	}
	close(st.release)
	if err := <-done; !errors.Is(err, chunkstore.ErrSessionRemoved) {
		t.Fatalf("the backup whose session was removed: %v, want ErrSessionRemoved", err)
	}
	if ids, err := repos.Reader.ListMeta(ctx, chunkstore.KindSnapshot); err != nil || len(ids) != 0 {
		t.Fatalf("snapshots: %v, %v; want none", ids, err)
	}
	indexNamesPresentPacks(t, repos)
}

// TestCopyPausedPastStaleWritesNoIndex is TestBackupPausedPastStaleWritesNoIndex
// for a copy into a repository: its packs are deleted the same way.
func TestCopyPausedPastStaleWritesNoIndex(t *testing.T) {
	ctx := context.Background()
	src := storetest.InitRepos(t, mem.New())
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), storetest.Data(62, 1<<20))
	s, err := snapshot.Load(ctx, src.Reader, backupDir(t, src.Writer, dir).ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	dst := storetest.NewCopyTarget(t, "local", src.Reader)
	w2, st := pausedWriter(t, dst, false)
	done := make(chan error, 1)
	go func() {
		res, err := snapshot.Copy(ctx, src.Reader, w2, []*snapshot.Snapshot{s}, snapshot.CopyOptions{Sessions: pausedTiming})
		if err == nil && len(res) == 1 {
			err = res[0].Err
		}
		done <- err
	}()
	pruneWhilePaused(t, dst, "copy", st, done)
}

// pausingStore is silencedStore that holds its first read (onGet) or
// its first upload of a pack, once done, until release: a process paused
// at that point.
type pausingStore struct {
	silencedStore
	onGet            bool
	arrived, release chan struct{}
	once             sync.Once
}

func newPausingStore(st chunkstore.Store, onGet bool) *pausingStore {
	return &pausingStore{silencedStore: silencedStore{Store: st}, onGet: onGet, arrived: make(chan struct{}), release: make(chan struct{})}
}

func (s *pausingStore) pause(name string) {
	if strings.HasPrefix(name, chunkstore.DataPrefix) {
		s.once.Do(func() { close(s.arrived); <-s.release })
	}
}

func (s *pausingStore) Get(ctx context.Context, name string, off, n int64) ([]byte, error) {
	b, err := s.silencedStore.Get(ctx, name, off, n)
	if s.onGet {
		s.pause(name)
	}
	return b, err
}

func (s *pausingStore) Put(ctx context.Context, name string, data []byte) error {
	err := s.silencedStore.Put(ctx, name, data)
	if !s.onGet {
		s.pause(name)
	}
	return err
}

// pausedTiming is the sessions' timing of the tests that pause a process
// past its session's staleness.
var pausedTiming = chunkstore.SessionTiming{Heartbeat: 50 * time.Millisecond, Stale: 1500 * time.Millisecond, CommitWindow: 700 * time.Millisecond, Margin: 100 * time.Millisecond}

// pausedWriter opens repos with its writer key on a pausingStore, whose
// renewals fail and whose first pack read (onGet) or upload pauses.
func pausedWriter(t *testing.T, repos storetest.Repos, onGet bool) (*chunkstore.Repository, *pausingStore) {
	t.Helper()
	st := newPausingStore(repos.Store, onGet)
	w, err := chunkstore.Open(context.Background(), st, chunkstore.Credentials{Writer: repos.Writer.Secrets()}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return w, st
}

// pruneWhilePaused waits until the process (what) is paused at st, lets
// its session go stale, prunes repos, which must delete packs (or the
// test proves nothing), releases the process, which must then fail (done),
// and checks that no index file names a pack the store lacks.
func pruneWhilePaused(t *testing.T, repos storetest.Repos, what string, st *pausingStore, done <-chan error) {
	t.Helper()
	<-st.arrived
	time.Sleep(pausedTiming.Stale + 300*time.Millisecond)
	res, err := snapshot.Prune(context.Background(), reopen(t, repos, repos.Store), snapshot.PruneOptions{Sessions: pausedTiming})
	if err != nil {
		t.Fatal(err)
	}
	if res.DeletedPacks == 0 {
		t.Fatalf("prune: %+v, want the paused %s's unindexed packs deleted, or this test proves nothing", res, what)
	}
	close(st.release)
	if err := <-done; err == nil {
		t.Fatalf("the paused %s committed", what)
	}
	indexNamesPresentPacks(t, repos)
}

// indexNamesPresentPacks fails t for each pack an index file of repos
// names that the store does not hold.
func indexNamesPresentPacks(t *testing.T, repos storetest.Repos) {
	t.Helper()
	r := reopenLoaded(t, repos, repos.Store)
	present, err := r.ListPacks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Index().Packs() {
		if _, ok := present[p.ID]; !ok {
			t.Errorf("an index file names pack %s, which the store no longer holds", chunkstore.PackName(p.ID))
		}
	}
}

// TestBackupPausedWhileAdoptingWritesNoIndex: the packs a backup adopts
// (unindexed, referenced by no snapshot) are deleted by a prune if the
// backup is paused past its session's staleness between reading them and
// indexing them; it must not index them then.
func TestBackupPausedWhileAdoptingWritesNoIndex(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), storetest.Data(63, 1<<20))
	// An interrupted backup's packs: unindexed, in no snapshot.
	forget(t, repos.Store, backupDir(t, repos.Writer, src).ID)
	for _, name := range listNames(t, repos.Store, chunkstore.IndexPrefix) {
		if err := repos.Store.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	w2, st := pausedWriter(t, repos, true)
	done := make(chan error, 1)
	go func() {
		_, err := snapshot.Backup(ctx, w2, snapshot.BackupOptions{Paths: []string{src}, Host: "paused", Sessions: pausedTiming})
		done <- err
	}()
	pruneWhilePaused(t, repos, "adopting backup", st, done)
}

// TestRewritePausedPastStaleWritesNoIndex: the listings a rewrite stores
// are in no snapshot until it commits; paused past its sessions'
// staleness, it finds them deleted by a prune, and must not index them.
func TestRewritePausedPastStaleWritesNoIndex(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), storetest.Data(64, 64<<10))
	writeFile(t, filepath.Join(src, "secret"), storetest.Data(65, 64<<10))
	backupDir(t, repos.Writer, src)
	st := newPausingStore(repos.Store, false)
	rw := repos.OpenReader(t, st)
	done := make(chan error, 1)
	go func() {
		_, err := snapshot.RewriteSnapshots(ctx, rw, snapshot.RewriteOptions{Exclude: []string{"secret"}, Sessions: pausedTiming})
		done <- err
	}()
	pruneWhilePaused(t, repos, "rewrite", st, done)
}
