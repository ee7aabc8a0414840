package snapshot_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"filippo.io/age"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

func openWith(t *testing.T, st chunkstore.Store, creds chunkstore.Credentials) *chunkstore.Repository {
	t.Helper()
	r, err := chunkstore.Open(context.Background(), st, creds, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// opens counts the live packs whose wrapped data key ids can unwrap,
// and all live packs (those outside GC marks).
func opens(t *testing.T, r *chunkstore.Repository, ids []age.Identity) (n, all int) {
	t.Helper()
	marks, err := r.GCMarks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	marked := chunkstore.MarkedPacks(marks)
	present, err := r.ListPacks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Index().Packs() {
		if _, ok := present[p.ID]; !ok || marked[p.ID] {
			continue
		}
		all++
		if _, err := age.Decrypt(bytes.NewReader(p.WrappedKey), ids...); err == nil {
			n++
		}
	}
	return n, all
}

// TestRekeyAndRewrap: adding a recipient gives its identity the
// repository, but the packs written before only after a prune with
// Rewrap; removing one locks its identity out of the repository and,
// after the rewrap, out of every pack. A writer key of an older
// generation can no longer back up.
func TestRekeyAndRewrap(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		st := repos.Store
		a := []byte(strings.Repeat("the first file, backed up for recipient A only\n", 40000))
		b := storetest.Data(7, 3<<20)
		writeFile(t, filepath.Join(src, "a.txt"), a)
		writeFile(t, filepath.Join(src, "b.bin"), b)
		first := backupDir(t, repos.Writer, src)

		aIDs, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
		if err != nil {
			t.Fatal(err)
		}
		aRcpt := repos.Writer.Secrets().Recipients[0]
		bFile, bRcpt, bIDs := storetest.Identity(t)

		// Add B.
		asA := openWith(t, st, chunkstore.Credentials{Identities: aIDs})
		sec1, err := asA.Rekey(ctx, []string{aRcpt, bRcpt})
		if err != nil {
			t.Fatal(err)
		}
		if sec1.Generation != 1 || len(sec1.Recipients) != 2 {
			t.Fatalf("after adding B: generation %d, recipients %v", sec1.Generation, sec1.Recipients)
		}
		if envs, err := asA.Envelopes(ctx); err != nil || len(envs) != 1 || envs[0].Gen != 1 {
			t.Fatalf("envelopes after adding B: %v, %v (want only generation 1)", envs, err)
		}

		// The old writer key is refused; the new one backs up.
		if _, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"}); !errors.Is(err, chunkstore.ErrStaleKey) {
			t.Fatalf("backup with the generation-0 writer key: %v, want ErrStaleKey", err)
		}
		c := storetest.Data(8, 2<<20)
		writeFile(t, filepath.Join(src, "c.bin"), c)
		second := backupDir(t, openWith(t, st, chunkstore.Credentials{Writer: sec1}), src)

		// B opens the repository and reads the new packs, not the old.
		asB := openWith(t, st, chunkstore.Credentials{Identities: bIDs})
		if g := asB.Secrets().Generation; g != 1 {
			t.Fatalf("B opened generation %d", g)
		}
		n, all := opens(t, asB, bIDs)
		if n == 0 || n == all {
			t.Fatalf("before the rewrap B unwraps %d of %d packs; want the new ones only", n, all)
		}
		snap1, err := snapshot.Load(ctx, asB, first.ID)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := restore.Restore(ctx, asB, snap1, restore.Options{Target: t.TempDir()}); err == nil && len(res.Failures) == 0 {
			t.Fatal("B restored the first snapshot before the rewrap; its packs are wrapped to A only")
		}

		// B cannot rewrap what it cannot read, and removing A now would
		// leave the first backup to A alone.
		// Nothing is lost, so 'repair index' is no advice.
		if _, err := snapshot.Prune(ctx, asB, snapshot.PruneOptions{Rewrap: true}); err == nil || !strings.Contains(err.Error(), "generation 0") || strings.Contains(err.Error(), "repair index") {
			t.Fatalf("rewrap by B: %v, want a refusal naming generation 0, without advice to repair the index", err)
		}
		if s := asB.Stranded([]string{bRcpt}); s[0] == 0 || s[1] != 0 {
			t.Fatalf("stranded by removing A before the rewrap: %v, want generation 0 only", s)
		}

		// Rewrap (by A): a dry run changes nothing, the real run repacks
		// the generation-0 packs.
		asA = openWith(t, st, chunkstore.Credentials{Identities: aIDs})
		res, err := snapshot.Prune(ctx, asA, snapshot.PruneOptions{DryRun: true, Rewrap: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.RewrappedPacks == 0 || res.RewrappedPacks != res.OldRecipientPacks {
			t.Fatalf("dry run: %d packs to rewrap of %d old", res.RewrappedPacks, res.OldRecipientPacks)
		}
		if n2, _ := opens(t, openWith(t, st, chunkstore.Credentials{Identities: bIDs}), bIDs); n2 != n {
			t.Fatalf("the dry run changed what B can open: %d packs, was %d", n2, n)
		}
		res, err = snapshot.Prune(ctx, asA, snapshot.PruneOptions{Rewrap: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.RewrappedPacks == 0 || res.DeletedPacks < res.RewrappedPacks {
			t.Fatalf("rewrap: %+v", res)
		}
		asB = openWith(t, st, chunkstore.Credentials{Identities: bIDs})
		if n, all := opens(t, asB, bIDs); n != all {
			t.Fatalf("after the rewrap B unwraps %d of %d packs", n, all)
		}
		for _, p := range asB.Index().Packs() {
			if p.Gen != 1 {
				t.Errorf("pack %s of generation %d left after the rewrap", p.ID.Short(), p.Gen)
			}
		}
		if res, err := snapshot.Prune(ctx, asB, snapshot.PruneOptions{Rewrap: true}); err != nil || res.RewrappedPacks != 0 || res.OldRecipientPacks != 0 {
			t.Fatalf("second rewrap: %+v, %v; want nothing to do", res, err)
		}
		if s := asB.Stranded([]string{bRcpt}); len(s) != 0 {
			t.Fatalf("stranded by removing A after the rewrap: %v", s)
		}
		bRepos := repos
		bRepos.Identity = bFile
		want := map[chunkstore.ID]map[string][]byte{
			first.ID:  {restored(src, "a.txt"): a, restored(src, "b.bin"): b},
			second.ID: {restored(src, "a.txt"): a, restored(src, "b.bin"): b, restored(src, "c.bin"): c},
		}
		verifyRestores(t, bRepos, want)

		// Remove A (as B). A can open nothing; until the rewrap, the
		// packs are still wrapped to A too.
		sec2, err := asB.Rekey(ctx, []string{bRcpt})
		if err != nil {
			t.Fatal(err)
		}
		if sec2.Generation != 2 {
			t.Fatalf("generation %d after removing A", sec2.Generation)
		}
		if _, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Identities: aIDs}, chunkstore.Options{}); err == nil || !strings.Contains(err.Error(), "not a recipient") {
			t.Fatalf("A opened the repository after its removal: %v", err)
		}
		if n, _ := opens(t, asB, aIDs); n == 0 {
			t.Fatal("before the second rewrap no pack is wrapped to A; the test proves nothing")
		}
		if _, err := snapshot.Prune(ctx, asB, snapshot.PruneOptions{Rewrap: true}); err != nil {
			t.Fatal(err)
		}
		if n, all := opens(t, openWith(t, st, chunkstore.Credentials{Identities: bIDs}), aIDs); n != 0 || all == 0 {
			t.Fatalf("after removing A and rewrapping, A unwraps %d of %d packs", n, all)
		}
		verifyRestores(t, bRepos, want)
	})
}

// failingPuts stores the first pack and fails every later one, each
// only once the first is stored: uploads run in parallel, and a failure
// cancels the others, which could otherwise abort the first in flight.
type failingPuts struct {
	chunkstore.Store
	n     atomic.Int32
	first chan struct{}
}

func newFailingPuts(st chunkstore.Store) *failingPuts {
	return &failingPuts{Store: st, first: make(chan struct{})}
}

func (s *failingPuts) Put(ctx context.Context, name string, data []byte) error {
	if !strings.HasPrefix(name, chunkstore.DataPrefix) {
		return s.Store.Put(ctx, name, data)
	}
	if s.n.Add(1) == 1 {
		defer close(s.first)
		return s.Store.Put(context.WithoutCancel(ctx), name, data)
	}
	<-s.first
	return chunkstore.Permanent(errors.New("injected: disk full"))
}

// TestRewrapResumes: a rewrap that stops part-way leaves a repository
// that restores. One stopped by a failing upload is done again by the
// next; one stopped after its new packs were indexed (its mark refused)
// is finished by the next without copying anything again.
func TestRewrapResumes(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		files := map[string][]byte{}
		for i := range 4 {
			name := string(rune('a'+i)) + ".bin"
			data := storetest.Data(uint64(20+i), 6<<20)
			writeFile(t, filepath.Join(src, name), data)
			files[restored(src, name)] = data
		}
		first := backupDir(t, repos.Writer, src)
		want := map[chunkstore.ID]map[string][]byte{first.ID: files}
		aIDs, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, bRcpt, _ := storetest.Identity(t)
		asA := openWith(t, repos.Store, chunkstore.Credentials{Identities: aIDs})
		if _, err := asA.Rekey(ctx, append(asA.Secrets().Recipients, bRcpt)); err != nil {
			t.Fatal(err)
		}
		old := 0
		for _, p := range asA.Index().Packs() {
			if p.Gen == 0 {
				old++
			}
		}
		if old < 2 {
			t.Fatalf("%d packs; the test needs several", old)
		}

		fp := newFailingPuts(repos.Store)
		if _, err := snapshot.Prune(ctx, openWith(t, fp, chunkstore.Credentials{Identities: aIDs}), snapshot.PruneOptions{Rewrap: true}); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("rewrap on a failing store: %v", err)
		}
		verifyRestores(t, repos, want)

		_, err = snapshot.Prune(ctx, openWith(t, markRefusingStore{repos.Store}, chunkstore.Credentials{Identities: aIDs}), snapshot.PruneOptions{Rewrap: true})
		if err == nil || !strings.Contains(err.Error(), "mark refused") {
			t.Fatalf("rewrap whose mark is refused: %v", err)
		}
		verifyRestores(t, repos, want)

		res, err := snapshot.Prune(ctx, openWith(t, repos.Store, chunkstore.Credentials{Identities: aIDs}), snapshot.PruneOptions{Rewrap: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.RewrappedPacks != 0 || res.RepackWritten != 0 || res.DeletedPacks < old {
			t.Fatalf("rewrap after one stopped before its mark: %+v; want the %d old packs deleted, nothing copied again", res, old)
		}
		// The pack the failed rewrap uploaded is listed by no index and
		// holds data in use: prune keeps it and, backups no longer
		// adopting it, says to repair the index; after that a prune
		// drops it (a current-generation pack holds the same blobs).
		if res.KeptUnindexed == 0 || !res.UnindexedNeedRepair {
			t.Fatalf("rewrap after the failures: kept %d unindexed packs, advice %v; want the failed rewrap's pack kept and named", res.KeptUnindexed, res.UnindexedNeedRepair)
		}
		if _, err := snapshot.RepairIndex(ctx, openWith(t, repos.Store, chunkstore.Credentials{Identities: aIDs}), snapshot.RepairOptions{}); err != nil {
			t.Fatal(err)
		}
		res, err = snapshot.Prune(ctx, openWith(t, repos.Store, chunkstore.Credentials{Identities: aIDs}), snapshot.PruneOptions{Rewrap: true})
		if err != nil || res.KeptUnindexed != 0 || res.RepackWritten != 0 || res.DeletedPacks == 0 {
			t.Fatalf("prune after repair index: %+v, %v; want the leftover deleted, nothing copied", res, err)
		}
		after := openWith(t, repos.Store, chunkstore.Credentials{Identities: aIDs})
		present, err := after.ListPacks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range after.Index().Packs() {
			if _, ok := present[p.ID]; ok && p.Gen != 1 {
				t.Errorf("pack %s of generation %d left", p.ID.Short(), p.Gen)
			}
		}
		if len(present) != len(after.Index().Packs()) {
			t.Errorf("%d packs stored, %d indexed", len(present), len(after.Index().Packs()))
		}
		verifyRestores(t, repos, want)
	})
}

