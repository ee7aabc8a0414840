package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// TestAgentCacheUnwritable: the agent's cache directory cannot be created
// (a file is in its place: what an unwritable or broken data directory
// looks like even to root). The cache only saves work: the backup still
// commits, and the job says the cache was not saved.
func TestAgentCacheUnwritable(t *testing.T) {
	tc := newTestCoordinator(t)
	tc.smallPolicy("p")
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "cache"), []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: dataDir, Name: "c"})
	tc.waitEnrolled("c")
	j := tc.waitJob(tc.run("p"), "finish", final)
	t.Logf("job %s: %+v", j.State, j.Result)
	if j.State != coordinator.JobSucceeded {
		t.Fatalf("job %s: %+v; want the backup to commit without a cache", j.State, j.Result)
	}
	if w := strings.Join(j.Result.Warnings, "\n"); !strings.Contains(w, "cache") {
		t.Errorf("warnings %q: want the unsaved cache named", j.Result.Warnings)
	}
}
