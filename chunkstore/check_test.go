package chunkstore_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
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
	// --read-data-subset n/t: the t checks read every pack once (but
	// the cut one, whose size gives it away unread), and only the check
	// of the flipped pack's group finds it.
	const groups = 3
	read := 0
	for n := 1; n <= groups; n++ {
		rep, err := r.Check(ctx, chunkstore.CheckOptions{ReadData: true, ReadDataGroup: n, ReadDataGroups: groups})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, p := range packs {
			if p != cut && chunkstore.PackGroup(p.ID, groups) == n {
				want++
			}
		}
		if rep.PacksRead != want {
			t.Errorf("group %d/%d: read %d packs, want %d", n, groups, rep.PacksRead, want)
		}
		read += rep.PacksRead
		found := false
		for _, p := range rep.Problems {
			found = found || p.Object == chunkstore.PackName(flipped.ID)
		}
		if found != (chunkstore.PackGroup(flipped.ID, groups) == n) {
			t.Errorf("group %d/%d: flipped pack (group %d) found %v", n, groups, chunkstore.PackGroup(flipped.ID, groups), found)
		}
	}
	if read != len(packs)-1 {
		t.Errorf("the %d groups read %d packs, want every one but the cut: %d", groups, read, len(packs)-1)
	}
}

// TestCheckFindsDamagedEnvelope: a key envelope of the current
// generation that is damaged, or gone, is a problem of any check, a
// writer key's too (it never opens one, and nothing else it does would
// notice), and stops writers: what they wrote could never be restored.
// Put back, the check finds nothing and writers write again.
func TestCheckFindsDamagedEnvelope(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	st, sec := repos.Store, repos.Writer.Secrets()
	envs := envelopeNames(t, st)
	if len(envs) != 1 {
		t.Fatalf("%d envelopes", len(envs))
	}
	for name, orig := range envs {
		for _, damage := range []string{"flipped", "missing", "none"} {
			switch damage {
			case "flipped":
				b := bytes.Clone(orig)
				b[len(b)/2] ^= 1
				if err := st.Put(ctx, name, b); err != nil {
					t.Fatal(err)
				}
			case "missing":
				if err := st.Delete(ctx, name); err != nil {
					t.Fatal(err)
				}
			case "none":
				if err := st.Put(ctx, name, orig); err != nil {
					t.Fatal(err)
				}
			}
			// Opened afresh: a writer's recent check spares it the next.
			w, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: sec}, chunkstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.LoadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err := w.Check(ctx, chunkstore.CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, werr := w.NewWriter(ctx, chunkstore.WriterOptions{})
			if damage == "none" {
				if len(rep.Problems) != 0 || werr != nil {
					t.Errorf("intact: problems %v, writer %v", rep.Problems, werr)
				}
				continue
			}
			if len(rep.Problems) != 1 || rep.Problems[0].Object != chunkstore.KeysPrefix || !errors.Is(rep.Problems[0].Err, chunkstore.ErrCorrupt) || !strings.Contains(rep.Problems[0].Err.Error(), "no identity can open the repository") {
				t.Errorf("%s: problems %v, want one of keys/", damage, rep.Problems)
			}
			if !errors.Is(werr, chunkstore.ErrCorrupt) {
				t.Errorf("%s: a writer started: %v", damage, werr)
			}
		}
	}
}

