package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestPruneRacesBackupsAndPrunes runs, at once on one repository of 1 MiB
// packs (in memory, a directory, MinIO): a backup loop that changes two files, backs up, and forgets all
// but its two newest snapshots; and two prune loops (one repacking every
// partly used pack, one tolerating 10 %). Whatever the interleaving, no
// backup fails, prunes delete data, and afterwards every snapshot left
// restores exactly what was backed up and the repository checks clean
// with every pack read. A prune stops when it finds the other running
// (ErrPruneBusy), and may refuse while a snapshot it listed is being
// forgotten (it cannot read it): both are safe answers, counted but not
// errors.
func TestPruneRacesBackupsAndPrunes(t *testing.T) {
	if testing.Short() {
		t.Skip("concurrency test of a few seconds")
	}
	for _, backend := range pruneBackends {
		t.Run(backend, func(t *testing.T) {
			var st chunkstore.Store
			switch backend {
			case "mem":
				st = mem.New()
			case "local":
				ls, err := local.Open(filepath.Join(t.TempDir(), "repo"), true)
				if err != nil {
					t.Fatal(err)
				}
				st = ls
			default:
				ms, err := location.Open(context.Background(), storetest.MinIORepoURL(t), true)
				if err != nil {
					t.Fatal(err)
				}
				st = ms
			}
			racePrunes(t, st)
		})
	}
}

func racePrunes(t *testing.T, st chunkstore.Store) {
	ctx := context.Background()
	idFile, rcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{rcpt}, PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	repos := storetest.Repos{Store: st, Identity: idFile}
	timing := chunkstore.SessionTiming{Heartbeat: time.Second, Stale: time.Minute, CommitWindow: 30 * time.Second, Margin: 5 * time.Millisecond}

	src := t.TempDir()
	files := map[string][]byte{}
	rng := rand.New(rand.NewPCG(3, 5))
	write := func(name string, seed uint64) {
		data := storetest.Data(seed, 200<<10+rng.IntN(1300<<10))
		writeFile(t, filepath.Join(src, name), data)
		files[strings.TrimPrefix(filepath.Join(src, name), "/")] = data
	}
	for i := range 8 {
		write(fmt.Sprintf("f%d", i), uint64(1000+i))
	}

	var (
		mu      sync.Mutex
		want    = map[chunkstore.ID]map[string][]byte{}
		done    = make(chan struct{})
		backups atomic.Int64
	)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for round := range 12 {
			for k := range 2 {
				write(fmt.Sprintf("f%d", rng.IntN(8)), uint64(2000+round*10+k))
			}
			w, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: sec}, chunkstore.Options{})
			if err != nil {
				t.Errorf("open for backup %d: %v", round, err)
				return
			}
			res, err := snapshot.Backup(ctx, w, snapshot.BackupOptions{Paths: []string{src}, Host: "h", Sessions: timing})
			if err != nil {
				t.Errorf("backup %d beside prunes: %v", round, err)
				return
			}
			backups.Add(1)
			mu.Lock()
			want[res.ID] = maps.Clone(files)
			mu.Unlock()
			// Keep the two newest.
			list, _, err := snapshot.List(ctx, w)
			if err != nil {
				t.Errorf("list: %v", err)
				return
			}
			var refs []snapshot.SnapshotRef
			for _, s := range list {
				refs = append(refs, snapshot.SnapshotRef{ID: s.ID.String(), Time: s.Time})
			}
			_, forget, _ := snapshot.Keep(refs, snapshot.Retention{KeepLast: 2}, time.Now())
			for _, f := range forget {
				id, _ := chunkstore.ParseID(f.ID)
				if err := snapshot.Forget(ctx, w, id); err != nil {
					t.Errorf("forget %s: %v", f.ID, err)
					return
				}
				mu.Lock()
				delete(want, id)
				mu.Unlock()
			}
		}
	}()

	var prunes, refused, busy, deleted atomic.Int64
	for _, maxUnused := range []float64{0, 0.1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				res, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{MaxUnused: maxUnused, Sessions: timing})
				switch {
				case errors.Is(err, snapshot.ErrPruneBusy):
					busy.Add(1)
				case errors.Is(err, snapshot.ErrPruneUnsafe) || errors.Is(err, chunkstore.ErrNotFound):
					refused.Add(1)
				case err != nil:
					t.Errorf("prune beside backups: %v", err)
					return
				default:
					prunes.Add(1)
					deleted.Add(int64(res.DeletedPacks))
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Settle: with nothing running, prune until nothing is left to do.
	for i := range 3 {
		res, err := snapshot.Prune(ctx, reopen(t, repos, st), snapshot.PruneOptions{MaxUnused: 0.1, Sessions: timing})
		if err != nil {
			t.Fatalf("prune %d after the race: %v", i, err)
		}
		deleted.Add(int64(res.DeletedPacks))
	}
	t.Logf("%d backups, %d prunes finished, %d refused, %d found another running, %d packs deleted; %d snapshots left",
		backups.Load(), prunes.Load(), refused.Load(), busy.Load(), deleted.Load(), len(want))
	if prunes.Load() == 0 || deleted.Load() == 0 || len(want) != 2 {
		t.Fatalf("the race did not exercise prune: %d prunes, %d packs deleted, %d snapshots", prunes.Load(), deleted.Load(), len(want))
	}
	verifyRestores(t, repos, want)
}
