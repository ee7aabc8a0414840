package chunkstore_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// Format test vectors: bytes written by format v1 that this code must
// keep reading exactly, and (for deterministic encodings) keep writing
// exactly. A failure here means the on-disk format changed: bump
// FormatVersion and docs/format.md, then regenerate with
// go test ./chunkstore -run Golden -update.

// Fixed keys for the vectors. Test values only.
var (
	goldenMetaKey  = [32]byte{'l', 'i', 'f', 'e', 'b', 'o', 'a', 't', ' ', 'g', 'o', 'l', 'd', 'e', 'n', ' ', 'm', 'e', 't', 'a', ' ', 'k', 'e', 'y'}
	goldenChunkKey = [32]byte{'l', 'i', 'f', 'e', 'b', 'o', 'a', 't', ' ', 'g', 'o', 'l', 'd', 'e', 'n', ' ', 'c', 'h', 'u', 'n', 'k', ' ', 'k', 'e', 'y'}
)

func goldenID(b byte) chunkstore.ID {
	var id chunkstore.ID
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

// goldenPacks is a fixed index: two packs, both blob types, edge values.
func goldenPacks() []chunkstore.PackEntry {
	return []chunkstore.PackEntry{
		{
			ID: goldenID(0x10), Size: 0x01020304, WrappedKey: []byte("age-encryption.org/v1\n-> X25519 stand-in\n"),
			Blobs: []chunkstore.Blob{
				{Type: chunkstore.DataBlob, ID: goldenID(0x40), Offset: 54, Length: 1 << 20, RawLength: 1<<20 - 29},
				{Type: chunkstore.TreeBlob, ID: goldenID(0x80), Offset: 54 + 1<<20, Length: 300, RawLength: 0x00ABCDEF},
			},
		},
		{ID: goldenID(0xF0), Size: 0xFFFFFFFF, WrappedKey: nil, Blobs: []chunkstore.Blob{}},
	}
}

// goldenBlobs are the plaintexts in the golden pack: compressible,
// incompressible (stored raw) and a tree.
func goldenBlobs() ([]chunkstore.BlobType, [][]byte) {
	noise := make([]byte, 4096)
	x := uint32(1)
	for i := range noise {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		noise[i] = byte(x)
	}
	return []chunkstore.BlobType{chunkstore.DataBlob, chunkstore.DataBlob, chunkstore.TreeBlob},
		[][]byte{bytes.Repeat([]byte("compressible "), 500), noise, []byte(`{"nodes":[{"name":"a","type":"file","mode":420}]}`)}
}

func writeHex(t *testing.T, path string, b []byte) {
	t.Helper()
	h := hex.EncodeToString(b)
	var s strings.Builder
	for len(h) > 64 {
		s.WriteString(h[:64] + "\n")
		h = h[64:]
	}
	s.WriteString(h + "\n")
	if err := os.WriteFile(path, []byte(s.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readHex(t *testing.T, path string) []byte {
	t.Helper()
	s, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate with go test ./chunkstore -run Golden -update)", err)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(string(s)), "\n", ""))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

func TestIndexEncodingGolden(t *testing.T) {
	indexGolden(t, "testdata/index-v1.hex", goldenPacks())
}

// indexGolden pins EncodeIndex(packs) to the vector at path, and checks
// that the vector decodes to packs; it returns the vector.
func indexGolden(t *testing.T, path string, packs []chunkstore.PackEntry) []byte {
	t.Helper()
	enc := chunkstore.EncodeIndex(packs)
	if *update {
		writeHex(t, path, enc)
	}
	want := readHex(t, path)
	if !bytes.Equal(enc, want) {
		t.Fatalf("EncodeIndex output changed:\n got %x\nwant %x", enc, want)
	}
	dec, err := chunkstore.DecodeIndex(want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dec, packs) {
		t.Fatalf("DecodeIndex of the golden vector:\n got %+v\nwant %+v", dec, packs)
	}
	return want
}

// TestSealedIndexGolden: a sealed index object from format v1 must keep
// opening (the nonce is random, so only the reading side is pinned).
func TestSealedIndexGolden(t *testing.T) {
	const path = "testdata/index-v1.sealed.hex"
	plain := chunkstore.EncodeIndex(goldenPacks())
	if *update {
		writeHex(t, path, chunkstore.SealMetaForTest(&goldenMetaKey, chunkstore.KindIndex, plain))
	}
	sealed := readHex(t, path)
	got, err := chunkstore.OpenMetaForTest(&goldenMetaKey, chunkstore.KindIndex, sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open golden sealed index: %v (plaintext equal: %v)", err, bytes.Equal(got, plain))
	}
	if _, err := chunkstore.OpenMetaForTest(&goldenMetaKey, chunkstore.KindSnapshot, sealed); err == nil {
		t.Fatal("a sealed index opened as a snapshot")
	}
}

// TestPackGolden: a whole format-v1 pack — age-wrapped data key, sealed
// blobs, sealed trailer — must keep parsing and decrypting to the same
// plaintexts, each matching its keyed ID.
func TestPackGolden(t *testing.T) {
	const packPath, idPath = "testdata/pack-v1.hex", "testdata/pack-v1.identity"
	types, blobs := goldenBlobs()
	hasher := chunkstore.NewChunkHasher(goldenChunkKey)
	if *update {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		pack, _, err := chunkstore.BuildPackForTest([]age.Recipient{id.Recipient()}, &goldenMetaKey, hasher, types, blobs)
		if err != nil {
			t.Fatal(err)
		}
		writeHex(t, packPath, pack)
		if err := os.WriteFile(idPath, []byte("# test vector key for pack-v1.hex; protects nothing\n"+id.String()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pack := readHex(t, packPath)
	idFile, err := os.ReadFile(idPath)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := chunkstore.ParseIdentityFile(idFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := chunkstore.ParsePack(pack, &goldenMetaKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Blobs) != len(blobs) {
		t.Fatalf("pack lists %d blobs, want %d", len(info.Blobs), len(blobs))
	}
	r, err := age.Decrypt(bytes.NewReader(info.WrappedKey), ids...)
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	if _, err := io.ReadFull(r, key[:]); err != nil {
		t.Fatal(err)
	}
	for i, b := range info.Blobs {
		if b.Type != types[i] || b.ID != hasher.Sum(blobs[i]) || int(b.RawLength) != len(blobs[i]) {
			t.Fatalf("blob %d: %+v does not describe plaintext %d", i, b, i)
		}
		enc, payload, err := chunkstore.OpenBlobForTest(nil, &key, b.Type, b.ID, pack[b.Offset:b.Offset+b.Length])
		if err != nil {
			t.Fatalf("blob %d: %v", i, err)
		}
		plain, err := chunkstore.DecodeBlobPayloadForTest(nil, enc, payload, int(b.RawLength))
		if err != nil || !bytes.Equal(plain, blobs[i]) {
			t.Fatalf("blob %d: decoded %d bytes, err %v", i, len(plain), err)
		}
	}
	if _, err := chunkstore.ParsePack(pack, &goldenChunkKey); err == nil {
		t.Fatal("pack trailer opened with the wrong key")
	}
}

// goldenPacksV2 are goldenPacks after a change of recipients: one pack
// written for generation 2, one indexed from the store (generation 0).
func goldenPacksV2() []chunkstore.PackEntry {
	packs := goldenPacks()
	packs[0].Gen = 2
	return packs
}

// TestIndexV2Golden: an index that records a pack of a later generation
// of recipients is version 2, pinned like version 1; one without is
// still written as version 1, and version 2 without one is refused (one
// encoding per content).
func TestIndexV2Golden(t *testing.T) {
	want := indexGolden(t, "testdata/index-v2.hex", goldenPacksV2())
	if !bytes.HasPrefix(want, []byte("LBIDX2\n\x00")) {
		t.Fatalf("an index with generations starts %q", want[:8])
	}
	if v1 := chunkstore.EncodeIndex(goldenPacks()); !bytes.HasPrefix(v1, []byte("LBIDX1\n\x00")) {
		t.Fatalf("an index without generations starts %q", v1[:8])
	}
	zero := bytes.Clone(want)
	off := 8 + 4 + 32 + 4 // magic, count, first pack's ID and size
	zero[off] = 0         // its generation, 2 → 0
	if _, err := chunkstore.DecodeIndex(zero); !errors.Is(err, chunkstore.ErrCorrupt) {
		t.Fatalf("version 2 with every generation 0: %v, want ErrCorrupt", err)
	}
}