// restored is where a restore of a backup of src puts src/name, relative
// to its target.
func restored(src, name string) string {
	return strings.TrimPrefix(filepath.Join(src, name), "/")
}

// rekeyOnFirstPack changes the recipients (with asA) when the first pack
// is uploaded: a change made while a backup runs.
type rekeyOnFirstPack struct {
	chunkstore.Store
	once func()
	done atomic.Bool
}

func (s *rekeyOnFirstPack) Put(ctx context.Context, name string, data []byte) error {
	if err := s.Store.Put(ctx, name, data); err != nil {
		return err
	}
	if strings.HasPrefix(name, chunkstore.DataPrefix) && !s.done.Swap(true) {
		s.once()
	}
	return nil
}

// TestRecipientsChangeDuringBackup: a backup that was running when the
// recipients changed wrapped its packs to the old ones, so it commits
// nothing. What it left is not reused by the next backups (which pack
// holds what it does not say); 'repair index' indexes it as of an
// unknown generation, which 'key remove' counts as stranded and a
// rewrap repacks.
func TestRecipientsChangeDuringBackup(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		big := storetest.Data(31, 5<<20)
		writeFile(t, filepath.Join(src, "big.bin"), big)
		aIDs, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
		if err != nil {
			t.Fatal(err)
		}
		aRcpt := repos.Writer.Secrets().Recipients[0]
		_, bRcpt, bIDs := storetest.Identity(t)
		asA := openWith(t, repos.Store, chunkstore.Credentials{Identities: aIDs})
		var sec1 *chunkstore.Secrets
		st := &rekeyOnFirstPack{Store: repos.Store, once: func() {
			if sec1, err = asA.Rekey(ctx, []string{aRcpt, bRcpt}); err != nil {
				t.Error(err)
			}
		}}
		w := openWith(t, st, chunkstore.Credentials{Writer: repos.Writer.Secrets()})
		_, berr := snapshot.Backup(ctx, w, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
		if !errors.Is(berr, chunkstore.ErrStaleKey) || !strings.Contains(berr.Error(), "nothing was committed") {
			t.Fatalf("backup across a change of recipients: %v, want ErrStaleKey at the commit", berr)
		}
		if sec1 == nil {
			t.Fatal("the recipients were not changed")
		}
		if n := countObjects(t, repos.Store, chunkstore.SnapshotsPrefix); n != 0 {
			t.Fatalf("%d snapshots saved by a backup that saw the change", n)
		}

		// Its packs were indexed before the commit check; remove those
		// index files, as a kill before the index leaves them.
		for _, name := range listNames(t, repos.Store, chunkstore.IndexPrefix) {
			if err := repos.Store.Delete(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
		// The old writer key is refused before it indexes anything, and
		// so is its repair index.
		if _, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"}); !errors.Is(err, chunkstore.ErrStaleKey) {
			t.Fatalf("backup with the old writer key: %v", err)
		}
		if _, err := snapshot.RepairIndex(ctx, repos.Writer, snapshot.RepairOptions{}); !errors.Is(err, chunkstore.ErrStaleKey) {
			t.Fatalf("repair index with the old writer key: %v", err)
		}
		if n := countObjects(t, repos.Store, chunkstore.IndexPrefix); n != 0 {
			t.Fatalf("%d index files written with the old writer key", n)
		}
		// The next backup (new key) uploads anew: nothing adopted.
		res := backupDir(t, openWith(t, repos.Store, chunkstore.Credentials{Writer: sec1}), src)
		if res.Adopted != 0 {
			t.Fatalf("a backup after a change adopted %d packs of unknown recipients", res.Adopted)
		}

		// repair index finds the first backup's packs in the store and
		// cannot know their generation.
		asB := openWith(t, repos.Store, chunkstore.Credentials{Identities: bIDs})
		if _, err := snapshot.RepairIndex(ctx, asB, snapshot.RepairOptions{}); err != nil {
			t.Fatal(err)
		}
		asB = openWith(t, repos.Store, chunkstore.Credentials{Identities: bIDs})
		unknown := 0
		for _, p := range asB.Index().Packs() {
			if p.Gen == chunkstore.GenUnknown {
				unknown++
			}
		}
		if unknown == 0 {
			t.Fatal("repair index indexed no pack of unknown generation")
		}
		if s := asB.Stranded([]string{bRcpt}); s[chunkstore.GenUnknown] != unknown {
			t.Fatalf("stranded: %v, want the %d packs of unknown generation", s, unknown)
		}
		if _, err := snapshot.Prune(ctx, openWith(t, repos.Store, chunkstore.Credentials{Identities: aIDs}), snapshot.PruneOptions{Rewrap: true}); err != nil {
			t.Fatal(err)
		}
		asB = openWith(t, repos.Store, chunkstore.Credentials{Identities: bIDs})
		if s := asB.Stranded([]string{bRcpt}); len(s) != 0 {
			t.Fatalf("stranded after the rewrap: %v", s)
		}
		verifyRestores(t, repos, map[chunkstore.ID]map[string][]byte{res.ID: {restored(src, "big.bin"): big}})
	})
}

