package chunkstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// Fuzz targets for every decoder of bytes read from a repository (or
// from a key file). Seeds are real encodings; the properties are "never
// panic", "reject only as ErrCorrupt" where the decoder promises that,
// "what is accepted is consistent" and "decode(encode(x)) = x".

// fuzzRepo is one real repository whose objects seed the corpora.
type fuzzRepo struct {
	config    []byte
	writerKey []byte
	secrets   *chunkstore.Secrets
}

func newFuzzRepo(f *testing.F) fuzzRepo {
	f.Helper()
	ctx := context.Background()
	st := mem.New()
	_, rcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		f.Fatal(err)
	}
	sec, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{rcpt}})
	if err != nil {
		f.Fatal(err)
	}
	cfg, err := st.Get(ctx, chunkstore.ConfigName, 0, -1)
	if err != nil {
		f.Fatal(err)
	}
	wk, err := chunkstore.MarshalWriterKey(sec)
	if err != nil {
		f.Fatal(err)
	}
	return fuzzRepo{config: cfg, writerKey: wk, secrets: sec}
}

func goldenPackBytes(f *testing.F) []byte {
	f.Helper()
	types, blobs := goldenBlobs()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	pack, _, err := chunkstore.BuildPackForTest([]age.Recipient{id.Recipient()}, &goldenMetaKey, chunkstore.NewChunkHasher(goldenChunkKey), types, blobs)
	if err != nil {
		f.Fatal(err)
	}
	return pack
}

// wantCorrupt fails unless err is ErrCorrupt, or ErrNewerFormat (a magic
// that names a later version is refused as a newer lifeboat's, not as
// damage).
func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, chunkstore.ErrCorrupt) && !errors.Is(err, chunkstore.ErrNewerFormat) {
		t.Fatalf("%s rejected input with an error that is neither ErrCorrupt nor ErrNewerFormat: %v", what, err)
	}
}

func FuzzParsePack(f *testing.F) {
	pack := goldenPackBytes(f)
	f.Add(pack)
	empty, _, err := chunkstore.BuildPackForTest(nil, &goldenMetaKey, chunkstore.NewChunkHasher(goldenChunkKey), nil, nil)
	if err == nil {
		f.Add(empty)
	}
	f.Add(pack[:len(pack)-1])
	f.Add([]byte("LBPACK1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := chunkstore.ParsePack(b, &goldenMetaKey)
		if err != nil {
			wantCorrupt(t, "ParsePack", err)
			return
		}
		// The header holds the wrapped key; blobs tile the space between
		// it and the trailer, all inside the pack.
		off := uint64(len("LBPACK1\n") + 4 + len(info.WrappedKey))
		if !bytes.Equal(b[12:off], info.WrappedKey) {
			t.Fatal("wrapped key is not the header's bytes")
		}
		for i, bl := range info.Blobs {
			if uint64(bl.Offset) != off || bl.Length < chunkstore.BlobOverhead || bl.Type > chunkstore.TreeBlob {
				t.Fatalf("blob %d accepted at %d+%d (type %d), expected offset %d", i, bl.Offset, bl.Length, bl.Type, off)
			}
			off += uint64(bl.Length)
		}
		if off+uint64(chunkstore.PackFooterSize) > uint64(len(b)) {
			t.Fatalf("blobs end at %d, past the trailer of a %d-byte pack", off, len(b))
		}
	})
}

func FuzzParseTrailer(f *testing.F) {
	pack := goldenPackBytes(f)
	f.Add(pack, uint16(0))
	f.Add(pack[len(pack)-200:], uint16(len(pack)-200))
	f.Add(pack[len(pack)-20:], uint16(0))
	f.Fuzz(func(t *testing.T, tail []byte, before uint16) {
		packSize := int64(len(tail)) + int64(before)
		blobs, start, err := chunkstore.ParseTrailerForTest(tail, packSize, &goldenMetaKey)
		if err != nil {
			wantCorrupt(t, "parseTrailer", err)
			return
		}
		if start < int64(before) || start > packSize-int64(chunkstore.PackFooterSize) {
			t.Fatalf("trailer start %d outside the tail [%d, %d)", start, before, packSize)
		}
		for _, bl := range blobs {
			if bl.Type > chunkstore.TreeBlob {
				t.Fatalf("accepted blob type %d", bl.Type)
			}
		}
	})
}

