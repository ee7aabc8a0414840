package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// holdPruneSession is the test binary run as a helper process: it opens
// the repository in LIFEBOAT_TEST_REPO with the writer key in
// LIFEBOAT_TEST_KEY, registers a prune session as machine "elsewhere" (as
// prune and the repairs do), prints its ID and waits to be killed.
func holdPruneSession() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "hold prune session:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	st, err := local.Open(os.Getenv("LIFEBOAT_TEST_REPO"), false)
	if err != nil {
		fail(err)
	}
	b, err := os.ReadFile(os.Getenv("LIFEBOAT_TEST_KEY"))
	if err != nil {
		fail(err)
	}
	wk, err := chunkstore.ParseWriterKey(b)
	if err != nil {
		fail(err)
	}
	repo, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: wk}, chunkstore.Options{})
	if err != nil {
		fail(err)
	}
	s, err := repo.StartSession(ctx, chunkstore.SessionInfo{Host: "elsewhere", Machine: "elsewhere", PID: os.Getpid(), Prune: true, Command: "prune"}, chunkstore.DefaultSessionTiming)
	if err != nil {
		fail(err)
	}
	fmt.Println(s.ID())
	select {}
}

// TestUnlockCLI: a process holding the prune session is killed (kill -9)
// as if on another host. Prune refuses, naming 'lifeboat unlock' and the
// session; 'lifeboat sessions' shows it live; unlock without arguments
// leaves it, unlock with its ID (a prefix) removes it, and prune runs.
func TestUnlockCLI(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")

	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), "LIFEBOAT_TEST_HOLD_PRUNE_SESSION=1", "LIFEBOAT_TEST_REPO="+r.path, "LIFEBOAT_TEST_KEY="+r.key)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = helper.Process.Kill()
		t.Fatalf("helper: %v", err)
	}
	id := strings.TrimSpace(line)
	if err := helper.Process.Kill(); err != nil { // SIGKILL: the session stays behind
		t.Fatal(err)
	}
	_ = helper.Wait()

	c.fails(1, r.reader("prune"), "another prune or repair is running", "prune, session "+id, "host elsewhere", "'lifeboat unlock "+id+"'")
	list := decodeJSON[[]snapshot.SessionStatus](t, c.ok(r.writer("sessions", "--json")...).stdout)
	if len(list) != 1 || list[0].ID != id || list[0].Kind != "prune" || list[0].Host != "elsewhere" || list[0].State != snapshot.SessionLive {
		t.Fatalf("sessions: %+v; want the killed prune's session %s, live", list, id)
	}
	if text := c.ok(r.writer("sessions")...).stdout; !strings.Contains(text, id) || !strings.Contains(text, "1 session") {
		t.Errorf("sessions:\n%s", text)
	}
	if got := c.ok(r.writer("unlock")...).stdout; !strings.Contains(got, "left prune session "+id) || !strings.Contains(got, "no session removed") {
		t.Errorf("unlock without arguments:\n%s", got)
	}
	c.fails(1, r.writer("unlock", "0000000000"), "no such session", "lifeboat sessions")
	if got := c.ok(r.writer("unlock", id[:8])...).stdout; !strings.Contains(got, "removed prune session "+id+" (host elsewhere") {
		t.Errorf("unlock %s:\n%s", id[:8], got)
	}
	c.ok(r.reader("prune")...)
	if list := decodeJSON[[]snapshot.SessionStatus](t, c.ok(r.writer("sessions", "--json")...).stdout); len(list) != 0 {
		t.Errorf("sessions after unlock and prune: %+v", list)
	}
}

// TestSessionsOnReadOnlyRepository: on a repository whose filesystem is
// mounted read-only, 'lifeboat sessions' lists the sessions (it failed:
// "read the store's clock: ... read-only file system") with a note that
// staleness is judged by this machine's clock, also under --json (on
// stderr); unlock, which removes stale sessions by the store's clock,
// still refuses.
func TestSessionsOnReadOnlyRepository(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	mnt := filepath.Join(c.dir, "mnt")
	fixture.MountTmpfs(t, mnt, "size=16m")
	r := initRepo(t, c, "mnt/repo")
	w := openWriter(t, r)
	s, err := w.StartSession(t.Context(), chunkstore.SessionInfo{Host: "elsewhere", Machine: "elsewhere", PID: 1}, chunkstore.DefaultSessionTiming)
	if err != nil {
		t.Fatal(err)
	}
	id := s.ID() // never ended: it stays live for the test's few seconds
	if out, err := exec.Command("mount", "-o", "remount,ro", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v %s", err, out)
	}

	const note = "judged by this machine's clock"
	text := c.ok(r.writer("sessions")...).stdout
	if !strings.Contains(text, id) || !strings.Contains(text, snapshot.SessionLive) || !strings.Contains(text, note) || !strings.Contains(text, "1 session") {
		t.Errorf("sessions on a read-only repository:\n%s", text)
	}
	res := c.ok(r.writer("sessions", "--json")...)
	if list := decodeJSON[[]snapshot.SessionStatus](t, res.stdout); len(list) != 1 || list[0].ID != id || list[0].State != snapshot.SessionLive {
		t.Errorf("sessions --json on a read-only repository: %+v; want session %s, live", list, id)
	}
	if !strings.Contains(res.stderr, note) {
		t.Errorf("sessions --json: no note on stderr that the local clock was used:\n%s", res.stderr)
	}
	c.fails(1, r.writer("unlock"), "read the store's clock", "mounted read-only")
}
