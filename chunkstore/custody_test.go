package chunkstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/klauspost/compress/zstd"
	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
	"github.com/restic/chunker"
)

// raceEnabled is set by race_test.go in -race builds.
var raceEnabled bool

// custodyRepo is a fresh repository with its two credentials.
type custodyRepo struct {
	store     chunkstore.Store
	secrets   *chunkstore.Secrets // what the writer key file holds
	writerKey []byte              // the writer key file
	idFile    []byte              // the identity file
	ids       []age.Identity
}

func newCustodyRepo(t *testing.T, st chunkstore.Store, pq bool) custodyRepo {
	t.Helper()
	idFile, rcpt, err := chunkstore.NewIdentity(pq)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := chunkstore.Init(context.Background(), st, chunkstore.InitOptions{Recipients: []string{rcpt}})
	if err != nil {
		t.Fatal(err)
	}
	wk, err := chunkstore.MarshalWriterKey(sec)
	if err != nil {
		t.Fatal(err)
	}
	// The key file must carry the secrets exactly (a polynomial lost in
	// the round trip once made every backup through a key file fail).
	if parsed, err := chunkstore.ParseWriterKey(wk); err != nil || !reflect.DeepEqual(parsed, sec) {
		t.Fatalf("writer key does not round-trip: %v\n got %+v\nwant %+v", err, parsed, sec)
	}
	ids, err := chunkstore.ParseIdentityFile(idFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return custodyRepo{store: st, secrets: sec, writerKey: wk, idFile: idFile, ids: ids}
}

// writer opens the repository the way an agent does: from the writer key file.
func (c custodyRepo) writer(t *testing.T) *chunkstore.Repository {
	t.Helper()
	sec, err := chunkstore.ParseWriterKey(c.writerKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := chunkstore.Open(context.Background(), c.store, chunkstore.Credentials{Writer: sec}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (c custodyRepo) reader(t *testing.T) *chunkstore.Repository {
	t.Helper()
	r, err := chunkstore.Open(context.Background(), c.store, chunkstore.Credentials{Identities: c.ids}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func backup(t *testing.T, r *chunkstore.Repository, src string) *snapshot.Result {
	t.Helper()
	res, err := snapshot.Backup(context.Background(), r, snapshot.BackupOptions{Paths: []string{src}, Host: "custody"})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if len(res.Warnings) > 0 {
		t.Fatalf("backup warnings: %v", res.Warnings)
	}
	return res
}

// Markers: if any of these shows up in the stored bytes, file names or
// contents leaked.
const (
	nameMarker    = "LBNAMEMARKER-5d1f0c7a.txt"
	contentMarker = "LBCONTENTMARKER-93b1e0c4 "
)

func markerTree() fixture.Tree {
	return fixture.Tree{
		nameMarker: {Content: []byte("the name is the secret here\n")},
		// Compressible: stored zstd-compressed.
		"compressible.txt": {Content: bytes.Repeat([]byte(contentMarker), 4000)},
		// Incompressible: stored raw (but sealed).
		"raw.bin":  {Content: append([]byte(contentMarker), fixture.Random(3, 64<<10)...)},
		"dir/note": {Content: []byte("small file\n")},
	}
}

// TestWriterKeyCustody proves what a writer key (an agent's credential)
// can and cannot do: back up and dedup, read the catalog, and nothing
// else. Not the trees, not the data, not through restore, and not from
// the raw objects in storage either.
func TestWriterKeyCustody(t *testing.T) {
	ctx := context.Background()
	repoDir := filepath.Join(t.TempDir(), "repo")
	st, err := local.Open(repoDir, true)
	if err != nil {
		t.Fatal(err)
	}
	c := newCustodyRepo(t, st, false)
	src := t.TempDir()
	tree := markerTree()
	fixture.Create(t, src, tree)

	w := c.writer(t)
	if w.CanRead() {
		t.Fatal("a writer key opened the repository with read access")
	}
	first := backup(t, w, src)
	// No files cache: everything is read again, and dedup stores nothing
	// but the trees above src (whose directories' times moved).
	second := backup(t, w, src)
	if s := second.Manifest.Summary; s.BytesRead == 0 || s.BytesAdded > first.Manifest.Summary.BytesAdded/20 || s.BytesAdded > 16<<10 {
		t.Errorf("second backup read %d bytes and added %d (first added %d): dedup did not work", s.BytesRead, s.BytesAdded, first.Manifest.Summary.BytesAdded)
	}

	t.Run("lists and loads manifests", func(t *testing.T) {
		list, errs, err := snapshot.List(ctx, w)
		if err != nil || len(errs) > 0 {
			t.Fatalf("list: %v %v", err, errs)
		}
		if len(list) != 2 || list[0].Paths[0] != src || list[1].Host != "custody" {
			t.Fatalf("writer sees snapshots %+v", list)
		}
	})

	if err := w.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	dataID := w.BlobID(tree[nameMarker].Content)
	loc, ok := w.Index().Lookup(dataID)
	if !ok {
		t.Fatal("the writer cannot find a blob it stored: dedup against the index is broken")
	}
	sealed, err := st.Get(ctx, chunkstore.PackName(loc.Pack.ID), int64(loc.Blob.Offset), int64(loc.Blob.Length))
	if err != nil {
		t.Fatal(err)
	}

	denied := []struct {
		name string
		do   func() error
	}{
		{"LoadBlob tree", func() error { _, err := w.LoadBlob(ctx, chunkstore.TreeBlob, first.Manifest.Tree); return err }},
		{"LoadBlob data", func() error { _, err := w.LoadBlob(ctx, chunkstore.DataBlob, dataID); return err }},
		{"PackKey", func() error { _, err := w.PackKey(loc.Pack); return err }},
		{"LoadTree", func() error { _, err := snapshot.LoadTree(ctx, w, first.Manifest.Tree); return err }},
		{"Walk", func() error {
			return snapshot.Walk(ctx, w, first.Manifest.Tree, func(string, *snapshot.Node) error { return nil })
		}},
		{"Restore", func() error {
			snap, err := snapshot.Load(ctx, w, first.ID)
			if err != nil {
				return err
			}
			target := filepath.Join(t.TempDir(), "target")
			_, err = restore.Restore(ctx, w, snap, restore.Options{Target: target})
			if _, serr := os.Stat(target); serr == nil {
				t.Errorf("a refused restore created its target")
			}
			return err
		}},
	}
	for _, d := range denied {
		t.Run(d.name, func(t *testing.T) {
			if err := d.do(); !errors.Is(err, chunkstore.ErrNoIdentity) {
				t.Fatalf("got %v, want ErrNoIdentity", err)
			}
		})
	}

	t.Run("writer secrets do not open blobs", func(t *testing.T) {
		for name, key := range map[string]*[32]byte{"meta key": &c.secrets.MetaKey, "chunk key": &c.secrets.ChunkKey} {
			if _, err := w.OpenBlob(key, loc.Blob, sealed, nil); !errors.Is(err, chunkstore.ErrCorrupt) {
				t.Errorf("opening a blob with the %s: %v, want an authentication failure", name, err)
			}
		}
	})

	t.Run("wrapped pack key needs an identity the writer lacks", func(t *testing.T) {
		// The writer key holds no age identity at all: nothing in it can
		// be tried on the wrapped key.
		if bytes.Contains(c.writerKey, []byte("AGE-SECRET-KEY")) {
			t.Fatal("writer key file contains an age secret key")
		}
		if _, err := chunkstore.ParseIdentityFile(c.writerKey, nil); err == nil {
			t.Fatal("a writer key parsed as an identity")
		}
		if !bytes.HasPrefix(loc.Pack.WrappedKey, []byte("age-encryption.org/v1\n-> X25519 ")) {
			t.Fatalf("wrapped key is not an age file for an X25519 recipient: %.60q", loc.Pack.WrappedKey)
		}
		stranger, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		var nm *age.NoIdentityMatchError
		if _, err := age.Decrypt(bytes.NewReader(loc.Pack.WrappedKey), stranger); !errors.As(err, &nm) {
			t.Fatalf("decrypting the wrapped key with a stranger's identity: %v", err)
		}
		// The identity does unwrap it, so the check above is meaningful.
		if _, err := c.reader(t).PackKey(loc.Pack); err != nil {
			t.Fatalf("identity cannot unwrap the pack key: %v", err)
		}
	})

	t.Run("identity reads what the writer cannot", func(t *testing.T) {
		r := c.reader(t)
		if err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		found := false
		err := snapshot.Walk(ctx, r, first.Manifest.Tree, func(p string, n *snapshot.Node) error {
			found = found || n.Name == nameMarker
			return nil
		})
		if err != nil || !found {
			t.Fatalf("walk with identity: found marker %v, err %v", found, err)
		}
		b, err := r.LoadBlob(ctx, chunkstore.DataBlob, dataID)
		if err != nil || !bytes.Equal(b, tree[nameMarker].Content) {
			t.Fatalf("LoadBlob with identity: %q, %v", b, err)
		}
	})

	t.Run("stored bytes leak no plaintext", func(t *testing.T) {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			t.Fatal(err)
		}
		z := enc.EncodeAll(tree["compressible.txt"].Content, nil)
		needles := map[string][]byte{
			"file name":                    []byte(nameMarker),
			"file content":                 []byte(contentMarker),
			"source path":                  []byte(src),
			"zstd-compressed content":      z,
			"middle of compressed content": z[len(z)/2-8 : len(z)/2+8],
		}
		objects := 0
		err = filepath.WalkDir(repoDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			objects++
			for what, needle := range needles {
				if bytes.Contains(b, needle) {
					t.Errorf("%s appears in plaintext in %s", what, p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if objects < 5 { // config, key, pack, index, snapshots
			t.Fatalf("scanned only %d objects", objects)
		}
	})
}

// TestPostQuantumIdentity runs a whole backup and restore with a hybrid
// ML-KEM-768 + X25519 identity, and checks pack keys are wrapped with it.
func TestPostQuantumIdentity(t *testing.T) {
	ctx := context.Background()
	c := newCustodyRepo(t, mem.New(), true)
	if !bytes.Contains(c.idFile, []byte("AGE-SECRET-KEY-PQ-1")) || !strings.HasPrefix(c.secrets.Recipients[0], "age1pq1") {
		t.Fatalf("not a hybrid identity: recipient %s", c.secrets.Recipients[0])
	}
	src := t.TempDir()
	tree := markerTree()
	fixture.Create(t, src, tree)
	res := backup(t, c.writer(t), src)

	r := c.reader(t)
	snap, err := snapshot.Load(ctx, r, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	out, err := restore.Restore(ctx, r, snap, restore.Options{Target: dst})
	if err != nil || len(out.Failures) > 0 {
		t.Fatalf("restore: %v %v", err, out)
	}
	fixture.Compare(t, tree, filepath.Join(dst, src))
	for _, p := range r.Index().Packs() {
		if !bytes.Contains(p.WrappedKey, []byte("\n-> mlkem768x25519 ")) || bytes.Contains(p.WrappedKey, []byte("-> X25519 ")) {
			t.Fatalf("pack %s key is not wrapped with the hybrid KEM alone: %.80q", p.ID.Short(), p.WrappedKey)
		}
	}
}

func TestPassphraseProtectedIdentity(t *testing.T) {
	ctx := context.Background()
	c := newCustodyRepo(t, mem.New(), false)
	// Scrypt at ProtectIdentityFile's work factor costs a second or more
	// per use, ten times that under -race. The wrong-passphrase path is
	// the same for any work factor, so a cheaply protected file covers
	// it; under -race it stands in for the real one entirely.
	cheap := cheaplyProtected(t, c.idFile, "correct horse")
	protected := cheap
	if !raceEnabled {
		var err error
		protected, err = chunkstore.ProtectIdentityFile(c.idFile, "correct horse")
		if err != nil {
			t.Fatal(err)
		}
		if wf := scryptWorkFactor(protected); wf < 18 {
			t.Fatalf("identity protected with scrypt work factor %d, want age's default of at least 18", wf)
		}
	}
	if bytes.Contains(protected, []byte("AGE-SECRET-KEY")) || !bytes.HasPrefix(protected, []byte("-----BEGIN AGE ENCRYPTED FILE-----")) {
		t.Fatalf("protected identity file is not an armored age file:\n%s", protected)
	}
	errAsk := errors.New("no terminal")
	pass := func(s string) func() (string, error) { return func() (string, error) { return s, nil } }
	tests := []struct {
		name    string
		file    []byte
		pass    func() (string, error)
		wantErr error
	}{
		{"right passphrase", protected, pass("correct horse"), nil},
		{"right passphrase, cheap file", cheap, pass("correct horse"), nil},
		{"byte order mark", append([]byte("\ufeff"), cheap...), pass("correct horse"), nil},
		{"wrong passphrase", cheap, pass("battery staple"), chunkstore.ErrWrongPassphrase},
		{"no passphrase function", protected, nil, chunkstore.ErrPassphraseRequired},
		{"prompt fails", protected, func() (string, error) { return "", errAsk }, errAsk},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := chunkstore.ParseIdentityFile(tc.file, tc.pass)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				return
			}
			r, err := chunkstore.Open(ctx, c.store, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
			if err != nil || !r.CanRead() {
				t.Fatalf("the unlocked identity does not open the repository: %v", err)
			}
		})
	}
}

// cheaplyProtected is ProtectIdentityFile with the lowest scrypt work
// factor age allows to be set, in the same armored form.
func cheaplyProtected(t *testing.T, file []byte, passphrase string) []byte {
	t.Helper()
	rcpt, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		t.Fatal(err)
	}
	rcpt.SetWorkFactor(10)
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(file); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWrongCredentials(t *testing.T) {
	ctx := context.Background()
	a := newCustodyRepo(t, mem.New(), false)
	b := newCustodyRepo(t, mem.New(), false)
	tests := []struct {
		name  string
		store chunkstore.Store
		creds chunkstore.Credentials
		want  string
	}{
		{"identity of another repository", a.store, chunkstore.Credentials{Identities: b.ids}, "not a recipient"},
		{"writer key of another repository", b.store, chunkstore.Credentials{Writer: a.secrets}, "key belongs to repository " + a.secrets.RepoID[:12]},
		{"no credentials", a.store, chunkstore.Credentials{}, "no credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := chunkstore.Open(ctx, tc.store, tc.creds, chunkstore.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Each credential file refuses to be used as the other kind.
	if _, err := chunkstore.ParseWriterKey(a.idFile); err == nil || !strings.Contains(err.Error(), "--identity") {
		t.Errorf("identity file as writer key: %v", err)
	}
	if _, err := chunkstore.ParseIdentityFile(a.writerKey, nil); err == nil || !strings.Contains(err.Error(), "writer key") {
		t.Errorf("writer key as identity file: %v", err)
	}
	// Some other file (the wrong path) is named for what it is not.
	other := []byte("root:x:0:0:root:/root:/bin/bash\n")
	if _, err := chunkstore.ParseWriterKey(other); err == nil || !strings.Contains(err.Error(), "not a lifeboat writer key") {
		t.Errorf("unrelated file as writer key: %v", err)
	}
	if _, err := chunkstore.ParseIdentityFile(other, nil); err == nil || !strings.Contains(err.Error(), "not an age identity file") {
		t.Errorf("unrelated file as identity file: %v", err)
	}
	// A recipients file is named as one.
	pub := []byte("# the on-call team\n" + a.secrets.Recipients[0] + "\n")
	if _, err := chunkstore.ParseIdentityFile(pub, nil); err == nil || !strings.Contains(err.Error(), "public keys (recipients), not an identity") {
		t.Errorf("recipients file as identity file: %v", err)
	}
	// An identity file an editor saved with a byte order mark opens.
	if ids, err := chunkstore.ParseIdentityFile(append([]byte("\ufeff"), a.idFile...), nil); err != nil || len(ids) != 1 {
		t.Errorf("identity file with a byte order mark: %v", err)
	}
}

// TestTamperedConfig: the config is plaintext (readers need it before
// any key), so its hash is sealed into the secrets and any change to it
// is caught on open, with either credential.
func TestTamperedConfig(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		tamper func(b []byte) []byte
	}{
		{"pack size", func(b []byte) []byte { return replaceJSONNumber(t, b, "pack_size", "1048576") }},
		{"chunk min", func(b []byte) []byte { return replaceJSONNumber(t, b, "chunk_min", "65536") }},
		{"whitespace only", func(b []byte) []byte { return append(b, '\n') }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCustodyRepo(t, mem.New(), false)
			orig, err := c.store.Get(ctx, chunkstore.ConfigName, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			bad := tc.tamper(bytes.Clone(orig))
			if _, err := chunkstore.ParseConfig(bad); err != nil {
				t.Fatalf("tampered config must still be a valid config for this test: %v", err)
			}
			if err := c.store.Put(ctx, chunkstore.ConfigName, bad); err != nil {
				t.Fatal(err)
			}
			for name, creds := range map[string]chunkstore.Credentials{"identity": {Identities: c.ids}, "writer key": {Writer: c.secrets}} {
				if _, err := chunkstore.Open(ctx, c.store, creds, chunkstore.Options{}); !errors.Is(err, chunkstore.ErrCorrupt) {
					t.Errorf("open with %s: %v, want ErrCorrupt", name, err)
				}
			}
		})
	}
}

func replaceJSONNumber(t *testing.T, b []byte, field, value string) []byte {
	t.Helper()
	key := []byte(`"` + field + `": `)
	i := bytes.Index(b, key)
	if i < 0 {
		t.Fatalf("config has no %s: %s", field, b)
	}
	start := i + len(key)
	end := start
	for end < len(b) && b[end] >= '0' && b[end] <= '9' {
		end++
	}
	out := append([]byte(nil), b[:start]...)
	out = append(out, value...)
	return append(out, b[end:]...)
}

// A writer key without a config hash is refused as damaged when it is
// read, rather than opening the repository and calling its config
// tampered with.
func TestWriterKeyWithoutConfigHash(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	bad := *repos.Writer.Secrets()
	bad.ConfigHash = chunkstore.ID{}
	b, err := chunkstore.MarshalWriterKey(&bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chunkstore.ParseWriterKey(b); err == nil || !strings.Contains(err.Error(), "no config_hash: the file is damaged") {
		t.Errorf("writer key without config_hash: %v", err)
	}
}

// A writer key whose polynomial the chunker cannot use is refused when
// it is read, naming the polynomial, not at the first backup.
func TestWriterKeyUnusablePolynomial(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	good := *repos.Writer.Secrets()
	// An irreducible polynomial above restic/chunker's degree limit.
	high := chunker.Pol(0)
	for p := chunker.Pol(1<<60 | 1); ; p += 2 {
		if p.Irreducible() {
			high = p
			break
		}
	}
	for _, pol := range []chunker.Pol{
		chunker.Pol(0x11b),        // irreducible, degree 8: below the chunker's shift
		high,                      // irreducible, degree 60
		chunker.Pol(1<<53 | 1<<1), // degree 53, divisible by x
	} {
		bad := good
		bad.Polynomial = pol
		b, err := chunkstore.MarshalWriterKey(&bad)
		if err != nil {
			t.Fatal(err)
		}
		_, err = chunkstore.ParseWriterKey(b)
		if err == nil || !strings.Contains(err.Error(), pol.String()) || !strings.Contains(err.Error(), "degree 9 to 53") {
			t.Errorf("writer key with polynomial %v (degree %d): %v; want an error naming it and the degrees allowed", pol, pol.Deg(), err)
		}
	}
	b, err := chunkstore.MarshalWriterKey(&good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chunkstore.ParseWriterKey(b); err != nil {
		t.Fatalf("the repository's own writer key: %v", err)
	}
}

// A writer key whose secrets were damaged is refused when it is read.
// Nothing else would notice: with a flipped chunk key, backups succeed
// and check with the writer key finds no problem, but no identity can
// restore them (every blob fails its ID check); with a flipped
// metadata key, the manifests it saves open for no one.
func TestWriterKeyChecksum(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	good, err := chunkstore.MarshalWriterKey(repos.Writer.Secrets())
	if err != nil {
		t.Fatal(err)
	}
	flipKey := func(m map[string]any, field string) {
		b, err := base64.StdEncoding.DecodeString(m[field].(string))
		if err != nil {
			t.Fatal(err)
		}
		b[7] ^= 0x10
		m[field] = base64.StdEncoding.EncodeToString(b)
	}
	edit := func(f func(map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m) // compact: another formatting
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	other, err := chunkstore.NormalizeRecipients([]string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"})
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(map[string]any){
		"chunk key":  func(m map[string]any) { flipKey(m, "chunk_key") },
		"meta key":   func(m map[string]any) { flipKey(m, "meta_key") },
		"recipients": func(m map[string]any) { m["recipients"] = []string{other[0]} },
		"generation": func(m map[string]any) { m["generation"] = 1 },
	} {
		if _, err := chunkstore.ParseWriterKey(edit(f)); err == nil || !strings.Contains(err.Error(), "does not match its checksum") {
			t.Errorf("writer key with a damaged %s: %v; want it refused as not matching its checksum", name, err)
		}
	}
	// Reformatted, it is the same key; without a checksum (written by an
	// earlier release), it is taken unchecked.
	for name, b := range map[string][]byte{
		"reformatted": edit(func(map[string]any) {}),
		"no checksum": edit(func(m map[string]any) { delete(m, "checksum") }),
		"as written":  good,
		"with a BOM":  append([]byte("\ufeff"), good...),
	} {
		if s, err := chunkstore.ParseWriterKey(b); err != nil || !reflect.DeepEqual(s, repos.Writer.Secrets()) {
			t.Errorf("%s writer key: %v", name, err)
		}
	}
	// Cut short: named damaged, with the fix, not json's "unexpected
	// end of JSON input".
	if _, err := chunkstore.ParseWriterKey(good[:len(good)/2]); err == nil || !strings.Contains(err.Error(), "damaged writer key") || !strings.Contains(err.Error(), "key writer-key") {
		t.Errorf("a writer key cut in half: %v", err)
	}
}

// An init whose config or key envelope could not be written leaves no
// key envelope behind: with one, the store looked like a repository that lost its
// config, and init refused it.
func TestInitConfigFailed(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewFaulty(mem.New())
	_, rcpt, _ := storetest.Identity(t)
	st.FailPuts(chunkstore.ConfigName, nil)
	if _, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{rcpt}}); !errors.Is(err, storetest.ErrInjected) {
		t.Fatalf("init with the config's put failing: %v", err)
	}
	st.Reset()
	// Nor one whose envelope's put failed after the store kept it.
	if _, err := chunkstore.Init(ctx, putStoredButFails{st}, chunkstore.InitOptions{Recipients: []string{rcpt}}); !errors.Is(err, storetest.ErrInjected) {
		t.Fatalf("init with the envelope's put failing: %v", err)
	}
	if _, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{rcpt}}); err != nil {
		t.Fatalf("init again, after one that could not write the config or the envelope: %v", err)
	}
	// A config the store kept though its put failed is a repository:
	// init returns its secrets, which open it.
	st2 := mem.New()
	sec, err := chunkstore.Init(ctx, configStoredButFails{st2}, chunkstore.InitOptions{Recipients: []string{rcpt}})
	if err != nil {
		t.Fatalf("init whose config's put failed after the store kept it: %v", err)
	}
	if _, err := chunkstore.Open(ctx, st2, chunkstore.Credentials{Writer: sec}, chunkstore.Options{}); err != nil {
		t.Fatal(err)
	}
}

// configStoredButFails stores the config and then reports failure.
type configStoredButFails struct{ chunkstore.Store }

func (s configStoredButFails) Put(ctx context.Context, name string, data []byte) error {
	if err := s.Store.Put(ctx, name, data); err != nil || name != chunkstore.ConfigName {
		return err
	}
	return storetest.ErrInjected
}

// A writer key whose metadata key is not the repository's (damaged; no
// checksum to tell, as in writer keys of earlier releases) is refused
// when it loads the index, whose intact files it cannot open: taking
// them for damaged, a backup saved a manifest no one could open and
// 'repair index' replaced every good index file. A damaged index file
// is still only skipped.
func TestWriterKeyWrongMetaKey(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewFaulty(mem.New())
	repos := storetest.InitRepos(t, st)
	for i := range 2 {
		w, err := repos.Writer.NewWriter(ctx, chunkstore.WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.SaveBlob(ctx, chunkstore.DataBlob, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	bad := *repos.Writer.Secrets()
	bad.MetaKey[3] ^= 1
	asBad, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: &bad}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := asBad.LoadIndex(ctx); !errors.Is(err, chunkstore.ErrWrongKey) || !strings.Contains(err.Error(), "opens none of the 2 index files") {
		t.Fatalf("index loaded with a wrong metadata key: %v, want ErrWrongKey", err)
	}
	// With the right key, one damaged file of two is skipped.
	ids, err := repos.Writer.ListMeta(ctx, chunkstore.KindIndex)
	if err != nil || len(ids) != 2 {
		t.Fatalf("index files: %v, %v", ids, err)
	}
	st.FlipGet(chunkstore.IndexPrefix+ids[0].String(), 100)
	good, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: repos.Writer.Secrets()}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := good.LoadIndex(ctx); err != nil || len(good.IndexProblems()) != 1 {
		t.Fatalf("index with one damaged file: %v, problems %v", err, good.IndexProblems())
	}
}
