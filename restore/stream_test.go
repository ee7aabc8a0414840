package restore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// breakingStore streams pack ranges that break off after a number of
// bytes (or cannot be opened at all), and counts the whole-range reads
// the restore falls back to.
type breakingStore struct {
	chunkstore.Store
	openErr error // returned by OpenRange, if set
	after   int64 // bytes a stream delivers before it fails
	streams atomic.Int64
	gets    atomic.Int64

	mu         sync.Mutex
	streamed   map[string]int // object name → streams opened on it
	longest    int64          // longest stream opened
	longestGet int64          // longest whole-range read
}

func (s *breakingStore) OpenRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if s.openErr != nil {
		return nil, s.openErr
	}
	rc, err := chunkstore.OpenRange(ctx, s.Store, name, offset, length)
	if err != nil {
		return nil, err
	}
	s.streams.Add(1)
	s.mu.Lock()
	if s.streamed == nil {
		s.streamed = map[string]int{}
	}
	s.streamed[name]++
	s.longest = max(s.longest, length)
	s.mu.Unlock()
	return &breaking{rc: rc, left: s.after}, nil
}

func (s *breakingStore) GetBuffer(ctx context.Context, name string, offset, length int64, buf []byte) ([]byte, error) {
	s.gets.Add(1)
	s.mu.Lock()
	s.longestGet = max(s.longestGet, length)
	s.mu.Unlock()
	return chunkstore.GetInto(ctx, s.Store, name, offset, length, buf)
}

type breaking struct {
	rc   io.ReadCloser
	left int64
}

func (b *breaking) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("connection reset by test")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *breaking) Close() error { return b.rc.Close() }

// streamFixture is a snapshot of tree in a new local repository, to be
// restored through a breakingStore wrapped around that repository's store.
type streamFixture struct {
	store chunkstore.Store
	creds chunkstore.Credentials
	tree  fixture.Tree
	src   string
	snap  *snapshot.Snapshot
}