// TestCheckComparesWrappedKeys: an index whose copies of packs' wrapped
// data keys differ from the packs' own (written by a faulty writer,
// which holds the metadata key) is found by a writer key's check
// --read-data, not only by an identity's, as restores unwrap the copy.
func TestCheckComparesWrappedKeys(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	for i := range 2 {
		w, err := repos.Writer.NewWriter(ctx, chunkstore.WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.SaveBlob(ctx, chunkstore.DataBlob, bytes.Repeat([]byte{byte(i)}, 1000)); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(ctx); err != nil { // a pack each
			t.Fatal(err)
		}
	}
	if err := repos.Writer.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	var packs []chunkstore.PackEntry
	for _, p := range repos.Writer.Index().Packs() {
		packs = append(packs, *p)
	}
	if len(packs) != 2 {
		t.Fatalf("%d packs", len(packs))
	}
	check := func(want int) {
		t.Helper()
		w, err := chunkstore.Open(ctx, repos.Store, chunkstore.Credentials{Writer: repos.Writer.Secrets()}, chunkstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		rep, err := w.Check(ctx, chunkstore.CheckOptions{ReadData: true})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range rep.Problems {
			if errors.Is(p.Err, chunkstore.ErrCorrupt) && strings.Contains(p.Err.Error(), "wrapped data key") {
				n++
			}
		}
		if n != want || len(rep.Problems) != want {
			t.Errorf("problems %v, want %d of wrapped keys", rep.Problems, want)
		}
	}
	check(0)
	packs[0].WrappedKey, packs[1].WrappedKey = packs[1].WrappedKey, packs[0].WrappedKey
	old, err := repos.Writer.ListMeta(ctx, chunkstore.KindIndex)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repos.Writer.SaveMeta(ctx, chunkstore.KindIndex, chunkstore.EncodeIndex(packs)); err != nil {
		t.Fatal(err)
	}
	for _, id := range old {
		if err := repos.Store.Delete(ctx, chunkstore.IndexPrefix+id.String()); err != nil {
			t.Fatal(err)
		}
	}
	check(2)
}

// TestEnvelopeVanishingWhileChecked: an envelope removed between the
// listing and the read (a change of recipients under way) makes the
// check list keys/ again rather than declare the repository unopenable;
// gone on the second look too, it is that.
func TestEnvelopeVanishingWhileChecked(t *testing.T) {
	ctx := context.Background()
	f := storetest.NewFaulty(mem.New())
	repos := storetest.InitRepos(t, f)
	w, err := chunkstore.Open(ctx, f, chunkstore.Credentials{Writer: repos.Writer.Secrets()}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.FailNext(storetest.OpGet, 1, chunkstore.ErrNotFound)
	if err := w.CheckEnvelopes(ctx); err != nil {
		t.Errorf("one vanished read: %v", err)
	}
	f.FailNext(storetest.OpGet, 2, chunkstore.ErrNotFound)
	if err := w.CheckEnvelopes(ctx); !errors.Is(err, chunkstore.ErrCorrupt) || !strings.Contains(err.Error(), "none is left") {
		t.Errorf("gone on both looks: %v", err)
	}
}

// TestKeyStatusListsOnce: what 'key list' shows (the generation, the
// envelopes, those that do not verify) comes from one listing of keys/,
// each envelope read at most once, with a writer key or an identity, and
// the two planted envelopes of a newer generation are named and do not
// count as the repository's generation.
func TestKeyStatusListsOnce(t *testing.T) {
	ctx := context.Background()
	f := storetest.NewFaulty(mem.New())
	repos := storetest.InitRepos(t, f)
	ids, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, planter, _ := storetest.Identity(t)
	for _, own := range []bool{false, true} {
		plantEnvelope(t, f, repos.Writer, planter, own)
	}
	reader, err := openAs(t, f, chunkstore.Credentials{Identities: ids})
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*chunkstore.Repository{"writer key": repos.Writer, "identity": reader} {
		f.Reset()
		gen, envs, bad, err := r.KeyStatus(ctx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if gets, lists := f.Calls(storetest.OpGet), f.Calls(storetest.OpList); lists != 1 || gets > 3 {
			t.Errorf("%s: %d listings and %d reads; want keys/ listed once and each of the 3 envelopes read at most once", name, lists, gets)
		}
		if gen != 0 || len(envs) != 3 || len(bad) != 2 {
			t.Errorf("%s: generation %d, %d envelopes, %d unverified; want 0, 3 and the 2 planted", name, gen, len(envs), len(bad))
		}
	}
}

// TestCheckReadsEnvelopesOnce: check lists keys/ once and reads each key
// envelope once, whether they verify or not, and still names the planted
// ones (an unsigned envelope, and one signed with the planter's own key,
// of a generation newer than the repository's) and, once the genuine
// envelope is damaged too, that no identity can open the repository,
// without naming that envelope again.
func TestCheckReadsEnvelopesOnce(t *testing.T) {
	ctx := context.Background()
	f := storetest.NewFaulty(mem.New())
	repos := storetest.InitRepos(t, f)
	ids, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, planter, _ := storetest.Identity(t)
	for _, own := range []bool{false, true} {
		plantEnvelope(t, f, repos.Writer, planter, own)
	}
	genuine := ""
	for name := range envelopeNames(t, f) {
		if !strings.HasSuffix(name, ".g5") {
			genuine = name
		}
	}
	r, err := openAs(t, f, chunkstore.Credentials{Identities: ids})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for _, damaged := range []bool{false, true} {
		f.Reset()
		if damaged {
			f.FlipGet(genuine, 100)
		}
		rep, err := r.Check(ctx, chunkstore.CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Without ReadData, check reads nothing but the envelopes; it
		// lists keys/, data/, and index/ and snapshots/ (for objects
		// lifeboat does not name so).
		if gets, lists := f.Calls(storetest.OpGet), f.Calls(storetest.OpList); gets != 3 || lists != 4 {
			t.Errorf("damaged %v: check read %d objects and made %d listings; want each of the 3 envelopes read once, and keys/, data/, index/ and snapshots/ listed once", damaged, gets, lists)
		}
		var named []string
		for _, p := range rep.Problems {
			if errors.Is(p.Err, chunkstore.ErrCorrupt) {
				named = append(named, p.Object)
			}
		}
		want := 2
		if damaged {
			want = 3
			if !slices.Contains(named, chunkstore.KeysPrefix) || slices.Contains(named, genuine) {
				t.Errorf("damaged: problems %v; want keys/ named as a whole, not %s", rep.Problems, genuine)
			}
		}
		if len(named) != want || len(rep.Problems) != want {
			t.Errorf("damaged %v: problems %v; want the two planted envelopes named", damaged, rep.Problems)
		}
	}
}

// TestCheckReportsLeftoverEnvelope: a change of recipients interrupted
// between writing the new envelope and removing the older ones (a kill,
// no delete permission) leaves an envelope that identities removed by
// the change still open. check names it with 'lifeboat key cleanup',
// for a writer key and an identity alike, and is clean once it is gone.
func TestCheckReportsLeftoverEnvelope(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	st := repos.Store
	gen0 := envelopeNames(t, st)
	aIDs, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	aRcpt := repos.Writer.Secrets().Recipients[0]
	_, bRcpt, _ := storetest.Identity(t)
	asA, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Identities: aIDs}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := asA.Rekey(ctx, []string{aRcpt, bRcpt})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range gen0 { // the kill before the cleanup
		if err := st.Put(ctx, name, b); err != nil {
			t.Fatal(err)
		}
	}
	check := func(creds chunkstore.Credentials) []chunkstore.Problem {
		t.Helper()
		r, err := chunkstore.Open(ctx, st, creds, chunkstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		rep, err := r.Check(ctx, chunkstore.CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return rep.Problems
	}
	for what, creds := range map[string]chunkstore.Credentials{"writer key": {Writer: sec1}, "identity": {Identities: aIDs}} {
		probs := check(creds)
		found := false
		for name := range gen0 {
			for _, p := range probs {
				if p.Object == name && strings.Contains(p.Err.Error(), "lifeboat key cleanup") {
					found = true
				}
			}
		}
		if len(probs) != 1 || !found {
			t.Errorf("%s: problems %v, want the generation-0 envelope named, with 'lifeboat key cleanup'", what, probs)
		}
	}
	asA, err = chunkstore.Open(ctx, st, chunkstore.Credentials{Identities: aIDs}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := asA.RemoveOldEnvelopes(ctx); err != nil || n != 1 { // key cleanup
		t.Fatalf("RemoveOldEnvelopes: %d, %v", n, err)
	}
	if probs := check(chunkstore.Credentials{Writer: sec1}); len(probs) != 0 {
		t.Errorf("after key cleanup: problems %v", probs)
	}
}

// TestConfigOlderVersionIsDamage: a config whose format version is below
// the one this lifeboat writes (one bit flipped turns "version": 1 into
// 0) is damage, not a newer format: the error says to put config back,
// not to upgrade lifeboat. A newer version still says to upgrade.
func TestConfigOlderVersionIsDamage(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	st := repos.Store
	orig, err := st.Get(ctx, chunkstore.ConfigName, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		version     string
		corrupt     bool
		wantMessage string
	}{
		{"0", true, "put config back"},
		{"-1", true, "put config back"},
		{"2", false, "upgrade lifeboat"},
	} {
		b := bytes.Replace(orig, []byte(`"version": 1`), []byte(`"version": `+tc.version), 1)
		if bytes.Equal(b, orig) {
			t.Fatal("config has no \"version\": 1")
		}
		if err := st.Put(ctx, chunkstore.ConfigName, b); err != nil {
			t.Fatal(err)
		}
		_, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: repos.Writer.Secrets()}, chunkstore.Options{})
		if err == nil || errors.Is(err, chunkstore.ErrCorrupt) != tc.corrupt || !strings.Contains(err.Error(), tc.wantMessage) {
			t.Errorf("version %s: %v; want corrupt=%v, saying %q", tc.version, err, tc.corrupt, tc.wantMessage)
		}
		if tc.corrupt && strings.Contains(err.Error(), "upgrade") {
			t.Errorf("version %s: %v; damage is not a reason to upgrade", tc.version, err)
		}
	}
}

// TestDamagedEnvelopeOpenSaysWhatToDo: an identity whose only envelope
// is damaged is told which object, and to put keys/ back, not merely
// that some hash does not match.
func TestDamagedEnvelopeOpenSaysWhatToDo(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	st := repos.Store
	ids, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range envelopeNames(t, st) {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 1
		if err := st.Put(ctx, name, b); err != nil {
			t.Fatal(err)
		}
		_, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
		if !errors.Is(err, chunkstore.ErrCorrupt) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "put back keys/") {
			t.Errorf("open with a damaged envelope: %v; want ErrCorrupt naming %s and saying to put back keys/", err, name)
		}
	}
}

// TestConfigTamperedSaysWhatToDo: a config that still parses but differs
// from the one the key records (a field edited or a bit flipped in a
// number) is refused with the way back: put config back from a copy.
func TestConfigTamperedSaysWhatToDo(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	st := repos.Store
	orig, err := st.Get(ctx, chunkstore.ConfigName, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Replace(orig, []byte(`"compression": "zstd"`), []byte(`"compression":  "zstd"`), 1)
	if bytes.Equal(b, orig) {
		t.Fatal("config has no compression field")
	}
	if err := st.Put(ctx, chunkstore.ConfigName, b); err != nil {
		t.Fatal(err)
	}
	ids, err := chunkstore.ParseIdentityFile(repos.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	for what, creds := range map[string]chunkstore.Credentials{"writer key": {Writer: repos.Writer.Secrets()}, "identity": {Identities: ids}} {
		_, err := chunkstore.Open(ctx, st, creds, chunkstore.Options{})
		if !errors.Is(err, chunkstore.ErrCorrupt) || !strings.Contains(err.Error(), "put config back") {
			t.Errorf("%s: %v; want ErrCorrupt saying to put config back", what, err)
		}
	}
}

// TestCheckOversizedEnvelope: an object named like a key envelope but
// larger than any lifeboat reads as one is ignored by every command, and
// check names it (before, nothing did, and an identity was told of no
// key envelopes at all when it was the only one).
func TestCheckOversizedEnvelope(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	big := make([]byte, 1<<20+1)
	name := chunkstore.KeysPrefix + chunkstore.Hash(big).String() + ".g7"
	if err := repos.Store.Put(ctx, name, big); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*chunkstore.Repository{repos.Reader, repos.Writer} {
		rep, err := r.Check(ctx, chunkstore.CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Problems) != 1 || rep.Problems[0].Object != name || !strings.Contains(rep.Problems[0].Err.Error(), "opens for no one") {
			t.Errorf("problems %v, want one naming %s", rep.Problems, name)
		}
	}
}
