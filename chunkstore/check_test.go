package chunkstore_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// TestCheckReadDataManyPacks: check --read-data of a repository of a
// dozen packs, mixed compressible and random blobs, with one blob flipped
// in one pack and another pack cut short. Its readers reuse their
// buffers from pack to pack; exactly the two damaged packs are reported,
// and every blob of the others is verified.
func TestCheckReadDataManyPacks(t *testing.T) {
	ctx := context.Background()
	st, err := local.Open(filepath.Join(t.TempDir(), "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	_, rcpt, ids := storetest.Identity(t)
	sec, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{rcpt}, PackSize: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	writer, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: sec}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := writer.NewWriter(ctx, chunkstore.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	blobs := 0
	for i := range 120 {
		b := make([]byte, 200<<10+rng.IntN(300<<10))
		if i%2 == 0 {
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
		} else {
			copy(b, bytes.Repeat([]byte("compressible text, line after line\n"), len(b)/35))
			b[0] = byte(i)
		}
		if _, _, err := w.SaveBlob(ctx, chunkstore.DataBlob, b); err != nil {
			t.Fatal(err)
		}
		blobs++
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r := storetest.OpenIndexed(t, st, ids)
	packs := r.Index().Packs()
	if len(packs) < 8 {
		t.Fatalf("%d packs; want several per reader", len(packs))
	}
	flipped, cut := packs[len(packs)/2], packs[len(packs)/3]
	damage := func(p *chunkstore.PackEntry, fn func([]byte) []byte) {
		path := filepath.Join(st.Location(), filepath.FromSlash(chunkstore.PackName(p.ID)))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, fn(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	damage(flipped, func(b []byte) []byte {
		bl := flipped.Blobs[len(flipped.Blobs)/2]
		b[bl.Offset+bl.Length/2] ^= 0x10
		return b
	})
	damage(cut, func(b []byte) []byte { return b[:len(b)/2] })

	rep, err := r.Check(ctx, chunkstore.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]bool{}
	for _, p := range rep.Problems {
		bad[p.Object] = true
	}
	if len(bad) != 2 || !bad[chunkstore.PackName(flipped.ID)] || !bad[chunkstore.PackName(cut.ID)] {
		t.Errorf("problems %v; want exactly the flipped pack %s and the cut one %s", rep.Problems, flipped.ID.Short(), cut.ID.Short())
	}
	for _, p := range rep.Problems {
		if p.Object == chunkstore.PackName(flipped.ID) && !strings.Contains(p.Err.Error(), "does not match") {
			t.Errorf("flipped pack: %v, want a hash mismatch", p.Err)
		}
	}
	if want := blobs - len(flipped.Blobs) - len(cut.Blobs); rep.BlobsVerified != want {
		t.Errorf("%d blobs verified, want %d (all but the damaged packs')", rep.BlobsVerified, want)
	}
}
