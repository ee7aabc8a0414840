package restore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// testRepo is a repository opened twice, the way it is used: by a writer
// key for backups and by the identity for restores.
type testRepo struct {
	writer, reader *chunkstore.Repository
}

func newRepo(t *testing.T, backend string) testRepo {
	t.Helper()
	r := storetest.NewRepos(t, backend)
	return testRepo{writer: r.Writer, reader: r.Reader}
}

// backup backs src up with the writer key and loads the snapshot with the
// identity.
func (r testRepo) backup(t *testing.T, src string) *snapshot.Snapshot {
	t.Helper()
	ctx := context.Background()
	res, err := snapshot.Backup(ctx, r.writer, snapshot.BackupOptions{Paths: []string{src}, Host: "fixture"})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if len(res.Warnings) > 0 {
		t.Fatalf("backup warnings: %v", res.Warnings)
	}
	snap, err := snapshot.Load(ctx, r.reader, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func (r testRepo) restore(t *testing.T, snap *snapshot.Snapshot, opts restore.Options) *restore.Result {
	t.Helper()
	res, err := restore.Restore(context.Background(), r.reader, snap, opts)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if len(res.Failures) > 0 {
		t.Fatalf("restore failures: %v", res.Failures)
	}
	return res
}

// standardSnapshot backs up fixture.Standard(), created in a new
// directory src, to a new repository on backend.
func standardSnapshot(t *testing.T, backend string) (testRepo, string, fixture.Tree, *snapshot.Snapshot) {
	t.Helper()
	r := newRepo(t, backend)
	src := t.TempDir()
	tree := fixture.Standard()
	fixture.Create(t, src, tree)
	return r, src, tree, r.backup(t, src)
}

// restoredAt is where a snapshot of src lands under target: restore keeps
// the absolute path below the target.
func restoredAt(target, src string) string { return filepath.Join(target, src) }

func TestRoundTripStandardTree(t *testing.T) {
	for _, backend := range []string{"local", "minio"} {
		t.Run(backend, func(t *testing.T) {
			r, src, tree, snap := standardSnapshot(t, backend)

			dst := t.TempDir()
			// Through the page cache from the local repository (the
			// default), direct I/O from MinIO.
			res := r.restore(t, snap, restore.Options{Target: dst, DirectIO: backend == "minio"})
			fixture.Compare(t, tree, restoredAt(dst, src))

			regular := len(tree.Regular())
			if res.Files != int64(regular+1) || res.Symlinks != 4 || res.FilesSkipped != 0 {
				t.Errorf("result %+v: want %d files (one a hard link), 4 symlinks, none skipped", res, regular+1)
			}
			if min := int64(fixture.LargeSize + fixture.SparseSize); res.Bytes < min {
				t.Errorf("result bytes %d, want at least %d", res.Bytes, min)
			}
			// Holes are not written: far less than the sparse file's size.
			if res.BytesWritten > fixture.LargeSize+fixture.SparseSize/4 {
				t.Errorf("wrote %d bytes: the sparse file's holes were written", res.BytesWritten)
			}
		})
	}
}

// subtree selects the entries of tree for which keep is true, plus the
// directories above them, which restore creates with their metadata.
func subtree(tree fixture.Tree, keep func(p string) bool) fixture.Tree {
	out := fixture.Tree{}
	for p, e := range tree {
		if !keep(p) {
			continue
		}
		out[p] = e
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			out[d] = tree[d]
		}
	}
	return out
}

func under(prefix string) func(string) bool {
	return func(p string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }
}

func TestRestoreInclude(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	rel := strings.TrimPrefix(src, "/") // patterns are snapshot-relative

	// Restoring only the second name of a hard link yields a plain file
	// with the shared content and metadata.
	onlyB := subtree(tree, func(p string) bool { return p == fixture.HardlinkB })
	onlyB[fixture.HardlinkB] = tree[fixture.HardlinkA]

	tests := []struct {
		name     string
		patterns []string
		want     fixture.Tree
	}{
		{"directory", []string{rel + "/日本語"}, subtree(tree, under("日本語"))},
		{"glob", []string{rel + "/*.txt"}, subtree(tree, func(p string) bool {
			return !strings.Contains(p, "/") && strings.HasSuffix(p, ".txt")
		})},
		{"glob below dir", []string{rel + "/modes/*"}, subtree(tree, func(p string) bool { return strings.HasPrefix(p, "modes/") })},
		{"two patterns", []string{rel + "/deep/d01/d02", rel + "/links"}, subtree(tree, func(p string) bool {
			return under("deep/d01/d02")(p) || under("links")(p)
		})},
		{"second hard link name", []string{rel + "/" + fixture.HardlinkB}, onlyB},
		{"leading slash", []string{"/" + rel + "/" + fixture.SparsePath}, subtree(tree, under(fixture.SparsePath))},
		{"no match", []string{rel + "/nothing-here"}, fixture.Tree{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			res := r.restore(t, snap, restore.Options{Target: dst, Include: tc.patterns})
			if len(tc.want) == 0 {
				ents, _ := os.ReadDir(dst)
				if len(ents) != 0 || res.Files != 0 {
					t.Fatalf("nothing matches, yet restored %d files and %d top-level entries", res.Files, len(ents))
				}
				return
			}
			fixture.Compare(t, tc.want, restoredAt(dst, src))
		})
	}
	if _, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: t.TempDir(), Include: []string{"["}}); err == nil {
		t.Error("a malformed pattern was accepted")
	}
}

