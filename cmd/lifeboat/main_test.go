package main

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

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// The tests run the real binary as a subprocess, so they exercise exactly
// what users get: flag parsing, environment, stdout/stderr and exit codes.

var binary string

func TestMain(m *testing.M) {
	if os.Getenv("LIFEBOAT_TEST_HOLD_PRUNE_SESSION") != "" {
		holdPruneSession() // a helper process (sessions_test.go); never returns
	}
	dir, err := os.MkdirTemp("", "lifeboat-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "lifeboat")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build lifeboat:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs the binary with a clean LIFEBOAT_* environment.
type cli struct {
	t     *testing.T
	dir   string   // working directory
	env   []string // extra KEY=value pairs
	stdin []byte   // standard input (empty if nil)
}

type result struct {
	code           int
	stdout, stderr string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	c := &cli{t: t, dir: t.TempDir()}
	c.env = []string{"XDG_CACHE_HOME=" + filepath.Join(c.dir, "cache")}
	return c
}

func (c *cli) with(env ...string) *cli {
	return &cli{t: c.t, dir: c.dir, env: append(append([]string{}, c.env...), env...), stdin: c.stdin}
}

// input returns a cli whose commands read in on standard input.
func (c *cli) input(in []byte) *cli {
	return &cli{t: c.t, dir: c.dir, env: c.env, stdin: in}
}

// command is lifeboat with args, run as c runs it: in c's directory,
// with c's environment and none of the caller's LIFEBOAT_ settings.
func (c *cli) command(args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Dir = c.dir
	// A new session has no controlling terminal, so a passphrase prompt
	// fails instead of waiting for input.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LIFEBOAT_") && !strings.HasPrefix(kv, "XDG_CACHE_HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, c.env...)
	return cmd
}

func (c *cli) run(args ...string) result {
	c.t.Helper()
	cmd := c.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if c.stdin != nil {
		cmd.Stdin = bytes.NewReader(c.stdin)
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run lifeboat %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// ok runs a command that must succeed.
func (c *cli) ok(args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("lifeboat %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs a command that must exit with code and mention every want
// string on stderr.
func (c *cli) fails(code int, args []string, want ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.code != code {
		c.t.Fatalf("lifeboat %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			c.t.Errorf("lifeboat %s: stderr does not mention %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
	if !strings.HasPrefix(r.stderr, "lifeboat: ") {
		c.t.Errorf("lifeboat %s: stderr does not start with \"lifeboat: \":\n%s", strings.Join(args, " "), r.stderr)
	}
	return r
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode JSON %q: %v", s, err)
	}
	return v
}

// repo is an initialised repository with its credentials.
type repo struct {
	path, identity, key string
}

// initRepo runs init into dir/name and returns the repository.
func initRepo(t *testing.T, c *cli, name string, extra ...string) repo {
	t.Helper()
	r := repo{
		path:     filepath.Join(c.dir, name),
		identity: filepath.Join(c.dir, name+"-identity.txt"),
		key:      filepath.Join(c.dir, name+"-writer.key"),
	}
	args := append([]string{"init", "--repo", r.path, "--identity-out", r.identity, "--key-out", r.key}, extra...)
	c.ok(args...)
	return r
}

// backedUpSmallTree makes a repository and backs up smallTree, created
// in a new directory src, with the writer key.
func backedUpSmallTree(t *testing.T) (*cli, repo, string, fixture.Tree) {
	t.Helper()
	c, r, src, tree := smallTreeRepo(t)
	c.ok(r.writer("backup", src)...)
	return c, r, src, tree
}

// smallTreeRepo is a new local repository and smallTree at DIR/src, not
// yet backed up.
func smallTreeRepo(t *testing.T) (*cli, repo, string, fixture.Tree) {
	t.Helper()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	tree := smallTree()
	fixture.Create(t, src, tree)
	return c, r, src, tree
}

// reader returns cmd followed by the flags that open r with its identity.
func (r repo) reader(cmd ...string) []string {
	return append(cmd, "--repo", r.path, "--identity", r.identity)
}

// writer returns cmd followed by the flags that open r with its writer key.
func (r repo) writer(cmd ...string) []string {
	return append(cmd, "--repo", r.path, "--key", r.key)
}

// openWriter opens local repository r directly with its writer key: to
// look into its index, or plant objects a command would not write.
func openWriter(t *testing.T, r repo) *chunkstore.Repository {
	t.Helper()
	st, err := local.Open(r.path, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(r.key)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := chunkstore.ParseWriterKey(b)
	if err != nil {
		t.Fatal(err)
	}
	w, err := chunkstore.Open(context.Background(), st, chunkstore.Credentials{Writer: sec}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// addOtherIdentity makes the identity of a new repository "other" a
// recipient of r with 'key add' (its writer key of the new generation
// at gen1.key in c's directory), and returns that repository.
func addOtherIdentity(t *testing.T, c *cli, r repo) repo {
	t.Helper()
	other := initRepo(t, c, "other")
	c.ok(r.reader("key", "add", "--recipient", identityRecipient(t, other.identity), "--key-out", filepath.Join(c.dir, "gen1.key"))...)
	return other
}

// identityRecipient returns the public key written in identity file file.
func identityRecipient(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		if strings.HasPrefix(f, "age1") {
			return f
		}
	}
	t.Fatalf("no public key in %s", file)
	return ""
}
