package chunkstore_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

func newID(t *testing.T) (recipient string, ids []age.Identity) {
	t.Helper()
	file, recipient, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	ids, err = chunkstore.ParseIdentityFile(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	return recipient, ids
}

func envelopeNames(t *testing.T, st chunkstore.Store) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := st.List(context.Background(), chunkstore.KeysPrefix, func(oi chunkstore.ObjectInfo) error {
		b, err := st.Get(context.Background(), oi.Name, 0, -1)
		out[oi.Name] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func openAs(t *testing.T, st chunkstore.Store, creds chunkstore.Credentials) (*chunkstore.Repository, error) {
	t.Helper()
	return chunkstore.Open(context.Background(), st, creds, chunkstore.Options{})
}

// TestRekey: a change of recipients writes the next generation's
// envelope and removes the older ones; identities open the newest
// envelope they are a recipient of; credentials of an older generation
// may read but not write packs; the changes that would lock the caller
// out, or that race another, are refused.
func TestRekey(t *testing.T) {
	for _, backend := range []string{"mem", "minio"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			var repos storetest.Repos
			if backend == "mem" {
				repos = storetest.InitRepos(t, mem.New())
			} else {
				repos = storetest.NewRepos(t, backend)
			}
			st := repos.Store
			aIDs, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
			if err != nil {
				t.Fatal(err)
			}
			aRcpt := repos.Writer.Secrets().Recipients[0]
			bRcpt, bIDs := newID(t)
			gen0 := envelopeNames(t, st)
			if len(gen0) != 1 {
				t.Fatalf("init wrote %d envelopes", len(gen0))
			}

			if _, err := repos.Writer.Rekey(ctx, []string{aRcpt, bRcpt}); err == nil || !strings.Contains(err.Error(), "needs an identity") {
				t.Fatalf("rekey with a writer key: %v", err)
			}
			asA, err := openAs(t, st, chunkstore.Credentials{Identities: aIDs})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := asA.Rekey(ctx, []string{bRcpt}); err == nil || !strings.Contains(err.Error(), "lock you out") {
				t.Fatalf("rekey that drops the caller: %v", err)
			}
			if _, err := asA.Rekey(ctx, []string{"age1notakey"}); err == nil {
				t.Fatal("rekey to a malformed recipient succeeded")
			}
			if got := envelopeNames(t, st); !reflect.DeepEqual(got, gen0) {
				t.Fatalf("refused changes touched keys/: %d envelopes, want the one of init", len(got))
			}

			sec1, err := asA.Rekey(ctx, []string{aRcpt, bRcpt})
			if err != nil {
				t.Fatal(err)
			}
			gen1 := envelopeNames(t, st)
			if len(gen1) != 1 {
				t.Fatalf("after the change: %d envelopes, want one", len(gen1))
			}
			for name := range gen1 {
				if !strings.HasSuffix(name, ".g1") {
					t.Fatalf("generation 1 envelope named %s", name)
				}
			}
			if sec1.ChunkKey != repos.Writer.Secrets().ChunkKey || sec1.MetaKey != repos.Writer.Secrets().MetaKey {
				t.Fatal("the change of recipients changed the chunk or metadata key")
			}
			// The writer key of generation 1 round-trips with its generation.
			wk, err := chunkstore.MarshalWriterKey(sec1)
			if err != nil {
				t.Fatal(err)
			}
			if parsed, err := chunkstore.ParseWriterKey(wk); err != nil || !reflect.DeepEqual(parsed, sec1) {
				t.Fatalf("writer key of generation 1 does not round-trip: %v\n got %+v\nwant %+v", err, parsed, sec1)
			}

			// A change interrupted before its cleanup leaves the old
			// envelope: identities still open the newest.
			for name, b := range gen0 {
				if err := st.Put(ctx, name, b); err != nil {
					t.Fatal(err)
				}
			}
			asA, err = openAs(t, st, chunkstore.Credentials{Identities: aIDs})
			if err != nil || asA.Secrets().Generation != 1 {
				t.Fatalf("A with both envelopes present: %v, want generation 1", err)
			}
			if _, err := repos.Writer.NewWriter(ctx, chunkstore.WriterOptions{}); !errors.Is(err, chunkstore.ErrStaleKey) || !strings.Contains(err.Error(), "writer key is of generation 0") {
				t.Fatalf("writer of generation 0: %v, want ErrStaleKey", err)
			}
			if n, err := asA.RemoveOldEnvelopes(ctx); err != nil || n != 1 {
				t.Fatalf("RemoveOldEnvelopes: %d, %v; want the leftover removed", n, err)
			}
			w1, err := openAs(t, st, chunkstore.Credentials{Writer: sec1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w1.NewWriter(ctx, chunkstore.WriterOptions{}); err != nil {
				t.Fatalf("writer of generation 1: %v", err)
			}

			// B removes A; A opens nothing. With the generation-1 envelope
			// left behind, A opens that one and may not write or rekey.
			asB, err := openAs(t, st, chunkstore.Credentials{Identities: bIDs})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := asB.Rekey(ctx, []string{bRcpt}); err != nil {
				t.Fatal(err)
			}
			if _, err := openAs(t, st, chunkstore.Credentials{Identities: aIDs}); err == nil || !strings.Contains(err.Error(), "not a recipient") {
				t.Fatalf("A after its removal: %v", err)
			}
			for name, b := range gen1 {
				if err := st.Put(ctx, name, b); err != nil {
					t.Fatal(err)
				}
			}
			asA, err = openAs(t, st, chunkstore.Credentials{Identities: aIDs})
			if err != nil || asA.Secrets().Generation != 1 {
				t.Fatalf("A with a leftover generation-1 envelope: %v", err)
			}
			if _, err := asA.NewWriter(ctx, chunkstore.WriterOptions{}); !errors.Is(err, chunkstore.ErrStaleKey) || !strings.Contains(err.Error(), "it was removed") {
				t.Fatalf("writer of a removed identity: %v, want ErrStaleKey", err)
			}
			if _, err := asA.Rekey(ctx, []string{aRcpt}); !errors.Is(err, chunkstore.ErrStaleKey) {
				t.Fatalf("rekey by a removed identity: %v, want ErrStaleKey", err)
			}

			// An object under keys/ that is not an envelope is named, not
			// skipped: it could hide a newer generation.
			if err := st.Put(ctx, chunkstore.KeysPrefix+"notes.txt", []byte("hi")); err != nil {
				t.Fatal(err)
			}
			if _, err := openAs(t, st, chunkstore.Credentials{Identities: bIDs}); !errors.Is(err, chunkstore.ErrCorrupt) || !strings.Contains(err.Error(), "keys/notes.txt") {
				t.Fatalf("open with a stray object under keys/: %v", err)
			}
		})
	}
}

// racingStore writes a second envelope of the same generation right
// after the first, as a concurrent 'lifeboat key' would.
type racingStore struct {
	chunkstore.Store
	other []byte
}

func (s racingStore) Put(ctx context.Context, name string, data []byte) error {
	if err := s.Store.Put(ctx, name, data); err != nil {
		return err
	}
	if strings.HasPrefix(name, chunkstore.KeysPrefix) {
		return s.Store.Put(ctx, chunkstore.KeysPrefix+chunkstore.Hash(s.other).String()+".g1", s.other)
	}
	return nil
}

func TestRekeyRace(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	aIDs, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	aRcpt := repos.Writer.Secrets().Recipients[0]
	bRcpt, _ := newID(t)
	r, err := openAs(t, racingStore{Store: repos.Store, other: []byte("another envelope")}, chunkstore.Credentials{Identities: aIDs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Rekey(ctx, []string{aRcpt, bRcpt}); err == nil || !strings.Contains(err.Error(), "at the same time") {
		t.Fatalf("rekey racing another: %v", err)
	}
}
