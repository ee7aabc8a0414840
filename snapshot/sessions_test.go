package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestUnlock: a prune session another machine left (its process killed)
// holds repairs back until unlock removes it by ID. A backup session that
// is not stale is never removed — neither one of another machine whose
// --host names this one, nor one whose process looks gone from here (it
// may run in another PID namespace) —, nor a prune session whose process
// runs here. Without IDs unlock removes what has ended: a prune session
// of this machine whose process is gone.
func TestUnlock(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	host, _ := os.Hostname()
	deadPID := noSuchPID(t)
	start := func(info chunkstore.SessionInfo) string {
		t.Helper()
		s, err := repos.Writer.StartSession(ctx, info, chunkstore.DefaultSessionTiming)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.End(context.Background()) })
		return s.ID()
	}
	prune := start(chunkstore.SessionInfo{Host: "elsewhere", Machine: "elsewhere", PID: 4242, Prune: true, Command: "repair snapshots"})
	backup := start(chunkstore.SessionInfo{Host: "elsewhere", Machine: "elsewhere", PID: 4343})
	remote := start(chunkstore.SessionInfo{Host: host, Machine: "elsewhere", PID: deadPID}) // --host names this machine
	lookingGone := start(chunkstore.SessionInfo{Host: "db1", PID: deadPID})                 // this machine, another PID namespace?
	gonePrune := start(chunkstore.SessionInfo{Host: host, PID: deadPID, Prune: true, Command: "prune"})
	here := start(chunkstore.SessionInfo{Host: host, PID: os.Getpid(), Prune: true, Command: "repair index"})
	state := func() map[string]string {
		t.Helper()
		list, _, err := snapshot.Sessions(ctx, reopen(t, repos, repos.Store), chunkstore.DefaultSessionTiming)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, s := range list {
			m[s.ID] = s.Kind + " " + s.Command + " " + s.State
		}
		return m
	}
	want := map[string]string{prune: "prune repair snapshots live", backup: "backup  live", remote: "backup  live",
		lookingGone: "backup  gone", gonePrune: "prune prune gone", here: "prune repair index live"}
	if got := state(); !maps.Equal(got, want) {
		t.Fatalf("sessions: %v, want %v", got, want)
	}

	res, err := snapshot.Unlock(ctx, reopen(t, repos, repos.Store), nil, chunkstore.DefaultSessionTiming)
	if err != nil {
		t.Fatal(err)
	}
	if ids := sessionIDs(res.Removed); !slices.Equal(ids, []string{gonePrune}) {
		t.Errorf("unlock without IDs removed %v, want only %s (a prune of this machine whose process is gone)", ids, gonePrune)
	}
	if ids := sessionIDs(res.Left); len(ids) != 5 || slices.Contains(ids, gonePrune) {
		t.Errorf("unlock without IDs left %v, want the five others", ids)
	}
	delete(want, gonePrune)
	if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); !errors.Is(err, snapshot.ErrPruneBusy) ||
		!strings.Contains(err.Error(), "repair snapshots, session "+prune) || !strings.Contains(err.Error(), "'lifeboat unlock "+prune+"'") {
		t.Fatalf("repair index beside the left prune session: %v; want ErrPruneBusy naming the repair and 'lifeboat unlock %s'", err, prune)
	}

	for _, tc := range []struct {
		ids []string
		err string
	}{
		{[]string{prune, backup[:8]}, "may still be running and is not removed"},
		{[]string{prune, remote}, "may still be running and is not removed"},
		{[]string{prune, lookingGone}, "may still be running and is not removed"},
		{[]string{prune, here}, "repair index session " + here + " is running on this machine"},
		{[]string{prune, "ffffffffff"}, "no such session"},
	} {
		if _, err := snapshot.Unlock(ctx, reopen(t, repos, repos.Store), tc.ids, chunkstore.DefaultSessionTiming); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("unlock %v: %v, want an error saying %q", tc.ids, err, tc.err)
		}
		if got := state(); !maps.Equal(got, want) {
			t.Fatalf("a refused unlock %v changed the sessions: %v, want %v", tc.ids, got, want)
		}
	}
	res, err = snapshot.Unlock(ctx, reopen(t, repos, repos.Store), []string{prune[:6]}, chunkstore.DefaultSessionTiming)
	if err != nil || !slices.Equal(sessionIDs(res.Removed), []string{prune}) {
		t.Fatalf("unlock %s: %+v, %v", prune[:6], res, err)
	}
	delete(want, prune)
	if got := state(); !maps.Equal(got, want) {
		t.Fatalf("sessions after unlock: %v, want %v", got, want)
	}
	// The prune session held by this process ("here") is the only one
	// left: end it, and repair runs.
	list, err := repos.Writer.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == here {
			if err := repos.Writer.RemoveSession(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); err != nil {
		t.Fatalf("repair index after unlock: %v", err)
	}
}

