package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// withoutS3Env is the environment minus S3 credentials: agents must get
// them from the coordinator with each job.
func withoutS3Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "LIFEBOAT_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// TestAgentProcesses: three 'lifeboat server' processes, MinIO, and two
// agent processes with different labels. Each agent backs up only its own
// policy's paths; the agent of the big policy is killed with SIGKILL
// mid-backup at least 10 times at seeded random moments
// (LIFEBOAT_E2E_SEED replays a run), 'check --read-data' passes after
// every kill, and the interrupted jobs are retried and complete. Then the
// coordinator leader is killed with SIGKILL while agent a runs a job: the
// job still succeeds exactly once (one job for its instant, one snapshot
// in the catalog for its ID), the repository checks clean, and the killed
// node rejoins. Finally the snapshot restores byte-identical with the
// identity.
func TestAgentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process agent test")
	}
	repoURL := storetest.MinIORepoURL(t) // skips without MinIO unless required
	root := t.TempDir()
	procs, urls := startServers(t, root, 3)
	var agents []*agentProc
	t.Cleanup(func() {
		for _, a := range agents {
			a.kill()
		}
		if t.Failed() {
			logTails(t, root, 20000, "n1", "n2", "n3", "agent-a", "agent-b")
		}
	})
	token := adminToken(t, procs)
	env := []string{"LIFEBOAT_ADDR=" + strings.Join(urls, ","), "LIFEBOAT_TOKEN=" + token, "HOME=" + root}
	cli := coordCLI{env: env}
	lb := cli.run
	mustLB := func(args ...string) string {
		t.Helper()
		return cli.must(t, args...)
	}
	waitFor(t, 30*time.Second, "the cluster to accept writes", func() bool {
		_, err := lb("agent", "token", "create", "--ttl", "1h")
		return err == nil
	})

	id, key := filepath.Join(root, "id.txt"), filepath.Join(root, "writer.key")
	mustLB("init", "--repo", repoURL, "--identity-out", id, "--key-out", key)
	mustLB("repo", "add", "r", "--repo", repoURL, "--key", key)

	// Agent a's data takes a moment to back up; b's is small. Each kill
	// round changes part of a's data, kept small so that the rounds (and
	// the 'check --read-data' after each) stay cheap.
	const fileSize, files = 6 << 20, 6
	srcA, srcB := filepath.Join(root, "src-a"), filepath.Join(root, "src-b")
	treeA := fixture.Tree{}
	for i := range files {
		treeA[fmt.Sprintf("d%d/big.bin", i)] = fixture.Entry{Content: fixture.Random(uint64(i+1), fileSize), Mode: 0o644}
	}
	treeA["note.txt"] = fixture.Entry{Content: []byte("agent a\n"), Mode: 0o644}
	fixture.Create(t, srcA, treeA)
	treeB := fixture.Tree{"b.txt": {Content: []byte("agent b\n"), Mode: 0o600}, "x/y.bin": {Content: fixture.Random(99, 1<<20), Mode: 0o644}}
	fixture.Create(t, srcB, treeB)
	policies := filepath.Join(root, "policies.yaml")
	yaml := fmt.Sprintf(`name: pa
repository: r
schedule: "@every 2s"
agents: {role: a}
paths: [%s]
max_attempts: 20
---
name: pb
repository: r
schedule: "@every 4s"
agents: {role: b}
paths: [%s]
`, srcA, srcB)
	if err := os.WriteFile(policies, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	joinToken := func() string {
		out := mustLB("agent", "token", "create", "--ttl", "1h")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		return lines[len(lines)-1]
	}
	for _, n := range []string{"a", "b"} {
		p := &agentProc{process{name: "agent-" + n, dir: filepath.Join(root, "agent-"+n)}}
		p.args = []string{"agent", "--server", strings.Join(urls, ","), "--data-dir", p.dir, "--name", "agent-" + n,
			"--host", "host-" + n, "--label", "role=" + n, "--lease-ttl", "6s", "--poll-wait", "2s"}
		p.env = withoutS3Env("HOME="+root, "LIFEBOAT_JOIN_TOKEN="+joinToken())
		agents = append(agents, p)
		p.start(t)
	}
	waitFor(t, 30*time.Second, "both agents enrolled", func() bool {
		out, err := lb("agent", "list", "--json")
		var as []coordinator.AgentView
		return err == nil && json.Unmarshal([]byte(out), &as) == nil && len(as) == 2
	})
	mustLB("policy", "apply", "-f", policies)

	jobs := func(policy string) []coordinator.Job {
		t.Helper()
		var js []coordinator.Job
		out, err := lb("job", "list", "--policy", policy, "--json")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &js); err != nil {
			t.Fatalf("job list: %v\n%s", err, out)
		}
		return js
	}
	running := func(policy string) *coordinator.Job {
		for _, j := range jobs(policy) {
			if j.State == coordinator.JobRunning {
				return &j
			}
		}
		return nil
	}

	// The kill moments are random but replayable.
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("LIFEBOAT_E2E_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("LIFEBOAT_E2E_SEED: %v", err)
		}
	}
	t.Logf("seed %d (rerun with LIFEBOAT_E2E_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x6c696665626f6174))
	contentSeed := uint64(100)
	// change rewrites n of agent a's files with new content, so that the
	// next backup has work to do.
	var modAt time.Time
	change := func(n int) {
		for range n {
			name := fmt.Sprintf("d%d/big.bin", rng.IntN(files))
			contentSeed++
			treeA[name] = fixture.Entry{Content: fixture.Random(contentSeed, fileSize), Mode: 0o644}
			fixture.Create(t, srcA, fixture.Tree{name: treeA[name]})
		}
		modAt = time.Now()
	}
	// check runs 'check --read-data' with no backup beside it: b goes down
	// too (at whatever it was doing), since check loads the index before
	// it lists the snapshots, and a snapshot committed in between looks
	// broken. Both agents come back afterwards.
	a, b := agents[0], agents[1]
	// orphans counts checks that found packs a killed backup uploaded but
	// never indexed: each obliges a later backup to adopt them.
	orphans := 0
	check := func(what string) {
		t.Helper()
		a.kill()
		b.kill()
		out, err := lb("check", "--read-data", "--json", "--repo", repoURL, "--identity", id)
		if err != nil {
			t.Fatalf("check --read-data after %s: %v\n%s", what, err, out)
		}
		var rep struct {
			UnindexedPacks int `json:"unindexed_packs"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("check --json after %s: %v\n%s", what, err, out)
		}
		if rep.UnindexedPacks > 0 {
			orphans++
		}
		a.start(t)
		b.start(t)
	}

	// Kill agent a mid-backup, at random moments, again and again; the
	// repository stays consistent after every kill.
	const kills = 10
	killsStart := time.Now()
	prev := ""
	midBackup := 0
	// The kill comes up to maxDelay after the job is seen running. A
	// backup here takes 0.1–0.3 s depending on the machine; each kill
	// that comes after the job finished narrows the range, so that on a
	// fast machine most kills still land inside a backup.
	maxDelay := 300 * time.Millisecond
	for round := 0; midBackup < kills; round++ {
		if round >= 3*kills {
			t.Fatalf("only %d of %d kills landed mid-backup in %d rounds", midBackup, kills, round)
		}
		if round > 0 {
			change(2)
		}
		var j *coordinator.Job
		waitFor(t, 60*time.Second, "a new running job of pa", func() bool {
			j = running("pa")
			return j != nil && fmt.Sprint(j.ID, j.Attempt) != prev
		})
		prev = fmt.Sprint(j.ID, j.Attempt)
		delay := time.Duration(rng.Int64N(int64(maxDelay))).Round(time.Millisecond)
		time.Sleep(delay)
		a.kill()
		// Still running for the coordinator: the agent died before it
		// could report, i.e. mid-backup.
		if r := running("pa"); r != nil && r.ID == j.ID && r.Attempt == j.Attempt {
			midBackup++
			t.Logf("kill %d: agent a killed %v into job %s (attempt %d)", midBackup, delay, j.ID, j.Attempt)
		} else {
			maxDelay = max(maxDelay*2/3, 20*time.Millisecond)
		}
		check(fmt.Sprintf("kill round %d", round+1))
	}
	t.Logf("%d mid-backup kills in %v", midBackup, time.Since(killsStart).Round(time.Millisecond))

	// Kill the coordinator leader while agent a is in the middle of a job:
	// the job completes exactly once.
	leaderKill(t, leaderKillEnv{
		procs: procs, urls: urls, token: token, rng: rng,
		lb: lb, jobs: jobs, running: running,
		change: func() { change(files) },
		check:  check,
	})

	// The interrupted jobs are retried: some pa job succeeds on a retry.
	var done coordinator.Job
	waitFor(t, 3*time.Minute, "a retried pa job to succeed", func() bool {
		for _, j := range jobs("pa") {
			if j.State == coordinator.JobSucceeded && j.Attempt >= 2 {
				done = j
				return true
			}
		}
		return false
	})
	t.Logf("job %s succeeded on attempt %d: snapshot %s", done.ID, done.Attempt, done.Result.SnapshotID)
	waitFor(t, 60*time.Second, "a pb job to succeed", func() bool {
		for _, j := range jobs("pb") {
			if j.State == coordinator.JobSucceeded {
				return true
			}
		}
		return false
	})

	// Each agent ran only its own policy's jobs, and each host's
	// snapshots hold only its own paths.
	for policy, agent := range map[string]string{"pa": "agent-a", "pb": "agent-b"} {
		for _, j := range jobs(policy) {
			if j.Agent != agent {
				t.Errorf("job %s of %s ran on %s", j.ID, policy, j.Agent)
			}
		}
	}
	out := mustLB("snapshots", "--repo", repoURL, "--key", key, "--json")
	var snaps []struct {
		ID    string   `json:"id"`
		Host  string   `json:"host"`
		Paths []string `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &snaps); err != nil {
		t.Fatalf("snapshots --json: %v\n%s", err, out)
	}
	for _, s := range snaps {
		want := map[string]string{"host-a": srcA, "host-b": srcB}[s.Host]
		if len(s.Paths) != 1 || s.Paths[0] != want {
			t.Errorf("snapshot %s of %s has paths %v, want [%s]", s.ID, s.Host, s.Paths, want)
		}
	}

	// A snapshot taken after the last change restores byte-identical
	// with the identity.
	var last coordinator.Job
	waitFor(t, 2*time.Minute, "a pa job started after the last change to succeed", func() bool {
		for _, j := range jobs("pa") {
			if j.State == coordinator.JobSucceeded && j.StartedAt.After(modAt) {
				last = j
				return true
			}
		}
		return false
	})
	for _, p := range agents {
		p.kill()
	}
	// The restarted agent reported what the killed one left running, and
	// the packs it had uploaded were adopted (by whichever agent's backup
	// ran first: adoption is repository-wide) instead of sent again.
	logA, _ := os.ReadFile(filepath.Join(root, "agent-a.log"))
	logB, _ := os.ReadFile(filepath.Join(root, "agent-b.log"))
	if !strings.Contains(string(logA), "reported interrupted job") {
		t.Error("agent a never reported an interrupted job")
	}
	// Reuse can only be asked for when a kill left uploaded, unindexed
	// packs behind; with random kill times some runs leave none. The
	// repository logs the adoption when the next backup starts (the
	// agent's own summary line comes only if that backup then finishes,
	// and the backup adopting them may itself be one of the killed ones).
	logs := string(logA) + string(logB)
	reused := strings.Contains(logs, "reused packs left by an interrupted backup") ||
		strings.Contains(logs, "reused packs uploaded by an interrupted backup")
	switch {
	case orphans > 0 && !reused:
		t.Errorf("%d checks found packs left by killed backups, but no backup reused them", orphans)
	case orphans == 0:
		t.Log("no kill left an uploaded pack behind this run; pack reuse was not exercised (TestCrashSafety covers it)")
	}
	if _, err := lb("check", "--read-data", "--repo", repoURL, "--identity", id); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(root, "restore")
	mustLB("restore", last.Result.SnapshotID, "--repo", repoURL, "--identity", id, "--target", target)
	fixture.Compare(t, treeA, filepath.Join(target, srcA))
}
