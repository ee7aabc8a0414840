package chunkstore_test

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// TestWriterConcurrentSavesNeverHang: many goroutines fill small packs at
// once. A caller waiting for the open pack while its holder closes it
// must start the next pack rather than wait forever (a review found
// exactly that hang with 1 MiB packs and six writers).
func TestWriterConcurrentSavesNeverHang(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	_, rcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{rcpt}, PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for trial := range 25 {
		w, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: sec}, chunkstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		wr, err := w.NewWriter(ctx, chunkstore.WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			var wg sync.WaitGroup
			errs := make(chan error, 6)
			for g := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(trial), uint64(g)))
					for range 20 {
						b := make([]byte, 100<<10)
						for i := 0; i < len(b); i += 8 {
							binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
						}
						if _, _, err := wr.SaveBlob(ctx, chunkstore.DataBlob, b); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				done <- err
				return
			}
			done <- wr.Flush(ctx)
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("trial %d: %v", trial, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("trial %d: concurrent SaveBlob calls hung", trial)
		}
	}
}

// TestLoadIndexReadsEachFileOnce: loading the index again reads only index
// files written since, not the ones already loaded.
func TestLoadIndexReadsEachFileOnce(t *testing.T) {
	ctx := context.Background()
	faulty := storetest.NewFaulty(mem.New())
	repos := storetest.InitRepos(t, faulty)
	save := func(seed uint64) { storeBlob(t, repos.Writer, seed) }
	save(1)
	r := repos.Reader
	gets := func() int { return faulty.Calls(storetest.OpGet) }
	before := gets()
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if n := gets() - before; n != 1 {
		t.Fatalf("first load read %d objects, want the 1 index file", n)
	}
	save(2)
	before = gets()
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if n := gets() - before; n != 1 {
		t.Fatalf("second load read %d objects, want only the 1 new index file", n)
	}
	if r.Index().Len() != 2 {
		t.Fatalf("index holds %d blobs, want 2", r.Index().Len())
	}
}
