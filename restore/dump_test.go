package restore_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestDumpTar dumps the standard tree as a tar archive, extracts it with
// GNU tar and compares the result with the fixture: names (unicode,
// newlines), modes, owners, times, symlinks and the hard link survive.
func TestDumpTar(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Fatal("tar is needed to check dump's archives (Debian package tar)")
	}
	for _, backend := range []string{"local", "minio"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			r, src, tree, snap := standardSnapshot(t, backend)
			n, err := snapshot.Lookup(ctx, r.reader, snap.Tree, src)
			if err != nil {
				t.Fatal(err)
			}
			var archive bytes.Buffer
			base := strings.TrimPrefix(src, "/")
			if err := restore.DumpTar(ctx, r.reader, base, n, &archive); err != nil {
				t.Fatal(err)
			}

			// The hard link's second name is a link entry, not a copy.
			links := 0
			for _, h := range tarHeaders(t, archive.Bytes()) {
				if !strings.HasPrefix(h.Name, base+"/") && h.Name != base+"/" {
					t.Errorf("entry %q is not below %q", h.Name, base)
				}
				if h.Typeflag == tar.TypeLink {
					links++
				}
			}
			if links != 1 {
				t.Errorf("%d hard link entries, want 1", links)
			}

			dst := t.TempDir()
			x := exec.Command("tar", "-x", "-C", dst, "-f", "-")
			x.Stdin = &archive
			if out, err := x.CombinedOutput(); err != nil {
				t.Fatalf("tar -x: %v\n%s", err, out)
			}
			// A tar archive has no holes: the sparse file comes back whole.
			want := tree.Clone()
			size := want[fixture.SparsePath].SparseSize
			full := make([]byte, size)
			for _, e := range fixture.SparseExtents(size) {
				copy(full[e.Offset:], e.Data)
			}
			want[fixture.SparsePath] = fixture.Entry{Content: full}
			fixture.Compare(t, want, filepath.Join(dst, src))
		})
	}
}

func TestDumpFile(t *testing.T) {
	ctx := context.Background()
	r, src, tree, snap := standardSnapshot(t, "local")
	name := filepath.Join(src, fixture.LargePath)
	n, err := snapshot.Lookup(ctx, r.reader, snap.Tree, name)
	if err != nil {
		t.Fatal(err)
	}
	// 20 MiB in chunks of at most 8 MiB: at least 3, about 20 on average
	// (how many depends on the repository's random polynomial).
	if len(n.Content) < 3 {
		t.Fatalf("%s has %d chunks, want several", fixture.LargePath, len(n.Content))
	}
	var out bytes.Buffer
	if err := restore.DumpFile(ctx, r.reader, name, n, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), tree[fixture.LargePath].Content) {
		t.Errorf("dump of %s differs from the file (%d bytes, want %d)", name, out.Len(), len(tree[fixture.LargePath].Content))
	}

	dir, err := snapshot.Lookup(ctx, r.reader, snap.Tree, src)
	if err != nil {
		t.Fatal(err)
	}
	if err := restore.DumpFile(ctx, r.reader, src, dir, io.Discard); err == nil || !strings.Contains(err.Error(), "not a file") {
		t.Errorf("DumpFile of a directory: %v, want an error saying it is not a file", err)
	}
	if err := restore.DumpTar(ctx, r.reader, "x", n, io.Discard); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("DumpTar of a file: %v, want an error saying it is not a directory", err)
	}

	// A writer that fails stops the dump with its error.
	full := errors.New("no space left on device")
	if err := restore.DumpFile(ctx, r.reader, name, n, failAfter(3<<20, full)); !errors.Is(err, full) {
		t.Errorf("DumpFile into a failing writer: %v, want %v", err, full)
	}
}

// failingWriter accepts n bytes, then fails with err.
type failingWriter struct {
	n   int
	err error
}

func failAfter(n int, err error) *failingWriter { return &failingWriter{n, err} }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, w.err
	}
	w.n -= len(p)
	return len(p), nil
}