// TestRecipientsChangeDuringRewrite: a rewrite whose new trees were
// written before a change of recipients saves no snapshot.
func TestRecipientsChangeDuringRewrite(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		writeFile(t, filepath.Join(src, "keep"), []byte("keep"))
		writeFile(t, filepath.Join(src, "secret"), []byte("remove me"))
		backupDir(t, repos.Writer, src)
		aIDs, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, bRcpt, _ := storetest.Identity(t)
		changer := openWith(t, repos.Store, chunkstore.Credentials{Identities: aIDs})
		st := &rekeyOnFirstPack{Store: repos.Store, once: func() {
			if _, err := changer.Rekey(ctx, append(changer.Secrets().Recipients, bRcpt)); err != nil {
				t.Error(err)
			}
		}}
		r := openWith(t, st, chunkstore.Credentials{Identities: aIDs})
		_, err = snapshot.RewriteSnapshots(ctx, r, snapshot.RewriteOptions{Exclude: []string{"secret"}})
		if !errors.Is(err, chunkstore.ErrStaleKey) {
			t.Fatalf("rewrite across a change of recipients: %v, want ErrStaleKey", err)
		}
		if n := countObjects(t, repos.Store, chunkstore.SnapshotsPrefix); n != 1 {
			t.Fatalf("%d snapshots after the refused rewrite, want the original only", n)
		}
	})
}

