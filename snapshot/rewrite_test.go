package snapshot_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestRewriteSnapshots removes a private key (by name, anywhere) and a
// credentials directory (by absolute path) from two snapshots: a dry run
// lists them and writes nothing; the rewrite saves copies without them
// that restore exactly the rest; a second run finds its copies; with
// forget and a prune, the key's data leaves the repository.
func TestRewriteSnapshots(t *testing.T) {
	onEachBackend(t, func(t *testing.T, repos storetest.Repos, src string) {
		ctx := context.Background()
		key := append([]byte("-----BEGIN PRIVATE KEY-----\n"), storetest.Data(31, 4000)...)
		keep := fixture.Tree{
			"app.conf":     {Content: []byte("port = 8080\n"), Mode: 0o644},
			"sub":          {Dir: true, Mode: 0o755},
			"sub/data.bin": {Content: storetest.Data(32, 700<<10), Mode: 0o644},
		}
		tree := keep.Clone()
		tree["server.pem"] = fixture.Entry{Content: key, Mode: 0o600}
		tree["sub/server.pem"] = fixture.Entry{Content: key, Mode: 0o600}
		tree[".aws"] = fixture.Entry{Dir: true, Mode: 0o700}
		tree[".aws/credentials"] = fixture.Entry{Content: []byte("[default]\naws_secret_access_key = x\n"), Mode: 0o600}
		tree[".aws/cli"] = fixture.Entry{Dir: true, Mode: 0o700}
		tree[".aws/cli/cache.json"] = fixture.Entry{Content: []byte(`{"token": "t"}`), Mode: 0o600}
		fixture.Create(t, src, tree)
		first := backupDir(t, repos.Writer, src)
		writeFile(t, filepath.Join(src, "app.conf"), []byte("port = 9090\n"))
		keep["app.conf"] = fixture.Entry{Content: []byte("port = 9090\n"), Mode: 0o644}
		second := backupDir(t, repos.Writer, src)
		if !reopenLoaded(t, repos, repos.Store).Index().Has(repos.Reader.BlobID(key)) {
			t.Fatal("the key's blob is not in the index before the rewrite")
		}

		exclude := []string{"*.pem", ".aws"} // by name, anywhere
		wantRemoved := []string{src + "/.aws/", src + "/server.pem", src + "/sub/server.pem"}
		before := countObjects(t, repos.Store, "")
		dry, err := snapshot.RewriteSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RewriteOptions{Exclude: exclude, DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if dry.Snapshots != 2 || len(dry.Rewritten) != 2 || !slices.Equal(dry.Rewritten[0].Removed, wantRemoved) || !dry.Rewritten[0].Rewritten.IsNull() {
			t.Fatalf("dry run: %+v, want both snapshots with %v removed", dry, wantRemoved)
		}
		if after := countObjects(t, repos.Store, ""); after != before {
			t.Fatalf("the dry run wrote %d objects", after-before)
		}

		res, err := snapshot.RewriteSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RewriteOptions{Exclude: exclude})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rewritten) != 2 || res.Rewritten[0].Original != first.ID || res.Rewritten[1].Original != second.ID {
			t.Fatalf("rewrite: %+v", res)
		}
		r := reopenLoaded(t, repos, repos.Store)
		for i, d := range res.Rewritten {
			s, err := snapshot.Load(ctx, r, d.Rewritten)
			if err != nil {
				t.Fatal(err)
			}
			if s.Original == nil || *s.Original != d.Original || !slices.Contains(s.Tags, snapshot.RewrittenTag) || s.Host != "h" {
				t.Fatalf("copy %d: %+v", i, s.Manifest)
			}
			// The copy's figures are its own: the four files and
			// the two directories it left out are not counted.
			orig, err := snapshot.Load(ctx, r, d.Original)
			if err != nil {
				t.Fatal(err)
			}
			files := func(s snapshot.Summary) uint64 { return s.FilesNew + s.FilesChanged + s.FilesUnmodified }
			o, c := orig.Summary, s.Summary
			dropped := uint64(2*len(key) + len(tree[".aws/credentials"].Content) + len(tree[".aws/cli/cache.json"].Content))
			if files(c) != 2 || files(o) != 6 || c.BytesProcessed != o.BytesProcessed-dropped || c.Dirs != o.Dirs-2 ||
				c.BytesAdded != o.BytesAdded || !c.Start.Equal(o.Start) {
				t.Errorf("copy %d: summary %+v of the original's %+v; want 2 files, %d bytes and 2 directories fewer", i, c, o, dropped)
			}
			if i == 1 {
				testRepo{writer: repos.Writer, reader: r}.restoreAndCompare(t, d.Rewritten, src, keep)
			}
		}

		// Again: the copies are there, and hold nothing to remove.
		again, err := snapshot.RewriteSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RewriteOptions{Exclude: exclude})
		if err != nil {
			t.Fatal(err)
		}
		if again.Snapshots != 4 || len(again.Rewritten) != 2 {
			t.Fatalf("second run: %+v", again)
		}
		for i, d := range again.Rewritten {
			if !d.AlreadyRewritten || d.Rewritten != res.Rewritten[i].Rewritten {
				t.Fatalf("second run, %d: %+v, want the copy %s found", i, d, res.Rewritten[i].Rewritten.Short())
			}
		}

		fin, err := snapshot.RewriteSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RewriteOptions{Exclude: exclude, Forget: true})
		if err != nil {
			t.Fatal(err)
		}
		if !fin.Rewritten[0].Forgotten || !fin.Rewritten[1].Forgotten {
			t.Fatalf("forget: %+v", fin)
		}
		if _, err := snapshot.Prune(ctx, reopen(t, repos, repos.Store), snapshot.PruneOptions{MaxUnused: 0}); err != nil {
			t.Fatal(err)
		}
		if reopenLoaded(t, repos, repos.Store).Index().Has(repos.Reader.BlobID(key)) {
			t.Error("the key's blob is still in the index after rewrite --forget and prune")
		}
		snaps, _, err := snapshot.List(ctx, repos.Writer)
		if err != nil || len(snaps) != 2 {
			t.Fatalf("%d snapshots after forget (%v), want the two copies", len(snaps), err)
		}
		r = reopenLoaded(t, repos, repos.Store)
		if probs, err := snapshot.Check(ctx, r); err != nil || len(probs) > 0 {
			t.Fatalf("check after prune: %v %v", probs, err)
		}
		testRepo{writer: repos.Writer, reader: r}.restoreAndCompare(t, res.Rewritten[1].Rewritten, src, keep)
	})
}

