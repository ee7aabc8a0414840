package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// lifeboatBin is the binary under test, built once by TestMain.
var lifeboatBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "lifeboat-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Others may run it (TestUnprivileged runs it as nobody).
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	lifeboatBin = filepath.Join(dir, "lifeboat")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The import path, not ./cmd/lifeboat: go test runs in e2e/.
	build := exec.CommandContext(ctx, "go", "build", "-o", lifeboatBin, "github.com/lifeboat-backup/lifeboat/cmd/lifeboat")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build lifeboat: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// result is one finished run of the binary.
type result struct {
	Args           []string
	Stdout, Stderr string
	Code           int // exit code; -1 when killed by a signal
	Dur            time.Duration
}

func (r result) out() string { return r.Stdout + r.Stderr }

func (r result) String() string {
	return fmt.Sprintf("lifeboat %s: exit %d after %v\n--- stdout\n%s--- stderr\n%s", strings.Join(r.Args, " "), r.Code, r.Dur.Round(time.Millisecond), r.Stdout, r.Stderr)
}

// cli runs the binary against one repository with one set of credentials.
// Every run gets HOME and XDG_CACHE_HOME inside home, so caches are per
// test and shared by the commands of that test, as for a real user.
type cli struct {
	t        testing.TB
	repo     string
	identity string // identity file, "" for none
	key      string // writer key file, "" for none
	home     string
	env      []string // extra KEY=VALUE, applied last
	timeout  time.Duration
	cred     *syscall.Credential // run as this user, when set
}

func newCLI(t testing.TB, repo string) *cli {
	return &cli{t: t, repo: repo, home: t.TempDir(), timeout: 3 * time.Minute}
}

// with returns a copy of c with other credentials or environment.
func (c *cli) with(f func(*cli)) *cli {
	d := *c
	d.env = append([]string(nil), c.env...)
	f(&d)
	return &d
}

func (c *cli) environ() []string {
	env := make([]string, 0, len(os.Environ())+8)
	for _, kv := range os.Environ() {
		// Nothing from the developer's own lifeboat setup may leak in.
		if strings.HasPrefix(kv, "LIFEBOAT_") && !strings.HasPrefix(kv, "LIFEBOAT_TEST_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+c.home, "XDG_CACHE_HOME="+filepath.Join(c.home, ".cache"), "NO_COLOR=1")
	return append(env, c.env...)
}

// command builds the exec.Cmd for "lifeboat sub args... --repo R [creds]".
// Credentials and --repo are appended unless the caller passes them.
func (c *cli) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string(nil), args...)
	has := func(flag string) bool {
		for _, a := range args {
			if a == flag || strings.HasPrefix(a, flag+"=") {
				return true
			}
		}
		return false
	}
	if c.repo != "" && !has("--repo") {
		full = append(full, "--repo", c.repo)
	}
	if c.identity != "" && !has("--identity") {
		full = append(full, "--identity", c.identity)
	}
	if c.key != "" && !has("--key") {
		full = append(full, "--key", c.key)
	}
	cmd := exec.CommandContext(ctx, lifeboatBin, full...)
	cmd.Env = c.environ()
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	cmd.Stdin = nil
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs the binary to completion and returns what it did.
func (c *cli) run(args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	cmd := c.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{Args: cmd.Args[1:], Stdout: stdout.String(), Stderr: stderr.String(), Dur: time.Since(start)}
	r.Code = exitCode(cmd, err)
	if ctx.Err() != nil {
		c.t.Fatalf("timed out after %v: %s", c.timeout, r)
	}
	return r
}

func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		if err != nil {
			return -2
		}
		return 0
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1
	}
	return cmd.ProcessState.ExitCode()
}

// ok runs the binary and fails the test unless it exits 0.
func (c *cli) ok(args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.Code != 0 {
		c.t.Fatalf("want exit 0: %s", r)
	}
	return r
}

// backupSummary is the --json output of backup.
type backupSummary struct {
	SnapshotID      string  `json:"snapshot_id"`
	FilesNew        int64   `json:"files_new"`
	FilesChanged    int64   `json:"files_changed"`
	FilesUnmodified int64   `json:"files_unmodified"`
	BytesProcessed  int64   `json:"bytes_processed"`
	BytesAdded      int64   `json:"bytes_added"`
	DurationSeconds float64 `json:"duration_seconds"`
}

// backup runs "backup --json path" with the writer key and decodes its summary.
func (c *cli) backup(path string, extra ...string) (backupSummary, result) {
	c.t.Helper()
	r := c.ok(append([]string{"backup", "--json", path}, extra...)...)
	return parseSummary(c.t, r), r
}