// TestDumpDamagedBlob flips a byte in one chunk of a large file: the dump
// writes the chunks before it, then stops with an error naming the file
// and the pack; a tar dump of the directory fails the same way.
func TestDumpDamagedBlob(t *testing.T) {
	ctx := context.Background()
	r, src, _, snap := standardSnapshot(t, "local")
	name := filepath.Join(src, fixture.LargePath)
	n, err := snapshot.Lookup(ctx, r.reader, snap.Tree, name)
	if err != nil {
		t.Fatal(err)
	}
	bad := len(n.Content) / 2
	pack := flipInPack(t, r.reader, r.reader.Store().Location(), n.Content[bad], 0x01)

	var out bytes.Buffer
	err = restore.DumpFile(ctx, r.reader, name, n, &out)
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), pack) {
		t.Fatalf("dump with a damaged chunk: %v, want an error naming %s and %s", err, name, pack)
	}
	var before uint64
	for _, id := range n.Content[:bad] {
		l, _ := r.reader.Index().Lookup(id)
		before += uint64(l.Blob.RawLength)
	}
	if uint64(out.Len()) != before {
		t.Errorf("wrote %d bytes before the damaged chunk, want exactly the %d before it", out.Len(), before)
	}

	dir, err := snapshot.Lookup(ctx, r.reader, snap.Tree, src)
	if err != nil {
		t.Fatal(err)
	}
	err = restore.DumpTar(ctx, r.reader, "src", dir, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "src/"+fixture.LargePath) {
		t.Errorf("tar dump with a damaged chunk: %v, want an error naming src/%s", err, fixture.LargePath)
	}
}

// TestDumpCancelled: a dump whose context is cancelled fails, however
// little it had written; an archive cut short is never reported whole.
func TestDumpCancelled(t *testing.T) {
	r, src, _, snap := standardSnapshot(t, "local")
	ctx := context.Background()
	dir, err := snapshot.Lookup(ctx, r.reader, snap.Tree, src)
	if err != nil {
		t.Fatal(err)
	}
	file, err := snapshot.Lookup(ctx, r.reader, snap.Tree, filepath.Join(src, fixture.LargePath))
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for range 30 { // the producer and the consumer race differently each time
		if err := restore.DumpTar(cancelled, r.reader, "src", dir, io.Discard); !errors.Is(err, context.Canceled) {
			t.Fatalf("DumpTar with a cancelled context: %v, want context.Canceled", err)
		}
		if err := restore.DumpFile(cancelled, r.reader, "large", file, io.Discard); !errors.Is(err, context.Canceled) {
			t.Fatalf("DumpFile with a cancelled context: %v, want context.Canceled", err)
		}
	}
}

// TestDumpTarXAttrs: extended attributes travel in the archive as the
// PAX records GNU tar and bsdtar use, and tar --xattrs puts them back. A
// name with "=" (which ends a record's keyword) or "%" is escaped as GNU
// tar escapes it ("%3D", "%25"): the "=" failed the whole dump, and
// "user.p%3Dq" came back from GNU tar as "user.p=q".
func TestDumpTarXAttrs(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	src := t.TempDir()
	f := filepath.Join(src, "f")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	attrs := map[string][]byte{
		"user.origin": []byte("bytes \xff\x00 of any kind"),
		"user.a=b":    []byte("with an equals sign"),
		"user.p%3Dq":  []byte("with a percent sign"),
	}
	records := map[string]string{ // as GNU tar writes them
		"SCHILY.xattr.user.origin":  "user.origin",
		"SCHILY.xattr.user.a%3Db":   "user.a=b",
		"SCHILY.xattr.user.p%253Dq": "user.p%3Dq",
	}
	for name, value := range attrs {
		if !fixture.SetXAttr(t, f, name, value) {
			t.Skip("no user extended attributes here")
		}
	}
	snap := r.backup(t, src)
	n, err := snapshot.Lookup(ctx, r.reader, snap.Tree, src)
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if err := restore.DumpTar(ctx, r.reader, "d", n, &archive); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range tarHeaders(t, archive.Bytes()) {
		if h.Name != "d/f" {
			continue
		}
		found = true
		for key, name := range records {
			if got, ok := h.PAXRecords[key]; !ok || got != string(attrs[name]) {
				t.Errorf("record %s: %q (present: %v), want %q", key, got, ok, attrs[name])
			}
		}
	}
	if !found {
		t.Fatal("no entry d/f")
	}
	dst := t.TempDir()
	x := exec.Command("tar", "--xattrs", "--xattrs-include=user.*", "-x", "-C", dst, "-f", "-")
	x.Stdin = &archive
	if out, err := x.CombinedOutput(); err != nil {
		t.Skipf("tar --xattrs -x: %v\n%s", err, out)
	}
	got := xattrsOf(t, filepath.Join(dst, "d", "f"))
	for name, value := range attrs {
		if !bytes.Equal(got[name], value) {
			t.Errorf("after tar --xattrs -x: %s is %q, want %q", name, got[name], value)
		}
	}
	if len(got) != len(attrs) {
		t.Errorf("after tar --xattrs -x: %q, want %d attributes", got, len(attrs))
	}
}

