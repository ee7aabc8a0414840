package agent

import (
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestAgentPrune: a policy keeps one snapshot; after the agent forgot the
// older ones, a prune job on the drill runner frees their data: the packs
// only they used are deleted, the repository checks clean with its data
// read, and the kept snapshot restores. An agent without the identity
// cannot be given a prune job.
func TestAgentPrune(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	tc.policy(coordinator.Policy{Name: "p", Paths: []string{src},
		Retention: coordinator.Retention{KeepLast: 1, Prune: farDaily(tc.clock), MaxUnused: "0%"}})
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "d1",
		Identity: parseIdentity(t, tc.identity)})
	tc.waitCapable("d1", true)

	// Three versions of a 2 MiB file: each backup forgets the one before.
	var last coordinator.Job
	for i := range 3 {
		fixture.Create(t, src, fixture.Tree{"changing.bin": {Content: fixture.Random(uint64(300+i), 2<<20), Mode: 0o644}})
		last = tc.waitJob(tc.run("p"), "finish", final)
		if last.State != coordinator.JobSucceeded {
			t.Fatalf("backup %d: %+v", i, last.Result)
		}
	}
	before := len(dataPacks(t, tc.openRepo()))

	id, err := tc.node.RunPrune(t.Context(), "test", "p")
	if err != nil {
		t.Fatal(err)
	}
	j := tc.waitJob(id, "finish", final)
	if j.State != coordinator.JobSucceeded || j.Result == nil || j.Result.Prune == nil {
		t.Fatalf("prune job %s: %+v", j.State, j.Result)
	}
	p := j.Result.Prune
	if p.Snapshots != 1 || p.DeletedPacks == 0 || p.DeletedBytes < 4<<20 || p.PendingMarks != 0 {
		t.Errorf("prune result %+v: want the two forgotten versions (4 MiB) deleted", p)
	}
	// The coordinator's metrics say when the policy's repository was
	// last pruned, and what it freed.
	resp, err := http.Get(tc.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`lifeboat_prune_last_succeeded{policy="p"} 1`, `lifeboat_prune_last_success_timestamp_seconds{policy="p"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	var freed float64
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, `lifeboat_prune_last_deleted_bytes{policy="p"} `); ok {
			freed, _ = strconv.ParseFloat(v, 64)
		}
	}
	if int64(freed) != p.DeletedBytes {
		t.Errorf("lifeboat_prune_last_deleted_bytes = %v, the job deleted %d", freed, p.DeletedBytes)
	}

	repo := tc.openRepo()
	if after := len(dataPacks(t, repo)); after >= before {
		t.Errorf("%d data packs after prune, %d before", after, before)
	}
	if err := repo.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	probs, err := snapshot.Check(t.Context(), repo)
	if err != nil || len(probs) > 0 {
		t.Fatalf("check after prune: %v %v", probs, err)
	}
	for _, p := range repo.Index().Packs() {
		if err := repo.VerifyPack(t.Context(), p.ID, int64(p.Size)); err != nil {
			t.Errorf("pack %s after prune: %v", p.ID.Short(), err)
		}
	}
	sid, err := chunkstore.ParseID(last.Result.SnapshotID)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Load(t.Context(), repo, sid)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	res, err := restore.Restore(t.Context(), repo, snap, restore.Options{Target: target})
	if err != nil || len(res.Failures) > 0 {
		t.Fatalf("restore after prune: %v %v", err, res)
	}
	want := smallTree()
	want["changing.bin"] = fixture.Entry{Content: fixture.Random(302, 2<<20), Mode: 0o644}
	fixture.Compare(t, want, filepath.Join(target, src))

	// A second prune at once finds nothing left to do.
	id, err = tc.node.RunPrune(t.Context(), "test", "p")
	if err != nil {
		t.Fatal(err)
	}
	if j := tc.waitJob(id, "finish", final); j.State != coordinator.JobSucceeded || j.Result.Prune.DeletedPacks != 0 || j.Result.Prune.MarkedPacks != 0 {
		t.Errorf("second prune: %s %+v", j.State, j.Result.Prune)
	}

	// A policy whose drill runners all lack the identity: no prune job.
	tc.policy(coordinator.Policy{Name: "q", Paths: []string{src}, Agents: map[string]string{"role": "db"},
		Drill: &coordinator.DrillSpec{Runner: map[string]string{"role": "none"}}, Retention: coordinator.Retention{Prune: farDaily(tc.clock)}})
	if _, err := tc.node.RunPrune(t.Context(), "test", "q"); err == nil || !strings.Contains(err.Error(), "no connected drill runner") {
		t.Errorf("prune without a runner: %v", err)
	}
}
