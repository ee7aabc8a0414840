package snapshot_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

func TestBackupSmoke(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	idFile, rcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{rcpt}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello"), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub/deeper"), 0o755)
	big := make([]byte, 5<<20)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	os.WriteFile(filepath.Join(dir, "sub/deeper/big"), big, 0o600)
	os.Symlink("../a.txt", filepath.Join(dir, "sub/link"))

	wr, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: sec}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := snapshot.Backup(ctx, wr, snapshot.BackupOptions{Paths: []string{dir}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot %s summary %+v", res.ID.Short(), res.Manifest.Summary)
	if res.Manifest.Summary.FilesNew != 2 {
		t.Fatalf("files new = %d", res.Manifest.Summary.FilesNew)
	}
	if _, err := snapshot.LoadTree(ctx, wr, res.Manifest.Tree); err == nil {
		t.Fatal("writer could read a tree")
	}
	ids, err := chunkstore.ParseIdentityFile(idFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rd.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	tree, err := snapshot.LoadTree(ctx, rd, res.Manifest.Tree)
	if err != nil {
		t.Fatal(err)
	}
	if len(tree.Nodes) != 1 || tree.Nodes[0].Name != "tmp" {
		t.Fatalf("root tree %+v", tree.Nodes)
	}
}