// TestRestoreIncludeGlobstar: "**" in --include selects files several
// levels deep, at every depth between, and nothing else; an excluded
// "**" path stays out.
func TestRestoreIncludeGlobstar(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	rel := strings.TrimPrefix(src, "/")
	file := func(s string) fixture.Entry { return fixture.Entry{Content: []byte(s), Mode: 0o644} }
	tree := fixture.Tree{
		"var/lib/a.db":           file("a"),
		"var/lib/x/b.db":         file("b"),
		"var/lib/x/y/z/c.db":     file("c"),
		"var/lib/x/y/z/c.db-wal": file("c-wal"),
		"var/lib/x/y/z/d.txt":    file("d"),
		"var/lib/skip/e.db":      file("e"),
		"var/other/f.db":         file("f"),
		"g.db":                   file("g"),
	}
	for _, d := range []string{"var", "var/lib", "var/lib/x", "var/lib/x/y", "var/lib/x/y/z", "var/lib/skip", "var/other"} {
		tree[d] = fixture.Entry{Dir: true, Mode: 0o755}
	}
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)

	for _, tc := range []struct {
		name             string
		include, exclude []string
		want             func(p string) bool
	}{
		{"middle", []string{rel + "/var/lib/**/*.db"}, nil, func(p string) bool {
			return strings.HasPrefix(p, "var/lib/") && strings.HasSuffix(p, ".db")
		}},
		{"two in a row", []string{rel + "/var/**/**/z/*.db"}, nil, func(p string) bool { return p == "var/lib/x/y/z/c.db" }},
		{"start", []string{"**/c.db"}, nil, func(p string) bool { return p == "var/lib/x/y/z/c.db" }},
		{"end", []string{rel + "/var/lib/x/**"}, nil, under("var/lib/x")},
		{"with exclude", []string{rel + "/var/**/*.db"}, []string{"/**/skip/"}, func(p string) bool {
			return strings.HasPrefix(p, "var/") && strings.HasSuffix(p, ".db") && !strings.Contains(p, "/skip/")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			r.restore(t, snap, restore.Options{Target: dst, Include: tc.include, Exclude: tc.exclude})
			want := subtree(tree, tc.want)
			if len(want) == 0 {
				t.Fatal("the case selects nothing")
			}
			fixture.Compare(t, want, restoredAt(dst, src))
		})
	}
}