// TestPruneStopsWhenUnlocked: a prune whose session is removed while it
// runs (by 'lifeboat unlock' on another machine) no longer counts as the
// only prune; it stops before it rewrites the index or deletes a pack.
func TestPruneStopsWhenUnlocked(t *testing.T) {
	ctx := context.Background()
	repos, _, _, first := oneFile(t, 61, 2<<20)
	forget(t, repos.Store, first.ID)
	var removed bool
	st := &hookStore{Store: repos.Store, beforePut: func(name string) {
		if removed || !strings.HasPrefix(name, chunkstore.GCPrefix) || strings.HasPrefix(name, chunkstore.GCPrefix+"clock-") {
			return
		}
		removed = true // the mark: remove this prune's session, as unlock would
		removePruneSessions(t, repos.Writer)
	}}
	packs := listNames(t, repos.Store, chunkstore.DataPrefix)
	index := listNames(t, repos.Store, chunkstore.IndexPrefix)
	_, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{})
	if !removed || !errors.Is(err, chunkstore.ErrSessionRemoved) || !strings.Contains(err.Error(), "not rewriting the index") {
		t.Fatalf("prune whose session was removed: %v (removed %v); want it to stop naming the removal", err, removed)
	}
	if got := listNames(t, repos.Store, chunkstore.DataPrefix); len(got) != len(packs) {
		t.Errorf("packs %v → %v: a prune whose session was removed deleted some", packs, got)
	}
	if got := listNames(t, repos.Store, chunkstore.IndexPrefix); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(index))) {
		t.Errorf("index files %v → %v: a prune whose session was removed rewrote them", index, got)
	}
}

// noSuchPID returns a PID no process can have: above the kernel's limit.
func noSuchPID(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return limit + 1
}

