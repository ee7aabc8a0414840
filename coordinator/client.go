package coordinator

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultAddr is the API address the CLI uses when none is given.
const DefaultAddr = "http://127.0.0.1:8420"

// ClientConfig configures a Client.
type ClientConfig struct {
	// Addrs are the API addresses of any nodes of the cluster, tried in
	// turn ("host:port" means http://host:port).
	Addrs []string
	Token string
	// CAFile verifies the servers' certificates (https addresses).
	CAFile string
	// Timeout bounds one HTTP exchange (default 60s; long polls pass a
	// context instead).
	Timeout time.Duration
	// RetryFor bounds the time spent retrying retryable errors: an
	// election, a node that is down (default 30s).
	RetryFor time.Duration
}

// Client calls the coordinator API. It tries each address in turn,
// starts with the one that answered last, follows the leader's address
// when a node names it, and retries retryable errors with bounded
// exponential backoff. A write whose connection broke after it was sent
// is not resent (its outcome is unknown); a refused connection is.
type Client struct {
	cfg   ClientConfig
	addrs []string
	hc    *http.Client

	mu        sync.Mutex
	preferred string
}

// APIError is an error answer of the API.
type APIError struct {
	Status    int
	Message   string
	Retryable bool
	Problems  []Problem
	Leader    string
}

func (e *APIError) Error() string { return e.Message }

// ParseAddrs splits a comma-separated address list (LIFEBOAT_ADDR).
func ParseAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// NewClient checks the addresses and builds a client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []string{DefaultAddr}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = 30 * time.Second
	}
	c := &Client{cfg: cfg}
	for _, a := range cfg.Addrs {
		if !strings.Contains(a, "://") {
			a = "http://" + a
		}
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("address %q: want http(s)://HOST:PORT or HOST:PORT", a)
		}
		c.addrs = append(c.addrs, strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c.hc = &http.Client{Transport: tr}
	return c, nil
}

// Addrs returns the normalized addresses.
func (c *Client) Addrs() []string { return append([]string(nil), c.addrs...) }

