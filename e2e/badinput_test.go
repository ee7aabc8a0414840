package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/internal/testnet"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestBadCredentials: every credential mistake fails with a message that
// says which credential is wrong and what to pass instead, and the
// repository keeps working with the right one.
func TestBadCredentials(t *testing.T) {
	work := t.TempDir()
	src := filepath.Join(work, "src")
	genDataset(t, src, datasetSpec{Seed: 1, Dirs: 2, SmallFiles: 20, SmallMax: 8 << 10, LargeFiles: 1, LargeSize: 1 << 20})
	repo := initCLI(t, filepath.Join(work, "repo"))
	sum, _ := repo.writer(t).backup(src)
	snap := sum.SnapshotID
	target := filepath.Join(work, "target")

	t.Run("wrong identity", func(t *testing.T) {
		other := initCLI(t, filepath.Join(t.TempDir(), "other"))
		c := repo.reader(t).with(func(c *cli) { c.identity = other.identity })
		for _, args := range [][]string{{"restore", snap, "--target", target}, {"check"}, {"ls", snap}} {
			wantFail(t, c.run(args...), "identity|key", "recipient|wrong|does not", repo.dir)
		}
		if _, err := os.Stat(target); err == nil {
			entries, _ := os.ReadDir(target)
			if len(entries) > 0 {
				t.Errorf("restore with a wrong identity wrote %d entries into the target", len(entries))
			}
		}
	})
	t.Run("missing credentials", func(t *testing.T) {
		c := newCLI(t, repo.url)
		r := c.run("backup", src)
		wantFail(t, r, "--key")
		if r.Code != 2 {
			t.Errorf("missing credentials are a usage error (exit 2), got %d", r.Code)
		}
		wantFail(t, c.run("restore", snap, "--target", target), "--identity")
		wantFail(t, c.run("check", "--read-data"), "--identity|--key")
		wantFail(t, c.run("ls", snap), "--identity")
	})
	t.Run("writer key cannot read", func(t *testing.T) {
		c := repo.writer(t)
		wantFail(t, c.run("restore", snap, "--target", target), "identity", "writer key|--key")
		wantFail(t, c.run("ls", snap), "identity", "writer key|--key")
		// ...but it lists snapshots, which is what agents need.
		if r := c.ok("snapshots"); !strings.Contains(r.out(), snap[:8]) {
			t.Errorf("snapshots with the writer key does not list %s: %s", snap[:8], r)
		}
	})
	t.Run("credentials swapped", func(t *testing.T) {
		c := newCLI(t, repo.url)
		wantFail(t, c.run("backup", src, "--key", repo.identity), "identity", "--identity")
		wantFail(t, c.run("ls", snap, "--identity", repo.key), "writer key", "--key")
	})
	t.Run("wrong passphrase", func(t *testing.T) {
		dir := t.TempDir()
		c := newCLI(t, filepath.Join(dir, "repo"))
		id, key := filepath.Join(dir, "id.age"), filepath.Join(dir, "w.key")
		c.env = []string{"LIFEBOAT_PASSPHRASE=correct horse battery staple"}
		c.ok("init", "--passphrase-protect", "--identity-out", id, "--key-out", key)
		if b, _ := os.ReadFile(id); bytes.Contains(b, []byte("AGE-SECRET-KEY-")) {
			t.Fatal("--passphrase-protect wrote the identity in the clear")
		}
		c.key = key
		s, _ := c.backup(src)
		c.key, c.identity = "", id
		c.ok("ls", s.SnapshotID) // the right passphrase opens it
		wrong := c.with(func(c *cli) { c.env = []string{"LIFEBOAT_PASSPHRASE=Tr0ub4dor&3"} })
		wantFail(t, wrong.run("restore", s.SnapshotID, "--target", filepath.Join(dir, "t")), "passphrase", id)
		// No passphrase and no terminal: say how to give one.
		none := c.with(func(c *cli) { c.env = nil })
		wantFail(t, none.run("ls", s.SnapshotID), "passphrase", "LIFEBOAT_PASSPHRASE")
	})
	t.Run("repository missing", func(t *testing.T) {
		missing := filepath.Join(work, "no-such-repo")
		c := repo.reader(t).with(func(c *cli) { c.repo = missing })
		wantFail(t, c.run("snapshots"), missing, "not exist|no such|missing|not found")
		wantFail(t, c.with(func(c *cli) { c.identity, c.key = "", repo.key }).run("backup", src), missing)
		if _, err := os.Stat(missing); err == nil {
			t.Errorf("backup created the missing repository directory %s instead of failing", missing)
		}
	})
	t.Run("not a repository", func(t *testing.T) {
		c := repo.reader(t).with(func(c *cli) { c.repo = src })
		wantFail(t, c.run("snapshots"), "not a lifeboat repository", src, "init|--repo")
		wantFail(t, c.run("restore", "latest", "--target", target), "not a lifeboat repository", src)
	})
	t.Run("relative repository path", func(t *testing.T) {
		c := repo.reader(t).with(func(c *cli) { c.repo = "relative/repo" })
		wantFail(t, c.run("snapshots"), "relative", "absolute")
	})
	// Nothing above damaged the repository.
	repo.reader(t).ok("check", "--read-data")
}

