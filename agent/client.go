package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// client talks to the coordinator's agent endpoints. It knows every
// node's address, starts with the one that answered last, and moves to
// the next on a network error or a retryable answer (an election, a node
// shutting down). It does not sleep between rounds: the agent's loops own
// their backoff, so one unreachable cluster is one backoff, not a nest.
type client struct {
	addrs []string
	hc    *http.Client

	mu        sync.Mutex
	preferred int
	cred      string
}

// apiError is an answer of the API that is not a success.
type apiError struct {
	Status    int
	Message   string
	Retryable bool
	Addr      string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("coordinator %s: %s (HTTP %d)", e.Addr, e.Message, e.Status)
}

// errGarbage: a node answered something that is not the API's JSON.
var errGarbage = errors.New("unexpected answer")

// normalizeAddrs turns "host:port" into "http://host:port" and checks
// every address.
func normalizeAddrs(addrs []string) ([]string, error) {
	var out []string
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if !strings.Contains(a, "://") {
			a = "http://" + a
		}
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("coordinator address %q: want http(s)://HOST:PORT or HOST:PORT", a)
		}
		out = append(out, strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"))
	}
	if len(out) == 0 {
		return nil, errors.New("no coordinator address: pass --server ADDR[,ADDR...]")
	}
	return out, nil
}

func (c *client) setCredential(cred string) {
	c.mu.Lock()
	c.cred = cred
	c.mu.Unlock()
}

func (c *client) credential() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cred
}

// call sends in (JSON, or no body if nil) with the agent credential
// (or bearer, if set) and decodes a 200 answer into out. It returns the
// HTTP status (204 has no body). timeout bounds one exchange with one node.
func (c *client) call(ctx context.Context, method, path, bearer string, in, out any, timeout time.Duration) (int, error) {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = b
	}
	if bearer == "" {
		bearer = c.credential()
	}
	c.mu.Lock()
	first := c.preferred
	c.mu.Unlock()
	var lastErr error
	for i := range c.addrs {
		idx := (first + i) % len(c.addrs)
		base := c.addrs[idx]
		status, b, err := c.send(ctx, method, base+path, bearer, body, timeout)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			lastErr = fmt.Errorf("coordinator %s: %w", base, err)
			continue
		}
		if status == http.StatusOK || status == http.StatusNoContent {
			c.mu.Lock()
			c.preferred = idx
			c.mu.Unlock()
			if status == http.StatusOK && out != nil {
				if err := json.Unmarshal(b, out); err != nil {
					// A node that answers garbage is treated like a node
					// that is down: the next one may do better.
					lastErr = fmt.Errorf("coordinator %s: %w to %s %s: %v", base, errGarbage, method, path, err)
					continue
				}
			}
			return status, nil
		}
		ae := decodeError(base, status, b)
		if !ae.Retryable {
			return status, ae
		}
		lastErr = ae
	}
	return 0, lastErr
}

func (c *client) send(ctx context.Context, method, u, bearer string, body []byte, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

func decodeError(base string, status int, b []byte) *apiError {
	var eb coordinator.ErrorBody
	if err := json.Unmarshal(b, &eb); err != nil || eb.Error == "" {
		msg := strings.TrimSpace(string(b))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		// Not the API talking (a proxy, a half-started node): worth a
		// retry elsewhere unless it is a plain client error.
		return &apiError{Status: status, Message: fmt.Sprintf("%v: %q", errGarbage, msg), Retryable: status >= 500 || status == http.StatusTooManyRequests, Addr: base}
	}
	return &apiError{Status: status, Message: eb.Error, Retryable: eb.Retryable || status == http.StatusServiceUnavailable, Addr: base}
}

// statusOf returns the HTTP status of an API error, 0 for anything else.
func statusOf(err error) int {
	if ae, ok := errors.AsType[*apiError](err); ok {
		return ae.Status
	}
	return 0
}
