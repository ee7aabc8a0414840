package snapshot_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestCommitDeadline: a backup whose CommitDeadline refuses (a lost lease)
// uploads its data but writes no manifest; a later backup reuses the data.
func TestCommitDeadline(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), storetest.Data(7, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	errLost := errors.New("lease lost")
	_, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src},
		CommitDeadline: func() (time.Time, error) { return time.Time{}, errLost }})
	if !errors.Is(err, errLost) {
		t.Fatalf("backup with a refused commit: err = %v, want the refusal", err)
	}
	ids, err := repos.Writer.ListMeta(ctx, chunkstore.KindSnapshot)
	if err != nil || len(ids) != 0 {
		t.Fatalf("snapshots after a refused commit: %v %v, want none", ids, err)
	}
	res, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src},
		CommitDeadline: func() (time.Time, error) { return time.Now().Add(time.Minute), nil }})
	if err != nil {
		t.Fatal(err)
	}
	// The file's 3 MiB of random data must not be stored again. (A tree
	// may be: the snapshot records the ancestors of src, and /tmp's mtime
	// moves whenever a test running beside this one creates a file there.)
	if added := res.Manifest.Summary.BytesAdded; added >= 1<<20 {
		t.Errorf("second backup stored %d bytes; the first one's data should have been reused", added)
	}
}

// TestFailedBackupLeavesNoReservations: a backup whose pack uploads fail
// leaves its blobs reserved; the next backup on the same Repository must
// store them rather than take them as already stored.
func TestFailedBackupLeavesNoReservations(t *testing.T) {
	ctx := context.Background()
	faulty := storetest.NewFaulty(mem.New())
	repos := storetest.InitRepos(t, faulty)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), storetest.Data(9, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	faulty.FailPuts(chunkstore.DataPrefix, errors.New("injected upload failure"))
	if _, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}}); err == nil {
		t.Fatal("backup succeeded although every pack upload failed")
	}
	faulty.Reset()
	res, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}})
	if err != nil {
		t.Fatal(err)
	}
	if probs, err := snapshot.Check(ctx, repos.Reader); err != nil || len(probs) > 0 {
		t.Fatalf("snapshot %s references data that was never stored: %v %v", res.ID.Short(), err, probs)
	}
}
