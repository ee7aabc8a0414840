package drill

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/tied/tiedtest"
)

// checkPIDEnv, set to a file name, makes the test binary stand in for a
// drill running a verify command that writes its PID there and waits
// (TestCheckEndsWithDrill).
const checkPIDEnv = "DRILL_TEST_CHECK_PIDFILE"

func TestMain(m *testing.M) {
	if pidFile := os.Getenv(checkPIDEnv); pidFile != "" {
		env := append(os.Environ(), "PIDFILE="+pidFile)
		_, err := runCheck(context.Background(), Command{Command: `echo $$ > "$PIDFILE.tmp" && mv "$PIDFILE.tmp" "$PIDFILE" && exec sleep 600`}, os.TempDir(), env)
		fmt.Fprintln(os.Stderr, "check returned:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestCheckEndsWithDrill: a drill killed with SIGKILL while a verify
// command runs cannot end it; the kernel does, instead of leaving it
// running in a restored tree nobody will remove.
func TestCheckEndsWithDrill(t *testing.T) {
	d, pid := tiedtest.StartSelf(t, checkPIDEnv)
	tiedtest.KillSelf(t, d, pid)
}