func FuzzDecodeIndex(f *testing.F) {
	f.Add(chunkstore.EncodeIndex(goldenPacks()))
	f.Add(chunkstore.EncodeIndex(nil))
	f.Add(chunkstore.EncodeIndex(goldenPacks()[:1]))
	f.Add(chunkstore.EncodeIndex(goldenPacksV2()))
	f.Fuzz(func(t *testing.T, b []byte) {
		packs, err := chunkstore.DecodeIndex(b)
		if err != nil {
			wantCorrupt(t, "DecodeIndex", err)
			return
		}
		for _, p := range packs {
			for _, bl := range p.Blobs {
				if bl.Type > chunkstore.TreeBlob || uint64(bl.Offset)+uint64(bl.Length) > uint64(p.Size) || bl.Length < chunkstore.BlobOverhead {
					t.Fatalf("accepted blob %+v outside pack %s of %d bytes", bl, p.ID.Short(), p.Size)
				}
			}
		}
		// The encoding is canonical: accepted bytes re-encode identically.
		if enc := chunkstore.EncodeIndex(packs); !bytes.Equal(enc, b) {
			t.Fatalf("EncodeIndex(DecodeIndex(b)) != b:\n%x\n%x", enc, b)
		}
	})
}

func FuzzOpenMeta(f *testing.F) {
	idx := chunkstore.EncodeIndex(goldenPacks())
	f.Add(byte(chunkstore.KindIndex), chunkstore.SealMetaForTest(&goldenMetaKey, chunkstore.KindIndex, idx))
	f.Add(byte(chunkstore.KindSnapshot), chunkstore.SealMetaForTest(&goldenMetaKey, chunkstore.KindSnapshot, []byte(`{"version":1}`)))
	f.Add(byte(chunkstore.KindTrailerForTest), chunkstore.SealMetaForTest(&goldenMetaKey, chunkstore.KindTrailerForTest, []byte{0, 0, 0, 0}))
	f.Add(byte(chunkstore.KindIndex), chunkstore.SealMetaForTest(&goldenMetaKey, chunkstore.KindIndex, nil))
	f.Fuzz(func(t *testing.T, kind byte, b []byte) {
		plain, err := chunkstore.OpenMetaForTest(&goldenMetaKey, chunkstore.MetaKind(kind), b)
		if err != nil {
			wantCorrupt(t, "openMeta", err)
			return
		}
		if len(b) < 5 || b[4] != kind {
			t.Fatalf("accepted an object whose kind byte is not %d", kind)
		}
		resealed := chunkstore.SealMetaForTest(&goldenMetaKey, chunkstore.MetaKind(kind), plain)
		again, err := chunkstore.OpenMetaForTest(&goldenMetaKey, chunkstore.MetaKind(kind), resealed)
		if err != nil || !bytes.Equal(again, plain) {
			t.Fatalf("seal/open round trip failed: %v", err)
		}
	})
}

// FuzzGCObjects feeds GC marks and backup sessions, raw or sealed with
// the repository's metadata key, to the code backups and prune read them
// with. A mark that does not decode is skipped (never an error that
// stops every backup); one that does lists exactly the packs it holds. A
// session is always listed, its description best-effort.
func FuzzGCObjects(f *testing.F) {
	ctx := context.Background()
	st := mem.New()
	repos := storetest.InitRepos(f, st)
	key := &repos.Writer.Secrets().MetaKey
	f.Add([]byte(`{"packs":["`+chunkstore.Hash([]byte("p")).String()+`"]}`), true)
	f.Add([]byte(`{"packs":[]}`), true)
	f.Add([]byte(`{"host":"h","pid":7,"started":"2026-11-27T10:00:00Z"}`), true)
	f.Add([]byte(`{"packs":["zz"]}`), true)
	f.Add([]byte("LBM1\x05garbage"), false)
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		mark, sess := b, b
		if seal {
			mark = chunkstore.SealMetaForTest(key, chunkstore.KindGCMark, b)
			sess = chunkstore.SealMetaForTest(key, chunkstore.KindSession, b)
		}
		markName := chunkstore.GCPrefix + chunkstore.Hash(mark).String()
		sessName := chunkstore.SessionsPrefix + "fuzz/000000"
		if err := st.Put(ctx, markName, mark); err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, sessName, sess); err != nil {
			t.Fatal(err)
		}
		defer st.Delete(ctx, markName)
		defer st.Delete(ctx, sessName)
		marks, err := repos.Writer.GCMarks(ctx)
		if err != nil {
			t.Fatalf("GCMarks: %v", err)
		}
		var want struct {
			Packs []chunkstore.ID `json:"packs"`
		}
		decodes := seal && json.Unmarshal(b, &want) == nil
		switch {
		case len(marks) > 1:
			t.Fatalf("%d marks from one object", len(marks))
		case len(marks) == 1 && !decodes:
			t.Fatalf("accepted a mark that does not decode: %+v", marks[0])
		case len(marks) == 0 && decodes:
			t.Fatalf("skipped a mark that decodes to %v", want.Packs)
		case len(marks) == 1 && !reflect.DeepEqual(marks[0].Packs, want.Packs):
			t.Fatalf("mark packs %v, want %v", marks[0].Packs, want.Packs)
		}
		list, err := repos.Writer.Sessions(ctx)
		if err != nil || len(list) != 1 || list[0].ID != "fuzz" {
			t.Fatalf("Sessions: %+v %v, want the one stored", list, err)
		}
	})
}