// TestRestoreResume damages a restored tree in the ways an interrupted
// restore or a meddling user leaves it, and restores again: intact files
// are skipped (verified by content, not trusted by size), damaged ones
// rewritten, metadata fixed everywhere, and a symlink planted where a
// file belongs is replaced, not followed.
func TestRestoreResume(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	dst := t.TempDir()
	// A restore raises the collector's target while it plans; it must
	// put it back, on a fresh target and when resuming.
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	gcBack := func(which string) {
		t.Helper()
		if got := debug.SetGCPercent(100); got != 100 {
			t.Errorf("GOGC %d after the %s restore, want 100 again", got, which)
		}
	}
	first := r.restore(t, snap, restore.Options{Target: dst})
	gcBack("first")
	out := restoredAt(dst, src)
	at := func(p string) string { return filepath.Join(out, filepath.FromSlash(p)) }

	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("must not be overwritten"), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rewritten := map[string]bool{}
	damage := []struct {
		path    string
		rewrite bool // content must be written again
		do      func(p string) error
	}{
		{fixture.LargePath, true, func(p string) error { // same size, one byte differs
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			b := []byte{fixture.Random(42, fixture.LargeSize)[7<<20] ^ 0xff}
			if _, err := f.WriteAt(b, 7<<20); err != nil {
				return err
			}
			return f.Close()
		}},
		{"modes/exec.sh", true, func(p string) error { return os.Truncate(p, 0) }},
		{fixture.UnicodeNested, true, os.Remove},
		{"times/2001.txt", true, func(p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink(victim, p)
		}},
		{"times/1990.txt", false, func(p string) error { return os.Chtimes(p, now, now) }},
		{"modes/private", false, func(p string) error { return os.Chmod(p, 0o666) }},
		{fixture.HardlinkB, false, os.Remove},
		{fixture.DanglingLink, false, os.Remove},
	}
	var wantWritten int64
	for _, d := range damage {
		if err := d.do(at(d.path)); err != nil {
			t.Fatalf("damage %s: %v", d.path, err)
		}
		if d.rewrite {
			rewritten[d.path] = true
			wantWritten += int64(len(tree[d.path].Content))
		}
	}

	second := r.restore(t, snap, restore.Options{Target: dst})
	gcBack("resumed")
	fixture.Compare(t, tree, out)
	if got, err := os.ReadFile(victim); err != nil || string(got) != "must not be overwritten" {
		t.Fatalf("restore wrote through a planted symlink: %q, %v", got, err)
	}
	regular := int64(len(tree.Regular()))
	if second.Files != first.Files || second.FilesSkipped != regular-int64(len(rewritten)) {
		t.Errorf("second restore: %d files, %d skipped; want %d files, %d skipped", second.Files, second.FilesSkipped, first.Files, regular-int64(len(rewritten)))
	}
	if second.BytesWritten != wantWritten {
		t.Errorf("second restore wrote %d bytes, want exactly the damaged files' %d", second.BytesWritten, wantWritten)
	}

	third := r.restore(t, snap, restore.Options{Target: dst})
	fixture.Compare(t, tree, out)
	if third.FilesSkipped != regular || third.BytesWritten != 0 {
		t.Errorf("restore over an intact tree skipped %d of %d files and wrote %d bytes", third.FilesSkipped, regular, third.BytesWritten)
	}
}

