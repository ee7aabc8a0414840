package chunkstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// TestNewerMagicIsNotCorrupt: a magic that names a later version of the
// index or pack format reads as written by a newer lifeboat, never as
// damage; a magic that is merely wrong stays corrupt.
func TestNewerMagicIsNotCorrupt(t *testing.T) {
	body := make([]byte, 64)
	var key [32]byte
	for _, tc := range []struct {
		name, magic string
		parse       func([]byte) error
		newer       bool
	}{
		{"index v3", "LBIDX3\n\x00", decodeIndex, true},
		{"index v12", "LBIDX12\n", decodeIndex, true},
		{"index v0", "LBIDX0\n\x00", decodeIndex, false},
		{"index garbled", "LBIDX3x\x00", decodeIndex, false},
		{"index other", "XXXXXXXX", decodeIndex, false},
		{"pack v2", "LBPACK2\n", func(b []byte) error { _, err := chunkstore.ParsePack(b, &key); return err }, true},
		{"pack garbled", "LBPACKx\n", func(b []byte) error { _, err := chunkstore.ParsePack(b, &key); return err }, false},
	} {
		err := tc.parse(append([]byte(tc.magic), body...))
		if got := errors.Is(err, chunkstore.ErrNewerFormat); got != tc.newer || errors.Is(err, chunkstore.ErrCorrupt) == tc.newer {
			t.Errorf("%s: %v; want newer format %v, corrupt %v", tc.name, err, tc.newer, !tc.newer)
		}
	}
}

func decodeIndex(b []byte) error { _, err := chunkstore.DecodeIndex(b); return err }

// TestVerifyPackNewerFormat: VerifyPack (the agents' verify jobs) takes
// an intact pack of a later format for a newer lifeboat's, not for
// damage; a bad magic is still damage.
func TestVerifyPackNewerFormat(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	body := make([]byte, 4096)
	for magic, newer := range map[string]bool{"LBPACK2\n": true, "LBPACK12\n": true, "LBPACKx\n": false} {
		b := append([]byte(magic), body...)
		id := chunkstore.Hash(b)
		if err := repos.Store.Put(t.Context(), chunkstore.PackName(id), b); err != nil {
			t.Fatal(err)
		}
		err := repos.Reader.VerifyPack(t.Context(), id, int64(len(b)))
		if errors.Is(err, chunkstore.ErrNewerFormat) != newer || errors.Is(err, chunkstore.ErrCorrupt) == newer {
			t.Errorf("%q: %v; want newer format %v, corrupt %v", magic, err, newer, !newer)
		}
	}
}

// TestNewerSealIsNotCorrupt: a sealed object (index file, manifest)
// whose magic names a later sealing format reads as written by a newer
// lifeboat, and LoadIndex stops with that error while recording the file
// as a problem for check.
func TestNewerSealIsNotCorrupt(t *testing.T) {
	for _, backend := range []string{"mem", "local", "minio"} {
		t.Run(backend, func(t *testing.T) {
			var repos storetest.Repos
			if backend == "mem" {
				repos = storetest.InitRepos(t, mem.New())
			} else {
				repos = storetest.NewRepos(t, backend)
			}
			testNewerSeal(t, repos)
		})
	}
}

func testNewerSeal(t *testing.T, repos storetest.Repos) {
	ctx := context.Background()
	st := repos.Store
	w := repos.Writer
	id, err := w.SaveMeta(ctx, chunkstore.KindIndex, chunkstore.EncodeIndex(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.Get(ctx, chunkstore.IndexPrefix+id.String(), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, chunkstore.IndexPrefix+id.String()); err != nil {
		t.Fatal(err)
	}
	b[3] = '2' // "LBM2"; objects are named by their hash
	name := chunkstore.IndexPrefix + chunkstore.Hash(b).String()
	if err := st.Put(ctx, name, b); err != nil {
		t.Fatal(err)
	}
	r := repos.OpenReader(t, st)
	err = r.LoadIndex(ctx)
	if !errors.Is(err, chunkstore.ErrNewerFormat) || errors.Is(err, chunkstore.ErrCorrupt) {
		t.Fatalf("LoadIndex with an index file sealed by a newer lifeboat: %v; want ErrNewerFormat", err)
	}
	if p := r.IndexProblems(); len(p) != 1 || p[0].Object != name {
		t.Errorf("index problems %v, want %s", p, name)
	}
	if err := r.EnsureIndex(ctx); !errors.Is(err, chunkstore.ErrNewerFormat) {
		t.Errorf("EnsureIndex after LoadIndex: %v; want ErrNewerFormat again", err)
	}
}

// TestNewerGCMarkStopsBackups: a GC mark sealed by a newer lifeboat is
// not skipped as damage: a backup that did not exclude its packs would
// reuse what that release's prune deletes. A mark that merely looks
// newer but does not match its hash is damage, and skipped.
func TestNewerGCMarkStopsBackups(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	st := repos.Store
	m, err := repos.Reader.SaveGCMark(ctx, []chunkstore.ID{{1}})
	if err != nil {
		t.Fatal(err)
	}
	old := chunkstore.GCPrefix + m.ID.String()
	b, err := st.Get(ctx, old, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	b[3] = '2' // "LBM2"
	if err := st.Put(ctx, chunkstore.GCPrefix+chunkstore.Hash(b).String(), b); err != nil {
		t.Fatal(err)
	}
	if _, err := repos.Writer.GCMarks(ctx); !errors.Is(err, chunkstore.ErrNewerFormat) {
		t.Fatalf("GCMarks with a newer lifeboat's mark: %v; want ErrNewerFormat", err)
	}
	if err := repos.Writer.ExcludeMarked(ctx); !errors.Is(err, chunkstore.ErrNewerFormat) {
		t.Fatalf("ExcludeMarked with a newer lifeboat's mark: %v; want ErrNewerFormat", err)
	}
	// The same bytes under another name: damaged, skipped.
	if err := st.Delete(ctx, chunkstore.GCPrefix+chunkstore.Hash(b).String()); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, old, b); err != nil {
		t.Fatal(err)
	}
	if marks, err := repos.Writer.GCMarks(ctx); err != nil || len(marks) != 0 {
		t.Fatalf("GCMarks with a mark that does not match its hash: %v, %v; want it skipped", marks, err)
	}
}
