package chunkstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

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
			_, bRcpt, bIDs := storetest.Identity(t)
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

			// Objects under keys/ that are not envelopes are ignored.
			if err := st.Put(ctx, chunkstore.KeysPrefix+"notes.txt", []byte("hi")); err != nil {
				t.Fatal(err)
			}
			w2, err := openAs(t, st, chunkstore.Credentials{Writer: asB.Secrets().WriterSecrets()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w2.NewWriter(ctx, chunkstore.WriterOptions{}); err != nil {
				t.Fatalf("writer with a stray object under keys/: %v", err)
			}
			if _, err := openAs(t, st, chunkstore.Credentials{Identities: bIDs}); err != nil {
				t.Fatalf("identity with a stray object under keys/: %v", err)
			}
		})
	}
}

// TestPlantedEnvelope: a writer key holds every secret an envelope does
// but the signing key. An envelope it plants (unsigned, or signed with a
// key of its own) for a newer generation, sealed to the real recipients
// and its own, is not opened by identities and does not stop writers.
func TestPlantedEnvelope(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	st := repos.Store
	aIDs, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, attacker, _ := storetest.Identity(t)
	for _, own := range []bool{false, true} {
		plantEnvelope(t, st, repos.Writer, attacker, own)
		asA, err := openAs(t, st, chunkstore.Credentials{Identities: aIDs})
		if err != nil {
			t.Fatal(err)
		}
		if g := asA.Secrets().Generation; g != 0 || len(asA.Secrets().Recipients) != 1 {
			t.Fatalf("own signing key %v: the identity opened generation %d with recipients %v", own, g, asA.Secrets().Recipients)
		}
		if _, err := repos.Writer.NewWriter(ctx, chunkstore.WriterOptions{}); err != nil {
			t.Fatalf("own signing key %v: the planted envelope stopped the writer: %v", own, err)
		}
		if g, err := asA.KeyGeneration(ctx); err != nil || g != 0 {
			t.Fatalf("own signing key %v: KeyGeneration %d, %v", own, g, err)
		}
	}
	// Ignored, but not silently: check names both, and key cleanup's
	// removal (an identity's) leaves the genuine envelope alone.
	asA, err := openAs(t, st, chunkstore.Credentials{Identities: aIDs})
	if err != nil {
		t.Fatal(err)
	}
	if err := asA.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := asA.Check(ctx, chunkstore.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, p := range rep.Problems {
		if strings.HasPrefix(p.Object, chunkstore.KeysPrefix) && strings.HasSuffix(p.Object, ".g5") && errors.Is(p.Err, chunkstore.ErrCorrupt) {
			named = append(named, p.Object)
		}
	}
	if len(named) != 2 || len(rep.Problems) != 2 {
		t.Errorf("check: %v; want the two planted envelopes named", rep.Problems)
	}
	if _, err := repos.Writer.RemoveUnverifiedEnvelopes(ctx); err == nil {
		t.Error("a writer key removed key envelopes")
	}
	removed, err := asA.RemoveUnverifiedEnvelopes(ctx)
	if err != nil || len(removed) != 2 {
		t.Fatalf("removed %v, %v; want the two planted envelopes", removed, err)
	}
	left := envelopeNames(t, st)
	if len(left) != 1 {
		t.Fatalf("envelopes left: %d, want the genuine one", len(left))
	}
	if _, err := openAs(t, st, chunkstore.Credentials{Identities: aIDs}); err != nil {
		t.Errorf("after the removal: %v", err)
	}
}

// TestWriterKeyAheadOfRepository: a writer key of a generation the
// repository has no envelope for (keys/ put back from an older copy, or
// the key edited) is refused for writing, naming both generations: its
// packs would be indexed as of a generation prune --rewrap never
// rewraps.
func TestWriterKeyAheadOfRepository(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	ahead := *repos.Writer.Secrets()
	ahead.Generation = 9
	w, err := openAs(t, repos.Store, chunkstore.Credentials{Writer: &ahead})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.NewWriter(ctx, chunkstore.WriterOptions{})
	if !errors.Is(err, chunkstore.ErrStaleKey) || !strings.Contains(err.Error(), "generation 9") || !strings.Contains(err.Error(), "of generation 0") {
		t.Errorf("writer key of generation 9 in a repository of generation 0: %v", err)
	}
	if _, err := repos.Writer.NewWriter(ctx, chunkstore.WriterOptions{}); err != nil {
		t.Errorf("the writer key of the current generation: %v", err)
	}
}

// TestRekeyUnsigned: a repository created before signed envelopes (no
// key_signer) still opens and changes recipients, with unsigned
// envelopes.
func TestRekeyUnsigned(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	aFile, aRcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	aIDs, err := chunkstore.ParseIdentityFile(aFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chunkstore.InitUnsignedForTest(ctx, st, chunkstore.InitOptions{Recipients: []string{aRcpt}}); err != nil {
		t.Fatal(err)
	}
	asA, err := openAs(t, st, chunkstore.Credentials{Identities: aIDs})
	if err != nil {
		t.Fatal(err)
	}
	if asA.SignedEnvelopes() || asA.Secrets().SigningKey != nil {
		t.Fatal("an unsigned repository has a signer")
	}
	_, bRcpt, bIDs := storetest.Identity(t)
	if _, err := asA.Rekey(ctx, []string{aRcpt, bRcpt}); err != nil {
		t.Fatal(err)
	}
	for name, b := range envelopeNames(t, st) {
		if strings.HasPrefix(string(b), "LBENV1") || !strings.HasSuffix(name, ".g1") {
			t.Fatalf("envelope %s of an unsigned repository: signed %v", name, strings.HasPrefix(string(b), "LBENV1"))
		}
	}
	if asB, err := openAs(t, st, chunkstore.Credentials{Identities: bIDs}); err != nil || asB.Secrets().Generation != 1 {
		t.Fatalf("B in an unsigned repository: %v", err)
	}
}

// racingStore writes another envelope of generation 1 right after the
// first, as a concurrent 'lifeboat key' would (or as a writer planting
// one would).
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

// listFailsAfterEnvelope fails the first listing of keys/ after an
// envelope was put, as a store that became unreachable would.
type listFailsAfterEnvelope struct {
	chunkstore.Store
	put *bool
}

func (s listFailsAfterEnvelope) Put(ctx context.Context, name string, data []byte) error {
	*s.put = *s.put || strings.HasPrefix(name, chunkstore.KeysPrefix)
	return s.Store.Put(ctx, name, data)
}

func (s listFailsAfterEnvelope) List(ctx context.Context, prefix string, fn func(chunkstore.ObjectInfo) error) error {
	if *s.put && prefix == chunkstore.KeysPrefix {
		*s.put = false
		return storetest.ErrInjected
	}
	return s.Store.List(ctx, prefix, fn)
}

// TestRekeyListFails: a change whose check for a concurrent one cannot
// list keys/ withdraws its envelope, so that what it reports (failure,
// no writer key) is what happened; the envelope used to stay, the
// change made.
func TestRekeyListFails(t *testing.T) {
	rekeyFailsCleanly(t, "listing", func(st chunkstore.Store) chunkstore.Store {
		return listFailsAfterEnvelope{Store: st, put: new(bool)}
	})
}

// putStoredButFails stores an envelope and then reports failure, as a
// put whose answer was lost (a timeout) would.
type putStoredButFails struct{ chunkstore.Store }

func (s putStoredButFails) Put(ctx context.Context, name string, data []byte) error {
	if err := s.Store.Put(ctx, name, data); err != nil || !strings.HasPrefix(name, chunkstore.KeysPrefix) {
		return err
	}
	return storetest.ErrInjected
}

// TestRekeyPutFails: a change whose envelope's put fails leaves no
// envelope, even one the store kept.
func TestRekeyPutFails(t *testing.T) {
	rekeyFailsCleanly(t, "put", func(st chunkstore.Store) chunkstore.Store { return putStoredButFails{st} })
}

// rekeyFailsCleanly adds a recipient through the store wrap makes, whose
// step what fails, and wants the change to say nothing was changed and
// leave no envelope of the next generation.
func rekeyFailsCleanly(t *testing.T, what string, wrap func(chunkstore.Store) chunkstore.Store) {
	t.Helper()
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	aIDs, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, bRcpt, _ := storetest.Identity(t)
	r, err := openAs(t, wrap(repos.Store), chunkstore.Credentials{Identities: aIDs})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := r.Rekey(ctx, []string{repos.Writer.Secrets().Recipients[0], bRcpt})
	if sec != nil || !errors.Is(err, storetest.ErrInjected) || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("rekey whose %s failed: %v, %v; want an error saying nothing was changed", what, sec, err)
	}
	for name := range envelopeNames(t, repos.Store) {
		if strings.HasSuffix(name, ".g1") {
			t.Fatalf("the failed change (%s) left its envelope %s", what, name)
		}
	}
}

// TestRekeyRace: a change that finds a genuine envelope of its own
// generation (another change, signed) withdraws its own; a planted,
// unsigned one does not stop it.
func TestRekeyRace(t *testing.T) {
	ctx := context.Background()
	for _, genuine := range []bool{true, false} {
		repos := storetest.InitRepos(t, mem.New())
		aIDs, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
		if err != nil {
			t.Fatal(err)
		}
		aRcpt := repos.Writer.Secrets().Recipients[0]
		_, bRcpt, _ := storetest.Identity(t)
		asA, err := openAs(t, repos.Store, chunkstore.Credentials{Identities: aIDs})
		if err != nil {
			t.Fatal(err)
		}
		other := *asA.Secrets() // the other change: same secrets, signing key included
		other.Generation = 1
		if !genuine {
			other.SigningKey = nil
		}
		env, err := chunkstore.SealEnvelopeForTest(&other)
		if err != nil {
			t.Fatal(err)
		}
		r, err := openAs(t, racingStore{Store: repos.Store, other: env}, chunkstore.Credentials{Identities: aIDs})
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Rekey(ctx, []string{aRcpt, bRcpt})
		gen1 := 0
		for name := range envelopeNames(t, repos.Store) {
			if strings.HasSuffix(name, ".g1") {
				gen1++
			}
		}
		switch {
		case genuine && (err == nil || !strings.Contains(err.Error(), "at the same time")):
			t.Fatalf("rekey racing a genuine change: %v", err)
		case genuine && gen1 != 1:
			t.Fatalf("%d envelopes of generation 1 after the race, want the other's only", gen1)
		case !genuine && err != nil:
			t.Fatalf("rekey beside a planted envelope: %v", err)
		}
	}
}

// TestSignerPinned: an identity that opened a repository remembers, in
// its cache, the repository ID and key signer at that location, and
// refuses a repository presented there later with others: config and
// keys/ replaced, as someone who can put objects there could to make it
// trust recipients of their choosing.
func TestSignerPinned(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	cache := t.TempDir()
	_, rcpt, ids := storetest.Identity(t)
	initAt := func() chunkstore.Store {
		t.Helper()
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		st, err := local.Open(dir, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{rcpt}}); err != nil {
			t.Fatal(err)
		}
		return st
	}
	open := func(st chunkstore.Store) error {
		_, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Identities: ids}, chunkstore.Options{CacheDir: cache})
		return err
	}
	st := initAt()
	for range 2 {
		if err := open(st); err != nil {
			t.Fatal(err)
		}
	}
	st = initAt() // another repository, same place, same recipient
	err := open(st)
	if !errors.Is(err, chunkstore.ErrRepositoryChanged) || !strings.Contains(err.Error(), "rm ") {
		t.Fatalf("open of a replaced repository: %v, want a refusal", err)
	}
	if err := chunkstore.Unpin(cache, st.Location()); err != nil {
		t.Fatal(err)
	}
	if err := open(st); err != nil {
		t.Fatalf("open once the pin is removed: %v", err)
	}
}