func FuzzBlobPayload(f *testing.F) {
	_, blobs := goldenBlobs()
	for _, b := range blobs {
		enc, payload, _ := chunkstore.EncodeBlobPayloadForTest(nil, b)
		f.Add(enc, bytes.Clone(payload), uint32(len(b)))
	}
	f.Add(byte(1), []byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, enc byte, payload []byte, rawLen uint32) {
		// Any bytes survive encode → decode.
		e2, p2, _ := chunkstore.EncodeBlobPayloadForTest(nil, payload)
		back, err := chunkstore.DecodeBlobPayloadForTest(nil, e2, p2, len(payload))
		if err != nil || !bytes.Equal(back, payload) {
			t.Fatalf("encode/decode round trip: %v", err)
		}
		// Arbitrary payloads decode within their limit or fail as corrupt.
		limit := int(rawLen % (16 << 20))
		out, err := chunkstore.DecodeBlobPayloadForTest(nil, enc, payload, limit)
		if err != nil {
			wantCorrupt(t, "decodeBlobPayload", err)
			return
		}
		switch enc {
		case 0:
			if !bytes.Equal(out, payload) {
				t.Fatal("raw payload altered")
			}
		case 1:
			if len(out) > limit {
				t.Fatalf("decompressed %d bytes past the %d-byte limit", len(out), limit)
			}
		default:
			t.Fatalf("accepted unknown encoding %d", enc)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	r := newFuzzRepo(f)
	f.Add(r.config)
	f.Add(bytes.ReplaceAll(r.config, []byte(`"version": 1`), []byte(`"version": 2`)))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := chunkstore.ParseConfig(b)
		if err != nil {
			return
		}
		if cfg.Format != "lifeboat" || cfg.Version != chunkstore.FormatVersion || cfg.ChunkMin > cfg.ChunkMax || cfg.PackSize <= 0 {
			t.Fatalf("accepted an invalid config %+v", cfg)
		}
		enc, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		again, err := chunkstore.ParseConfig(enc)
		if err != nil || again != cfg {
			t.Fatalf("config round trip: %v\n%+v\n%+v", err, cfg, again)
		}
	})
}

func FuzzParseWriterKey(f *testing.F) {
	r := newFuzzRepo(f)
	idFile, _, err := chunkstore.NewIdentity(false)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(r.writerKey)
	f.Add(idFile)
	f.Add([]byte(`{"type":"lifeboat-writer-key","version":1}`))
	// A hand-edited key with a short repository ID.
	f.Add(bytes.Replace(r.writerKey, []byte(r.secrets.RepoID), []byte("c0ffee"), 1))
	ctx := context.Background()
	st := mem.New()
	if err := st.Put(ctx, chunkstore.ConfigName, r.config); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := chunkstore.ParseWriterKey(b)
		if err != nil {
			return
		}
		if deg := s.Polynomial.Deg(); s.Polynomial == 0 || deg < chunkstore.MinPolynomialDegree || deg > chunkstore.MaxPolynomialDegree || !s.Polynomial.Irreducible() || len(s.Recipients) == 0 {
			t.Fatalf("accepted unusable secrets: polynomial %v, %d recipients", s.Polynomial, len(s.Recipients))
		}
		enc, err := chunkstore.MarshalWriterKey(s)
		if err != nil {
			t.Fatal(err)
		}
		again, err := chunkstore.ParseWriterKey(enc)
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("writer key round trip: %v\n%+v\n%+v", err, s, again)
		}
		// Whatever a key file says, opening a repository with it
		// answers with an error or a repository, never a panic.
		if repo, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: s}, chunkstore.Options{}); err == nil && repo.Config().ID != s.RepoID {
			t.Fatal("opened a repository whose ID is not the key's")
		}
	})
}

const fuzzPassphrase = "fuzz passphrase"

// maxFuzzWorkFactor keeps scrypt cheap: inputs asking for more are skipped.
const maxFuzzWorkFactor = 10

