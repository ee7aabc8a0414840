package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/drill"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

func parseIdentity(t *testing.T, file []byte) []age.Identity {
	t.Helper()
	ids, err := chunkstore.ParseIdentityFile(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// waitCapable waits until the coordinator knows whether agent may run
// drills. With the agent's running handle, it fails at once, with the
// agent's error, if the agent stops meanwhile.
func (tc *testCoordinator) waitCapable(name string, want bool, agent ...*running) {
	tc.t.Helper()
	waitFor(tc.t, fmt.Sprintf("agent %s drill capability %v", name, want), func() bool {
		for _, r := range agent {
			select {
			case <-r.done:
				tc.t.Fatalf("agent %s stopped while waiting for its drill capability to become %v: %v", name, want, r.err)
			default:
			}
		}
		var ok bool
		tc.node.View(func(s *coordinator.State) {
			a := s.Agents[name]
			ok = a != nil && a.Can(coordinator.CapDrill) == want && a.Version == "test"
		})
		return ok
	})
}

// drill runs a drill of policy now and returns its job and record.
func (tc *testCoordinator) drill(policy string) (coordinator.Job, coordinator.DrillRecord, drill.Result) {
	tc.t.Helper()
	id, err := tc.node.RunDrill(tc.t.Context(), "test", policy, "")
	if err != nil {
		tc.t.Fatal(err)
	}
	j := tc.waitJob(id, "finish", final)
	var rec *coordinator.DrillRecord
	tc.node.View(func(s *coordinator.State) {
		if r := s.Drills[id]; r != nil {
			c := *r
			rec = &c
		}
	})
	if rec == nil {
		tc.t.Fatalf("drill job %s (%s, %+v) left no record", id, j.State, j.Result)
	}
	var res drill.Result
	if len(rec.Result) > 0 {
		if err := json.Unmarshal(rec.Result, &res); err != nil {
			tc.t.Fatalf("drill result: %v", err)
		}
	}
	return j, *rec, res
}

// drillCheck is the verify command of drillPolicy.
func drillCheck(src string) string {
	return fmt.Sprintf(`test "$(cat "$LIFEBOAT_DRILL_DIR%s/a.txt")" = "hello agent" && test "$LIFEBOAT_AGENT" = d1 && test -n "$LIFEBOAT_JOB_ID" && test "$LIFEBOAT_POLICY" = p`, src)
}

// failingCheck is a verify command that fails.
const failingCheck = "echo 'db will not start' >&2; exit 3"

// allowList writes a runner's allow-list file of commands (with a
// comment and a blank line, which are ignored).
func allowList(t *testing.T, commands ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "drill-commands")
	if err := os.WriteFile(f, []byte("# verify commands this runner may run\n\n"+strings.Join(commands, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func drillPolicy(src, scratch string) coordinator.Policy {
	check := drillCheck(src)
	return coordinator.Policy{Name: "p", Paths: []string{src}, Tags: []string{"nightly"},
		Targets: coordinator.Targets{RTO: coordinator.Duration(time.Hour), RPO: coordinator.Duration(24 * time.Hour)},
		Drill: &coordinator.DrillSpec{Scratch: scratch, ScratchLimit: "1GiB",
			Verify: []coordinator.VerifyCommand{{Command: check, Timeout: coordinator.Duration(time.Minute)}}}}
}

func TestAgentDrill(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	scratch := t.TempDir()
	pol := drillPolicy(src, scratch)
	tc.policy(pol)
	allowFile := allowList(t, drillCheck(src), failingCheck)
	allowed, err := LoadVerifyCommands(allowFile)
	if err != nil || !slices.Equal(allowed, []string{drillCheck(src), failingCheck}) {
		t.Fatalf("LoadVerifyCommands = %q, %v", allowed, err)
	}
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "d1",
		Identity: parseIdentity(t, tc.identity), VerifyCommands: allowed, VerifyCommandsFile: allowFile})
	tc.waitCapable("d1", true)
	b := tc.waitJob(tc.run("p"), "finish", final)
	if b.State != coordinator.JobSucceeded {
		t.Fatalf("backup: %+v", b.Result)
	}
	// A newer manual backup of the same paths with a tag of its own is not
	// the policy's: "latest" still means the policy's own snapshot.
	if _, err := snapshot.Backup(t.Context(), tc.openRepo(), snapshot.BackupOptions{Paths: []string{src}, Host: "by-hand",
		Tags: append(slices.Clone(pol.Tags), "before-upgrade")}); err != nil {
		t.Fatal(err)
	}

	j, rec, res := tc.drill("p")
	if j.State != coordinator.JobSucceeded || !rec.Passed || len(rec.Reasons) > 0 {
		t.Fatalf("drill %s: %+v; record %+v", j.State, j.Result, rec)
	}
	if rec.Runner != "d1" || rec.SnapshotID != b.Result.SnapshotID || rec.Trigger != coordinator.TriggerManual || rec.TriggeredBy != "test" ||
		rec.RTOSeconds <= 0 || !strings.HasPrefix(rec.Summary, "passed: 3 files") {
		t.Errorf("record %+v", rec)
	}
	if res.Files != 3 || res.Bytes != int64(12+3<<20+1) || res.JobID != j.ID || res.Runner != "d1" || len(res.Checks) != 1 || !res.Checks[0].Passed {
		t.Errorf("result: files %d bytes %d job %q runner %q checks %+v", res.Files, res.Bytes, res.JobID, res.Runner, res.Checks)
	}
	if left, _ := os.ReadDir(scratch); len(left) > 0 {
		t.Errorf("scratch not cleaned: %v", left)
	}

	// Each failure is a final verdict with its precise reason.
	files := packFiles(t, tc.repoURL)
	data := files[dataPacks(t, tc.openRepo())[0].String()]
	orig, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	// A command not in the runner's allow-list (here: one that would
	// leave a file behind) is refused, never run.
	marker := filepath.Join(t.TempDir(), "ran")
	refused := "touch " + marker
	for _, c := range []struct {
		name    string
		policy  func(*coordinator.Policy)
		damage  func()
		reasons []string
		summary string
	}{
		{name: "check", policy: func(p *coordinator.Policy) {
			p.Drill.Verify = append(p.Drill.Verify, coordinator.VerifyCommand{Command: failingCheck})
		}, reasons: []string{drill.ReasonCheck}, summary: "exited with code 3: db will not start"},
		{name: "refused", policy: func(p *coordinator.Policy) {
			p.Drill.Verify = append(p.Drill.Verify, coordinator.VerifyCommand{Command: refused})
		}, reasons: []string{drill.ReasonCheck},
			summary: fmt.Sprintf(`verify command %q refused on this runner: not in this runner's allow-list (%s)`, refused, allowFile)},
		{name: "rto", policy: func(p *coordinator.Policy) { p.Targets.RTO = coordinator.Duration(time.Nanosecond) },
			reasons: []string{drill.ReasonRTO}, summary: "over the RTO target"},
		{name: "flipped byte", damage: func() {
			b := slices.Clone(orig)
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(data, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, reasons: []string{drill.ReasonCorrupt, drill.ReasonContent}, summary: "corrupt"},
		{name: "deleted pack", damage: func() {
			if err := os.Remove(data); err != nil {
				t.Fatal(err)
			}
		}, reasons: []string{drill.ReasonMissing}, summary: "not found"},
	} {
		p := drillPolicy(src, scratch)
		if c.policy != nil {
			c.policy(&p)
		}
		tc.policy(p)
		if c.damage != nil {
			c.damage()
		}
		j, rec, res := tc.drill("p")
		if j.State != coordinator.JobFailed || j.Attempt != 1 || rec.Passed || len(rec.Reasons) == 0 {
			t.Fatalf("%s: drill %s attempt %d, record %+v", c.name, j.State, j.Attempt, rec)
		}
		for _, r := range rec.Reasons {
			if !slices.Contains(c.reasons, r) {
				t.Errorf("%s: reasons %v, want only %v", c.name, rec.Reasons, c.reasons)
			}
		}
		if !strings.HasPrefix(rec.Summary, "FAILED") || !strings.Contains(rec.Summary, c.summary) || !strings.Contains(j.Result.Error, "FAILED") {
			t.Errorf("%s: summary %q, job error %q", c.name, rec.Summary, j.Result.Error)
		}
		t.Logf("%s: %v %s", c.name, rec.Reasons, rec.Summary)
		if len(res.Failures) == 0 || res.Passed {
			t.Errorf("%s: result %+v", c.name, res)
		}
		if c.name == "refused" {
			if _, err := os.Lstat(marker); err == nil {
				t.Errorf("the refused command ran")
			}
			if len(res.Checks) != 2 || !res.Checks[0].Passed || res.Checks[1].Command != refused || res.Checks[1].Passed || res.Checks[1].ExitCode != -1 {
				t.Errorf("refused: checks %+v", res.Checks)
			}
		}
		if c.damage != nil {
			if err := os.WriteFile(data, orig, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Repaired, it passes again.
	tc.policy(drillPolicy(src, scratch))
	if j, rec, _ := tc.drill("p"); j.State != coordinator.JobSucceeded || !rec.Passed {
		t.Fatalf("drill after repair: %s %+v", j.State, rec)
	}
}

// TestAgentWithoutIdentityGetsNoDrill: the capability follows --identity
// from one start to the next.
func TestAgentWithoutIdentityGetsNoDrill(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	tc.policy(drillPolicy(src, t.TempDir()))
	dataDir := t.TempDir()
	cfg := Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: dataDir, Name: "d1",
		Identity: parseIdentity(t, tc.identity), Logger: testLogger(t), Version: "test",
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, PollWait: time.Second}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	tc.waitCapable("d1", true)
	// The coordinator knows the agent (and its capability) as soon as the
	// enrollment commits, a moment before the agent has stored its
	// credential: stopping it in between left a restart nothing to log in
	// with, so it tried the join token again and was refused.
	waitFor(t, "agent d1 to store its credential", func() bool {
		_, err := os.Stat(filepath.Join(dataDir, credentialFile))
		return err == nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	cfg.Identity = nil
	_, restarted := startAgent(t, cfg)
	tc.waitCapable("d1", false, restarted)
	_, err = tc.node.RunDrill(t.Context(), "test", "p", "")
	if err == nil || !strings.Contains(err.Error(), "no connected drill runner") {
		t.Fatalf("RunDrill without a runner: %v", err)
	}
	// The agent refuses a drill it cannot run, should one reach it.
	noID, err := New(Config{Servers: []string{tc.srv.URL}, DataDir: t.TempDir(), Name: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	out := noID.drill(t.Context(), &runningJob{item: &coordinator.WorkItem{Job: coordinator.Job{ID: "dr-x", Kind: coordinator.KindDrill}}})
	if out.err == nil || out.drill != nil || !strings.Contains(out.err.Error(), "--identity") {
		t.Errorf("drill without identity: %+v", out)
	}
}

func TestFitResult(t *testing.T) {
	res := &drill.Result{ID: "x", Failures: []drill.Failure{}}
	for i := range 20000 {
		res.Failures = append(res.Failures, drill.Failure{Reason: drill.ReasonContent, Path: fmt.Sprintf("srv/data/file-%05d", i), Message: "content differs in chunk 1 of 3"})
	}
	for range 3 {
		res.Checks = append(res.Checks, drill.CheckResult{Command: "check", Output: strings.Repeat("x", 4<<10)})
	}
	b := fitResult(res, coordinator.MaxDrillResult)
	if b == nil || len(b) > coordinator.MaxDrillResult {
		t.Fatalf("fitted result of %d bytes", len(b))
	}
	var got drill.Result
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	last := got.Failures[len(got.Failures)-1]
	if len(got.Failures) < 100 || !strings.Contains(last.Message, "more failures, left out") || len(got.Checks[0].Output) > checkOutputKept+10 {
		t.Errorf("fitted: %d failures, last %+v, output %d bytes", len(got.Failures), last, len(got.Checks[0].Output))
	}
	if len(res.Failures) != 20000 || len(res.Checks[0].Output) != 4<<10 {
		t.Error("fitResult changed its input")
	}
}

// TestAgentDrillS3: a drill and a verification against MinIO, the S3
// credentials coming from the coordinator's repository record.
func TestAgentDrillS3(t *testing.T) {
	env := storetest.MinIO(t)
	tc := newTestCoordinator(t)
	url := "s3:http://" + env.Endpoint + "/" + env.Bucket + "/repo"
	creds := map[string]string{"AWS_ACCESS_KEY_ID": env.AccessKey, "AWS_SECRET_ACCESS_KEY": env.SecretKey}
	for k, v := range creds {
		t.Setenv(k, v) // for the test's own init below; the agent uses the record's
	}
	st, err := location.Open(t.Context(), url, true)
	if err != nil {
		t.Fatal(err)
	}
	idFile, recipient, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := chunkstore.Init(t.Context(), st, chunkstore.InitOptions{Recipients: []string{recipient}})
	if err != nil {
		t.Fatal(err)
	}
	key, err := chunkstore.MarshalWriterKey(sec)
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.node.AddRepository(t.Context(), "test", coordinator.AddRepository{Name: "s3", URL: url, WriterKey: key, Env: creds}); err != nil {
		t.Fatal(err)
	}
	for k := range creds {
		t.Setenv(k, "")
	}
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	p := drillPolicy(src, t.TempDir())
	p.Repository = "s3"
	tc.policy(p)
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "d1",
		Identity: parseIdentity(t, idFile), VerifyCommands: []string{drillCheck(src)}})
	tc.waitCapable("d1", true)
	if b := tc.waitJob(tc.run("p"), "finish", final); b.State != coordinator.JobSucceeded {
		t.Fatalf("backup: %+v", b.Result)
	}
	if j, rec, res := tc.drill("p"); j.State != coordinator.JobSucceeded || !rec.Passed || res.Files != 3 {
		t.Fatalf("drill on S3: %s %+v", j.State, rec)
	}
	vid, err := tc.node.VerifyRepository(t.Context(), "test", "s3", true)
	if err != nil {
		t.Fatal(err)
	}
	if j := tc.waitJob(vid, "finish", final); j.State != coordinator.JobSucceeded || j.Result.Verify.Packs < 2 || len(j.Result.Verify.Damaged) > 0 {
		t.Fatalf("verify on S3: %s %+v", j.State, j.Result)
	}

	// A data pack deleted behind the repository's back fails the drill.
	repo, err := chunkstore.Open(t.Context(), st, chunkstore.Credentials{Identities: parseIdentity(t, idFile)}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gone := chunkstore.PackName(dataPacks(t, repo)[0])
	if err := env.Client(t).RemoveObject(t.Context(), env.Bucket, "repo/"+gone, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	j, rec, _ := tc.drill("p")
	if j.State != coordinator.JobFailed || rec.Passed || !slices.Equal(rec.Reasons, []string{drill.ReasonMissing}) {
		t.Fatalf("drill with a deleted pack: %s %+v", j.State, rec)
	}
	if !strings.Contains(rec.Summary, "FAILED (missing)") {
		t.Errorf("summary %q", rec.Summary)
	}
}

func TestAllowCommandMessages(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "not in this runner's allow-list (none: start the agent with --drill-commands FILE)"},
		{Config{VerifyCommands: []string{"true"}, VerifyCommandsFile: "/etc/lifeboat/drill-commands"}, "not in this runner's allow-list (/etc/lifeboat/drill-commands)"},
	} {
		a := &Agent{cfg: c.cfg}
		if err := a.allowCommand("rm -rf /"); err == nil || err.Error() != c.want {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
		if err := a.allowCommand("true "); err == nil {
			t.Errorf("%+v: a command that differs by a space is allowed", c.cfg)
		}
	}
	if err := (&Agent{cfg: Config{VerifyCommands: []string{"true"}}}).allowCommand("true"); err != nil {
		t.Errorf("allowed command refused: %v", err)
	}
	if _, err := LoadVerifyCommands(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("LoadVerifyCommands of a missing file: no error")
	}
}
