package restore_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

func TestRestoreSmoke(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	idFile, rcpt, _ := chunkstore.NewIdentity(false)
	sec, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{rcpt}})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	files := map[string][]byte{
		"a.txt":          []byte("hello"),
		"empty":          nil,
		"sub/deeper/big": bytes.Repeat([]byte("0123456789abcdef"), 1<<18),
		"sub/zeros":      make([]byte, 3<<20),
		"sub/x\nnewline": []byte("nl"),
	}
	for p, c := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		if err := os.WriteFile(filepath.Join(src, p), c, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("../a.txt", filepath.Join(src, "sub/link"))
	os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "hard"))
	wr, _ := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: sec}, chunkstore.Options{})
	res, err := snapshot.Backup(ctx, wr, snapshot.BackupOptions{Paths: []string{src}})
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := chunkstore.ParseIdentityFile(idFile, nil)
	rd, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Load(ctx, rd, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	out, err := restore.Restore(ctx, rd, snap, restore.Options{Target: dst})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Failures) > 0 {
		t.Fatalf("failures: %v", out.Failures)
	}
	base := filepath.Join(dst, src)
	for p, c := range files {
		got, err := os.ReadFile(filepath.Join(base, p))
		if err != nil || !bytes.Equal(got, c) {
			t.Fatalf("%s: err %v, %d bytes, want %d", p, err, len(got), len(c))
		}
	}
	if l, _ := os.Readlink(filepath.Join(base, "sub/link")); l != "../a.txt" {
		t.Fatalf("link %q", l)
	}
	// A second restore finds everything identical.
	out, err = restore.Restore(ctx, rd, snap, restore.Options{Target: dst})
	if err != nil || out.FilesSkipped != out.Files-1 {
		t.Fatalf("second restore: %v, skipped %d of %d", err, out.FilesSkipped, out.Files)
	}
}
