package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestAgentStreamPolicy: a policy whose backup on this agent is a
// command's output (hooks file "stream"). A successful command's output is
// the snapshot's one file; a failing one fails the job with its stderr and
// saves nothing; a policy whose paths do not name the stream is refused.
func TestAgentStreamPolicy(t *testing.T) {
	tc := newTestCoordinator(t)
	dir := t.TempDir()
	dump := filepath.Join(dir, "orders.src")
	data := append(fixture.Random(4, 3<<20), bytes.Repeat([]byte("INSERT INTO orders VALUES (7);\n"), 40_000)...)
	if err := os.WriteFile(dump, data, 0o600); err != nil {
		t.Fatal(err)
	}
	hooks := Hooks{
		"orders":   {Stream: &StreamHook{Command: `echo "dumping for $LIFEBOAT_POLICY" >&2; cat ` + dump, Filename: "orders.sql"}},
		"broken":   {Stream: &StreamHook{Command: `head -c 100000 ` + dump + `; echo "pg_dump: error: server closed the connection (code $((40+2)))" >&2; exit 1`, Filename: "broken.sql"}},
		"mismatch": {Stream: &StreamHook{Command: "cat " + dump, Filename: "orders.sql"}},
		"excludes": {Stream: &StreamHook{Command: "cat " + dump, Filename: "x.sql"}},
		"empty":    {Stream: &StreamHook{Command: "true", Filename: "empty.sql"}},
	}
	tc.policy(coordinator.Policy{Name: "orders", Paths: []string{"/orders.sql"}, MaxAttempts: 1})
	tc.policy(coordinator.Policy{Name: "broken", Paths: []string{"/broken.sql"}, MaxAttempts: 1})
	tc.policy(coordinator.Policy{Name: "mismatch", Paths: []string{"/var/backups"}, MaxAttempts: 1})
	tc.policy(coordinator.Policy{Name: "excludes", Paths: []string{"/x.sql"}, Exclude: []string{"*.tmp"}, MaxAttempts: 1})
	tc.policy(coordinator.Policy{Name: "empty", Paths: []string{"/empty.sql"}, MaxAttempts: 1})
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "db", Hooks: hooks})
	tc.waitEnrolled("db")

	j := tc.waitJob(tc.run("orders"), "finish", final)
	if j.State != coordinator.JobSucceeded {
		t.Fatalf("stream policy: job %s: %+v", j.State, j.Result)
	}
	repo := tc.openRepo()
	snap, err := snapshot.Load(t.Context(), repo, mustID(t, j.Result.SnapshotID))
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Paths) != 1 || snap.Paths[0] != "/orders.sql" {
		t.Errorf("snapshot paths %q, want [/orders.sql]", snap.Paths)
	}
	n, err := snapshot.Lookup(t.Context(), repo, snap.Tree, "/orders.sql")
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, id := range n.Content {
		b, err := repo.LoadBlob(context.Background(), chunkstore.DataBlob, id)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("the snapshot holds %d bytes differing from the command's %d", len(got), len(data))
	}

	j = tc.waitJob(tc.run("broken"), "finish", final)
	if j.State != coordinator.JobFailed || !strings.Contains(j.Result.Error, "exit status 1") ||
		!strings.Contains(j.Result.Error, "(code 42)") || !strings.Contains(j.Result.Error, "no snapshot written") {
		t.Errorf("failing stream command: job %s: %+v", j.State, j.Result)
	}
	j = tc.waitJob(tc.run("mismatch"), "finish", final)
	if j.State != coordinator.JobFailed || !strings.Contains(j.Result.Error, "paths must be [/orders.sql]") {
		t.Errorf("policy paths not naming the stream: job %s: %+v", j.State, j.Result)
	}
	j = tc.waitJob(tc.run("excludes"), "finish", final)
	if j.State != coordinator.JobFailed || !strings.Contains(j.Result.Error, "exclude, changing, one_file_system, exclude_caches, exclude_if_present and exclude_larger_than do not apply to a stream") {
		t.Errorf("stream policy with excludes: job %s: %+v", j.State, j.Result)
	}
	if n := len(tc.snapshots()); n != 1 {
		t.Errorf("%d snapshots, want only the successful stream's", n)
	}
	// A command that writes nothing succeeds, with a warning.
	j = tc.waitJob(tc.run("empty"), "finish", final)
	if j.State != coordinator.JobSucceeded || len(j.Result.Warnings) != 1 || !strings.Contains(j.Result.Warnings[0], "wrote nothing") {
		t.Errorf("empty stream: job %s: %+v; want success with a warning", j.State, j.Result)
	}
}

