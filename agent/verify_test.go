package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// packFiles returns the pack files of a local repository, by pack ID.
func packFiles(t *testing.T, repoDir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(filepath.Join(repoDir, "data"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		out[d.Name()] = p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dataPacks returns the packs holding file content (not trees), read from
// the index with the identity.
func dataPacks(t *testing.T, repo *chunkstore.Repository) []chunkstore.ID {
	t.Helper()
	if err := repo.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	var out []chunkstore.ID
	for _, p := range repo.Index().Packs() {
		if len(p.Blobs) > 0 && p.Blobs[0].Type == chunkstore.DataBlob {
			out = append(out, p.ID)
		}
	}
	slices.SortFunc(out, func(a, b chunkstore.ID) int { return strings.Compare(a.String(), b.String()) })
	if len(out) == 0 {
		t.Fatal("no data pack in the repository")
	}
	return out
}

func (tc *testCoordinator) coverage() (coordinator.CoverageReport, map[string]*coordinator.PackState) {
	var rep coordinator.CoverageReport
	packs := map[string]*coordinator.PackState{}
	tc.node.View(func(s *coordinator.State) {
		for _, r := range s.CoverageOf(tc.clock.Now()) {
			if r.Repository == testRepo {
				rep = r
			}
		}
		if c := s.Coverage[testRepo]; c != nil {
			for id, p := range c.Packs {
				cp := *p
				packs[id] = &cp
			}
		}
	})
	return rep, packs
}

// verifyAll runs a full verification of the test repository and waits
// for its end.
func (tc *testCoordinator) verifyAll() coordinator.Job {
	tc.t.Helper()
	id, err := tc.node.VerifyRepository(tc.t.Context(), "test", testRepo, true)
	if err != nil {
		tc.t.Fatal(err)
	}
	return tc.waitJob(id, "finish", final)
}

// writeForged stores content under its own SHA-256 as a pack: a name
// check alone would pass it.
func writeForged(t *testing.T, repoDir string, content []byte) string {
	t.Helper()
	id := chunkstore.Hash(content).String()
	p := filepath.Join(repoDir, filepath.FromSlash(chunkstore.PackName(chunkstore.Hash(content))))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestAgentVerify(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	tree := smallTree()
	// Larger than one 4 MiB read range: packs are verified in pieces.
	tree["big.bin"] = fixture.Entry{Content: fixture.Random(11, 9<<20+12345), Mode: 0o644}
	fixture.Create(t, src, tree)
	tc.policy(coordinator.Policy{Name: "p", Paths: []string{src}})
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "v1"})
	tc.waitEnrolled("v1")
	for i := range 2 {
		fixture.Create(t, filepath.Join(src, "more"), fixture.Tree{"f.bin": {Content: fixture.Random(uint64(100+i), 2<<20), Mode: 0o644}})
		if j := tc.waitJob(tc.run("p"), "finish", final); j.State != coordinator.JobSucceeded {
			t.Fatalf("backup %d: %+v", i, j.Result)
		}
	}
	files := packFiles(t, tc.repoURL)
	if len(files) < 3 {
		t.Fatalf("only %d packs", len(files))
	}

	// A clean repository verifies completely.
	j := tc.verifyAll()
	if j.State != coordinator.JobSucceeded || j.Result.Verify == nil || j.Result.Verify.Packs != len(files) || len(j.Result.Verify.Damaged) > 0 {
		t.Fatalf("verify job %s: %+v (verify %+v), want %d packs verified", j.State, j.Result, j.Result.Verify, len(files))
	}
	cov, _ := tc.coverage()
	if cov.Ratio != 1 || cov.Packs != len(files) || cov.VerifiedPacks != len(files) || len(cov.Damaged) > 0 || len(cov.OverdueShards) > 0 {
		t.Fatalf("coverage after a clean verification: %+v", cov)
	}

	// Damage: a flipped byte in a real pack, and a forged pack whose name
	// matches its content but whose sealed trailer was tampered with
	// (only the writer key's structural check can tell).
	ids := dataPacks(t, tc.openRepo())
	flipped := ids[0].String()
	b, err := os.ReadFile(files[flipped])
	if err != nil {
		t.Fatal(err)
	}
	forged := slices.Clone(b)
	forged[len(forged)-chunkstore.PackFooterSize-5] ^= 0x40
	forgedID := writeForged(t, tc.repoURL, forged)
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(files[flipped], b, 0o644); err != nil {
		t.Fatal(err)
	}
	j = tc.verifyAll()
	if j.State != coordinator.JobFailed || j.Attempt != 1 || j.Result.Verify == nil {
		t.Fatalf("verify of a damaged repository: %s attempt %d, %+v", j.State, j.Attempt, j.Result)
	}
	if !strings.Contains(j.Result.Error, "2 damaged packs") || !strings.Contains(j.Result.Error, flipped) || !strings.Contains(j.Result.Error, forgedID) {
		t.Errorf("error %q does not name both damaged packs %s and %s", j.Result.Error, flipped, forgedID)
	}
	if got := j.Result.Verify.Damaged; !slices.Equal(got, sortedStrings(flipped, forgedID)) {
		t.Errorf("damaged %v, want %s and %s", got, flipped, forgedID)
	}
	time.Sleep(300 * time.Millisecond)
	if again := tc.job(j.ID); again.State != coordinator.JobFailed || again.Attempt != 1 {
		t.Errorf("a verification that found damage was retried: %+v", again)
	}
	cov, packs := tc.coverage()
	if len(cov.Damaged) != 2 || cov.Packs != len(files)+1 || cov.VerifiedPacks != len(files)-1 {
		t.Errorf("coverage after damage: %+v", cov)
	}
	if p := packs[flipped]; p == nil || !strings.Contains(p.Damaged, "does not match its name") {
		t.Errorf("flipped pack state %+v", p)
	}
	if p := packs[forgedID]; p == nil || !strings.Contains(p.Damaged, "trailer") {
		t.Errorf("forged pack state %+v", p)
	}

	// Deleted packs: a real one, which the index references, is damage
	// (its data is lost) and stays in the coverage as missing; the
	// forged one, which nothing references, leaves the coverage.
	var gone string
	for id := range files {
		if id != flipped {
			gone = id
			break
		}
	}
	goneBytes, err := os.ReadFile(files[gone])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{gone, forgedID} {
		if err := os.Remove(filepath.Join(tc.repoURL, filepath.FromSlash(chunkstore.PackName(mustID(t, id))))); err != nil {
			t.Fatal(err)
		}
	}
	j = tc.verifyAll()
	if j.State != coordinator.JobFailed || !slices.Equal(j.Result.Verify.Damaged, sortedStrings(flipped, gone)) || j.Result.Verify.Packs != len(files) {
		t.Fatalf("verify after deletions: %s %+v %+v", j.State, j.Result, j.Result.Verify)
	}
	wantMissing := "missing: referenced by the index but not in the bucket (" + chunkstore.PackName(mustID(t, gone)) + ")"
	if !strings.Contains(j.Result.Error, gone+": "+wantMissing) {
		t.Errorf("error %q does not name the deleted pack %s as missing", j.Result.Error, gone)
	}
	cov, packs = tc.coverage()
	if packs[forgedID] != nil || cov.Packs != len(files)-1 || len(cov.Damaged) != 2 {
		t.Errorf("coverage after deletions: %+v", cov)
	}
	if p := packs[gone]; p == nil || p.Damaged != wantMissing || p.Size != int64(len(goneBytes)) {
		t.Errorf("deleted pack state %+v, want damaged %q with its size %d from the index", p, wantMissing, len(goneBytes))
	}

	// Repairing the flipped pack and putting the deleted one back clears
	// the damage at the next verification.
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(files[flipped], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[gone], goneBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	j = tc.verifyAll()
	cov, packs = tc.coverage()
	if j.State != coordinator.JobSucceeded || len(cov.Damaged) != 0 || cov.Ratio != 1 || packs[flipped] == nil || packs[flipped].Damaged != "" {
		t.Errorf("after the repair: job %s %+v, coverage %+v", j.State, j.Result, cov)
	}
}

func sortedStrings(s ...string) []string {
	slices.Sort(s)
	return s
}

func mustID(t *testing.T, s string) chunkstore.ID {
	t.Helper()
	id, err := chunkstore.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// gate holds the reads of slowReads until released.
type gate struct {
	started chan struct{}
	once    sync.Once
	release chan struct{}
}

// TestAgentMaintenanceSlot: an agent busy with as many backups as it
// runs at once still takes a verify job.
func TestAgentMaintenanceSlot(t *testing.T) {
	tc := newTestCoordinator(t)
	tc.smallPolicy("p")
	bs := &blockingStore{started: make(chan struct{}), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(bs.release)
		}
	}()
	// Only the backup's uploads block; the verification reads.
	var wrapped sync.Once
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "m1", MaxJobs: 1,
		wrapStore: func(st chunkstore.Store) chunkstore.Store {
			out := st
			wrapped.Do(func() { bs.Store = st; out = bs })
			return out
		}})
	tc.waitEnrolled("m1")
	backup := tc.run("p")
	select {
	case <-bs.started:
	case <-time.After(30 * time.Second):
		t.Fatal("backup never started uploading")
	}
	j := tc.verifyAll()
	if j.State != coordinator.JobSucceeded {
		t.Fatalf("verify job beside a backup: %s %+v", j.State, j.Result)
	}
	if b := tc.job(backup); b.State != coordinator.JobRunning {
		t.Fatalf("the backup should still be running: %s", b.State)
	}
	close(bs.release)
	released = true
	if b := tc.waitJob(backup, "finish", final); b.State != coordinator.JobSucceeded {
		t.Fatalf("backup: %+v", b.Result)
	}
	j = tc.verifyAll()
	if j.State != coordinator.JobSucceeded || j.Result.Verify.Packs != len(packFiles(t, tc.repoURL)) {
		t.Fatalf("verify after the backup: %+v %+v", j.Result, j.Result.Verify)
	}
}

// slowReads holds pack reads until released.
type slowReads struct {
	chunkstore.Store
	g *gate
}

func (s slowReads) Get(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if strings.HasPrefix(name, chunkstore.DataPrefix) {
		s.g.once.Do(func() { close(s.g.started) })
		select {
		case <-s.g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Store.Get(ctx, name, off, n)
}

// TestAgentVerifyLeaseLost: a verification whose lease is lost reports
// nothing; its retry does. The clock jumps past the lease but not past the
// agent timeout: a jump past both let the leader cancel the retry as
// stranded (its agent silent for longer than the timeout) whenever it
// ticked before the agent was next in touch, as it did once in CI.
func TestAgentVerifyLeaseLost(t *testing.T) {
	tc := newTestCoordinator(t, func(cfg *coordinator.Config) { cfg.AgentTimeout = time.Hour })
	tc.smallPolicy("p")
	g := &gate{started: make(chan struct{}), release: make(chan struct{})}
	a, _ := startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "v1",
		wrapStore: func(st chunkstore.Store) chunkstore.Store { return slowReads{Store: st, g: g} }})
	tc.waitEnrolled("v1")
	if j := tc.waitJob(tc.run("p"), "finish", final); j.State != coordinator.JobSucceeded {
		t.Fatalf("backup: %+v", j.Result)
	}
	id, err := tc.node.VerifyRepository(t.Context(), "test", testRepo, true)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.started:
	case <-time.After(30 * time.Second):
		t.Fatal("verification never read a pack")
	}
	tc.clock.Advance(10 * time.Minute)
	tc.waitJob(id, "lose its lease", func(j coordinator.Job) bool { return j.Attempt == 1 && j.State != coordinator.JobRunning })
	waitFor(t, "the agent to notice", func() bool { return testutilCounter(a.m.leaseLost) == 1 })
	if cov, _ := tc.coverage(); !cov.ListedAt.IsZero() || cov.VerifiedPacks != 0 {
		t.Fatalf("a verification whose lease was lost was recorded: %+v", cov)
	}
	close(g.release)
	j := tc.waitJob(id, "succeed on retry", final)
	if j.State != coordinator.JobSucceeded || j.Attempt < 2 {
		t.Fatalf("retried verification: %s attempt %d %+v", j.State, j.Attempt, j.Result)
	}
	if cov, _ := tc.coverage(); cov.Ratio != 1 || cov.Packs != len(packFiles(t, tc.repoURL)) {
		t.Errorf("coverage after the retry: %+v", cov)
	}
}

