package chunkstore_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"unsafe"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestOpenBlobModes opens a blob stored raw and one stored compressed in
// each of the three ways: each returns the plaintext, OpenBlob leaves the
// sealed bytes alone, a BlobOpener's OpenInto puts the plaintext exactly
// where the caller asked, and none accepts a flipped byte. One opener
// serves every attempt, and a failed one does not spoil it.
func TestOpenBlobModes(t *testing.T) {
	ctx := context.Background()
	repos := storetest.NewRepos(t, "local")
	src := t.TempDir()
	// Below the minimum chunk size: each file is one blob.
	random := fixture.Random(11, 300<<10)
	text := bytes.Repeat([]byte("lifeboat compresses this line well. "), 8000)
	fixture.Create(t, src, fixture.Tree{"random": {Content: random}, "text": {Content: text}})
	if _, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "t"}); err != nil {
		t.Fatal(err)
	}
	r := repos.Reader
	if err := r.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"raw": random, "compressed": text} {
		loc, ok := r.Index().Lookup(r.BlobID(want))
		if !ok {
			t.Fatalf("%s blob not in the index", name)
		}
		if stored := int(loc.Blob.Length) < len(want); stored != (name == "compressed") {
			t.Fatalf("%s blob stored in %d bytes for %d: not the encoding this case is about", name, loc.Blob.Length, len(want))
		}
		key, err := r.PackKey(loc.Pack)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := r.Store().Get(ctx, chunkstore.PackName(loc.Pack.ID), int64(loc.Blob.Offset), int64(loc.Blob.Length))
		if err != nil {
			t.Fatal(err)
		}
		op := r.Opener(key)
		room := len(want) + chunkstore.DecodeSlack + 4096
		for _, mode := range []struct {
			name    string
			open    func(sealed, dst []byte) ([]byte, error)
			keeps   bool // sealed is left intact
			intoDst bool // the plaintext starts at dst[0]
		}{
			{"OpenBlob", func(s, d []byte) ([]byte, error) { return r.OpenBlob(key, loc.Blob, s, d) }, true, true},
			{"OpenInPlace", func(s, d []byte) ([]byte, error) { return op.OpenInPlace(loc.Blob, s, d) }, false, name == "compressed"},
			{"OpenInto", func(s, d []byte) ([]byte, error) { return op.OpenInto(loc.Blob, s, d) }, name == "raw", true},
		} {
			t.Run(name+"/"+mode.name, func(t *testing.T) {
				s := bytes.Clone(sealed)
				dst := make([]byte, 0, room)[123:123]
				plain, err := mode.open(s, dst)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(plain, want) {
					t.Fatal("plaintext differs from the file")
				}
				if at := unsafe.SliceData(plain) == unsafe.SliceData(dst[:1]); at != mode.intoDst {
					t.Fatalf("plaintext at dst[0]: %v, want %v", at, mode.intoDst)
				}
				if intact := bytes.Equal(s, sealed); intact != mode.keeps {
					t.Fatalf("sealed bytes left intact: %v, want %v", intact, mode.keeps)
				}
				for _, i := range []int{12, 13, len(sealed) / 2, len(sealed) - 1} { // encoding byte, payload, tag
					s := bytes.Clone(sealed)
					s[i] ^= 0x40
					if _, err := mode.open(s, dst); !errors.Is(err, chunkstore.ErrCorrupt) {
						t.Fatalf("byte %d flipped: %v, want ErrCorrupt", i, err)
					}
				}
				if plain, err := mode.open(bytes.Clone(sealed), dst); err != nil || !bytes.Equal(plain, want) {
					t.Fatalf("intact blob after the flipped ones: %v", err)
				}
			})
		}
	}
}