// TestFileEqualToATreeEncoding: a file whose bytes equal an empty
// directory's tree encoding must not be deduplicated into the tree (data
// and tree IDs are keyed apart); both come back.
func TestFileEqualToATreeEncoding(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	src := t.TempDir()
	empty, err := (&snapshot.Tree{Nodes: []snapshot.Node{}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "looks-like-a-tree"), empty, 0o644); err != nil {
		t.Fatal(err)
	}
	snap := r.backup(t, src)
	dst := t.TempDir()
	res, err := restore.Restore(ctx, r.reader, snap, restore.Options{Target: dst})
	if err != nil || len(res.Failures) > 0 {
		t.Fatalf("restore: %v %v", err, res.Failures)
	}
	got, err := os.ReadFile(filepath.Join(dst, src, "looks-like-a-tree"))
	if err != nil || string(got) != string(empty) {
		t.Fatalf("file: %q %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, src, "emptydir")); err != nil || !fi.IsDir() {
		t.Fatalf("empty directory: %v", err)
	}
}

// TestRoundTripWriteBehind restores the standard tree (a 20 MiB file of
// many chunks, a sparse file, hard links) with every span written back and
// dropped as soon as it is written, and with write-behind off: the
// restored tree is the same either way.
func TestRoundTripWriteBehind(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	for _, wb := range []int64{1, -1} {
		dst := t.TempDir()
		r.restore(t, snap, restore.Options{Target: dst, WriteBehind: wb})
		fixture.Compare(t, tree, restoredAt(dst, src))
	}
}

// TestRoundTripDirectIO restores the standard tree (its 20 MiB file is
// written with direct I/O) with direct I/O, without it, on a target
// that refuses it at open or at the first write, and when opening for
// it fails otherwise: the restored tree is the same every time, only the
// first writes anything direct, and the log says why the others did not.
func TestRoundTripDirectIO(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	if !restore.DirectSupported(t, t.TempDir()) {
		t.Skip("the filesystem of the test's temporary directory does not support O_DIRECT")
	}
	large := int64(len(tree[fixture.LargePath].Content))
	for _, tc := range []struct {
		name       string
		opts       restore.Options
		refuse     func(t *testing.T)
		wantDirect bool
		wantLog    string // "" for no complaint about direct I/O
	}{
		{name: "direct", opts: restore.Options{DirectIO: true}, wantDirect: true},
		{name: "no direct I/O (the default)"},
		{name: "refused at open", opts: restore.Options{DirectIO: true}, refuse: func(t *testing.T) { restore.RefuseDirectIO(t, true, syscall.EINVAL) }, wantLog: "does not support direct I/O"},
		{name: "refused at write", opts: restore.Options{DirectIO: true}, refuse: func(t *testing.T) { restore.RefuseDirectIO(t, false, syscall.EINVAL) }, wantLog: "does not support direct I/O"},
		{name: "open fails otherwise", opts: restore.Options{DirectIO: true}, refuse: func(t *testing.T) { restore.RefuseDirectIO(t, true, syscall.EMFILE) }, wantLog: "could not open for direct I/O"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.refuse != nil {
				tc.refuse(t)
			}
			var log strings.Builder
			tc.opts.Target = t.TempDir()
			tc.opts.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
			res := r.restore(t, snap, tc.opts)
			fixture.Compare(t, tree, restoredAt(tc.opts.Target, src))
			if tc.wantDirect {
				// At least the large file, but for the unaligned ends of
				// its chunks.
				if res.BytesDirect < large*9/10 || res.BytesDirect > res.BytesWritten {
					t.Fatalf("%d of %d bytes written direct, want most of the %d-byte large file", res.BytesDirect, res.BytesWritten, large)
				}
			} else if res.BytesDirect != 0 {
				t.Fatalf("%d bytes written direct, want none", res.BytesDirect)
			}
			for _, msg := range []string{"does not support direct I/O", "could not open for direct I/O"} {
				if logged := strings.Contains(log.String(), msg); logged != (msg == tc.wantLog) {
					t.Fatalf("log says %q: %v, want %v; log:\n%s", msg, logged, msg == tc.wantLog, log.String())
				}
			}
		})
	}
}