func parseSummary(t testing.TB, r result) backupSummary {
	t.Helper()
	var s backupSummary
	i := strings.Index(r.Stdout, "{")
	if i < 0 {
		t.Fatalf("backup --json printed no JSON object: %s", r)
	}
	if err := json.NewDecoder(strings.NewReader(r.Stdout[i:])).Decode(&s); err != nil {
		t.Fatalf("decode backup --json output: %v: %s", err, r)
	}
	if len(s.SnapshotID) < 8 {
		t.Fatalf("backup --json has no snapshot_id: %s", r)
	}
	return s
}

// wantFail asserts a non-zero exit whose output contains every one of
// want (case-insensitively); each want may list alternatives separated by
// "|".
func wantFail(t testing.TB, r result, want ...string) {
	t.Helper()
	if r.Code == 0 {
		t.Fatalf("want a non-zero exit: %s", r)
	}
	if r.Code < 0 {
		t.Fatalf("died from a signal: %s", r)
	}
	wantOutput(t, r, want...)
	t.Logf("exit %d: %s", r.Code, lastLine(r.Stderr))
	if strings.Contains(r.out(), "panic:") || strings.Contains(r.out(), "goroutine ") {
		t.Fatalf("the binary panicked: %s", r)
	}
}

func wantOutput(t testing.TB, r result, want ...string) {
	t.Helper()
	out := strings.ToLower(r.out())
	for _, w := range want {
		found := false
		for _, alt := range strings.Split(w, "|") {
			if strings.Contains(out, strings.ToLower(alt)) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("output does not mention %q: %s", w, r)
		}
	}
}

// testRepo is a repository with its credentials on disk.
type testRepo struct {
	url      string // as passed to --repo
	identity string // identity file
	key      string // writer key file
	dir      string // local repositories: the directory
}

// initCLI creates a repository with "lifeboat init".
func initCLI(t testing.TB, repo string) testRepo {
	t.Helper()
	keys := t.TempDir()
	tr := testRepo{url: repo, identity: filepath.Join(keys, "identity.txt"), key: filepath.Join(keys, "writer.key")}
	if strings.HasPrefix(repo, "/") {
		tr.dir = repo
	}
	c := newCLI(t, repo)
	c.ok("init", "--identity-out", tr.identity, "--key-out", tr.key)
	for _, f := range []string{tr.identity, tr.key} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Fatalf("init did not write %s: %v", f, err)
		}
	}
	return tr
}

// initAPI creates a repository through chunkstore, for tests that need a
// pack size the CLI does not offer (small packs make many packs out of a
// dataset that is quick to generate) or a passphrase-protected identity.
func initAPI(t testing.TB, repo string, packSize int, passphrase string) testRepo {
	t.Helper()
	ctx := context.Background()
	keys := t.TempDir()
	tr := testRepo{url: repo, identity: filepath.Join(keys, "identity.txt"), key: filepath.Join(keys, "writer.key")}
	if strings.HasPrefix(repo, "/") {
		tr.dir = repo
	}
	idFile, rcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := location.Open(ctx, repo, true)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{rcpt}, PackSize: packSize})
	if err != nil {
		t.Fatal(err)
	}
	if passphrase != "" {
		if idFile, err = chunkstore.ProtectIdentityFile(idFile, passphrase); err != nil {
			t.Fatal(err)
		}
	}
	wk, err := chunkstore.MarshalWriterKey(sec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tr.identity, idFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tr.key, wk, 0o600); err != nil {
		t.Fatal(err)
	}
	return tr
}

// writer and reader return CLIs holding the writer key or the identity.
func (tr testRepo) writer(t testing.TB) *cli {
	c := newCLI(t, tr.url)
	c.key = tr.key
	return c
}

func (tr testRepo) reader(t testing.TB) *cli {
	c := newCLI(t, tr.url)
	c.identity = tr.identity
	return c
}

// open opens the repository in-process with the identity.
func (tr testRepo) open(t testing.TB) *chunkstore.Repository {
	t.Helper()
	ctx := context.Background()
	st, err := location.Open(ctx, tr.url, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(tr.identity)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := chunkstore.ParseIdentityFile(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return storetest.OpenIndexed(t, st, ids)
}

// objects lists the repository's objects under prefix with their sizes.
func (tr testRepo) objects(t testing.TB, prefix string) map[string]int64 {
	t.Helper()
	st, err := location.Open(context.Background(), tr.url, false)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	err = st.List(context.Background(), prefix, func(oi chunkstore.ObjectInfo) error {
		out[oi.Name] = oi.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// packStats counts the packs on storage and their bytes.
func (tr testRepo) packStats(t testing.TB) (n int, bytes int64) {
	for _, size := range tr.objects(t, chunkstore.DataPrefix) {
		n++
		bytes += size
	}
	return n, bytes
}

// tmpFiles counts temporary files a killed local Put left behind.
func tmpFiles(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), ".tmp-") {
			n++
		}
		return nil
	})
	return n
}

// mib formats a byte count.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
