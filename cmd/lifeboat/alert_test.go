package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/testnet"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// startCoordinator runs a real single-node coordinator in this process and
// returns a CLI pointed at it with its admin token.
func startCoordinator(t *testing.T) *cli {
	t.Helper()
	// A port FreeAddr found free can be taken before the server binds it
	// (seen once in CI, with every test package running at once): try
	// other ports then.
	var srv *coordinator.Server
	var err error
	for range 3 {
		raft := testnet.FreeAddr(t)
		srv, err = coordinator.NewServer(coordinator.ServerConfig{ID: "n1", DataDir: t.TempDir(), RaftAddr: raft, HTTPAddr: testnet.FreeAddr(t),
			Peers: []coordinator.Peer{{ID: "n1", Addr: raft}}})
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for srv.AdminToken() == "" {
		if time.Now().After(deadline) {
			t.Fatal("coordinator did not initialize within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return newCLI(t).with("LIFEBOAT_ADDR="+srv.URL(), "LIFEBOAT_TOKEN="+srv.AdminToken())
}

func TestAlertCommands(t *testing.T) {
	t.Parallel()
	c := startCoordinator(t)
	var hits atomic.Int32
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such hook", http.StatusNotFound)
	}))
	defer down.Close()

	c.fails(1, []string{"alert", "target", "add", "bad", "--url", "ftp://example.com/x"}, "url:")
	c.fails(2, []string{"alert", "target", "add", "nourl"}, "--url")
	out := c.ok("alert", "target", "add", "chat", "--kind", "slack", "--url", ok.URL+"/services/SECRET", "--kinds", "drill_failed, rpo_missed")
	if !strings.Contains(out.stdout, "alert target chat (slack") || strings.Contains(out.stdout, "SECRET") {
		t.Errorf("add: %q", out.stdout)
	}
	c.ok("alert", "target", "add", "down", "--url", down.URL)
	list := decodeJSON[[]coordinator.AlertTargetView](t, c.ok("alert", "target", "list", "--json").stdout)
	if len(list) != 2 || list[0].Name != "chat" || len(list[0].Kinds) != 2 || strings.Contains(list[0].URL, "SECRET") {
		t.Errorf("list: %+v", list)
	}
	if out := c.ok("alert", "target", "list").stdout; !strings.Contains(out, "drill_failed,rpo_missed") || !strings.Contains(out, "all") {
		t.Errorf("list table:\n%s", out)
	}

	if out := c.ok("alert", "test", "chat"); !strings.Contains(out.stdout, "test message delivered to chat") || hits.Load() != 1 {
		t.Errorf("test: %q, receiver saw %d requests", out.stdout, hits.Load())
	}
	r := c.fails(1, []string{"alert", "test", "down"}, "test message not delivered", "HTTP 404", "no such hook")
	if strings.Contains(r.stderr, down.URL) {
		t.Errorf("error shows the URL: %s", r.stderr)
	}
	c.fails(1, []string{"alert", "test", "nope"}, "not found")

	if out := c.ok("alert", "list", "--all", "--json").stdout; strings.TrimSpace(out) != "[]" {
		t.Errorf("alert list: %q", out)
	}
	c.ok("alert", "target", "remove", "down")
	c.fails(1, []string{"alert", "target", "remove", "down"}, "not found")
}