// TestBadS3 covers S3 endpoints that are missing, unreachable or failing.
func TestBadS3(t *testing.T) {
	repoURL := storetest.MinIORepoURL(t)
	loc, err := location.Parse(repoURL)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	src := filepath.Join(work, "src")
	genDataset(t, src, datasetSpec{Seed: 2, SmallFiles: 10, SmallMax: 4 << 10, LargeFiles: 1, LargeSize: 2 << 20})
	repo := initCLI(t, repoURL)
	sum, _ := repo.writer(t).backup(src)

	t.Run("bucket missing", func(t *testing.T) {
		url := "s3:http://" + loc.Endpoint + "/lifeboat-no-such-bucket-e2e/repo"
		c := repo.reader(t).with(func(c *cli) { c.repo = url })
		wantFail(t, c.run("snapshots"), "lifeboat-no-such-bucket-e2e", "bucket")
	})
	t.Run("init inside a repository", func(t *testing.T) {
		keys := t.TempDir()
		inner := repoURL + "/nested"
		r := newCLI(t, inner).run("init", "--identity-out", filepath.Join(keys, "id"), "--key-out", filepath.Join(keys, "key"))
		wantFail(t, r, "inside the lifeboat repository at "+repoURL)
		if r.Code != 2 {
			t.Errorf("exit %d, want 2 (usage)", r.Code)
		}
		st, err := location.Open(t.Context(), repoURL, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Stat(t.Context(), "nested/config"); !errors.Is(err, chunkstore.ErrNotFound) {
			t.Errorf("the refused init left nested/config: %v", err)
		}
	})
	t.Run("init above a repository", func(t *testing.T) {
		keys := t.TempDir()
		bucket := strings.TrimSuffix(repoURL, "/"+loc.Prefix)
		r := newCLI(t, bucket).run("init", "--identity-out", filepath.Join(keys, "id"), "--key-out", filepath.Join(keys, "key"))
		wantFail(t, r, "holds the lifeboat repository at "+repoURL, "outside it")
		if r.Code != 2 {
			t.Errorf("exit %d, want 2 (usage)", r.Code)
		}
		st, err := location.Open(t.Context(), bucket, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Stat(t.Context(), "config"); !errors.Is(err, chunkstore.ErrNotFound) {
			t.Errorf("the refused init left a config at the bucket's root: %v", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		addr := testnet.FreeAddr(t) // nothing listens there now
		c := repo.reader(t).with(func(c *cli) { c.repo = "s3:http://" + addr + "/" + loc.Bucket + "/repo"; c.timeout = time.Minute })
		r := c.run("snapshots")
		wantFail(t, r, addr, "unreachable|refused|connect")
		t.Logf("gave up on an unreachable endpoint after %v", r.Dur.Round(time.Millisecond))
		if r.Dur > 30*time.Second {
			t.Errorf("took %v to give up on an unreachable endpoint", r.Dur)
		}
	})
	t.Run("503 then recovers", func(t *testing.T) {
		px := newS3Proxy(t, loc.Endpoint)
		var n atomic.Int64
		px.setHook(func(r *http.Request) proxyAction {
			if n.Add(1) <= 3 {
				return http.StatusServiceUnavailable
			}
			return forward
		})
		url := "s3:http://" + px.addr() + "/" + loc.Bucket + "/" + loc.Prefix
		w := repo.writer(t).with(func(c *cli) { c.repo = url })
		s, _ := w.backup(src)
		if s.BytesAdded > 1<<20 {
			t.Errorf("second backup of unchanged data added %s", mib(s.BytesAdded))
		}
		n.Store(0) // three more failures for the reader
		target := filepath.Join(t.TempDir(), "target")
		repo.reader(t).with(func(c *cli) { c.repo = url }).ok("restore", s.SnapshotID, "--target", target)
		compareTrees(t, src, restoredRoot(target, src), nil)
	})
	t.Run("always 500", func(t *testing.T) {
		px := newS3Proxy(t, loc.Endpoint)
		px.setHook(func(*http.Request) proxyAction { return http.StatusInternalServerError })
		url := "s3:http://" + px.addr() + "/" + loc.Bucket + "/" + loc.Prefix
		c := repo.reader(t).with(func(c *cli) { c.repo = url; c.timeout = time.Minute })
		target := filepath.Join(t.TempDir(), "target")
		r := c.run("restore", sum.SnapshotID, "--target", target)
		wantFail(t, r, px.addr(), "500|internal")
		t.Logf("gave up on a failing endpoint after %v", r.Dur.Round(time.Millisecond))
		if r.Dur > 30*time.Second {
			t.Errorf("took %v to give up", r.Dur)
		}
	})
}

// damageFixture is a repository with two snapshots whose objects the
// subtests damage one at a time (each on its own copy).
//
// The source is flat (no subdirectories): the second backup adds one
// file, so every tree of snapshot 2 is new and lands in the second index
// file, while the unchanged files' data stays in packs listed only by the
// first index file.
type damageFixture struct {
	src          string
	repo         testRepo
	snap1, snap2 string
	index1       string // index object written by backup 1
	late         string // the file only snapshot 2 has
}

func newDamageFixture(t *testing.T) *damageFixture {
	t.Helper()
	work := t.TempDir()
	f := &damageFixture{src: filepath.Join(work, "src"), late: "late.bin"}
	ds := genDataset(t, f.src, datasetSpec{Seed: 3, SmallFiles: 30, SmallMax: 200 << 10, LargeFiles: 4, LargeSize: 11 << 20})
	f.repo = initAPI(t, filepath.Join(work, "repo"), 4<<20, "")
	w := f.repo.writer(t)
	s1, _ := w.backup(f.src)
	f.snap1 = s1.SnapshotID
	idx := f.repo.objects(t, chunkstore.IndexPrefix)
	if len(idx) != 1 {
		t.Fatalf("first backup wrote %d index files, want 1", len(idx))
	}
	for name := range idx {
		f.index1 = name
	}
	late := make([]byte, 3<<20)
	ds.fill(late)
	ds.write(t, f.late, late)
	s2, _ := w.backup(f.src)
	f.snap2 = s2.SnapshotID
	return f
}

// clone copies the repository (hard links: damage replaces files, never
// writes into them) and returns the copy.
func (f *damageFixture) clone(t *testing.T) testRepo {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "repo")
	err := filepath.WalkDir(f.repo.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(f.repo.dir, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		return os.Link(p, filepath.Join(dst, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
	c := f.repo
	c.url, c.dir = dst, dst
	return c
}

// damage replaces object name of repo with fn(its bytes).
func damage(t *testing.T, repo testRepo, name string, fn func([]byte) []byte) {
	t.Helper()
	p := filepath.Join(repo.dir, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b = fn(bytes.Clone(b))
	if err := os.Remove(p); err != nil { // break the hard link
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// filesUsing returns the files of snapshot snap (relative to src) with
// content in blobs for which hit reports true.
func (f *damageFixture) filesUsing(t *testing.T, repo testRepo, snap string, hit func(chunkstore.Location) bool) map[string]bool {
	t.Helper()
	ctx := context.Background()
	rd := repo.open(t)
	id, err := chunkstore.ParseID(snap)
	if err != nil {
		t.Fatal(err)
	}
	s, err := snapshot.Load(ctx, rd, id)
	if err != nil {
		t.Fatal(err)
	}
	prefix := strings.TrimPrefix(f.src, "/") + "/"
	out := map[string]bool{}
	err = snapshot.Walk(ctx, rd, s.Tree, func(p string, n *snapshot.Node) error {
		for _, c := range n.Content {
			loc, ok := rd.Index().Lookup(c)
			if ok && hit(loc) {
				out[strings.TrimPrefix(p, prefix)] = true
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// restoreDamaged restores snap from a damaged repository and asserts
// exit 1, every affected file named and absent, everything else identical.
func (f *damageFixture) restoreDamaged(t *testing.T, c *cli, snap string, affected map[string]bool) {
	t.Helper()
	if len(affected) == 0 {
		t.Fatal("test bug: the damage affects no file")
	}
	target := filepath.Join(t.TempDir(), "target")
	r := c.run("restore", snap, "--target", target)
	if r.Code != 1 {
		t.Fatalf("restore of a damaged snapshot: want exit 1: %s", r)
	}
	for p := range affected {
		wantOutput(t, r, path.Base(p))
	}
	compareTrees(t, f.src, restoredRoot(target, f.src), affected)
}

// packOf returns the pack holding the first data blob of file rel in
// snapshot snap, and that blob.
func (f *damageFixture) packOf(t *testing.T, repo testRepo, snap, rel string) (chunkstore.ID, chunkstore.Blob) {
	t.Helper()
	var pack chunkstore.ID
	var blob chunkstore.Blob
	found := false
	rd := repo.open(t)
	id, _ := chunkstore.ParseID(snap)
	s, err := snapshot.Load(context.Background(), rd, id)
	if err != nil {
		t.Fatal(err)
	}
	want := path.Join(strings.TrimPrefix(f.src, "/"), rel)
	err = snapshot.Walk(context.Background(), rd, s.Tree, func(p string, n *snapshot.Node) error {
		if p == want && len(n.Content) > 0 {
			loc, _ := rd.Index().Lookup(n.Content[len(n.Content)/2])
			pack, blob, found = loc.Pack.ID, loc.Blob, true
		}
		return nil
	})
	if err != nil || !found {
		t.Fatalf("no data blob for %s in snapshot %s: %v", rel, snap, err)
	}
	return pack, blob
}

// TestDamagedRepository: truncated and bit-flipped objects are detected
// by check --read-data (exit 1, naming the object) and by restore (naming
// the affected files, restoring the rest byte-identically, exit 1).
func TestDamagedRepository(t *testing.T) {
	f := newDamageFixture(t)

	t.Run("truncated pack", func(t *testing.T) {
		repo := f.clone(t)
		pack, _ := f.packOf(t, repo, f.snap2, "large-01.bin")
		name := chunkstore.PackName(pack)
		size := repo.objects(t, name)[name]
		affected := f.filesUsing(t, repo, f.snap2, func(loc chunkstore.Location) bool {
			return loc.Pack.ID == pack && int64(loc.Blob.Offset+loc.Blob.Length) > size/2
		})
		damage(t, repo, name, func(b []byte) []byte { return b[:len(b)/2] })
		wantCheckProblem(t, repo, pack.String()[:8])
		f.restoreDamaged(t, repo.reader(t), f.snap2, affected)

		// Recovery without the source: salvage the first half, cut the
		// files that needed the rest out of the snapshots, and the
		// repository checks clean and prunes again.
		rd := repo.reader(t)
		wantOutput(t, rd.ok("repair", "packs", name), "salvaged", "lost")
		r := rd.ok("repair", "snapshots", "--forget")
		for rel := range affected {
			wantOutput(t, r, rel)
		}
		rd.ok("check", "--read-data")
		rd.ok("prune")
		if _, ok := repo.objects(t, name)[name]; ok {
			t.Errorf("prune left the damaged pack %s", name)
		}
		var snaps []struct {
			ID       string `json:"id"`
			Original string `json:"original"`
		}
		if err := json.Unmarshal([]byte(rd.ok("snapshots", "--json").Stdout), &snaps); err != nil {
			t.Fatal(err)
		}
		var copyOf2 string
		for _, s := range snaps {
			if s.Original == f.snap2 {
				copyOf2 = s.ID
			}
		}
		if copyOf2 == "" {
			t.Fatalf("no repaired copy of %s among %+v", f.snap2[:8], snaps)
		}
		target := filepath.Join(t.TempDir(), "target")
		rd.ok("restore", copyOf2, "--target", target)
		compareTrees(t, f.src, restoredRoot(target, f.src), affected)
		for rel := range affected {
			if _, err := os.Lstat(filepath.Join(restoredRoot(target, f.src), rel)); !os.IsNotExist(err) {
				t.Errorf("%s, whose data is lost, is in the repaired snapshot (%v)", rel, err)
			}
		}
	})
	t.Run("bit-flipped pack", func(t *testing.T) {
		repo := f.clone(t)
		pack, blob := f.packOf(t, repo, f.snap2, "large-02.bin")
		affected := f.filesUsing(t, repo, f.snap2, func(loc chunkstore.Location) bool { return loc.Blob.ID == blob.ID })
		damage(t, repo, chunkstore.PackName(pack), func(b []byte) []byte {
			b[blob.Offset+blob.Length/2] ^= 0x10
			return b
		})
		wantCheckProblem(t, repo, pack.String()[:8])
		f.restoreDamaged(t, repo.reader(t), f.snap2, affected)

		// Recovery with the source still there: salvage, back up again
		// (the one lost chunk is stored anew), and the damaged snapshot
		// is whole again.
		rd := repo.reader(t)
		r := rd.ok("repair", "packs", chunkstore.PackName(pack))
		wantOutput(t, r, ", 1 lost", blob.ID.String())
		repo.writer(t).backup(f.src)
		rd.ok("check", "--read-data")
		rd.ok("prune")
		target := filepath.Join(t.TempDir(), "target")
		rd.ok("restore", f.snap2, "--target", target)
		compareTrees(t, f.src, restoredRoot(target, f.src), nil)
	})
	t.Run("truncated index", func(t *testing.T) {
		repo := f.clone(t)
		indexed1 := map[chunkstore.ID]bool{}
		rd := repo.open(t)
		for _, p := range rd.Index().Packs() {
			indexed1[p.ID] = true
		}
		// Packs listed by the second index file only.
		idx2 := map[chunkstore.ID]bool{}
		for name := range repo.objects(t, chunkstore.IndexPrefix) {
			if name == f.index1 {
				continue
			}
			id, _ := chunkstore.ParseID(strings.TrimPrefix(name, chunkstore.IndexPrefix))
			plain, err := rd.LoadMeta(context.Background(), chunkstore.KindIndex, id)
			if err != nil {
				t.Fatal(err)
			}
			packs, err := chunkstore.DecodeIndex(plain)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range packs {
				idx2[p.ID] = true
			}
		}
		affected := f.filesUsing(t, repo, f.snap2, func(loc chunkstore.Location) bool { return !idx2[loc.Pack.ID] })
		if affected[f.late] || len(affected) < 10 {
			t.Fatalf("fixture: the truncated index should affect every file but %s, affects %v", f.late, affected)
		}
		// A reader with a warm metadata cache (the index was loaded
		// before it was damaged) must still see the damage on storage.
		warm := repo.reader(t)
		warm.ok("ls", f.snap2)
		damage(t, repo, f.index1, func(b []byte) []byte { return b[:len(b)*2/3] })
		r := warm.run("check", "--read-data")
		if r.Code != 1 {
			t.Errorf("check --read-data with a warm cache: want exit 1 for the truncated %s: %s", f.index1, r)
		}
		wantOutput(t, r, strings.TrimPrefix(f.index1, chunkstore.IndexPrefix)[:8])
		wantCheckProblem(t, repo, strings.TrimPrefix(f.index1, chunkstore.IndexPrefix)[:8])
		// The packs themselves are intact: restore finds them although
		// no readable index lists them, verifies them and restores
		// every file, the affected ones included.
		target := filepath.Join(t.TempDir(), "target")
		repo.reader(t).ok("restore", f.snap2, "--target", target)
		compareTrees(t, f.src, restoredRoot(target, f.src), nil)

		// Prune refuses while the index file is damaged (with a cold
		// cache: a warm one still holds the good copy, which prune can
		// trust); repair index with the writer key replaces it, and
		// prune runs.
		wantFail(t, repo.reader(t).run("prune"), "repair index")
		wantOutput(t, repo.writer(t).ok("repair", "index"), "removed", "verified and indexed")
		cold := repo.reader(t)
		cold.ok("check", "--read-data")
		cold.ok("prune")
	})
	t.Run("deleted index and damaged pack", func(t *testing.T) {
		// With the index gone AND a pack damaged, the files of the
		// damaged pack are lost; everything else still comes back.
		repo := f.clone(t)
		pack, _ := f.packOf(t, repo, f.snap2, f.late)
		affected := f.filesUsing(t, repo, f.snap2, func(loc chunkstore.Location) bool { return loc.Pack.ID == pack })
		for name := range repo.objects(t, chunkstore.IndexPrefix) {
			damage(t, repo, name, func(b []byte) []byte { return b[:len(b)/2] })
		}
		damage(t, repo, chunkstore.PackName(pack), func(b []byte) []byte { return b[:len(b)-100] })
		f.restoreDamaged(t, repo.reader(t), f.snap2, affected)
	})
	t.Run("bit-flipped manifest", func(t *testing.T) {
		repo := f.clone(t)
		damage(t, repo, chunkstore.SnapshotsPrefix+f.snap1, func(b []byte) []byte {
			b[len(b)/2] ^= 0x01
			return b
		})
		wantCheckProblem(t, repo, f.snap1[:8])
		target := filepath.Join(t.TempDir(), "target")
		r := repo.reader(t).run("restore", f.snap1, "--target", target)
		wantFail(t, r, f.snap1[:8], "corrupt|damaged|modified|does not match|check")
		// The other snapshot is intact and restores completely.
		repo.reader(t).ok("restore", f.snap2, "--target", target)
		compareTrees(t, f.src, restoredRoot(target, f.src), nil)
	})
	t.Run("restore target is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, []byte("keep me"), 0o644)
		r := f.repo.reader(t).run("restore", f.snap2, "--target", file)
		wantFail(t, r, file, "not a directory")
		if b, _ := os.ReadFile(file); string(b) != "keep me" {
			t.Errorf("the file given as target was modified: %q", b)
		}
	})
	t.Run("restore target read-only", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ro")
		fixture.MountTmpfs(t, dir, "ro,size=1m")
		r := f.repo.reader(t).run("restore", f.snap2, "--target", dir)
		wantFail(t, r, dir, "read-only|not writable")
	})
	t.Run("restore target full", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "small")
		fixture.MountTmpfs(t, dir, "size=8m")
		r := f.repo.reader(t).run("restore", f.snap2, "--target", dir)
		wantFail(t, r, "full|no space", dir+"|"+strings.TrimPrefix(f.src, "/"))
	})
	t.Run("restore target out of inodes", func(t *testing.T) {
		// Room for bytes but for only a few directories: creating them
		// (which overlaps the walk of the snapshot) fails, and the
		// error names a directory and the way out.
		dir := filepath.Join(t.TempDir(), "few")
		fixture.MountTmpfs(t, dir, "size=64m,nr_inodes=3")
		r := f.repo.reader(t).run("restore", f.snap2, "--target", dir)
		wantFail(t, r, "restore target is full while writing", "free space or restore elsewhere", "create directory")
	})
	// The fixture itself was never damaged.
	f.repo.reader(t).ok("check", "--read-data")
}

// wantCheckProblem asserts check --read-data exits 1 naming obj.
func wantCheckProblem(t *testing.T, repo testRepo, obj string) {
	t.Helper()
	r := repo.reader(t).run("check", "--read-data")
	if r.Code != 1 {
		t.Fatalf("check --read-data on a damaged repository: want exit 1: %s", r)
	}
	wantOutput(t, r, obj)
}