// TestRewriteRefuses: no pattern, a bad pattern, a writer key.
func TestRewriteRefuses(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	if _, err := snapshot.RewriteSnapshots(ctx, r.reader, snapshot.RewriteOptions{}); !errors.Is(err, snapshot.ErrNoExclude) {
		t.Errorf("no pattern: %v", err)
	}
	if _, err := snapshot.RewriteSnapshots(ctx, r.reader, snapshot.RewriteOptions{Exclude: []string{"[x"}}); err == nil {
		t.Error("a malformed pattern was accepted")
	}
	if _, err := snapshot.RewriteSnapshots(ctx, r.writer, snapshot.RewriteOptions{Exclude: []string{"*.pem"}}); !errors.Is(err, chunkstore.ErrNoIdentity) {
		t.Errorf("writer key: %v", err)
	}
}

// TestRepairAfterRewrite: a rewritten copy names its original, as a
// repaired one does, but is no repair: when the data both need is lost,
// repair snapshots repairs the original and the copy, each in its own
// right, rather than taking the original for repaired already.
func TestRepairAfterRewrite(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "secret.pem"), []byte("key\n"))
	before := listNames(t, repos.Store, chunkstore.DataPrefix)
	writeFile(t, filepath.Join(src, "data.bin"), storetest.Data(41, 2<<20))
	orig := backupDir(t, repos.Writer, src)
	lost := largestPack(t, repos.Store, before) // data.bin's
	rw, err := snapshot.RewriteSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RewriteOptions{Exclude: []string{"*.pem"}})
	if err != nil || len(rw.Rewritten) != 1 {
		t.Fatalf("rewrite: %+v %v", rw, err)
	}
	removeObject(t, repos.Store, chunkstore.PackName(lost))
	if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RepairSnapshotsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Damaged) != 2 {
		t.Fatalf("repair: %+v, want the original and the rewritten copy repaired", res)
	}
	for _, d := range res.Damaged {
		if d.AlreadyRepaired || d.Repaired.IsNull() {
			t.Errorf("snapshot %s: %+v, want a repaired copy of its own", d.Original.Short(), d)
		}
	}
	if res.Damaged[0].Original != orig.ID && res.Damaged[1].Original != orig.ID {
		t.Errorf("the original %s was not repaired: %+v", orig.ID.Short(), res)
	}
}

