package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// TestAgentTokenFixedLabels: 'agent token create --fixed-labels' makes a
// token whose agents get exactly its labels: 'lifeboat agent' asking for
// another policy's label is refused (exit 1, naming the label) and
// enrolls nothing; an agent enrolled with it is listed with its labels
// marked fixed.
func TestAgentTokenFixedLabels(t *testing.T) {
	c := startCoordinator(t)
	tok := decodeJSON[coordinator.TokenCreateResult](t, c.ok("agent", "token", "create", "--label", "tier=web", "--fixed-labels", "--json").stdout)

	// Refused, the agent exits at once; enrolled, it would run until
	// stopped: watch for either.
	cmd := c.command("agent", "--join-token", tok.Token, "--data-dir", filepath.Join(c.dir, "agent"), "--name", "h1", "--label", "tier=db")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		default:
		}
		if as := decodeJSON[[]coordinator.AgentView](t, c.ok("agent", "list", "--json").stdout); len(as) != 0 {
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("an agent asking for tier=db was enrolled with a fixed-labels token: %+v\nstderr:\n%s", as, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitError ||
		!strings.Contains(stderr.String(), `join token "`+tok.ID+`" fixes the labels of the agents it enrolls to {tier=web}: agent "h1" may not set tier=db`) {
		t.Fatalf("agent asking for tier=db: %v\nstderr:\n%s", err, stderr.String())
	}
	if as := decodeJSON[[]coordinator.AgentView](t, c.ok("agent", "list", "--json").stdout); len(as) != 0 {
		t.Fatalf("the refused agent was enrolled: %+v", as)
	}

	var addr string
	for _, kv := range c.env {
		if v, ok := strings.CutPrefix(kv, "LIFEBOAT_ADDR="); ok {
			addr = v
		}
	}
	body, _ := json.Marshal(coordinator.EnrollRequest{Name: "h2"})
	req, _ := http.NewRequest(http.MethodPost, addr+"/v1/agents", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("enrol without labels: %s", resp.Status)
	}
	if out := c.ok("agent", "list").stdout; !strings.Contains(out, "tier=web (fixed)") {
		t.Fatalf("agent list does not show the fixed labels:\n%s", out)
	}
}
