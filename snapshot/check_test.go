package snapshot_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestCheckNamesEverySnapshotOfSharedDamage: two snapshots share the
// directories whose data a lost pack held (the second backup changed
// only a file beside them). Each tree is checked once, but check must
// name both snapshots as damaged, not only the one it walked first: an
// operator choosing a snapshot to restore trusts the ones it does not
// name.
func TestCheckNamesEverySnapshotOfSharedDamage(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "keep", "a"), storetest.Data(21, 1<<10))
	writeFile(t, filepath.Join(src, "lost", "d"), storetest.Data(22, 3<<20))
	first := backupDir(t, repos.Writer, src)
	packs1 := listNames(t, repos.Store, chunkstore.DataPrefix)
	writeFile(t, filepath.Join(src, "new"), storetest.Data(23, 1<<10))
	second := backupDir(t, repos.Writer, src)
	if first.Manifest.Tree == second.Manifest.Tree {
		t.Fatal("the two snapshots have one root tree; the test needs them to share only subtrees")
	}
	// The pack with the first backup's data is lost, and the index
	// repaired: the snapshots reference data the index does not have.
	var lost chunkstore.ID
	r := reopenLoaded(t, repos, repos.Store)
	for _, name := range packs1 {
		id, _ := chunkstore.ParsePackName(name)
		if p := r.Index().Pack(id); p != nil && p.Blobs[0].Type == chunkstore.DataBlob {
			lost = id
		}
	}
	removeObject(t, repos.Store, chunkstore.PackName(lost))
	if _, err := snapshot.RepairIndex(ctx, repos.Writer, snapshot.RepairOptions{}); err != nil {
		t.Fatal(err)
	}

	probs, err := snapshot.Check(ctx, reopenLoaded(t, repos, repos.Store))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*snapshot.Result{first, second} {
		named := false
		for _, p := range probs {
			named = named || strings.HasPrefix(p.Object, "snapshot "+s.ID.Short()+" ")
		}
		if !named {
			t.Errorf("snapshot %s, which lost keep/a and lost/d, is named in no problem: %v", s.ID.Short(), probs)
		}
	}
	for _, p := range probs {
		if !errors.Is(p.Err, snapshot.ErrNotIndexed) {
			t.Errorf("problem %v does not wrap ErrNotIndexed: check's hints would not tell it is lost data", p)
		}
	}
}

// forgetAfterList deletes one snapshot manifest right after the first
// listing of snapshots/: a forget that runs between check's listing and
// its reading of the manifests.
type forgetAfterList struct {
	chunkstore.Store
	name string
	done bool
}

func (s *forgetAfterList) List(ctx context.Context, prefix string, fn func(chunkstore.ObjectInfo) error) error {
	err := s.Store.List(ctx, prefix, fn)
	if prefix == chunkstore.SnapshotsPrefix && !s.done {
		s.done = true
		if derr := s.Store.Delete(ctx, s.name); derr != nil {
			return derr
		}
	}
	return err
}

// TestCheckSnapshotForgottenMeanwhile: a snapshot forgotten while check
// runs (listed, then gone when its manifest is read) is no damage: check
// runs without a lock, beside forget, and must not report it.
func TestCheckSnapshotForgottenMeanwhile(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), []byte("a\n"))
	first := backupDir(t, repos.Writer, src)
	writeFile(t, filepath.Join(src, "b"), []byte("b\n"))
	backupDir(t, repos.Writer, src)

	st := &forgetAfterList{Store: repos.Store, name: chunkstore.SnapshotsPrefix + first.ID.String()}
	probs, err := snapshot.Check(ctx, reopenLoaded(t, repos, st))
	if err != nil {
		t.Fatal(err)
	}
	if !st.done {
		t.Fatal("the snapshots were not listed")
	}
	if len(probs) > 0 {
		t.Errorf("check reports the snapshot forgotten meanwhile: %v", probs)
	}
}
