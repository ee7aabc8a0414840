package snapshot_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

func copySnaps(t *testing.T, src, dst *chunkstore.Repository, snaps ...*snapshot.Snapshot) []snapshot.CopyResult {
	t.Helper()
	res, err := snapshot.Copy(context.Background(), src, dst, snaps, snapshot.CopyOptions{})
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if len(res) != len(snaps) {
		t.Fatalf("copy returned %d results for %d snapshots", len(res), len(snaps))
	}
	return res
}

func loadSnap(t *testing.T, repo *chunkstore.Repository, id chunkstore.ID) *snapshot.Snapshot {
	t.Helper()
	s, err := snapshot.Load(context.Background(), repo, id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dataObjects(t *testing.T, st chunkstore.Store) int {
	t.Helper()
	n := 0
	if err := st.List(context.Background(), chunkstore.DataPrefix, func(chunkstore.ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCopy copies the standard fixture into a repository of another
// identity, opened with only its writer key, restores the copy with the
// destination's identity, and checks that copying again adds nothing and
// that an incremental copy reads only the new data.
func TestCopy(t *testing.T) {
	for _, backend := range []string{"local", "minio"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			src := newRepo(t, "local")
			dir := t.TempDir()
			tree := fixture.Standard()
			fixture.Create(t, dir, tree)
			first := src.backupReload(t, dir)
			s1 := loadSnap(t, src.reader, first.ID)

			d := storetest.NewCopyTarget(t, backend, src.reader)
			dst := testRepo{writer: d.Writer, reader: d.Reader}
			res := copySnaps(t, src.reader, dst.writer, s1)[0]
			if res.Err != nil || res.Existing || res.Blobs == 0 || res.Trees == 0 || res.BytesAdded == 0 {
				t.Fatalf("first copy: %+v", res)
			}
			if err := dst.reader.LoadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			dst.restoreAndCompare(t, res.ID, dir, tree)
			c := loadSnap(t, dst.reader, res.ID)
			want := snapshot.CopyOrigin{Repository: src.reader.Config().ID, Snapshot: s1.ID}
			if c.CopiedFrom == nil || *c.CopiedFrom != want {
				t.Fatalf("copied_from = %+v, want %+v", c.CopiedFrom, want)
			}
			if !c.Time.Equal(s1.Time) || c.Host != s1.Host || strings.Join(c.Paths, ",") != strings.Join(s1.Paths, ",") ||
				c.Tree != s1.Tree || c.Summary != s1.Summary {
				t.Fatalf("copy's manifest differs from the source's:\n%+v\n%+v", c.Manifest, s1.Manifest)
			}
			report, err := dst.reader.Check(ctx, chunkstore.CheckOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(report.Problems) > 0 {
				t.Fatalf("check --read-data of the destination: %v", report.Problems)
			}
			if probs, err := snapshot.Check(ctx, dst.reader); err != nil || len(probs) > 0 {
				t.Fatalf("snapshot check of the destination: %v %v", probs, err)
			}

			// Again: already there, nothing stored.
			before := dataObjects(t, d.Store)
			again := copySnaps(t, src.reader, dst.writer, s1)[0]
			if !again.Existing || again.ID != res.ID || again.Blobs != 0 {
				t.Fatalf("second copy: %+v", again)
			}
			if n := dataObjects(t, d.Store); n != before {
				t.Fatalf("a repeated copy stored %d packs", n-before)
			}

			// A new file: only its bytes are read from the source.
			added := storetest.Data(7, 3<<20)
			writeFile(t, filepath.Join(dir, "new.bin"), added)
			s2 := loadSnap(t, src.reader, src.backupReload(t, dir).ID)
			out := copySnaps(t, src.reader, dst.writer, s2, s1) // copied oldest first
			if out[0].Source.ID != s1.ID || !out[0].Existing {
				t.Fatalf("first result should be the existing copy of %s: %+v", s1.ID.Short(), out[0])
			}
			if r := out[1]; r.Err != nil || r.Existing || r.Bytes != int64(len(added)) {
				t.Fatalf("incremental copy read %d bytes of data, want %d (the new file): %+v", r.Bytes, len(added), r)
			}
			if err := dst.reader.LoadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			tree["new.bin"] = fixture.Entry{Content: added, Mode: 0o644}
			dst.restoreAndCompare(t, out[1].ID, dir, tree)
		})
	}
}

// TestCopyRefuses: repositories that name blobs differently, one
// repository as both ends, and a source without its identity.
func TestCopyRefuses(t *testing.T) {
	ctx := context.Background()
	src := newRepo(t, "local")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), storetest.Data(1, 1000))
	s := loadSnap(t, src.reader, src.backupReload(t, dir).ID)
	other := newRepo(t, "local")
	for _, c := range []struct {
		name     string
		src, dst *chunkstore.Repository
		want     error
	}{
		{"other chunking", src.reader, other.writer, snapshot.ErrCopyChunking},
		{"same repository", src.reader, src.writer, snapshot.ErrCopySameRepository},
		{"writer key source", src.writer, other.writer, chunkstore.ErrNoIdentity},
	} {
		res, err := snapshot.Copy(ctx, c.src, c.dst, []*snapshot.Snapshot{s}, snapshot.CopyOptions{})
		if !errors.Is(err, c.want) || len(res) != 0 {
			t.Errorf("%s: got %v, %d results; want %v", c.name, err, len(res), c.want)
		}
	}
	snaps, _, err := snapshot.List(ctx, other.writer)
	if err != nil || len(snaps) != 0 {
		t.Fatalf("refused copies left %d snapshots (%v)", len(snaps), err)
	}
}

// twoSnapshots backs up two unrelated files, a.bin then b.bin, into a
// new repository in st, and returns their snapshots and the name of the
// pack holding a.bin's first chunk.
func twoSnapshots(t *testing.T, st chunkstore.Store) (src testRepo, sa, sb *snapshot.Snapshot, pack string) {
	t.Helper()
	r := storetest.InitRepos(t, st)
	src = testRepo{writer: r.Writer, reader: r.Reader}
	a, b := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(a, "a.bin"), storetest.Data(11, 2<<20))
	writeFile(t, filepath.Join(b, "b.bin"), storetest.Data(12, 2<<20))
	sa = loadSnap(t, src.reader, src.backupReload(t, a).ID)
	sb = loadSnap(t, src.reader, src.backupReload(t, b).ID)
	node, err := snapshot.Lookup(context.Background(), src.reader, sa.Tree, strings.TrimPrefix(a, "/")+"/a.bin")
	if err != nil {
		t.Fatal(err)
	}
	loc, ok := src.reader.Index().Lookup(node.Content[0])
	if !ok {
		t.Fatal("a.bin's first chunk is not indexed")
	}
	return src, sa, sb, chunkstore.PackName(loc.Pack.ID)
}

// TestCopyDamagedSource: a damaged pack in the source fails the snapshot
// that needs it, with an error naming the pack, and no manifest is
// saved for it; a snapshot that does not need it is still copied.
func TestCopyDamagedSource(t *testing.T) {
	ctx := context.Background()
	st, err := local.Open(filepath.Join(t.TempDir(), "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	faulty := storetest.NewFaulty(st)
	src, sa, sb, pack := twoSnapshots(t, faulty)
	faulty.FlipGet(pack, 8*40) // inside the first blob of any range read

	d := storetest.NewCopyTarget(t, "local", src.reader)
	res, err := snapshot.Copy(ctx, src.reader, d.Writer, []*snapshot.Snapshot{sb, sa}, snapshot.CopyOptions{})
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if len(res) != 2 {
		t.Fatalf("%d results", len(res))
	}
	bad, good := res[0], res[1] // oldest first: a, then b
	if bad.Source.ID != sa.ID || bad.Err == nil || !errors.Is(bad.Err, chunkstore.ErrCorrupt) || !strings.Contains(bad.Err.Error(), pack) {
		t.Fatalf("copy of the damaged snapshot: %+v (want an error naming %s)", bad, pack)
	}
	if good.Source.ID != sb.ID || good.Err != nil {
		t.Fatalf("copy of the sound snapshot: %+v", good)
	}
	snaps, _, err := snapshot.List(ctx, d.Writer)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || snaps[0].ID != good.ID {
		t.Fatalf("destination holds %d snapshots, want only the sound one", len(snaps))
	}
	// Once the pack reads well again, the failed snapshot is copied.
	faulty.Reset()
	again := copySnaps(t, src.reader, d.Writer, sa)[0]
	if again.Err != nil || again.Existing {
		t.Fatalf("copy after the repair: %+v", again)
	}
	if err := d.Reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if report, err := d.Reader.Check(ctx, chunkstore.CheckOptions{ReadData: true}); err != nil || len(report.Problems) > 0 {
		t.Fatalf("check --read-data: %v %v", report, err)
	}
	if probs, err := snapshot.Check(ctx, d.Reader); err != nil || len(probs) > 0 {
		t.Fatalf("the destination's snapshots reference missing data: %v %v", probs, err)
	}
}

// TestCopyAroundDamagedCopy: a source whose chunks are stored twice (two
// writers that did not see each other's packs), with the first copy of
// a chunk damaged: the copy takes the other one, and the destination
// holds every chunk intact.
func TestCopyAroundDamagedCopy(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "repo")
	st, err := local.Open(root, true)
	if err != nil {
		t.Fatal(err)
	}
	r := storetest.InitRepos(t, st)
	src := testRepo{writer: r.Writer, reader: r.Reader}
	second := storetest.UnsharedWriter(t, st, r.Writer)
	a := t.TempDir()
	writeFile(t, filepath.Join(a, "a.bin"), storetest.Data(11, 2<<20))
	sa := loadSnap(t, src.reader, src.backupReload(t, a).ID)
	if _, err := snapshot.Backup(ctx, second, snapshot.BackupOptions{Paths: []string{a}, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	if err := src.reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	node, err := snapshot.Lookup(ctx, src.reader, sa.Tree, strings.TrimPrefix(a, "/")+"/a.bin")
	if err != nil {
		t.Fatal(err)
	}
	id := node.Content[0]
	copies := src.reader.Index().Copies(map[chunkstore.ID]bool{id: true}, nil)[id]
	if len(copies) != 2 {
		t.Fatalf("a.bin's first chunk is stored %d times, want 2", len(copies))
	}
	first, _ := src.reader.Index().Lookup(id)
	storetest.FlipBlob(t, root, first, 0x20)

	d := storetest.NewCopyTarget(t, "local", src.reader)
	if res := copySnaps(t, src.reader, d.Writer, sa)[0]; res.Err != nil {
		t.Fatalf("copy around the damaged copy: %v", res.Err)
	}
	if err := d.Reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if report, err := d.Reader.Check(ctx, chunkstore.CheckOptions{ReadData: true}); err != nil || len(report.Problems) > 0 {
		t.Fatalf("check --read-data of the destination: %v %v", report, err)
	}
	if probs, err := snapshot.Check(ctx, d.Reader); err != nil || len(probs) > 0 {
		t.Fatalf("the destination's snapshot references missing data: %v %v", probs, err)
	}
}

// TestCopyOfCopy: a snapshot copied A→B and then B→C is the same
// snapshot as A's in C: copying A→C afterwards copies nothing, and C's
// copy names A's snapshot as its origin.
func TestCopyOfCopy(t *testing.T) {
	ctx := context.Background()
	a := newRepo(t, "local")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), storetest.Data(3, 100<<10))
	sa := loadSnap(t, a.reader, a.backupReload(t, dir).ID)
	b := storetest.NewCopyTarget(t, "local", a.reader)
	c := storetest.NewCopyTarget(t, "local", a.reader)
	ab := copySnaps(t, a.reader, b.Writer, sa)[0]
	if err := b.Reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	sb := loadSnap(t, b.Reader, ab.ID)
	bc := copySnaps(t, b.Reader, c.Writer, sb)[0]
	if bc.Err != nil || bc.Existing {
		t.Fatalf("B→C: %+v", bc)
	}
	sc := loadSnap(t, c.Writer, bc.ID)
	if want := (snapshot.CopyOrigin{Repository: a.reader.Config().ID, Snapshot: sa.ID}); sc.CopiedFrom == nil || *sc.CopiedFrom != want {
		t.Fatalf("C's copy names %+v as origin, want %+v", sc.CopiedFrom, want)
	}
	ac := copySnaps(t, a.reader, c.Writer, sa)[0]
	if !ac.Existing || ac.ID != bc.ID {
		t.Fatalf("A→C after B→C: %+v", ac)
	}
	// And back: B's copy is A's snapshot, which A has.
	ba := copySnaps(t, b.Reader, a.writer, sb)[0]
	if !ba.Existing || ba.ID != sa.ID {
		t.Fatalf("B→A: %+v", ba)
	}
}

// TestInitChunking: a repository created with another's chunking has
// its own ID, metadata key and recipients, and the other's chunk key,
// polynomial and chunk sizes.
func TestInitChunking(t *testing.T) {
	a := newRepo(t, "local")
	b := storetest.NewCopyTarget(t, "local", a.reader)
	if b.Reader.Chunking() != a.reader.Chunking() {
		t.Fatal("chunking not shared")
	}
	if !chunkstore.SameBlobIDs(a.reader, b.Reader) {
		t.Fatal("SameBlobIDs false for shared chunking")
	}
	as, bs := a.writer.Secrets(), b.Writer.Secrets()
	if as.RepoID == bs.RepoID || as.MetaKey == bs.MetaKey || as.Recipients[0] == bs.Recipients[0] {
		t.Fatal("the new repository shares more than its chunking")
	}
}

// TestCopyTruncatedSource: a source pack cut short (a ranged read past
// its end) fails the snapshot that needs it, like any damage, and the
// other snapshot is copied.
func TestCopyTruncatedSource(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "repo")
	st, err := local.Open(root, true)
	if err != nil {
		t.Fatal(err)
	}
	src, sa, sb, pack := twoSnapshots(t, st)
	p := filepath.Join(root, pack)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, fi.Size()/4); err != nil {
		t.Fatal(err)
	}
	d := storetest.NewCopyTarget(t, "local", src.reader)
	res, err := snapshot.Copy(ctx, src.reader, d.Writer, []*snapshot.Snapshot{sb, sa}, snapshot.CopyOptions{})
	if err != nil {
		t.Fatalf("a truncated source pack stopped the copy: %v", err)
	}
	if len(res) != 2 || !errors.Is(res[0].Err, chunkstore.ErrCorrupt) || res[1].Err != nil {
		t.Fatalf("results %+v: want a's copy failed as damaged and b's done", res)
	}
}

