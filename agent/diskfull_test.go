package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestAgentCacheDiskFullAndPartial: with the agent's data directory on a
// full filesystem, a backup still commits and succeeds, and the job says
// that the files cache could not be saved; entries that cannot be read
// make the job partial with a warning naming them; the daemon keeps
// running and the next job works.
func TestAgentCacheDiskFullAndPartial(t *testing.T) {
	dataDir := t.TempDir()
	fixture.MountTmpfs(t, dataDir, "size=256k,mode=0700")

	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	// /proc/self/mem stats fine but cannot be read: a partial backup.
	tc.policy(coordinator.Policy{Name: "p", Paths: []string{src, "/proc/self/mem"}})
	_, done := startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: dataDir, Name: "full"})
	tc.waitEnrolled("full")
	// The coordinator knows the agent a moment before the agent has saved
	// its credential: filling the disk in between would fail enrollment.
	waitFor(t, "the agent's credential on disk", func() bool {
		_, err := os.Stat(filepath.Join(dataDir, credentialFile))
		return err == nil
	})

	// Fill the filesystem to the last block.
	f, err := os.Create(filepath.Join(dataDir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	j := tc.waitJob(tc.run("p"), "finish", final)
	if j.State != coordinator.JobSucceeded || j.Result == nil || j.Result.SnapshotID == "" {
		t.Fatalf("job on a full cache disk: %s %+v", j.State, j.Result)
	}
	all := strings.Join(j.Result.Warnings, "\n")
	if !strings.Contains(all, "files cache not saved") || !strings.Contains(all, "no space") {
		t.Errorf("warnings do not report the full cache disk:\n%s", all)
	}
	if !j.Result.Partial || !strings.Contains(all, "/proc/self/mem") {
		t.Errorf("partial = %v, warnings do not name the unreadable path:\n%s", j.Result.Partial, all)
	}
	done.assertRunning(t)

	// Space again: the next job runs and saves its cache.
	if err := os.Remove(filepath.Join(dataDir, "filler")); err != nil {
		t.Fatal(err)
	}
	j = tc.waitJob(tc.run("p"), "finish", final)
	if j.State != coordinator.JobSucceeded || strings.Contains(strings.Join(j.Result.Warnings, "\n"), "files cache not saved") {
		t.Fatalf("job after freeing space: %s %+v", j.State, j.Result)
	}
}