// plantEnvelope puts into st what a writer (a compromised agent) could
// plant: an envelope of generation 5 holding writer's secrets, sealed to
// the real recipients and recipient, unsigned, or, with own, signed with
// a signing key of its own making.
func plantEnvelope(t *testing.T, st chunkstore.Store, writer *chunkstore.Repository, recipient string, own bool) {
	t.Helper()
	forged := *writer.Secrets()
	forged.Recipients = append(forged.Recipients, recipient)
	forged.Generation = 5
	if own {
		forged.SigningKey = make([]byte, 32)
		forged.SigningKey[0] = 1
	}
	env, err := chunkstore.SealEnvelopeForTest(&forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), chunkstore.KeysPrefix+chunkstore.Hash(env).String()+".g5", env); err != nil {
		t.Fatal(err)
	}
}

// Each change of recipients records the last set in the envelope
// (past_recipients), a few KiB per post-quantum recipient, and no
// lifeboat reads an envelope over 1 MiB. An envelope grown past that was
// written all the same, and the older ones removed: every identity and
// writer was locked out. Now the past generations no pack is wrapped for
// are left out, and a change that still would not fit is refused,
// leaving the repository as it was; init refuses such recipients too.
func TestRekeyEnvelopeTooLarge(t *testing.T) {
	ctx := context.Background()
	pq := func(n int) (rcpts []string, idFile []byte) {
		for i := 0; i < n; i++ {
			f, r, err := chunkstore.NewIdentity(true)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				idFile = f
			}
			rcpts = append(rcpts, r)
		}
		return rcpts, idFile
	}
	tooMany, _ := pq(600)
	st := mem.New()
	if _, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: tooMany}); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("init with 600 post-quantum recipients: %v, want the envelope refused as too large", err)
	}
	if names := envelopeNames(t, st); len(names) != 0 {
		t.Fatalf("a refused init left %d envelopes", len(names))
	}

	rcpts, idFile := pq(60)
	if _, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: rcpts}); err != nil {
		t.Fatal(err)
	}
	ids, err := chunkstore.ParseIdentityFile(idFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	// change replaces the last recipient (never the caller's) and
	// returns the error of the change; the repository must open with
	// the identity either way.
	change := func(withPack bool) (uint32, error) {
		t.Helper()
		r, err := openAs(t, st, chunkstore.Credentials{Identities: ids})
		if err != nil {
			t.Fatalf("the repository no longer opens: %v", err)
		}
		if withPack {
			w, err := openAs(t, st, chunkstore.Credentials{Writer: r.Secrets().WriterSecrets()})
			if err != nil {
				t.Fatal(err)
			}
			wr, err := w.NewWriter(ctx, chunkstore.WriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := wr.SaveBlob(ctx, chunkstore.DataBlob, []byte(r.Secrets().RepoID+string(rune(r.Secrets().Generation)))); err != nil {
				t.Fatal(err)
			}
			if err := wr.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		more, _ := pq(1)
		rcpts = append(rcpts[:len(rcpts)-1], more[0])
		sec, err := r.Rekey(ctx, rcpts)
		if err != nil {
			return r.Secrets().Generation, err
		}
		return sec.Generation, nil
	}
	// Without packs, no past generation needs recording.
	for i := 0; i < 12; i++ {
		if _, err := change(false); err != nil {
			t.Fatalf("change %d without packs: %v", i+1, err)
		}
	}
	// With a pack of every generation, every one does: the change that
	// would not fit is refused, and the repository stays as it was.
	for i := 0; ; i++ {
		gen, err := change(true)
		if err == nil {
			if i == 20 {
				t.Fatal("20 changes with packs of each generation fit in one envelope; the test needs more recipients")
			}
			continue
		}
		if !strings.Contains(err.Error(), "too large") || !strings.Contains(err.Error(), "prune --rewrap") {
			t.Fatalf("change at generation %d: %v, want it refused as too large, naming prune --rewrap", gen, err)
		}
		r, err := openAs(t, st, chunkstore.Credentials{Identities: ids})
		if err != nil {
			t.Fatalf("after the refused change the repository no longer opens: %v", err)
		}
		if g := r.Secrets().Generation; g != gen {
			t.Fatalf("after the refused change generation %d opens, want %d", g, gen)
		}
		break
	}
}
