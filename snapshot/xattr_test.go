package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestBackupXAttrNames: an extended attribute whose name is not UTF-8
// is saved with its exact bytes (name_b64), like a file name, and a
// value larger than the first buffer whole; with listxattrat and
// getxattrat (Linux 6.13), and without.
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
	big := strings.Repeat("v", 3000) // more than the first buffer a value is read into
	if err := unix.Lsetxattr(f, "user.big", []byte(big), 0); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"user.caf\xe9", "user.caf\xe8"} { // would print alike
		if err := unix.Lsetxattr(f, name, []byte(name[len(name)-1:]), 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, withListxattrat := range []bool{true, false} {
		t.Run(fmt.Sprintf("listxattrat %v", withListxattrat), func(t *testing.T) {
			if !withListxattrat {
				snapshot.WithoutListxattrat(t)
			}
			res, err := snapshot.Backup(context.Background(), r.writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
			if err != nil || len(res.Warnings) > 0 {
				t.Fatalf("backup: %v, warnings %v", err, res.Warnings)
			}
			if err := r.reader.LoadIndex(context.Background()); err != nil {
				t.Fatal(err)
			}
			n, err := snapshot.Lookup(context.Background(), r.reader, res.Manifest.Tree, strings.TrimPrefix(f, "/"))
			if err != nil {
				t.Fatal(err)
			}
			want := []snapshot.XAttr{{Name: "user.big", Value: []byte(big)}, {Name: "user.caf\xe8", Value: []byte("\xe8")}, {Name: "user.caf\xe9", Value: []byte("\xe9")}, {Name: "user.ok", Value: []byte("1")}}
			if len(n.XAttrs) != len(want) {
				t.Fatalf("saved attributes %q, want %q", n.XAttrs, want)
			}
			for i := range want {
				if n.XAttrs[i].Name != want[i].Name || string(n.XAttrs[i].Value) != string(want[i].Value) {
					t.Errorf("attribute %d: %q, want %q", i, n.XAttrs[i], want[i])
				}
			}
		})
	}
}
