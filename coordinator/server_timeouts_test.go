package coordinator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// smallBufListener shrinks each accepted connection's send buffer, so that
// an answer a client does not read fills it after a few kilobytes.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return conn, err
}

// A client that asks for a large answer and never reads it is cut off at
// the write deadline: the handler's goroutine ends and the connection is
// closed. A long poll is answered although it outlasts that deadline.
func TestAPIWriteDeadline(t *testing.T) {
	c, enr, addr, done := writeDeadlineServer(t, 300*time.Millisecond)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := conn.Write([]byte("GET /v1/policies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + c.admin + "\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the handler is still writing to a client that does not read")
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("the connection was left open after the write deadline (read %d bytes)", len(got))
	}
	if len(got) >= 400_000 {
		t.Fatalf("read %d bytes: the whole answer was written, want it cut off", len(got))
	}

	start := time.Now()
	status, b := httpCall(t, http.MethodGet, "http://"+addr+"/v1/agents/web-1/work?wait=1s", enr.Credential, nil, "")
	if el := time.Since(start); status != http.StatusNoContent || el < 900*time.Millisecond {
		t.Fatalf("long poll of 1s under a 300ms write deadline: %d after %v: %s", status, el, b)
	}
}

// A client that reads a large answer slowly but steadily gets all of it,
// although that takes far longer than the write deadline: each part of
// the answer has the deadline to be taken, not the whole.
func TestAPIWriteDeadlineSlowReader(t *testing.T) {
	// Each 32 KB part is read within about a quarter of a second, a tenth
	// of the deadline (a loaded machine stalls, now and then, for a
	// good part of a second); the whole answer takes longer than it.
	const timeout = 2 * time.Second
	c, _, addr, done := writeDeadlineServer(t, timeout)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(16 << 10)
	if _, err := conn.Write([]byte("GET /v1/policies HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + c.admin + "\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// At most about 130 KB a second: the 400 KB answer takes about 3
	// seconds.
	start := time.Now()
	var got bytes.Buffer
	buf := make([]byte, 8<<10)
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		n, err := conn.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
		time.Sleep(60 * time.Millisecond)
	}
	el := time.Since(start)
	<-done
	n := got.Len()
	resp, err := http.ReadResponse(bufio.NewReader(&got), nil)
	if err != nil {
		t.Fatalf("after %v: %v", el, err)
	}
	var ps []PolicyRecord
	if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
		t.Fatalf("a slow reader's answer was cut after %v (%d bytes): %v", el, n, err)
	}
	if len(ps) != 1 || len(ps[0].Policy.Exclude) != 4000 || el <= timeout {
		t.Fatalf("got %d policies after %v, want the big one, read over more than the %v deadline", len(ps), el, timeout)
	}
}

// writeDeadlineServer serves a one-node cluster's API with write deadline
// timeout on a listener whose connections have small send buffers. The
// cluster has an agent and a policy of about 400 KB, far more than the two
// sockets' buffers; done receives each request's path when it ends.
func writeDeadlineServer(t *testing.T, timeout time.Duration) (*apiCluster, EnrollResult, string, chan string) {
	t.Helper()
	c := newAPICluster(t, 1)
	c.addRepo(c.admin)
	// About 400 KB of policy, far more than the two sockets' buffers.
	p := Policy{Name: "big", Repository: "r", Schedule: "@every 1h", Agents: map[string]string{"role": "web"}, Paths: []string{"/srv"}}
	for i := range 4000 {
		p.Exclude = append(p.Exclude, fmt.Sprintf("/srv/cache/%06d/%s", i, strings.Repeat("x", 80)))
	}
	c.mustJSON(http.MethodPut, c.url(0)+"/v1/policies", c.admin, p, nil)
	var enr EnrollResult
	c.mustJSON(http.MethodPost, c.url(0)+"/v1/agents", c.token(RoleAgent), EnrollRequest{Name: "web-1"}, &enr)

	api := NewAPI(APIConfig{Node: c.nodes[0], SelfURL: c.url(0), WriteTimeout: timeout})
	done := make(chan string, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.ServeHTTP(w, r)
		done <- r.URL.Path
	}))
	srv.Config = newHTTPServer(srv.Config.Handler)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = smallBufListener{ln}
	srv.Start()
	t.Cleanup(srv.Close)
	return c, enr, ln.Addr().String(), done
}