// keyLists counts the LISTs of keys/.
type keyLists struct {
	chunkstore.Store
	n atomic.Int64
}

func (k *keyLists) List(ctx context.Context, prefix string, fn func(chunkstore.ObjectInfo) error) error {
	if strings.HasPrefix(prefix, chunkstore.KeysPrefix) {
		k.n.Add(1)
	}
	return k.Store.List(ctx, prefix, fn)
}

// TestBackupListsKeysTwice: a backup checks the generation of the
// recipients when it starts and before it commits, each a LIST of
// keys/; its writer, started a moment after the first check, does not
// list them again. A writer whose caller does not check again before a
// commit always lists them.
func TestBackupListsKeysTwice(t *testing.T) {
	repos := storetest.NewRepos(t, "local")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), []byte("some data"))
	kl := &keyLists{Store: repos.Store}
	w := openWith(t, kl, chunkstore.Credentials{Writer: repos.Writer.Secrets()})
	kl.n.Store(0)
	backupDir(t, w, src)
	if n := kl.n.Load(); n != 2 {
		t.Errorf("a backup listed keys/ %d times, want 2 (when it starts and before it commits)", n)
	}
	// Any other writer (prune's, repair's: no check before a commit
	// follows) checks for itself, however recent the last check.
	kl.n.Store(0)
	ctx, abandon := context.WithCancel(context.Background())
	defer abandon()
	if _, err := w.NewWriter(ctx, chunkstore.WriterOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := kl.n.Load(); n != 1 {
		t.Errorf("a writer not checked again at a commit listed keys/ %d times, want 1", n)
	}
}
