package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// snapshotCount lists r's snapshots with the writer key.
func snapshotCount(t *testing.T, c *cli, r repo) int {
	t.Helper()
	return len(decodeJSON[[]snapshotJSON](t, c.ok(r.writer("snapshots", "--json")...).stdout))
}

// TestStreamBackupAndDump backs up standard input and a command's output,
// and reads them back with dump: a stream that fails saves no snapshot,
// and dump's output is the exact bytes.
func TestStreamBackupAndDump(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	data := append(fixture.Random(3, 3<<20), bytes.Repeat([]byte("COPY t FROM stdin;\n"), 50_000)...)

	// --stdin.
	out := c.input(data).ok(r.writer("backup", "--stdin", "--stdin-filename", "app.sql", "--json")...)
	sum := decodeJSON[backupOutput](t, out.stdout)
	if sum.FilesNew != 1 || sum.BytesProcessed != uint64(len(data)) {
		t.Errorf("backup --stdin summary %+v: want one new file of %d bytes", sum, len(data))
	}
	snaps := decodeJSON[[]snapshotJSON](t, c.ok(r.writer("snapshots", "--json")...).stdout)
	if len(snaps) != 1 || len(snaps[0].Paths) != 1 || snaps[0].Paths[0] != "/app.sql" {
		t.Fatalf("snapshots %+v: want one of /app.sql", snaps)
	}
	if got := c.ok(r.reader("dump", "latest", "/app.sql")...).stdout; got != string(data) {
		t.Errorf("dump latest /app.sql: %d bytes differing from the %d backed up", len(got), len(data))
	}
	// Without PATH: the snapshot's one path.
	if got := c.ok(r.reader("dump", "latest")...).stdout; got != string(data) {
		t.Errorf("dump latest (no PATH): %d bytes differing from the %d backed up", len(got), len(data))
	}

	// --stdin-from-command: the command's output, its stderr passed on.
	src := filepath.Join(c.dir, "dump.bin")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fromCommand := func(command ...string) []string {
		return append(r.writer("backup", "--stdin-from-command", "--stdin-filename", "cmd.sql"), append([]string{"--"}, command...)...)
	}
	out = c.ok(fromCommand("sh", "-c", "cat \"$1\"; echo dumping done >&2", "sh", src)...)
	if !strings.Contains(out.stderr, "dumping done") {
		t.Errorf("the command's stderr was not passed on:\n%s", out.stderr)
	}
	if got := c.ok(r.reader("dump", "latest", "cmd.sql")...).stdout; got != string(data) {
		t.Errorf("dump of the command's output: %d bytes differing from the %d it wrote", len(got), len(data))
	}
	if n := snapshotCount(t, c, r); n != 2 {
		t.Fatalf("%d snapshots, want 2", n)
	}

	// A command that fails, after writing much or nothing, saves no
	// snapshot, and nor does one that cannot start.
	c.fails(1, fromCommand("sh", "-c", "cat \"$1\"; exit 3", "sh", src),
		`command sh -c 'cat "$1"; exit 3' sh `+src+" failed (exit status 3)", "no snapshot was written")
	c.fails(1, fromCommand("false"), "command false failed (exit status 1)")
	c.fails(1, fromCommand("no-such-command-xyz"), "cannot start", "no-such-command-xyz")
	if n := snapshotCount(t, c, r); n != 2 {
		t.Errorf("%d snapshots after failed streams, want still 2", n)
	}

	// An empty stream is saved, with a warning.
	out = c.input([]byte{}).ok(r.writer("backup", "--stdin")...)
	if !strings.Contains(out.stderr, "the stream was empty") {
		t.Errorf("empty stdin: no warning:\n%s", out.stderr)
	}

	// Usage errors.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{r.writer("backup", "--stdin", "/etc"), "--stdin takes no PATH"},
		{append(r.writer("backup", "--stdin", "--stdin-from-command"), "--", "true"), "exclude each other"},
		{r.writer("backup", "--stdin-from-command"), "needs the command after --"},
		{r.writer("backup", "--stdin-filename", "x", "/etc"), "--stdin-filename needs --stdin"},
		{r.writer("backup", "--stdin", "--stdin-filename", "a/b"), `"a/b": give one file name`},
		{r.writer("backup", "--stdin", "--exclude", "*.tmp"), "--exclude does not apply to a stream"},
	} {
		c.input([]byte("x")).fails(2, tc.args, tc.want)
	}

	// dump --output: a new file, never an existing one. (latest is now
	// the empty stream's snapshot: --path picks the newest of /app.sql.)
	dst := filepath.Join(c.dir, "restored.sql")
	c.ok(r.reader("dump", "--output", dst, "--path", "/app.sql", "latest", "/app.sql")...)
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, data) {
		t.Errorf("dump --output: %d bytes, %v; want the %d backed up", len(got), err, len(data))
	}
	c.fails(1, r.reader("dump", "--output", dst, "--path", "/app.sql", "latest", "/app.sql"), "file exists", "never overwrites")
	r3 := c.fails(1, r.reader("dump", "--output", filepath.Join(c.dir, "no-such-dir", "x.sql"), "--path", "/app.sql", "latest"), "no-such-dir", "no such file or directory")
	if strings.Contains(r3.stderr, "never overwrites") {
		t.Errorf("a missing directory is blamed on overwriting:\n%s", r3.stderr)
	}

	// Errors: a path not in the snapshot, the writer key.
	c.fails(1, r.reader("dump", "latest", "/missing.sql"), "/missing.sql: not in snapshot", "paths: /stdin", "lifeboat ls")
	c.fails(1, r.reader("dump", "--path", "/app.sql", "latest", "/app.sql/x"), "is a file, not a directory")
	r2 := c.fails(1, r.writer("dump", "latest", "/app.sql"), "needs the identity")
	if r2.stdout != "" {
		t.Errorf("dump with the writer key wrote %d bytes to stdout", len(r2.stdout))
	}
}