// failingReads fails every read of one object while on, with an error
// that is neither damage nor "not found" (as a read that still fails
// after the store's retries).
type failingReads struct {
	chunkstore.Store
	name string
	on   *atomic.Bool
}

func (s failingReads) Get(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if name == s.name && s.on.Load() {
		return nil, chunkstore.Permanent(errors.New("connection reset by peer"))
	}
	return s.Store.Get(ctx, name, off, n)
}

// TestAgentVerifyReadError: a pack that cannot be read is not damage:
// the job reports no verification (so nothing is recorded) and is
// retried; once the read works, the verification succeeds.
func TestAgentVerifyReadError(t *testing.T) {
	tc := newTestCoordinator(t)
	tc.smallPolicy("p")
	var on atomic.Bool
	var name atomic.Pointer[string]
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "v1",
		wrapStore: func(st chunkstore.Store) chunkstore.Store {
			if n := name.Load(); n != nil {
				return failingReads{Store: st, name: *n, on: &on}
			}
			return st
		}})
	tc.waitEnrolled("v1")
	if j := tc.waitJob(tc.run("p"), "finish", final); j.State != coordinator.JobSucceeded {
		t.Fatalf("backup: %+v", j.Result)
	}
	pack := dataPacks(t, tc.openRepo())[0]
	n := chunkstore.PackName(pack)
	name.Store(&n)
	on.Store(true)

	j := tc.verifyAll()
	if j.State != coordinator.JobFailed || j.Attempt < 2 || j.Result == nil || j.Result.Verify != nil {
		t.Fatalf("verify with an unreadable pack: %s attempt %d %+v: want a failure after retries, with no verification", j.State, j.Attempt, j.Result)
	}
	if !strings.Contains(j.Result.Error, "could not read pack "+pack.String()) || !strings.Contains(j.Result.Error, "connection reset by peer") {
		t.Errorf("error %q does not name the pack and the read error", j.Result.Error)
	}
	if cov, packs := tc.coverage(); len(cov.Damaged) != 0 || !cov.ListedAt.IsZero() || len(packs) != 0 {
		t.Errorf("an unreadable pack was recorded: %+v", cov)
	}

	on.Store(false)
	j = tc.verifyAll()
	if cov, _ := tc.coverage(); j.State != coordinator.JobSucceeded || len(cov.Damaged) != 0 || cov.Ratio != 1 {
		t.Errorf("verify once the pack reads again: %s %+v, coverage %+v", j.State, j.Result, cov)
	}
}