// removePruneSessions removes every prune session, as 'lifeboat unlock'
// run on another machine would.
func removePruneSessions(t *testing.T, repo *chunkstore.Repository) {
	t.Helper()
	ctx := context.Background()
	list, err := repo.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.Info.Prune {
			if err := repo.RemoveSession(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func sessionIDs(list []snapshot.SessionStatus) []string {
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	return ids
}

// TestOverlappingPrunesKeepTheIndexTrue: prune A's session is removed
// (unlock) while A rewrites the index; prune B starts then, loads A's old
// index files and sweeps after A. A notices and deletes no pack; a prune
// of an older version would not notice (played by a store that hides the
// removal from A) and deletes its packs, and B's new index must then not
// name them, or a later backup would deduplicate against them and its
// snapshot would need data that is gone.
func TestOverlappingPrunesKeepTheIndexTrue(t *testing.T) {
	for _, notices := range []bool{true, false} {
		t.Run(fmt.Sprintf("A notices=%v", notices), func(t *testing.T) {
			ctx := context.Background()
			repos := storetest.InitRepos(t, mem.New())
			var snaps []*snapshot.Result
			for i := range 3 {
				d := t.TempDir()
				writeFile(t, filepath.Join(d, "f"), storetest.Data(uint64(700+i), 1<<20))
				snaps = append(snaps, backupDir(t, repos.Writer, d))
			}
			again := t.TempDir()
			writeFile(t, filepath.Join(again, "f"), storetest.Data(700, 1<<20))
			forget(t, repos.Store, snaps[0].ID)

			reached, release, bDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
			var bErr error
			var bListed, aDeleting sync.Once
			b := &opsStore{Store: repos.Store, beforeList: func(prefix string) {
				if prefix == chunkstore.GCPrefix { // B has loaded the index: let A finish first
					bListed.Do(func() { close(reached); <-release })
				}
			}}
			a := &opsStore{Store: repos.Store, hideRemovedSessions: !notices, beforeDelete: func(name string) {
				if !strings.HasPrefix(name, chunkstore.IndexPrefix) {
					return
				}
				aDeleting.Do(func() { // A has written its new index files
					removePruneSessions(t, repos.Writer) // unlocked while it runs
					forget(t, repos.Store, snaps[1].ID)
					go func() {
						defer close(bDone)
						_, bErr = snapshot.Prune(ctx, reopen(t, repos, b), snapshot.PruneOptions{})
					}()
					<-reached
				})
			}}
			res, err := snapshot.Prune(ctx, reopen(t, repos, a), snapshot.PruneOptions{})
			switch {
			case notices && !errors.Is(err, chunkstore.ErrSessionRemoved):
				t.Fatalf("prune A: %v, want it to stop: its session was removed", err)
			case !notices && (err != nil || res.DeletedPacks == 0):
				t.Fatalf("prune A, not noticing: %+v, %v; want it to delete its packs", res, err)
			}
			close(release)
			<-bDone
			if bErr != nil {
				t.Fatalf("prune B: %v", bErr)
			}

			indexNamesPresentPacks(t, repos)
			backupDir(t, reopen(t, repos, repos.Store), again) // a new process: stores the first file's data again
			verifyRestores(t, repos, nil)
		})
	}
}

// opsStore calls its hooks before deletes and listings; with
// hideRemovedSessions it answers a Stat of a session object as if it were
// there (a process that does not check its session).
type opsStore struct {
	chunkstore.Store
	beforeDelete        func(name string)
	beforeList          func(prefix string)
	hideRemovedSessions bool
}

func (o *opsStore) Stat(ctx context.Context, name string) (chunkstore.ObjectInfo, error) {
	if o.hideRemovedSessions && strings.HasPrefix(name, chunkstore.SessionsPrefix) {
		return chunkstore.ObjectInfo{Name: name}, nil
	}
	return o.Store.Stat(ctx, name)
}

func (o *opsStore) Delete(ctx context.Context, name string) error {
	if o.beforeDelete != nil {
		o.beforeDelete(name)
	}
	return o.Store.Delete(ctx, name)
}

func (o *opsStore) List(ctx context.Context, prefix string, fn func(chunkstore.ObjectInfo) error) error {
	if o.beforeList != nil {
		o.beforeList(prefix)
	}
	return o.Store.List(ctx, prefix, fn)
}

// TestPruneDeletesPastTheRewriteWindow: deleting the packs may take longer
// than the window the index rewrite had; while its session is renewed, a
// prune finishes them (it used to stop at that window's deadline).
func TestPruneDeletesPastTheRewriteWindow(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	for i := range 12 {
		d := t.TempDir()
		writeFile(t, filepath.Join(d, "f"), storetest.Data(uint64(800+i), 64<<10))
		forget(t, repos.Store, backupDir(t, repos.Writer, d).ID)
	}
	packs := countObjects(t, repos.Store, chunkstore.DataPrefix)
	// Held 1.5 s past each renewal; deleting takes about 0.6 s per pack, 8
	// at a time: well over 1.5 s in all.
	timing := chunkstore.SessionTiming{Heartbeat: 100 * time.Millisecond, CommitWindow: time.Second, Stale: 2 * time.Second}
	slow := &opsStore{Store: repos.Store, beforeDelete: func(name string) {
		if strings.HasPrefix(name, chunkstore.DataPrefix) {
			time.Sleep(600 * time.Millisecond)
		}
	}}
	start := time.Now()
	res, err := snapshot.Prune(ctx, reopen(t, repos, slow), snapshot.PruneOptions{Sessions: timing})
	if err != nil {
		t.Fatalf("prune whose deletions outlast the rewrite's window (%s): %v", time.Since(start).Round(time.Millisecond), err)
	}
	if res.DeletedPacks != packs || countObjects(t, repos.Store, chunkstore.DataPrefix) != 0 {
		t.Fatalf("deleted %d of %d packs; %d left", res.DeletedPacks, packs, countObjects(t, repos.Store, chunkstore.DataPrefix))
	}
	if elapsed := time.Since(start); elapsed < 1500*time.Millisecond {
		t.Fatalf("the deletions took %s: the test needs them to outlast 1.5 s", elapsed)
	}
}

// TestUnlockWithoutDelete: with credentials that may not delete, unlock
// says so, and the session stays.
func TestUnlockWithoutDelete(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	host, _ := os.Hostname()
	sess, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: host, PID: noSuchPID(t), Prune: true, Command: "prune"}, chunkstore.DefaultSessionTiming)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.End(ctx)
	_, err = snapshot.Unlock(ctx, reopen(t, repos, noSessionDeletes{repos.Store}), nil, chunkstore.DefaultSessionTiming)
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") || !strings.Contains(err.Error(), "unlock needs credentials that may delete") {
		t.Fatalf("unlock with deletes refused: %v", err)
	}
	if list, _, err := snapshot.Sessions(ctx, reopen(t, repos, repos.Store), chunkstore.DefaultSessionTiming); err != nil || len(list) != 1 || list[0].State != snapshot.SessionGone {
		t.Fatalf("sessions after the refused unlock: %+v, %v; want the gone prune session still there", list, err)
	}
}

