package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// webhookLog is a local alert receiver: it records every generic webhook
// delivery.
type webhookLog struct {
	mu    sync.Mutex
	calls []webhookCall
}

type webhookCall struct {
	Kind    string `json:"kind"`
	Key     string `json:"key"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func (l *webhookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var c webhookCall
	if err := json.Unmarshal(b, &c); err != nil {
		http.Error(w, "not json", http.StatusBadRequest)
		return
	}
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

// count returns how many deliveries of kind with status were received.
func (l *webhookLog) count(kind, status string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.calls {
		if c.Kind == kind && c.Status == status {
			n++
		}
	}
	return n
}

func (l *webhookLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, c := range l.calls {
		fmt.Fprintf(&b, "  %s %s %s: %s\n", c.Status, c.Kind, c.Key, c.Message)
	}
	return b.String()
}

// TestDrillProcesses runs restore drills through the whole system: a
// 'lifeboat server' process, a MinIO repository, and an agent process that
// holds the identity (the only one that does) and runs the drills. A drill
// with a real verify command passes; then drills fail for each reason — a
// verify command that exits 3 (and one the runner's --drill-commands
// allow-list refuses), an RTO target too tight, a flipped byte in a data
// pack, a deleted pack — each recorded with that reason and each
// alerting exactly once to a local webhook receiver (a second failing drill
// of the same ongoing problem sends nothing), with one resolve message
// when a drill passes again. A full verification finds the flipped pack
// (one verify_damage alert, resolved when the pack is repaired).
func TestDrillProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process drill test")
	}
	s3 := storetest.MinIO(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	repoURL := "s3:http://" + s3.Endpoint + "/" + s3.Bucket + "/repo"
	raw := s3.Client(t)

	root := t.TempDir()
	procs, urls := startServers(t, root, 1)
	agent := &agentProc{process{name: "agent-d", dir: filepath.Join(root, "agent-d")}}
	t.Cleanup(func() {
		agent.kill()
		if t.Failed() {
			logTails(t, root, 20000, "n1", "agent-d")
		}
	})
	hooks := &webhookLog{}
	receiver := httptest.NewServer(hooks)
	defer receiver.Close()

	lb := coordCLI{env: []string{"LIFEBOAT_ADDR=" + strings.Join(urls, ","), "LIFEBOAT_TOKEN=" + adminToken(t, procs), "HOME=" + root}}
	waitFor(t, 30*time.Second, "the cluster to accept writes", func() bool {
		_, err := lb.run("agent", "token", "create", "--ttl", "1h")
		return err == nil
	})
	id, key := filepath.Join(root, "id.txt"), filepath.Join(root, "writer.key")
	lb.must(t, "init", "--repo", repoURL, "--identity-out", id, "--key-out", key)
	lb.must(t, "repo", "add", "r", "--repo", repoURL, "--key", key)
	lb.must(t, "alert", "target", "add", "hook", "--url", receiver.URL, "--kind", "webhook")

	src := filepath.Join(root, "src")
	tree := fixture.Tree{"marker.txt": {Content: []byte("hello drill\n"), Mode: 0o644}}
	for i := range 4 {
		tree[fmt.Sprintf("data/f%d.bin", i)] = fixture.Entry{Content: fixture.Random(uint64(i+7), 3<<20), Mode: 0o644}
	}
	fixture.Create(t, src, tree)

	// The verify commands the runner may run: its allow-list, not the
	// coordinator's policy, decides.
	goodCheck := `grep -q "hello drill" "$LIFEBOAT_DRILL_DIR` + src + `/marker.txt"`
	badCheck := `echo "database would not start" >&2; exit 3`
	allowFile := filepath.Join(root, "drill-commands")
	if err := os.WriteFile(allowFile, []byte("# verify commands agent-d may run\n"+goodCheck+"\n\n"+badCheck+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The agent holds the identity; nothing else in the cluster does.
	out := lb.must(t, "agent", "token", "create", "--ttl", "1h", "--drill-runner")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	agent.args = []string{"agent", "--server", strings.Join(urls, ","), "--data-dir", agent.dir, "--name", "agent-d",
		"--label", "role=db", "--label", "drill=yes", "--identity", id, "--drill-commands", allowFile,
		"--lease-ttl", "10s", "--poll-wait", "2s"}
	agent.env = withoutS3Env("HOME="+root, "LIFEBOAT_JOIN_TOKEN="+lines[len(lines)-1])
	agent.start(t)

	policyFile := filepath.Join(root, "db.yaml")
	schedule := farDaily()
	apply := func(rto, verify string) {
		t.Helper()
		yaml := fmt.Sprintf(`name: db
repository: r
schedule: %q
agents: {role: db}
paths: [%s]
targets: {rto: %s}
drill:
  runner: {drill: "yes"}
  scratch: %s
  verify:
    - command: %q
      timeout: 30s
`, schedule, src, rto, filepath.Join(root, "scratch"), verify)
		if err := os.WriteFile(policyFile, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		lb.must(t, "policy", "apply", "-f", policyFile)
	}
	apply("10m", goodCheck)

	waitFor(t, 30*time.Second, "the agent to announce it can run drills", func() bool {
		out, err := lb.run("agent", "list", "--json")
		var as []coordinator.AgentView
		return err == nil && json.Unmarshal([]byte(out), &as) == nil && len(as) == 1 && slices.Contains(as[0].Capabilities, "drill")
	})
	lb.must(t, "policy", "run", "db")
	waitFor(t, 60*time.Second, "the first backup", func() bool {
		out, err := lb.run("job", "list", "--policy", "db", "--state", "succeeded", "--json")
		var js []coordinator.Job
		return err == nil && json.Unmarshal([]byte(out), &js) == nil && len(js) == 1
	})

	// drill runs one drill with --wait and returns its record and the
	// exit code.
	drillRun := func() (coordinator.DrillView, int) {
		t.Helper()
		cmd := exec.Command(lifeboatBin, "drill", "run", "db", "--wait", "--timeout", "2m", "--json")
		cmd.Env = append(os.Environ(), lb.env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code := exitCode(cmd, cmd.Run())
		var d coordinator.DrillView
		if err := json.Unmarshal(stdout.Bytes(), &d); err != nil {
			t.Fatalf("drill run: exit %d, output not a drill: %v\n%s%s", code, err, stdout.String(), stderr.String())
		}
		return d, code
	}
	type drillResult struct {
		Files  int64 `json:"files"`
		Bytes  int64 `json:"bytes"`
		Checks []struct {
			ExitCode int  `json:"exit_code"`
			Passed   bool `json:"passed"`
		} `json:"checks"`
		Failures []struct {
			Reason, Path, Message string
		} `json:"failures"`
	}
	detail := func(d coordinator.DrillView) drillResult {
		t.Helper()
		var r drillResult
		if err := json.Unmarshal(d.Result, &r); err != nil {
			t.Fatalf("drill %s result: %v\n%s", d.ID, err, d.Result)
		}
		return r
	}
	var want int64
	for _, e := range tree {
		want += int64(len(e.Content))
	}
	pass := func(what string) {
		t.Helper()
		d, code := drillRun()
		r := detail(d)
		if code != 0 || !d.Passed || d.State != "passed" || r.Files != int64(len(tree)) || r.Bytes != want ||
			len(r.Checks) != 1 || !r.Checks[0].Passed || d.RTOSeconds <= 0 || d.RPOSeconds <= 0 || d.Runner != "agent-d" {
			t.Fatalf("%s: drill = exit %d %+v\nresult %+v", what, code, d, r)
		}
	}
	alerts := func(kind, status string, n int) {
		t.Helper()
		waitFor(t, 30*time.Second, fmt.Sprintf("%d %s %s alert(s)", n, status, kind), func() bool { return hooks.count(kind, status) >= n })
		// Exactly n: nothing more arrives over a few more ticks.
		time.Sleep(3 * time.Second)
		if got := hooks.count(kind, status); got != n {
			t.Fatalf("%d %s %s alerts, want exactly %d; received:\n%s", got, status, kind, n, hooks)
		}
	}
	fail := func(what string, reason string, firing int) coordinator.DrillView {
		t.Helper()
		d, code := drillRun()
		if code != 1 || d.Passed || d.State != "failed" || !slices.Contains(d.Reasons, reason) {
			t.Fatalf("%s: drill = exit %d %+v, want a failure with reason %q", what, code, d, reason)
		}
		alerts("drill_failed", "firing", firing)
		return d
	}

	pass("first drill")
	if hooks.count("drill_failed", "firing") != 0 {
		t.Fatalf("alerts for a passing drill:\n%s", hooks)
	}

	// 1. A verify command that exits 3; a second failing drill of the
	// same ongoing problem alerts no more.
	apply("10m", badCheck)
	d := fail("failing verify command", "check", 1)
	if r := detail(d); len(r.Checks) != 1 || r.Checks[0].ExitCode != 3 || r.Checks[0].Passed {
		t.Fatalf("check result = %+v", r.Checks)
	}
	fail("the same failure again", "check", 1)
	// A command not in the runner's allow-list is refused, never run
	// (the drill is still failing: no new alert).
	ran := filepath.Join(root, "refused-command-ran")
	refused := "touch " + ran
	apply("10m", refused)
	d = fail("verify command not in the allow-list", "check", 1)
	refusal := fmt.Sprintf("verify command %q refused on this runner: not in this runner's allow-list (%s)", refused, allowFile)
	if r := detail(d); len(r.Checks) != 1 || r.Checks[0].ExitCode != -1 || r.Checks[0].Passed || len(r.Failures) != 1 ||
		r.Failures[0].Reason != "check" || r.Failures[0].Message != refusal {
		t.Fatalf("refused command: result %+v, want the failure %q", r, refusal)
	}
	if _, err := os.Lstat(ran); err == nil {
		t.Fatal("the refused verify command ran")
	}
	apply("10m", goodCheck)
	pass("after fixing the verify command")
	alerts("drill_failed", "resolved", 1)

	// 2. An RTO target no restore can meet.
	apply("1ms", goodCheck)
	fail("RTO target too tight", "rto", 2)
	apply("10m", goodCheck)
	pass("after relaxing the RTO target")
	alerts("drill_failed", "resolved", 2)

	// 3. A flipped byte in a data pack (the largest object under data/):
	// the drill fails naming the damage, and a full verification finds it.
	ctx := context.Background()
	var pack minio.ObjectInfo
	for o := range raw.ListObjects(ctx, s3.Bucket, minio.ListObjectsOptions{Prefix: "repo/data/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if o.Size > pack.Size {
			pack = o
		}
	}
	orig := getObject(t, raw, s3.Bucket, pack.Key)
	bad := bytes.Clone(orig)
	bad[len(bad)/2] ^= 0x40
	putObject(t, raw, s3.Bucket, pack.Key, bad)
	d = fail("flipped byte in "+pack.Key, "corrupt", 3)
	packID := filepath.Base(pack.Key)
	if r := detail(d); len(r.Failures) == 0 || !strings.Contains(fmt.Sprint(r.Failures), "data/f") {
		t.Fatalf("failures do not name the affected files: %+v", r.Failures)
	}
	lb.must(t, "repo", "verify", "r", "--all")
	alerts("verify_damage", "firing", 1)
	var cov []coordinator.CoverageReport
	if err := json.Unmarshal([]byte(lb.must(t, "repo", "coverage", "--json")), &cov); err != nil {
		t.Fatal(err)
	}
	if len(cov) != 1 || len(cov[0].Damaged) != 1 || cov[0].Damaged[0].Pack != packID {
		t.Fatalf("coverage = %+v, want pack %s damaged", cov, packID)
	}
	putObject(t, raw, s3.Bucket, pack.Key, orig)
	pass("after repairing the pack")
	alerts("drill_failed", "resolved", 3)
	waitFor(t, 60*time.Second, "the repair verified", func() bool {
		_, err := lb.run("repo", "verify", "r", "--all")
		return err == nil && hooks.count("verify_damage", "resolved") == 1
	})
	cov = nil // decoding into old elements would keep the fields the new JSON omits
	if err := json.Unmarshal([]byte(lb.must(t, "repo", "coverage", "--json")), &cov); err != nil {
		t.Fatal(err)
	}
	if len(cov) != 1 || len(cov[0].Damaged) != 0 || cov[0].Ratio != 1 || cov[0].Packs == 0 {
		t.Fatalf("coverage after the repair = %+v", cov)
	}

	// 4. A deleted pack.
	if err := raw.RemoveObject(ctx, s3.Bucket, pack.Key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	fail("deleted pack", "missing", 4)
	putObject(t, raw, s3.Bucket, pack.Key, orig)
	pass("after restoring the pack")
	alerts("drill_failed", "resolved", 4)

	// The evidence: every drill listed, and the report says what happened.
	var list []coordinator.DrillView
	if err := json.Unmarshal([]byte(lb.must(t, "drill", "list", "--policy", "db", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	passed, failed := 0, 0
	for _, d := range list {
		if d.Passed {
			passed++
		} else {
			failed++
		}
	}
	if passed != 5 || failed != 6 {
		t.Fatalf("drill list: %d passed, %d failed, want 5 and 6", passed, failed)
	}
	report := lb.must(t, "drill", "report", "--format", "md")
	for _, s := range []string{"db", "agent-d", "rto", "check", "corrupt", "missing"} {
		if !strings.Contains(report, s) {
			t.Errorf("drill report lacks %q:\n%s", s, report)
		}
	}

	// 5. Retention with a prune schedule: the agent forgets the older
	// snapshot after the next backup, and a prune on the runner (run now
	// with 'policy prune') frees what only that snapshot used; the newest
	// still passes a drill.
	yaml, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	yaml = append(yaml, fmt.Sprintf("retention: {keep_last: 1, prune: %q, max_unused: \"0%%\"}\n", schedule)...)
	if err := os.WriteFile(policyFile, yaml, 0o600); err != nil {
		t.Fatal(err)
	}
	lb.must(t, "policy", "apply", "-f", policyFile)
	tree["data/f0.bin"] = fixture.Entry{Content: fixture.Random(99, 3<<20), Mode: 0o644}
	fixture.Create(t, src, tree)
	lb.must(t, "policy", "run", "db")
	waitFor(t, 60*time.Second, "the second backup", func() bool {
		out, err := lb.run("job", "list", "--policy", "db", "--state", "succeeded", "--json")
		var js []coordinator.Job
		n := 0
		if err == nil && json.Unmarshal([]byte(out), &js) == nil {
			for _, j := range js {
				if j.Kind == coordinator.KindBackup {
					n++
				}
			}
		}
		return n == 2
	})
	var started coordinator.DrillRunResult
	if err := json.Unmarshal([]byte(lb.must(t, "policy", "prune", "db", "--json")), &started); err != nil || started.Agent != "agent-d" {
		t.Fatalf("policy prune: %+v %v", started, err)
	}
	var pj coordinator.Job
	waitFor(t, 60*time.Second, "the prune job", func() bool {
		out, err := lb.run("job", "show", started.ID, "--json")
		return err == nil && json.Unmarshal([]byte(out), &pj) == nil && pj.State.Final()
	})
	if pj.State != coordinator.JobSucceeded || pj.Kind != coordinator.KindPrune || pj.Result == nil || pj.Result.Prune == nil ||
		pj.Result.Prune.Snapshots != 1 || pj.Result.Prune.DeletedBytes < 3<<20 || pj.Result.Prune.PendingMarks != 0 {
		t.Fatalf("prune job %s: %+v", pj.State, pj.Result)
	}
	pass("after the prune")
}

func getObject(t *testing.T, c *minio.Client, bucket, key string) []byte {
	t.Helper()
	o, err := c.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putObject writes an object behind lifeboat's back (a damaged or
// repaired pack).
func putObject(t *testing.T, c *minio.Client, bucket, key string, b []byte) {
	t.Helper()
	if _, err := c.PutObject(context.Background(), bucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}