// slowGet delays the Gets of one object.
type slowGet struct {
	chunkstore.Store
	name  string
	delay time.Duration
}

func (s *slowGet) Get(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if name == s.name {
		time.Sleep(s.delay)
	}
	return s.Store.Get(ctx, name, off, n)
}

// gatePut holds the first data pack upload until release is closed.
type gatePut struct {
	chunkstore.Store
	once    sync.Once
	release chan struct{}
	armed   bool
}

func (g *gatePut) Put(ctx context.Context, name string, data []byte) error {
	if g.armed && strings.HasPrefix(name, chunkstore.DataPrefix) {
		first := false
		g.once.Do(func() { first = true })
		if first {
			<-g.release
		}
	}
	return g.Store.Put(ctx, name, data)
}

// TestCopyDamageLosesNoReservation: when one range of a snapshot fails,
// another fetcher may be waiting to hand a full pack to a busy uploader.
// That pack must still be stored (or its blobs not taken for stored): the
// next snapshot of the run shares its data, and was committed referencing
// blobs that had been reserved, never uploaded (found in review).
func TestCopyDamageLosesNoReservation(t *testing.T) {
	ctx := context.Background()
	base, err := local.Open(filepath.Join(t.TempDir(), "src"), true)
	if err != nil {
		t.Fatal(err)
	}
	slow := &slowGet{Store: base, delay: 300 * time.Millisecond}
	faulty := storetest.NewFaulty(slow)
	r := storetest.InitRepos(t, faulty)
	src := testRepo{writer: r.Writer, reader: r.Reader}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a-good.bin"), storetest.Data(21, 8<<20))
	src.backupReload(t, dir)
	writeFile(t, filepath.Join(dir, "z-bad.bin"), storetest.Data(22, 1<<20))
	sa := loadSnap(t, src.reader, src.backupReload(t, dir).ID)
	if err := os.Remove(filepath.Join(dir, "z-bad.bin")); err != nil {
		t.Fatal(err)
	}
	sb := loadSnap(t, src.reader, src.backupReload(t, dir).ID)
	node, err := snapshot.Lookup(ctx, src.reader, sa.Tree, strings.TrimPrefix(dir, "/")+"/z-bad.bin")
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := src.reader.Index().Lookup(node.Content[0])
	pack := chunkstore.PackName(loc.Pack.ID)
	faulty.FlipGet(pack, 8*40)
	slow.name = pack // fails after the good ranges have started

	dbase, err := local.Open(filepath.Join(t.TempDir(), "dst"), true)
	if err != nil {
		t.Fatal(err)
	}
	gate := &gatePut{Store: dbase, release: make(chan struct{})}
	c := src.reader.Chunking()
	idFile, rcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := chunkstore.Init(ctx, gate, chunkstore.InitOptions{Recipients: []string{rcpt}, Chunking: &c, PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	dw, err := chunkstore.Open(ctx, gate, chunkstore.Credentials{Writer: sec}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gate.armed = true
	time.AfterFunc(1500*time.Millisecond, func() { close(gate.release) })
	res, err := snapshot.Copy(ctx, src.reader, dw, []*snapshot.Snapshot{sa, sb}, snapshot.CopyOptions{
		Fetchers: 2, Writer: chunkstore.WriterOptions{Uploaders: 1},
	})
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if len(res) != 2 || res[0].Err == nil || res[1].Err != nil {
		t.Fatalf("results %+v: want the first failed, the second copied", res)
	}
	ids, err := chunkstore.ParseIdentityFile(idFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := chunkstore.Open(ctx, dbase, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if probs, err := snapshot.Check(ctx, dr); err != nil || len(probs) > 0 {
		t.Fatalf("the destination's snapshot references missing data: %v %v", probs, err)
	}
}