// scryptWorkFactor returns the highest scrypt work factor an age header
// in b asks for (armored or not), or a large number if one is unreadable.
func scryptWorkFactor(b []byte) int {
	data := bytes.TrimSpace(b)
	if bytes.HasPrefix(data, []byte(armor.Header)) {
		data, _ = io.ReadAll(io.LimitReader(armor.NewReader(bytes.NewReader(data)), 1<<16))
	}
	high := 0
	for _, line := range bytes.Split(data, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) < 2 || string(f[0]) != "->" || !bytes.Contains(f[1], []byte("scrypt")) {
			continue
		}
		n := 99
		if len(f) >= 4 {
			if v, err := strconv.Atoi(string(f[3])); err == nil {
				n = v
			}
		}
		high = max(high, n)
	}
	return high
}

func protectCheaply(f *testing.F, file []byte, armored bool) []byte {
	f.Helper()
	rcpt, err := age.NewScryptRecipient(fuzzPassphrase)
	if err != nil {
		f.Fatal(err)
	}
	rcpt.SetWorkFactor(maxFuzzWorkFactor)
	var buf bytes.Buffer
	var dst io.Writer = &buf
	var aw io.WriteCloser
	if armored {
		aw = armor.NewWriter(&buf)
		dst = aw
	}
	w, err := age.Encrypt(dst, rcpt)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := w.Write(file); err != nil {
		f.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	if aw != nil {
		if err := aw.Close(); err != nil {
			f.Fatal(err)
		}
	}
	return buf.Bytes()
}

func FuzzParseIdentityFile(f *testing.F) {
	x25519, _, err := chunkstore.NewIdentity(false)
	if err != nil {
		f.Fatal(err)
	}
	hybrid, _, err := chunkstore.NewIdentity(true)
	if err != nil {
		f.Fatal(err)
	}
	r := newFuzzRepo(f)
	f.Add(x25519)
	f.Add(hybrid)
	f.Add(protectCheaply(f, x25519, true))
	f.Add(protectCheaply(f, hybrid, false))
	f.Add(r.writerKey)
	pass := func() (string, error) { return fuzzPassphrase, nil }
	f.Fuzz(func(t *testing.T, b []byte) {
		if scryptWorkFactor(b) > maxFuzzWorkFactor {
			t.Skip("scrypt work factor too high to fuzz")
		}
		ids, err := chunkstore.ParseIdentityFile(b, pass)
		if err != nil {
			return
		}
		if len(ids) == 0 {
			t.Fatal("accepted an identity file with no identities")
		}
		// Each identity's canonical form parses back to itself.
		for _, id := range ids {
			s, ok := id.(fmt.Stringer)
			if !ok {
				t.Fatalf("identity of type %T", id)
			}
			again, err := chunkstore.ParseIdentityFile([]byte(s.String()+"\n"), nil)
			if err != nil || len(again) != 1 || again[0].(fmt.Stringer).String() != s.String() {
				t.Fatalf("identity %T does not round-trip: %v", id, err)
			}
		}
	})
}

// FuzzKeyEnvelope: whatever bytes lie under keys/ as a newer generation's
// envelope, checking and opening them answers with an error or secrets,
// never a panic; and only the genuine envelope (signed by the
// repository's key signer) opens as that generation.
func FuzzKeyEnvelope(f *testing.F) {
	ctx := context.Background()
	repos := storetest.InitRepos(f, mem.New())
	ids, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		f.Fatal(err)
	}
	full, err := chunkstore.Open(ctx, repos.Store, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
	if err != nil {
		f.Fatal(err)
	}
	cfg := full.Config()
	next := *full.Secrets()
	next.Generation = 1
	genuine, err := chunkstore.SealEnvelopeForTest(&next)
	if err != nil {
		f.Fatal(err)
	}
	unsigned := next
	unsigned.SigningKey = nil
	plain, err := chunkstore.SealEnvelopeForTest(&unsigned)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine)
	f.Add(plain)
	f.Add(genuine[:len(genuine)/2])
	f.Add([]byte("LBENV1\n\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := chunkstore.OpenEnvelopeForTest(b, cfg, 1, ids)
		if err == nil && !bytes.Equal(b, genuine) {
			t.Fatalf("opened %d bytes that are not the genuine envelope for generation 1 (recipients %v)", len(b), s.Recipients)
		}
		if _, err := chunkstore.EnvelopeCiphertextForTest(b, cfg, 1); err == nil && !bytes.Equal(b, genuine) {
			t.Fatal("a forged envelope verified")
		}
	})
}