// TestVerifyDropsForgottenFromCatalog: a snapshot forgotten outside the
// coordinator ('lifeboat forget') leaves the catalog at the next verify
// job, which lists the repository's snapshots.
func TestVerifyDropsForgottenFromCatalog(t *testing.T) {
	tc := newTestCoordinator(t)
	tc.smallPolicy("p")
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "v1"})
	tc.waitEnrolled("v1")
	var snaps []string
	for i := range 2 {
		j := tc.waitJob(tc.run("p"), "finish", final)
		if j.State != coordinator.JobSucceeded {
			t.Fatalf("backup %d: %+v", i, j.Result)
		}
		snaps = append(snaps, j.Result.SnapshotID)
	}
	id, err := chunkstore.ParseID(snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := snapshot.Forget(t.Context(), tc.openRepo(), id); err != nil {
		t.Fatal(err)
	}
	j := tc.verifyAll()
	if j.State != coordinator.JobSucceeded || j.Result.Verify == nil || !slices.Equal(j.Result.Verify.CatalogDropped, snaps[:1]) {
		t.Fatalf("verify job %s: %+v, want %s dropped from the catalog", j.State, j.Result.Verify, snaps[0])
	}
	tc.node.View(func(s *coordinator.State) {
		if _, ok := s.Catalog[snaps[0]]; ok || s.Catalog[snaps[1]] == nil {
			t.Errorf("catalog has the forgotten snapshot: %v, the kept one: %v", ok, s.Catalog[snaps[1]] != nil)
		}
	})
}

// TestAgentVerifyNewerPack: an intact pack of a later format (a newer
// lifeboat's, in a mixed fleet) is not reported as damaged: the verify
// job fails asking for an upgrade, and records nothing.
func TestAgentVerifyNewerPack(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	tc.policy(coordinator.Policy{Name: "p", Paths: []string{src}})
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "v1"})
	tc.waitEnrolled("v1")
	if j := tc.waitJob(tc.run("p"), "finish", final); j.State != coordinator.JobSucceeded {
		t.Fatalf("backup: %+v", j.Result)
	}
	newer := writeForged(t, tc.repoURL, append([]byte("LBPACK2\n"), fixture.Random(3, 4096)...))
	j := tc.verifyAll()
	if j.State != coordinator.JobFailed || !strings.Contains(j.Result.Error, newer) || !strings.Contains(j.Result.Error, "upgrade this agent") {
		t.Fatalf("verify job %s: %+v; want a failure naming pack %s and the upgrade", j.State, j.Result, newer)
	}
	cov, packs := tc.coverage()
	if len(cov.Damaged) != 0 || packs[newer] != nil && packs[newer].Damaged != "" {
		t.Errorf("coverage %+v, pack state %+v: the newer pack was taken for damage", cov, packs[newer])
	}
}