// tarHeaders reads every entry's header of a tar archive.
func tarHeaders(t *testing.T, archive []byte) []*tar.Header {
	t.Helper()
	var hs []*tar.Header
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hs
		}
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
}

// TestDumpErrorQuotesName: the error naming a file whose chunk is damaged
// quotes a name with a newline or bytes that are not UTF-8 (as ls shows
// it), so that the name cannot break the message into lines that read as
// lifeboat's own.
func TestDumpErrorQuotesName(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	src := t.TempDir()
	evil := "x\nlifeboat: dump complete \xff"
	if err := os.WriteFile(filepath.Join(src, evil), fixture.Random(9, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	snap := r.backup(t, src)
	n, err := snapshot.Lookup(ctx, r.reader, snap.Tree, filepath.Join(src, evil))
	if err != nil {
		t.Fatal(err)
	}
	flipInPack(t, r.reader, r.reader.Store().Location(), n.Content[0], 0x01)
	dir, err := snapshot.Lookup(ctx, r.reader, snap.Tree, src)
	if err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"file": restore.DumpFile(ctx, r.reader, "d/"+evil, n, io.Discard),
		"tar":  restore.DumpTar(ctx, r.reader, "d", dir, io.Discard),
	} {
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), strconv.Quote("d/"+evil)) {
			t.Errorf("%s dump: %v, want an error naming %s quoted", what, err, strconv.Quote("d/"+evil))
		}
	}
}

// TestDumpDamagedListing: a directory listing that cannot be read ends
// the archive with an error naming that directory, not only the blob;
// find and diff name it the same way.
func TestDumpDamagedListing(t *testing.T) {
	ctx := context.Background()
	dir, st, repos := localRepos(t)
	src := t.TempDir()
	for _, p := range []string{"a/f", "b/x", "c/y"} {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	// Found by a reader that is then dropped (it keeps the trees it read).
	before := repos.OpenReader(t, st)
	snap, err := snapshot.Load(ctx, before, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := snapshot.Lookup(ctx, before, snap.Tree, filepath.Join(src, "b"))
	if err != nil {
		t.Fatal(err)
	}
	flipInPack(t, before, dir, *b.Subtree, 0x01)
	rd := repos.OpenReader(t, st)
	top, err := snapshot.Lookup(ctx, rd, snap.Tree, src)
	if err != nil {
		t.Fatal(err)
	}
	err = restore.DumpTar(ctx, rd, "s", top, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "listing of directory /s/b: ") || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("dump with b's listing damaged: %v, want an error naming /s/b", err)
	}
	// find and diff name it too.
	want := "listing of directory " + filepath.Join(src, "b") + ": "
	err = snapshot.NewFinder(rd, func(string, *snapshot.Node) bool { return false }).Find(ctx, snap.Tree, func(snapshot.Found) error { return nil })
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("find with b's listing damaged: %v, want an error naming it", err)
	}
	_, err = snapshot.Diff(ctx, rd, src, nil, top, snapshot.DiffOptions{}, func(snapshot.Change) error { return nil })
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("diff with b's listing damaged: %v, want an error naming it", err)
	}
}
