package snapshot_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestBackupXAttrNames: an extended attribute whose name is not UTF-8
// cannot be stored; the backup saves the entry with the others and names
// the one it left out in a warning (the snapshot is partial).
func TestBackupXAttrNames(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	f := filepath.Join(src, "f")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := unix.Lsetxattr(f, "user.ok", []byte("1"), 0)
	if errors.Is(err, unix.ENOTSUP) {
		t.Skip("no user extended attributes here")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(f, "user.caf\xe9", []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	res, err := snapshot.Backup(context.Background(), r.writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || res.Warnings[0].Path != f || !strings.Contains(res.Warnings[0].Err.Error(), `"user.caf\xe9"`) {
		t.Fatalf("warnings %v, want one naming the attribute left out of %s", res.Warnings, f)
	}
	if err := r.reader.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	n, err := snapshot.Lookup(context.Background(), r.reader, res.Manifest.Tree, strings.TrimPrefix(f, "/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(n.XAttrs) != 1 || n.XAttrs[0].Name != "user.ok" || string(n.XAttrs[0].Value) != "1" {
		t.Errorf("saved attributes %+v, want user.ok alone", n.XAttrs)
	}
}
