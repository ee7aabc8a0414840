package snapshot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// streamContent reads a file node's content back blob by blob.
func streamContent(t *testing.T, repo *chunkstore.Repository, n *snapshot.Node) []byte {
	t.Helper()
	var out []byte
	for _, id := range n.Content {
		b, err := repo.LoadBlob(context.Background(), chunkstore.DataBlob, id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func TestBackupStream(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	// Larger than the maximum chunk, so the stream is cut into several.
	data := append(fixture.Random(7, 9<<20), bytes.Repeat([]byte("INSERT INTO t VALUES (1);\n"), 100_000)...)

	res, err := snapshot.Backup(ctx, r.writer, snapshot.BackupOptions{Host: "db1",
		Stream: &snapshot.Stream{Name: "app.sql", Reader: bytes.NewReader(data)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Manifest.Paths; len(got) != 1 || got[0] != "/app.sql" {
		t.Errorf("snapshot paths %q, want [/app.sql]", got)
	}
	if s := res.Manifest.Summary; s.FilesNew != 1 || s.BytesProcessed != uint64(len(data)) {
		t.Errorf("summary %+v: want 1 new file of %d bytes", s, len(data))
	}
	n, err := snapshot.Lookup(ctx, r.reader, res.Manifest.Tree, "/app.sql")
	if err != nil {
		t.Fatal(err)
	}
	if n.Type != snapshot.TypeFile || n.Size != uint64(len(data)) || n.Mode != 0o600 || len(n.Content) < 2 {
		t.Errorf("node %s %s size %d mode %v, %d chunks: want a file of %d bytes, mode 0600, in several chunks",
			n.Name, n.Type, n.Size, n.Mode, len(n.Content), len(data))
	}
	if !n.ModTime.Equal(res.Manifest.Time) {
		t.Errorf("mtime %v, want the backup's start %v", n.ModTime, res.Manifest.Time)
	}
	if got := streamContent(t, r.reader, n); !bytes.Equal(got, data) {
		t.Fatalf("content read back differs (%d bytes, want %d)", len(got), len(data))
	}

	// The same stream again is deduplicated.
	res2, err := snapshot.Backup(ctx, r.writer, snapshot.BackupOptions{Host: "db1",
		Stream: &snapshot.Stream{Name: "app.sql", Reader: bytes.NewReader(data), Mode: 0o640}})
	if err != nil {
		t.Fatal(err)
	}
	if added := res2.Manifest.Summary.BytesAdded; added > 64<<10 {
		t.Errorf("second backup of the same stream added %d bytes, want only its tree", added)
	}
	if err := r.reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if n2, err := snapshot.Lookup(ctx, r.reader, res2.Manifest.Tree, "app.sql"); err != nil || n2.Mode != 0o640 {
		t.Errorf("second snapshot's node: %+v, %v; want mode 0640", n2, err)
	}
}

// failingReader returns its data, then err instead of EOF.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestBackupStreamFailureSavesNoSnapshot(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	// io.ErrUnexpectedEOF, bare or wrapped, is what a truncated gzip
	// stream or HTTP body returns: a failure, not the stream's end.
	for _, readErr := range []error{errors.New("pg_dump exited with status 1"), io.ErrUnexpectedEOF, fmt.Errorf("gzip: %w", io.ErrUnexpectedEOF)} {
		for _, size := range []int{0, 100 << 10, 12 << 20} {
			_, err := snapshot.Backup(ctx, r.writer, snapshot.BackupOptions{Host: "db1",
				Stream: &snapshot.Stream{Name: "app.sql", Reader: &failingReader{bytes.NewReader(fixture.Random(1, size)), readErr}}})
			if !errors.Is(err, readErr) || !strings.Contains(err.Error(), "/app.sql") {
				t.Errorf("%d bytes, then %q: err %v, want the reader's error naming /app.sql", size, readErr, err)
			}
		}
	}
	snaps, _, err := snapshot.List(ctx, r.reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 0 {
		t.Errorf("%d snapshots saved from failed streams, want none", len(snaps))
	}

	for _, tc := range []struct {
		opts snapshot.BackupOptions
		want string
	}{
		{snapshot.BackupOptions{Paths: []string{"/etc"}, Stream: &snapshot.Stream{Name: "x", Reader: strings.NewReader("")}}, "paths and a stream"},
		{snapshot.BackupOptions{Stream: &snapshot.Stream{Name: "a/b", Reader: strings.NewReader("")}}, `"a/b" cannot name`},
		{snapshot.BackupOptions{Stream: &snapshot.Stream{Name: "..", Reader: strings.NewReader("")}}, `".." cannot name`},
	} {
		if _, err := snapshot.Backup(ctx, r.writer, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err %v, want one mentioning %q", err, tc.want)
		}
	}
}

func TestLookup(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"a/b/file.txt": {Content: []byte("hello")},
		"a/link":       {Symlink: "b/file.txt"},
	})
	res, err := snapshot.Backup(ctx, r.writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	root := res.Manifest.Tree
	for p, want := range map[string]snapshot.NodeType{
		"":                          snapshot.TypeDir,
		"/":                         snapshot.TypeDir,
		src + "/a":                  snapshot.TypeDir,
		src + "/a/b/file.txt":       snapshot.TypeFile,
		src[1:] + "/a/b/./file.txt": snapshot.TypeFile,
		src + "/a/link":             snapshot.TypeSymlink,
	} {
		n, err := snapshot.Lookup(ctx, r.reader, root, p)
		if err != nil || n.Type != want {
			t.Errorf("Lookup(%q) = %+v, %v; want a %s", p, n, err, want)
		}
	}
	if n, _ := snapshot.Lookup(ctx, r.reader, root, "/"); n == nil || n.Subtree == nil || *n.Subtree != root {
		t.Errorf("Lookup(/) does not return the root tree")
	}
	for p, want := range map[string]string{
		src + "/a/missing":          "not in snapshot",
		src + "/a/b/file.txt/inner": "is a file, not a directory",
		src + "/a/link/file.txt":    "is a symlink, not a directory",
	} {
		if _, err := snapshot.Lookup(ctx, r.reader, root, p); !errors.Is(err, snapshot.ErrNotInSnapshot) || !strings.Contains(err.Error(), want) {
			t.Errorf("Lookup(%q): %v, want ErrNotInSnapshot mentioning %q", p, err, want)
		}
	}
}