// TestDumpDirectoryCLI dumps a backed-up directory as a tar archive.
func TestDumpDirectoryCLI(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	fixture.Create(t, src, fixture.Tree{
		"etc/app.conf":  {Content: []byte("port = 8080\n")},
		"etc/link":      {Symlink: "app.conf"},
		"data/blob.bin": {Content: fixture.Random(9, 2<<20)},
	})
	c.ok(r.writer("backup", src)...)
	out := c.ok(r.reader("dump", "latest", filepath.Join(src, "etc"))...)
	got := map[string]string{}
	tr := tar.NewReader(strings.NewReader(out.stdout))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("dump's tar archive: %v", err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(h.Typeflag) + ":" + h.Linkname + ":" + string(b)
	}
	base := strings.TrimPrefix(src, "/") + "/etc"
	want := map[string]string{
		base + "/":         string(tar.TypeDir) + "::",
		base + "/app.conf": string(tar.TypeReg) + "::port = 8080\n",
		base + "/link":     string(tar.TypeSymlink) + ":app.conf:",
	}
	if len(got) != len(want) {
		t.Errorf("archive holds %v, want %v", got, want)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("entry %q: %q, want %q", name, got[name], w)
		}
	}
	c.fails(1, r.reader("dump", "latest", filepath.Join(src, "etc", "link")), "symbolic link to \"app.conf\"")
	// Without PATH, a snapshot of one directory is dumped whole; one of
	// two paths needs the path named.
	if out := c.ok(r.reader("dump", "latest")...).stdout; !strings.Contains(out, "port = 8080") {
		t.Errorf("dump latest (no PATH) of a directory snapshot: no app.conf in the archive")
	}
	c.ok(r.writer("backup", filepath.Join(src, "etc"), filepath.Join(src, "data"))...)
	c.fails(2, r.reader("dump", "latest"), "holds 2 paths", "name the one to dump")
}

// TestStreamInterrupted interrupts backups whose stream has stalled: a
// command still running, and standard input whose writer neither writes
// nor closes. lifeboat ends the command, stops reading, saves no snapshot
// and exits 1.
func TestStreamInterrupted(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	interrupt := func(t *testing.T, cmd *exec.Cmd, stderr *syncBuffer, started func()) {
		t.Helper()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		started()
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("interrupted backup: %v, want exit status 1", err)
			}
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			t.Fatalf("backup still running a minute after the interrupt (its stream was not aborted?)\n%s", stderr.String())
		}
		if !strings.Contains(stderr.String(), "no snapshot was written") {
			t.Errorf("stderr does not say no snapshot was written:\n%s", stderr.String())
		}
	}
	start := func(args ...string) (*exec.Cmd, *syncBuffer) {
		cmd := exec.Command(binary, args...)
		cmd.Dir = c.dir
		cmd.Env = append(os.Environ(), c.env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		stderr := &syncBuffer{}
		cmd.Stderr = stderr
		return cmd, stderr
	}

	t.Run("command", func(t *testing.T) {
		cmd, stderr := start(append(r.writer("backup", "--stdin-from-command"), "--",
			"sh", "-c", "head -c 3000000 /dev/urandom; echo streaming >&2; sleep 600")...)
		interrupt(t, cmd, stderr, func() {
			for !strings.Contains(stderr.String(), "streaming") {
				time.Sleep(20 * time.Millisecond)
			}
		})
	})
	t.Run("stdin", func(t *testing.T) {
		cmd, stderr := start(r.writer("backup", "--stdin")...)
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pw.Close()
		cmd.Stdin = pr
		interrupt(t, cmd, stderr, func() {
			pr.Close() // the child has its own copy
			// Once written, all but a pipe's buffer has been read.
			if _, err := pw.Write(fixture.Random(5, 3<<20)); err != nil {
				t.Fatal(err)
			}
		})
	})
	if n := snapshotCount(t, c, r); n != 0 {
		t.Errorf("%d snapshots after interrupted streams, want none", n)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestShellQuote(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pg_dump", "-Fc", "app"}, "pg_dump -Fc app"},
		{[]string{"sh", "-c", "pg_dump app | gzip"}, "sh -c 'pg_dump app | gzip'"},
		{[]string{"echo", "it's", ""}, `echo 'it'\''s' ''`},
	} {
		if got := shellQuote(tc.args); got != tc.want {
			t.Errorf("shellQuote(%q) = %s, want %s", tc.args, got, tc.want)
		}
	}
}

// TestStdinModeRestored: --stdin reads its pipe in non-blocking mode, a
// mode that belongs to the pipe, not to lifeboat; it is put back, so the
// next reader of the same pipe in a script does not get EAGAIN.
func TestStdinModeRestored(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	// Fd puts the pipe in blocking mode, as a shell's pipe is.
	keep, err := syscall.Dup(int(pr.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(keep)
	cmd := exec.Command(binary, r.writer("backup", "--stdin")...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), c.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin = pr
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write([]byte("some data\n")); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("backup --stdin: %v\n%s", err, stderr.String())
	}
	flags, err := unix.FcntlInt(uintptr(keep), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.O_NONBLOCK != 0 {
		t.Errorf("standard input's pipe left in non-blocking mode after backup --stdin")
	}
}