// TestDirectIOSharedChunks restores two large files that share most of
// their chunks at file offsets 1000 bytes apart: each shared blob is
// decoded aligned for one of them, and must still reach the other,
// through the page cache, intact.
func TestDirectIOSharedChunks(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	x := fixture.Random(7, 6<<20)
	tree := fixture.Tree{
		"a":       {Content: x},
		"b":       {Content: append(fixture.Random(8, 1000), x...)},
		"c/small": {Content: x[:100<<10]},
	}
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)
	dst := t.TempDir()
	res := r.restore(t, snap, restore.Options{Target: dst, DirectIO: true})
	fixture.Compare(t, tree, restoredAt(dst, src))
	if !restore.DirectSupported(t, dst) {
		return
	}
	// Each shared chunk went direct to one file at most and through the
	// page cache to the other: never both files' worth. What b does not
	// share with a (its first chunk, with the 1000 bytes before x, cut
	// where the repository's random polynomial says: 512 KiB to 8 MiB)
	// may go direct too.
	ctx := context.Background()
	content := func(name string) []chunkstore.ID {
		n, err := snapshot.Lookup(ctx, r.reader, snap.Tree, filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		return n.Content
	}
	inA := map[chunkstore.ID]bool{}
	for _, id := range content("a") {
		inA[id] = true
	}
	most := int64(len(x))
	for _, id := range content("b") {
		if !inA[id] {
			loc, ok := r.reader.Index().Lookup(id)
			if !ok {
				t.Fatalf("blob %s of b not in the index", id.Short())
			}
			most += int64(loc.Blob.RawLength)
		}
	}
	if both := int64(2 * len(x)); res.BytesDirect < both/4 || res.BytesDirect > most {
		t.Fatalf("%d bytes written direct, want from a quarter of the %d bytes of a and b up to %d (a, and what b does not share with it)", res.BytesDirect, both, most)
	}
}

// TestMetadataErrorsReported restores a tree on which setting the times
// of every entry named "x" fails: the data is all there, the restore does
// not fail, and the result counts the three entries and names them.
func TestMetadataErrorsReported(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	old := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	tree := fixture.Tree{
		"x":       {Content: []byte("top"), MTime: old},
		"d":       {Dir: true, MTime: old},
		"d/x":     {Content: fixture.Random(3, 2<<20), MTime: old},
		"d/y":     {Content: []byte("fine"), MTime: old},
		"d/sub/x": {Dir: true, MTime: old},
	}
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)
	restore.RefuseTimes(t, "x")
	dst := t.TempDir()
	res := r.restore(t, snap, restore.Options{Target: dst})
	if len(res.Failures) != 0 {
		t.Fatalf("failures: %v", res.Failures)
	}
	if res.MetadataErrors != 3 || len(res.MetadataSamples) != 3 {
		t.Fatalf("metadata errors %d, samples %v; want 3 and 3", res.MetadataErrors, res.MetadataSamples)
	}
	rel := strings.TrimPrefix(src, "/")
	want := []string{rel + "/d/sub/x", rel + "/d/x", rel + "/x"}
	for i, s := range res.MetadataSamples {
		if s.Path != want[i] || !errors.Is(s.Err, syscall.EPERM) {
			t.Errorf("sample %d: %s: %v; want %s: EPERM", i, s.Path, s.Err, want[i])
		}
	}
	for p, n := range tree {
		fi, err := os.Lstat(filepath.Join(restoredAt(dst, src), p))
		if err != nil {
			t.Fatal(err)
		}
		if !n.Dir {
			got, err := os.ReadFile(filepath.Join(restoredAt(dst, src), p))
			if err != nil || !bytes.Equal(got, n.Content) {
				t.Errorf("%s: content differs (%v)", p, err)
			}
		}
		if refused := filepath.Base(p) == "x"; refused == fi.ModTime().Equal(old) {
			t.Errorf("%s: mtime %v (times refused: %v)", p, fi.ModTime(), refused)
		}
	}
}