func TestLoadHooksStream(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hooks.yaml")
	for body, want := range map[string]string{
		"db:\n  stream:\n    command: pg_dump app\n    filename: app.sql\n":                                 "",
		"db:\n  stream:\n    filename: app.sql\n":                                                           "stream without a command",
		"db:\n  stream:\n    command: pg_dump app\n":                                                        `stream filename ""`,
		"db:\n  stream:\n    command: pg_dump app\n    filename: a/b\n":                                     `stream filename "a/b"`,
		"\"*\":\n  stream:\n    command: pg_dump app\n    filename: a\n":                                    "a stream belongs to one policy",
		"db:\n  stream:\n    command: pg_dump app\n    filename: app.sql\n---\nweb:\n  pre: {command: x}\n": "more than one YAML document",
		"db:\n  stream:\n    command: pg_dump app\n    filename: app.sql\n---\n":                            "",
		"db:\n  post:\n    command: x\n    takes_snapshot: true\n":                                          "takes_snapshot belongs on the pre hook",
	} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		h, err := LoadHooks(p)
		switch {
		case want == "" && (err != nil || h["db"].Stream == nil || h["db"].Stream.Filename != "app.sql"):
			t.Errorf("%q: %+v, %v; want the stream", body, h, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: %v, want an error mentioning %q", body, err, want)
		}
	}
}

func TestLoadHooksTakesSnapshot(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hooks.yaml")
	if err := os.WriteFile(p, []byte("home:\n  pre:\n    command: snap-home\n    takes_snapshot: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := LoadHooks(p)
	if err != nil || h["home"].Pre == nil || !h["home"].Pre.TakesSnapshot {
		t.Errorf("%+v, %v; want the pre-hook marked as taking a snapshot", h, err)
	}
}

// TestAgentStreamPolicyDrill: a database dump backed up as a stream is
// restored and checked by a drill like any policy's files: the runner
// restores /orders.sql and the verify command reads it.
func TestAgentStreamPolicyDrill(t *testing.T) {
	tc := newTestCoordinator(t)
	dump := filepath.Join(t.TempDir(), "orders.src")
	data := append([]byte("-- orders dump\n"), bytes.Repeat([]byte("INSERT INTO orders VALUES (7);\n"), 20_000)...)
	if err := os.WriteFile(dump, data, 0o600); err != nil {
		t.Fatal(err)
	}
	check := `head -n 1 "$LIFEBOAT_DRILL_DIR/orders.sql" | grep -qx -- '-- orders dump' && test "$(grep -c INSERT "$LIFEBOAT_DRILL_DIR/orders.sql")" = 20000`
	scratch := t.TempDir()
	tc.policy(coordinator.Policy{Name: "orders", Paths: []string{"/orders.sql"}, MaxAttempts: 1,
		Targets: coordinator.Targets{RTO: coordinator.Duration(time.Hour), RPO: coordinator.Duration(24 * time.Hour)},
		Drill: &coordinator.DrillSpec{Scratch: scratch, ScratchLimit: "1GiB",
			Verify: []coordinator.VerifyCommand{{Command: check, Timeout: coordinator.Duration(time.Minute)}}}})
	allowFile := allowList(t, check)
	allowed, err := LoadVerifyCommands(allowFile)
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "db",
		Hooks:    Hooks{"orders": {Stream: &StreamHook{Command: "cat " + dump, Filename: "orders.sql"}}},
		Identity: parseIdentity(t, tc.identity), VerifyCommands: allowed, VerifyCommandsFile: allowFile})
	tc.waitCapable("db", true)
	b := tc.waitJob(tc.run("orders"), "finish", final)
	if b.State != coordinator.JobSucceeded {
		t.Fatalf("stream backup: %+v", b.Result)
	}
	j, rec, res := tc.drill("orders")
	if j.State != coordinator.JobSucceeded || !rec.Passed || rec.SnapshotID != b.Result.SnapshotID {
		t.Fatalf("drill of the stream policy %s: %+v; record %+v", j.State, j.Result, rec)
	}
	if res.Files != 1 || res.Bytes != int64(len(data)) || len(res.Checks) != 1 || !res.Checks[0].Passed {
		t.Errorf("drill result: files %d bytes %d checks %+v; want the one dump file of %d bytes, checked", res.Files, res.Bytes, res.Checks, len(data))
	}
}