// TestRepairAfterRewriteOfRepaired: a repaired copy R rewritten into C
// carries the tag "repaired" on, but C is no repair of R: repair
// snapshots --forget must not take R for damaged and forget it (R holds
// what was removed from C only).
func TestRepairAfterRewriteOfRepaired(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "keep.txt"), []byte("keep\n"))
	writeFile(t, filepath.Join(src, "secret.pem"), []byte("key\n"))
	first := backupDir(t, repos.Writer, src) // keep.txt and secret.pem in packs of their own
	before := listNames(t, repos.Store, chunkstore.DataPrefix)
	writeFile(t, filepath.Join(src, "data.bin"), storetest.Data(42, 2<<20))
	orig := backupDir(t, repos.Writer, src)
	if err := snapshot.Forget(ctx, repos.Writer, first.ID); err != nil {
		t.Fatal(err)
	}
	removeObject(t, repos.Store, chunkstore.PackName(largestPack(t, repos.Store, before)))
	if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RepairSnapshotsOptions{})
	if err != nil || len(rep.Damaged) != 1 {
		t.Fatalf("repair: %+v %v", rep, err)
	}
	repaired := rep.Damaged[0].Repaired
	rw, err := snapshot.RewriteSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RewriteOptions{IDs: []chunkstore.ID{repaired}, Exclude: []string{"*.pem"}})
	if err != nil || len(rw.Rewritten) != 1 {
		t.Fatalf("rewrite of the repaired copy: %+v %v", rw, err)
	}
	c, err := snapshot.Load(ctx, repos.Writer, rw.Rewritten[0].Rewritten)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(c.Tags, snapshot.RepairedTag) || c.OriginalBy != snapshot.OriginalByRewrite {
		t.Fatalf("rewritten copy of the repaired one: tags %v, original_by %q", c.Tags, c.OriginalBy)
	}
	fin, err := snapshot.RepairSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RepairSnapshotsOptions{Forget: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(fin.Damaged) != 1 || fin.Damaged[0].Original != orig.ID || fin.Damaged[0].Repaired != repaired {
		t.Fatalf("repair --forget: %+v, want only the original, already repaired as %s", fin, repaired.Short())
	}
	if _, err := snapshot.Load(ctx, repos.Writer, repaired); err != nil {
		t.Fatalf("the repaired copy was forgotten: %v", err)
	}
}

// TestRetag: new tags make a new snapshot (sorted, deduplicated) and
// remove the old one; the same tags change nothing.
func TestRetag(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), []byte("x"))
	s := loadSnap(t, r.reader, r.backupReload(t, dir).ID)
	ret, err := snapshot.Retag(ctx, r.writer, s, []string{"hold", "daily", "hold"})
	if err != nil || ret.ID == s.ID {
		t.Fatalf("retag: %v %v", ret, err)
	}
	n := loadSnap(t, r.writer, ret.ID)
	if !slices.Equal(ret.Tags, n.Tags) || ret.Tree != n.Tree {
		t.Fatalf("Retag returned %+v, the repository holds %+v", ret.Manifest, n.Manifest)
	}
	if !slices.Equal(n.Tags, []string{"daily", "hold"}) || n.Tree != s.Tree || !n.Time.Equal(s.Time) {
		t.Fatalf("retagged manifest: %+v", n.Manifest)
	}
	if _, err := snapshot.Load(ctx, r.writer, s.ID); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Fatalf("the old snapshot is still there: %v", err)
	}
	if n.Origin(r.writer.Config().ID) != s.Origin(r.writer.Config().ID) {
		t.Fatalf("the retagged snapshot's origin %+v is not the old one's", n.CopiedFrom)
	}
	same, err := snapshot.Retag(ctx, r.writer, n, []string{"hold", "daily"})
	if err != nil || same.ID != n.ID {
		t.Fatalf("same tags: %v %v, want %s unchanged", same, err, n.ID.Short())
	}
}

// TestRetagForgottenMeanwhile: a snapshot forgotten after tag listed it
// (a forget, 'rewrite --forget' or another tag running meanwhile) is not
// saved again. Retag used to save the copy with the new tags and then
// "remove" the old manifest, already gone: the forgotten snapshot came
// back (a secret rewrite removed, kept until the next rewrite), and with
// a prune that listed the snapshots in between, referencing data that
// prune deleted. Retag must fail, leave no snapshot and say why.
func TestRetagForgottenMeanwhile(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), []byte("x"))
	s := loadSnap(t, r.reader, r.backupReload(t, dir).ID)
	if err := snapshot.Forget(ctx, r.writer, s.ID); err != nil { // the concurrent forget
		t.Fatal(err)
	}
	n, err := snapshot.Retag(ctx, r.writer, s, []string{"hold"})
	if err == nil || !strings.Contains(err.Error(), "forgotten") {
		t.Fatalf("retag of a forgotten snapshot: %v, %v; want an error saying it was forgotten", n, err)
	}
	snaps, _, err := snapshot.List(ctx, r.writer)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 0 {
		t.Fatalf("the forgotten snapshot came back as %s (tags %v)", snaps[0].ID.Short(), snaps[0].Tags)
	}
}

