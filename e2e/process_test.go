package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/internal/testnet"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// process is one long-running lifeboat process of a test (a server or an
// agent). Its output goes to <dir>/../<name>.log.
type process struct {
	name, dir string
	args      []string
	env       []string // nil: this process's environment with HOME=dir
	cmd       *exec.Cmd
	log       *os.File
}

func (p *process) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(p.dir, "..", p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.log = f
	p.cmd = exec.Command(lifeboatBin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Env = p.env
	if p.env == nil {
		p.cmd.Env = append(os.Environ(), "HOME="+p.dir)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

// kill ends the process with SIGKILL: no shutdown, no flush.
func (p *process) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
	if p.log != nil {
		p.log.Close()
		p.log = nil
	}
}

// serverProc is one 'lifeboat server' process of a test cluster.
type serverProc struct {
	process
	raft, http string
}

// agentProc is one 'lifeboat agent' process.
type agentProc struct{ process }

// farDaily is fixture.FarDaily on the wall clock.
func farDaily() string { return fixture.FarDaily(time.Now()) }

// startServers starts n 'lifeboat server' processes n1..nN under root,
// all given the same --peers so they form one cluster, and kills them when
// the test ends. It returns the processes and their API URLs.
func startServers(t *testing.T, root string, n int) ([]*serverProc, []string) {
	procs := make([]*serverProc, n)
	var peers, urls []string
	for i := range procs {
		name := fmt.Sprintf("n%d", i+1)
		p := &serverProc{process: process{name: name, dir: filepath.Join(root, name)}, raft: testnet.FreeAddr(t), http: testnet.FreeAddr(t)}
		procs[i] = p
		peers = append(peers, p.name+"="+p.raft)
		urls = append(urls, "http://"+p.http)
	}
	verify := farDaily() // the same on every node
	for _, p := range procs {
		p.args = []string{"server", "--id", p.name, "--data-dir", p.dir, "--raft-addr", p.raft, "--http-addr", p.http, "--peers", strings.Join(peers, ","),
			"--verify-schedule", verify}
		p.start(t)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
	})
	return procs, urls
}

// adminToken waits for the initial admin token the first leader writes
// into its data dir.
func adminToken(t *testing.T, procs []*serverProc) string {
	token := ""
	waitFor(t, 30*time.Second, "an admin token in a data dir", func() bool {
		for _, p := range procs {
			if b, err := os.ReadFile(filepath.Join(p.dir, coordinator.AdminTokenFile)); err == nil {
				token = strings.TrimSpace(string(b))
				return token != ""
			}
		}
		return false
	})
	return token
}

// coordCLI runs lifeboat commands against a coordinator: env holds
// LIFEBOAT_ADDR, LIFEBOAT_TOKEN and the like.
type coordCLI struct{ env []string }

func (c coordCLI) run(args ...string) (string, error) {
	cmd := exec.Command(lifeboatBin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("lifeboat %s: %w: %s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// clusterStatus reads what 'lifeboat cluster status --json' printed (out)
// and how it ended (err): exit 0 with a leader, or exit 4 without one (the
// answering node is in an election or has no quorum), is a status; any
// other end, or an exit code that contradicts the status, is an error.
func clusterStatus(out string, err error) (coordinator.ClusterStatus, error) {
	var cs coordinator.ClusterStatus
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 4) {
		return cs, err
	}
	if jerr := json.Unmarshal([]byte(out), &cs); jerr != nil {
		return cs, fmt.Errorf("cluster status --json: %v (%v)\n%s", jerr, err, out)
	}
	if (err == nil) != (cs.Leader != "") {
		return cs, fmt.Errorf("cluster status --json: leader %q but %v", cs.Leader, err)
	}
	return cs, nil
}

func (c coordCLI) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// logTails logs the last n bytes of each named process's log under root
// (root/NAME.log), for a test that failed.
func logTails(t *testing.T, root string, n int, names ...string) {
	for _, name := range names {
		b, _ := os.ReadFile(filepath.Join(root, name+".log"))
		t.Logf("--- %s log (tail)\n%s", name, tail(string(b), n))
	}
}