// TestRestoreSync restores with Options.Sync, and with a flush that
// fails: the failure is the restore's error, naming the target and what
// failed, and the files written before it are there.
func TestRestoreSync(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	dst := t.TempDir()
	var log strings.Builder
	r.restore(t, snap, restore.Options{Target: dst, Sync: true, Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	fixture.Compare(t, tree, restoredAt(dst, src))
	if !strings.Contains(log.String(), "restore flushed to disk") {
		t.Errorf("no flush logged:\n%s", log.String())
	}

	restore.FailSync(t, syscall.EIO)
	bad := t.TempDir()
	_, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: bad, Sync: true})
	if err == nil || !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "flush") {
		t.Fatalf("restore with a failing flush: %v; want an EIO error naming %s and the flush", err, bad)
	}
	fixture.Compare(t, tree, restoredAt(bad, src))
}

// TestDirectIOSingleChunk: a large file of one chunk (written when its
// blob arrives, not created ahead) goes direct too: the descriptor
// opened for it by name must be checked against the file just created,
// not against the record of files created ahead, which it has none of.
func TestDirectIOSingleChunk(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	one := bytes.Repeat([]byte("periodic content, one chunk "), (3<<20)/28) // the chunker finds no cut in it
	tree := fixture.Tree{"one": {Content: one}}
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)
	n, err := snapshot.Lookup(context.Background(), r.reader, snap.Tree, filepath.Join(src, "one"))
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Content) != 1 {
		t.Fatalf("the file has %d chunks, want one", len(n.Content))
	}
	dst := t.TempDir()
	if !restore.DirectSupported(t, dst) {
		t.Skip("the filesystem of the test's temporary directory does not support O_DIRECT")
	}
	res := r.restore(t, snap, restore.Options{Target: dst, DirectIO: true})
	fixture.Compare(t, tree, restoredAt(dst, src))
	if size := int64(len(one)); res.BytesDirect < size*9/10 {
		t.Errorf("%d of the %d bytes written direct, want nearly all", res.BytesDirect, size)
	}
}

// TestRestoreModeBitsAndTimes: setuid, setgid and sticky bits, and
// access and modification times to the nanosecond (before 1970 too), of
// files of one chunk and of several, come back as they were.
func TestRestoreModeBitsAndTimes(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	files := []struct {
		name         string
		size         int
		mode         os.FileMode
		atime, mtime time.Time
	}{
		{"setuid", 10, 0o755 | os.ModeSetuid, time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC), time.Date(2020, 1, 2, 3, 4, 5, 987654321, time.UTC)},
		{"setgid", 0, 0o750 | os.ModeSetgid, time.Date(1960, 5, 6, 7, 8, 9, 11, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{"sticky", 3 << 20, 0o644 | os.ModeSticky, time.Date(2030, 7, 8, 9, 10, 11, 1, time.UTC), time.Date(2001, 9, 9, 1, 46, 40, 500, time.UTC)},
		{"plain", 100, 0o640, time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC), time.Date(2024, 2, 28, 12, 0, 0, 42, time.UTC)},
	}
	for _, f := range files {
		p := filepath.Join(src, f.name)
		if err := os.WriteFile(p, bytes.Repeat([]byte(f.name), f.size/len(f.name)+1)[:f.size], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, f.atime, f.mtime); err != nil {
			t.Fatal(err)
		}
	}
	snap := r.backup(t, src)
	target := t.TempDir()
	r.restore(t, snap, restore.Options{Target: target})
	for _, f := range files {
		p := filepath.Join(restoredAt(target, src), f.name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.name, fi.Mode(), f.mode)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if at := time.Unix(st.Atim.Unix()); !at.Equal(f.atime) {
			t.Errorf("%s: atime %v, want %v", f.name, at.UTC(), f.atime)
		}
		if !fi.ModTime().Equal(f.mtime) {
			t.Errorf("%s: mtime %v, want %v", f.name, fi.ModTime().UTC(), f.mtime)
		}
	}
}