// TestRewriteLeavesTheWayToBackupPaths: as in a backup, an exclude
// pattern applies at and below the backed-up paths, not to the
// directories above them, which a snapshot holds only as the way there:
// "**/<name>/" meant for such directories inside the data must not
// remove the parent of the backed-up path, and with it everything.
func TestRewriteLeavesTheWayToBackupPaths(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	above := filepath.Base(filepath.Dir(src)) // a directory on the way
	keep := fixture.Tree{"a.txt": {Content: []byte("a\n"), Mode: 0o644}}
	tree := keep.Clone()
	tree[above] = fixture.Entry{Dir: true, Mode: 0o755}
	tree[above+"/x"] = fixture.Entry{Content: []byte("x\n"), Mode: 0o644}
	fixture.Create(t, src, tree)
	snap := backupDir(t, repos.Writer, src)
	exclude := []string{"**/" + above + "/"}
	for _, dry := range []bool{true, false} {
		res, err := snapshot.RewriteSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RewriteOptions{Exclude: exclude, DryRun: dry, IDs: []chunkstore.ID{snap.ID}})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{src + "/" + above + "/"}
		if len(res.Rewritten) != 1 || !slices.Equal(res.Rewritten[0].Removed, want) {
			t.Fatalf("dry run %v: %+v, want %v removed", dry, res.Rewritten, want)
		}
		if !dry {
			r := reopenLoaded(t, repos, repos.Store)
			testRepo{writer: repos.Writer, reader: r}.restoreAndCompare(t, res.Rewritten[0].Rewritten, src, keep)
		}
	}
}

// retagOnForget is a store that, when a snapshot's manifest is deleted,
// first saves a copy of it with one more tag: a 'lifeboat tag' that
// listed the snapshot, saved its copy and checked the original was still
// there, just before the rewrite's forget (its own forget then deletes
// what is already gone).
type retagOnForget struct {
	chunkstore.Store
	repo  func() *chunkstore.Repository
	snaps map[string]*snapshot.Snapshot // by manifest name
}

func (s *retagOnForget) Delete(ctx context.Context, name string) error {
	if o, ok := s.snaps[name]; ok {
		delete(s.snaps, name)
		m := o.Manifest
		m.Tags = append(slices.Clone(m.Tags), "hold")
		if _, err := snapshot.Save(ctx, s.repo(), m); err != nil {
			return err
		}
	}
	return s.Store.Delete(ctx, name)
}

// TestRewriteForgetRetaggedMeanwhile: a snapshot retagged while 'rewrite
// --forget' removes a file from it is saved again, by tag, with the
// file. The rewrite used to report the original forgotten and exit 0,
// and the secret stayed in the retagged copy (and prune kept its data);
// it must fail naming the snapshot that still holds the paths.
func TestRewriteForgetRetaggedMeanwhile(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"a.txt":      {Content: []byte("a\n"), Mode: 0o644},
		"secret.pem": {Content: []byte("key\n"), Mode: 0o644},
	})
	orig := backupDir(t, repos.Writer, src)
	st := &retagOnForget{Store: repos.Store, snaps: map[string]*snapshot.Snapshot{
		chunkstore.SnapshotsPrefix + orig.ID.String(): loadSnap(t, repos.Writer, orig.ID),
	}}
	repo := reopen(t, repos, st)
	st.repo = func() *chunkstore.Repository { return repo }
	res, err := snapshot.RewriteSnapshots(ctx, repo, snapshot.RewriteOptions{Exclude: []string{"*.pem"}, Forget: true})
	snaps, _, lerr := snapshot.List(ctx, repos.Writer)
	if lerr != nil {
		t.Fatal(lerr)
	}
	var held *snapshot.Snapshot
	for _, s := range snaps {
		if slices.Contains(s.Tags, "hold") {
			held = s
		}
	}
	if held == nil {
		t.Fatalf("the concurrent tag saved nothing: %+v", snaps)
	}
	if err == nil || !strings.Contains(err.Error(), held.ID.Short()) {
		t.Fatalf("rewrite --forget while %s was retagged as %s: %+v, %v; want an error naming %s", orig.ID.Short(), held.ID.Short(), res, err, held.ID.Short())
	}
	// Run again, it removes the file from the retagged copy too.
	if _, err := snapshot.RewriteSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RewriteOptions{Exclude: []string{"*.pem"}, Forget: true}); err != nil {
		t.Fatal(err)
	}
	again, err := snapshot.RewriteSnapshots(ctx, reopen(t, repos, repos.Store), snapshot.RewriteOptions{Exclude: []string{"*.pem"}, DryRun: true})
	if err != nil || len(again.Rewritten) != 0 {
		t.Fatalf("after the second run: %+v %v", again, err)
	}
}
