package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/internal/tied/tiedtest"
)

// TestAgentEndsLeftoverHook: an agent dies (kill -9) while its pre-hook
// runs a dump in the background of its shell. tied.Start ends the shell,
// not the dump, which would run on beside the retry's. The state file
// lists the hook's process group while it runs, and the next start ends
// that group before anything else.
func TestAgentEndsLeftoverHook(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	marks := t.TempDir()
	hooks := Hooks{"p": {Pre: &Hook{
		Command: fmt.Sprintf("sleep 300 & echo $! > %s/bg; echo $$ > %s/shell; wait", marks, marks),
		Timeout: coordinator.Duration(time.Minute),
	}}}
	tc.policy(coordinator.Policy{Name: "p", Paths: []string{src}, MaxAttempts: 1})
	dataDir := t.TempDir()
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: dataDir, Name: "k", Hooks: hooks})
	tc.waitEnrolled("k")
	tc.run("p")
	pid := func(name string) int { return tiedtest.PIDIn(filepath.Join(marks, name)) }
	waitFor(t, "the pre-hook", func() bool { return pid("shell") > 0 && pid("bg") > 0 })
	shell, bg := pid("shell"), pid("bg")
	t.Cleanup(func() { syscall.Kill(-shell, syscall.SIGKILL) })

	// The state file names the hook's group while it runs.
	var st struct{ Running []record }
	waitFor(t, "the hook in the state file", func() bool {
		b, err := os.ReadFile(filepath.Join(dataDir, stateFileName))
		return err == nil && json.Unmarshal(b, &st) == nil && len(st.Running) == 1 && len(st.Running[0].Commands) == 1
	})
	if c := st.Running[0].Commands[0]; c.ID != shell || c.What != "pre-hook" || c.Command != hooks["p"].Pre.Command {
		t.Fatalf("state file lists %+v; want the pre-hook led by the shell %d", c, shell)
	}

	// What kill -9 leaves on disk: the data directory as it is, which a
	// new process starts from (this one runs on, as a killed one's hook
	// would). The new one cannot reach the coordinator (here: a port
	// nobody listens on), so it does not take the job back from this
	// one, which would then end its hook itself: it ends the group
	// first thing, coordinator or not.
	killed := filepath.Join(t.TempDir(), "data")
	if out, err := exec.Command("cp", "-a", dataDir, killed).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	startAgent(t, Config{Servers: []string{"http://127.0.0.1:1"}, DataDir: killed, Name: "k"})
	waitFor(t, "the next start to end the hook's background process", func() bool { return !tiedtest.Running(bg) })
	waitFor(t, "the next start to end the hook's shell", func() bool { return !tiedtest.Running(shell) })
}
