package coordinator

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHTTPServerTimeouts(t *testing.T) {
	hs := newHTTPServer(http.NotFoundHandler())
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout < time.Minute || hs.IdleTimeout <= 0 {
		t.Errorf("read header %v, read %v, idle %v: want all set, read at least a minute (a 16 MiB completion over a slow link)",
			hs.ReadHeaderTimeout, hs.ReadTimeout, hs.IdleTimeout)
	}
	if hs.WriteTimeout != 0 {
		t.Errorf("write timeout %v would cut agents' long polls", hs.WriteTimeout)
	}
}

// The server's timeouts bound reading a request, not waiting for work: a
// long poll outlasts the read timeout (net/http lifts it once the headers
// are read, and no write timeout cuts the answer), while a body trickled
// past it is refused.
func TestAPIReadTimeoutSparesLongPolls(t *testing.T) {
	c := newAPICluster(t, 1)
	agentTok := c.token(RoleAgent)
	var enr EnrollResult
	c.mustJSON(http.MethodPost, c.url(0)+"/v1/agents", agentTok, EnrollRequest{Name: "web-1"}, &enr)

	srv := httptest.NewUnstartedServer(c.apis[0])
	srv.Config = newHTTPServer(c.apis[0])
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Start()
	defer srv.Close()

	start := time.Now()
	status, b := httpCall(t, http.MethodGet, srv.URL+"/v1/agents/web-1/work?wait=1s", enr.Credential, nil, "")
	if el := time.Since(start); status != http.StatusNoContent || el < 900*time.Millisecond {
		t.Fatalf("long poll of 1s under a 200ms read timeout: %d after %v: %s", status, el, b)
	}

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"role":"read-only","name":"slow"}`
	_, err = conn.Write([]byte("POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + c.admin +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body[:5]))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	_, _ = conn.Write([]byte(body[5:]))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		defer resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			t.Fatalf("a body trickled past the read timeout was accepted: %s", resp.Status)
		}
	}
	var n int
	c.nodes[0].View(func(s *State) {
		for _, tk := range s.Tokens {
			if tk.Name == "slow" {
				n++
			}
		}
	})
	if n != 0 {
		t.Fatal("the slow request created a token")
	}
}
