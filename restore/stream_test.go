package restore_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
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
	return &breaking{rc: rc, left: s.after}, nil
}

func (s *breakingStore) GetBuffer(ctx context.Context, name string, offset, length int64, buf []byte) ([]byte, error) {
	s.gets.Add(1)
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

// TestRestoreStreamBreaks restores the standard tree through streams
// that fail at once, break off inside the first blob, after some blobs,
// or never: every file comes back intact, whatever the stream did not
// deliver being read whole instead.
func TestRestoreStreamBreaks(t *testing.T) {
	ctx := context.Background()
	st, err := location.Open(ctx, filepath.Join(t.TempDir(), "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	repos := storetest.InitRepos(t, st)
	src := t.TempDir()
	tree := fixture.Standard()
	fixture.Create(t, src, tree)
	snap := testRepo{writer: repos.Writer, reader: repos.Reader}.backup(t, src)
	ids, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
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
			bs := &breakingStore{Store: st, openErr: tc.openErr, after: tc.after}
			reader, err := chunkstore.Open(ctx, bs, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			dst := t.TempDir()
			res, err := restore.Restore(ctx, reader, snap, restore.Options{Target: dst})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Failures) > 0 {
				t.Fatalf("failures: %v", res.Failures)
			}
			fixture.Compare(t, tree, restoredAt(dst, src))
			if got := bs.gets.Load() > 0; got != tc.wantGets {
				t.Fatalf("whole-range reads: %d, want some: %v", bs.gets.Load(), tc.wantGets)
			}
			if tc.openErr == nil && bs.streams.Load() == 0 {
				t.Fatal("no range was streamed")
			}
		})
	}
}
