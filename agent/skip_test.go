package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
	"golang.org/x/sys/unix"
)

// TestAgentPolicySkips: a policy's one_file_system, exclude_caches,
// exclude_if_present and exclude_larger_than reach the agent's backup.
func TestAgentPolicySkips(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"cache/CACHEDIR.TAG": {Content: []byte("Signature: 8a477f597d28d172789f06886806bc55")},
		"cache/junk":         {Content: []byte("junk\n")},
		"nb/.nobackup":       {Content: nil},
		"nb/y":               {Content: []byte("y\n")},
		"big":                {Content: fixture.Random(5, 1<<20+1)},
		"small":              {Content: []byte("small\n")},
	})
	m := filepath.Join(src, "mnt")
	if err := os.Mkdir(m, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", m, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount a tmpfs at %s: %v", m, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(m, 0); err != nil {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	})
	fixture.Create(t, m, fixture.Tree{"inside": {Content: []byte("another filesystem\n")}})
	tc.policy(coordinator.Policy{Name: "skips", Paths: []string{src}, MaxAttempts: 1, OneFileSystem: true, ExcludeCaches: true,
		ExcludeIfPresent: []string{".nobackup"}, ExcludeLargerThan: "1MiB"})
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "s"})
	tc.waitEnrolled("s")
	j := tc.waitJob(tc.run("skips"), "finish", final)
	if j.State != coordinator.JobSucceeded || len(j.Result.Warnings) != 0 {
		t.Fatalf("job %s: %+v", j.State, j.Result)
	}
	repo := tc.openRepo()
	snap, err := snapshot.Load(t.Context(), repo, mustID(t, j.Result.SnapshotID))
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		"cache/CACHEDIR.TAG": true, "cache/junk": false, "nb/.nobackup": true, "nb/y": false,
		"big": false, "small": true, "mnt": true, "mnt/inside": false,
	} {
		_, err := snapshot.Lookup(t.Context(), repo, snap.Tree, filepath.Join(src, p))
		if got := err == nil; got != want || err != nil && !errors.Is(err, snapshot.ErrNotInSnapshot) {
			t.Errorf("%s saved: %v (%v), want %v", p, got, err, want)
		}
	}
}