func (c *Client) order(hint string) []string {
	c.mu.Lock()
	first := c.preferred
	c.mu.Unlock()
	out := make([]string, 0, len(c.addrs)+1)
	for _, a := range []string{hint, first} {
		if a != "" && !contains(out, a) {
			out = append(out, a)
		}
	}
	for _, a := range c.addrs {
		if !contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Do sends a request and decodes a JSON answer into out (if not nil). It
// returns the HTTP status; errors are *APIError for answers of the API.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, contentType string, out any) (int, error) {
	status, b, err := c.Raw(ctx, method, path, body, contentType)
	if err != nil {
		return status, err
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return status, fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return status, nil
}

// Raw sends a request and returns the status and body of a 2xx answer.
func (c *Client) Raw(ctx context.Context, method, path string, body []byte, contentType string) (int, []byte, error) {
	deadline := time.Now().Add(c.cfg.RetryFor)
	backoff := 100 * time.Millisecond
	hint := ""
	safe := method == http.MethodGet || method == http.MethodHead
	for {
		var lastErr error
		allTLS := true // every address failed its TLS handshake: retrying will not help
		for _, base := range c.order(hint) {
			hint = ""
			status, b, hdr, err := c.send(ctx, method, base+path, body, contentType)
			if err != nil {
				if ctx.Err() != nil {
					return 0, nil, ctx.Err()
				}
				if fix := tlsProblem(err); fix != "" {
					// The handshake failed: nothing of the request was sent.
					lastErr = fmt.Errorf("%s: %w (%s)", base, err, fix)
					continue
				}
				allTLS = false
				if !safe && !isDialError(err) {
					return 0, nil, fmt.Errorf("%s %s on %s: %w (the request may or may not have been applied: check before repeating it)", method, path, base, err)
				}
				lastErr = fmt.Errorf("%s: %w", base, err)
				continue
			}
			allTLS = false
			if status >= 200 && status < 300 {
				c.mu.Lock()
				c.preferred = base
				c.mu.Unlock()
				return status, b, nil
			}
			ae := decodeAPIError(status, b)
			if !ae.Retryable {
				return status, nil, ae
			}
			lastErr = fmt.Errorf("%s: %w", base, ae)
			if l := hdr.Get(headerLeader); l != "" {
				hint = strings.TrimRight(l, "/")
			}
		}
		if allTLS && lastErr != nil {
			return 0, nil, fmt.Errorf("no node of %s could be reached over TLS; nothing was sent: %w", strings.Join(c.addrs, ","), lastErr)
		}
		if time.Now().Add(backoff).After(deadline) {
			return 0, nil, fmt.Errorf("no node of %s could serve the request (retried for %s): %w", strings.Join(c.addrs, ","), c.cfg.RetryFor, lastErr)
		}
		sleep := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (c *Client) send(ctx context.Context, method, u string, body []byte, contentType string) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, b, resp.Header, nil
}

// tlsProblem returns how to fix a TLS handshake failure that a retry
// would only repeat, or "" if err is not one.
func tlsProblem(err error) string {
	var (
		verr  *tls.CertificateVerificationError
		uaerr x509.UnknownAuthorityError
		herr  x509.HostnameError
		cierr x509.CertificateInvalidError
		rherr tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &verr), errors.As(err, &uaerr), errors.As(err, &herr), errors.As(err, &cierr):
		return "the server's certificate is not trusted: pass --cacert or set LIFEBOAT_CACERT to the CA that signed it, and use an address named in the certificate"
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"), errors.As(err, &rherr):
		return "the server speaks plain HTTP: use an http:// address, or start the server with --tls-cert and --tls-key"
	}
	return ""
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func decodeAPIError(status int, b []byte) *APIError {
	var eb ErrorBody
	if err := json.Unmarshal(b, &eb); err != nil || eb.Error == "" {
		msg := strings.TrimSpace(string(b))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return &APIError{Status: status, Message: fmt.Sprintf("HTTP %d %s", status, msg), Retryable: status == http.StatusServiceUnavailable}
	}
	return &APIError{Status: status, Message: eb.Error, Retryable: eb.Retryable, Problems: eb.Problems, Leader: eb.Leader}
}

// Get decodes the JSON answer of a GET into out.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	_, err := c.Do(ctx, http.MethodGet, path, nil, "", out)
	return err
}

// Post sends in as JSON (nil: no body) and decodes the answer into out.
func (c *Client) Post(ctx context.Context, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	_, err := c.Do(ctx, http.MethodPost, path, body, "application/json", out)
	return err
}

// Delete calls DELETE path and decodes the answer into out.
func (c *Client) Delete(ctx context.Context, path string, out any) error {
	_, err := c.Do(ctx, http.MethodDelete, path, nil, "", out)
	return err
}

// ApplyPolicies sends a YAML policy file; filename is used in messages.
func (c *Client) ApplyPolicies(ctx context.Context, yaml []byte, filename string, dryRun bool) (PolicyApplyResult, error) {
	return c.ApplyPoliciesAt(ctx, yaml, filename, dryRun, nil)
}

// ApplyPoliciesAt is ApplyPolicies with a check index: when checkIndex is
// set, the file must hold one policy, applied only if it is still at that
// version (0: does not exist yet); otherwise the answer is a 409 naming
// its current version.
func (c *Client) ApplyPoliciesAt(ctx context.Context, yaml []byte, filename string, dryRun bool, checkIndex *uint64) (PolicyApplyResult, error) {
	q := url.Values{}
	if checkIndex != nil {
		q.Set("check_index", strconv.FormatUint(*checkIndex, 10))
	}
	if filename != "" {
		q.Set("filename", filename)
	}
	if dryRun {
		q.Set("dry_run", "true")
	}
	path := "/v1/policies"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var res PolicyApplyResult
	_, err := c.Do(ctx, http.MethodPut, path, yaml, "application/yaml", &res)
	return res, err
}