// noSessionDeletes refuses to delete session objects, as credentials that
// may only put would.
type noSessionDeletes struct{ chunkstore.Store }

func (n noSessionDeletes) Delete(ctx context.Context, name string) error {
	if strings.HasPrefix(name, chunkstore.SessionsPrefix) {
		return chunkstore.Permanent(errors.New("AccessDenied"))
	}
	return n.Store.Delete(ctx, name)
}

// TestSessionsWithReadOnlyCredentials: with S3 credentials that may
// only get and list (a real MinIO, a role whose policy allows nothing
// else), Sessions lists the sessions by this machine's clock and says so
// (it failed: "read the store's clock: put gc/clock-...: access
// denied"); with credentials that may put but not delete (a backup
// agent's), by the store's clock, which writing the clock object told
// (it failed on removing it). Unlock, which removes stale sessions by the
// store's clock and needs delete, still refuses.
func TestSessionsWithReadOnlyCredentials(t *testing.T) {
	for _, tc := range []struct {
		name       string
		actions    string
		localClock bool
	}{
		{"read-only", `"s3:GetObject"`, true},
		{"no delete", `"s3:GetObject","s3:PutObject"`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, url := storetest.MinIORepo(t)
			ctx := t.Context()
			st, err := location.Open(ctx, url, true)
			if err != nil {
				t.Fatal(err)
			}
			repos := storetest.InitRepos(t, st)
			sess, err := repos.Writer.StartSession(ctx, chunkstore.SessionInfo{Host: "elsewhere", Machine: "elsewhere", PID: 1}, chunkstore.DefaultSessionTiming)
			if err != nil {
				t.Fatal(err)
			}
			defer sess.End(context.WithoutCancel(ctx))

			policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation"],"Resource":["arn:aws:s3:::%[1]s"]},
 {"Effect":"Allow","Action":[%[2]s],"Resource":["arn:aws:s3:::%[1]s/*"]}]}`, env.Bucket, tc.actions)
			sts, err := credentials.NewSTSAssumeRole("http://"+env.Endpoint, credentials.STSAssumeRoleOptions{
				AccessKey: env.AccessKey, SecretKey: env.SecretKey, Policy: policy})
			if err != nil {
				t.Fatal(err)
			}
			v, err := sts.GetWithContext(nil)
			if err != nil {
				t.Fatalf("assume a %s role on %s: %v", tc.name, env.Bucket, err)
			}
			t.Setenv("AWS_ACCESS_KEY_ID", v.AccessKeyID)
			t.Setenv("AWS_SECRET_ACCESS_KEY", v.SecretAccessKey)
			t.Setenv("AWS_SESSION_TOKEN", v.SessionToken)
			ro, err := location.Open(ctx, url, false)
			if err != nil {
				t.Fatalf("open with %s credentials: %v", tc.name, err)
			}
			if err := ro.Delete(ctx, "gc/probe"); err == nil {
				t.Fatalf("the %s credentials may delete: the test needs them refused", tc.name)
			}

			list, localClock, err := snapshot.Sessions(ctx, reopen(t, repos, ro), chunkstore.DefaultSessionTiming)
			if err != nil {
				t.Fatalf("sessions with %s credentials: %v", tc.name, err)
			}
			if localClock != tc.localClock || len(list) != 1 || list[0].ID != sess.ID() || list[0].State != snapshot.SessionLive {
				t.Errorf("sessions with %s credentials: %+v, local clock %v; want session %s, live, local clock %v", tc.name, list, localClock, sess.ID(), tc.localClock)
			}
			_, err = snapshot.Unlock(ctx, reopen(t, repos, ro), nil, chunkstore.DefaultSessionTiming)
			if !errors.Is(err, chunkstore.ErrClockRefused) || !strings.Contains(err.Error(), "access denied") {
				t.Errorf("unlock with %s credentials: %v; want the store's clock refused, access denied", tc.name, err)
			}
		})
	}
}