func newStreamFixture(t *testing.T, tree fixture.Tree) *streamFixture {
	t.Helper()
	st, err := location.Open(context.Background(), filepath.Join(t.TempDir(), "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	repos := storetest.InitRepos(t, st)
	ids, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &streamFixture{store: st, creds: chunkstore.Credentials{Identities: ids}, tree: tree, src: t.TempDir()}
	fixture.Create(t, f.src, tree)
	f.snap = testRepo{writer: repos.Writer, reader: repos.Reader}.backup(t, f.src)
	return f
}

// restoreThrough restores the snapshot through bs into a new directory
// and checks that every file came back intact.
func (f *streamFixture) restoreThrough(t *testing.T, bs *breakingStore) {
	t.Helper()
	ctx := context.Background()
	reader, err := chunkstore.Open(ctx, bs, f.creds, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	res, err := restore.Restore(ctx, reader, f.snap, restore.Options{Target: dst})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) > 0 {
		t.Fatalf("failures: %v", res.Failures)
	}
	fixture.Compare(t, f.tree, restoredAt(dst, f.src))
}

// TestRestoreStreamBreaks restores the standard tree through streams
// that fail at once, break off inside the first blob, after some blobs,
// or never: every file comes back intact, whatever the stream did not
// deliver being read whole instead.
func TestRestoreStreamBreaks(t *testing.T) {
	f := newStreamFixture(t, fixture.Standard())
	for _, tc := range []struct {
		name     string
		openErr  error
		after    int64
		wantGets bool // whole-range reads needed
	}{
		{name: "stream refused", openErr: errors.New("refused by test"), wantGets: true},
		{name: "streams unsupported", openErr: errors.ErrUnsupported, wantGets: true},
		{name: "breaks at once", after: 0, wantGets: true},
		{name: "breaks inside the first blob", after: 1000, wantGets: true},
		{name: "breaks after a few blobs", after: 3 << 20, wantGets: true},
		{name: "never breaks", after: 1 << 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := &breakingStore{Store: f.store, openErr: tc.openErr, after: tc.after}
			f.restoreThrough(t, bs)
			if got := bs.gets.Load() > 0; got != tc.wantGets {
				t.Fatalf("whole-range reads: %d, want some: %v", bs.gets.Load(), tc.wantGets)
			}
			if tc.openErr == nil && bs.streams.Load() == 0 {
				t.Fatal("no range was streamed")
			}
		})
	}
}

// TestRestoreRangeSizes restores a file larger than a pack. Streamed,
// each pack is read with one request however large it is; read whole
// (the fallback when streams fail), no request asks for more than a
// worker's buffer holds.
func TestRestoreRangeSizes(t *testing.T) {
	f := newStreamFixture(t, fixture.Tree{
		"big.bin":   {Content: fixture.Random(7, 24<<20), Mode: 0o644},
		"small.txt": {Content: []byte("beside the big one\n"), Mode: 0o644},
	})
	t.Run("streamed", func(t *testing.T) {
		bs := &breakingStore{Store: f.store, after: 1 << 40}
		f.restoreThrough(t, bs)
		for name, n := range bs.streamed {
			if n != 1 {
				t.Errorf("pack %s read with %d requests, want 1", name, n)
			}
		}
		if bs.longest <= restore.MaxHeld {
			t.Fatalf("longest stream %d bytes: the test needs a pack range above %d", bs.longest, restore.MaxHeld)
		}
		if bs.gets.Load() != 0 {
			t.Errorf("%d whole-range reads, want none", bs.gets.Load())
		}
	})
	t.Run("read whole", func(t *testing.T) {
		bs := &breakingStore{Store: f.store, openErr: errors.New("refused by test")}
		f.restoreThrough(t, bs)
		if bs.longestGet == 0 || bs.longestGet > restore.MaxHeld {
			t.Fatalf("longest whole-range read %d bytes, want 1..%d", bs.longestGet, restore.MaxHeld)
		}
	})
}

// TestRestoreWithLostIndex restores a snapshot whose unchanged directory
// and file contents are listed only by an index file that is gone: the
// first plan finds them missing, the restore indexes the packs no index
// lists and plans again, and everything, directories included, comes
// back.
func TestRestoreWithLostIndex(t *testing.T) {
	ctx := context.Background()
	st, err := location.Open(ctx, filepath.Join(t.TempDir(), "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	repos := storetest.InitRepos(t, st)
	r := testRepo{writer: repos.Writer, reader: repos.Reader}
	src := t.TempDir()
	tree := fixture.Tree{
		"old/deep/a.txt": {Content: []byte("backed up first\n"), Mode: 0o644},
		"old/b.bin":      {Content: fixture.Random(3, 200<<10), Mode: 0o600},
	}
	fixture.Create(t, src, tree)
	r.backup(t, src)
	listIndex := func() map[string]bool {
		names := map[string]bool{}
		if err := st.List(ctx, "index/", func(o chunkstore.ObjectInfo) error { names[o.Name] = true; return nil }); err != nil {
			t.Fatal(err)
		}
		return names
	}
	first := listIndex()
	tree["new/c.txt"] = fixture.Entry{Content: []byte("backed up second\n"), Mode: 0o644}
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)
	if len(listIndex()) == len(first) {
		t.Fatal("the second backup wrote no index file of its own")
	}
	for name := range first {
		if err := st.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	dst := t.TempDir()
	res, err := restore.Restore(ctx, reader, snap, restore.Options{Target: dst, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) > 0 {
		t.Fatalf("failures: %v", res.Failures)
	}
	if !strings.Contains(log.String(), "using packs no index lists") {
		t.Fatalf("the restore did not plan again with unindexed packs; log:\n%s", log.String())
	}
	fixture.Compare(t, tree, restoredAt(dst, src))

	// Again into the same target, which now holds the directories: the
	// second plan keeps what the directory maker found of the first's,
	// so a held directory still loses an attribute the snapshot lacks.
	old := restoredAt(dst, filepath.Join(src, "old"))
	if !fixture.SetXAttr(t, old, "user.stray", []byte("s")) {
		return // no user extended attributes on this filesystem
	}
	reader, err = chunkstore.Open(ctx, st, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log.Reset()
	res, err = restore.Restore(ctx, reader, snap, restore.Options{Target: dst, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil || len(res.Failures) > 0 || res.MetadataErrors > 0 {
		t.Fatalf("second restore: %v, failures %v, metadata errors %v", err, res.Failures, res.MetadataSamples)
	}
	if !strings.Contains(log.String(), "using packs no index lists") {
		t.Fatalf("the second restore did not plan again with unindexed packs; log:\n%s", log.String())
	}
	if _, ok := xattrsOf(t, old)["user.stray"]; ok {
		t.Errorf("%s, which the target held, kept user.stray through the second plan", old)
	}
	fixture.Compare(t, tree, restoredAt(dst, src))
}
