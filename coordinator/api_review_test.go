package coordinator

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A JSON body that names a key twice is ambiguous (encoding/json keeps
// the last value; a proxy or an audit tool may read the first): it is
// refused like YAML's duplicate keys, naming the key.
func TestDecodeJSONRejectsDuplicateKeys(t *testing.T) {
	for _, body := range []string{
		`{"name":"x","name":"y"}`,
		`[{"name":"a"},{"name":"b","paths":["/a"],"paths":["/b"]}]`,
		`{"name":"x","agents":{"role":"web","role":"db"}}`,
		`{"name":"x","drill":{"verify":[{"command":"true","command":"rm -rf /"}]}}`,
	} {
		var v any
		err := decodeJSON([]byte(body), &v)
		if err == nil || !strings.Contains(err.Error(), "duplicate key") {
			t.Errorf("%s: got %v, want a duplicate key error", body, err)
		}
	}
	for _, body := range []string{
		`{"name":"x","agents":{"name":"y"},"drill":{"runner":{"name":"z"}}}`,
		`[{"name":"a"},{"name":"a"}]`,
		`{"a":[{"k":1},{"k":2}],"b":{"k":{"k":3}}}`,
	} {
		var v any
		if err := decodeJSON([]byte(body), &v); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
}

func TestAPIPolicyDuplicateJSONKeyRefused(t *testing.T) {
	c := newAPICluster(t, 1)
	c.addRepo(c.admin)
	body := []byte(`{"name":"web","name":"db","repository":"r","schedule":"@every 1h","paths":["/srv"]}`)
	status, b := httpCall(t, http.MethodPost, c.url(0)+"/v1/policies", c.admin, body, "application/json")
	eb := errBody(t, status, b, http.StatusBadRequest)
	if !strings.Contains(eb.Error, `duplicate key "name"`) {
		t.Fatalf("error %q does not name the duplicate key", eb.Error)
	}
	c.nodes[0].View(func(s *State) {
		if len(s.Policies) != 0 {
			t.Fatalf("policies applied from an ambiguous body: %v", s.PolicyNames())
		}
	})
}

// Control characters (terminal escapes, NUL) in what 'lifeboat agent
// list', 'token list' and 'policy show' print are refused, naming the
// field: a join or agent token could otherwise have the operator's
// terminal run escape sequences.
func TestAPIControlCharactersRefused(t *testing.T) {
	c := newAPICluster(t, 1)
	c.addRepo(c.admin)
	u := c.url(0)
	ag := c.token(RoleAgent)
	for _, tc := range []struct {
		name, method, path, token, body, field string
	}{
		{"enroll label value", "POST", "/v1/agents", ag, `{"name":"a1","labels":{"role":"web\u001b[2J"}}`, "labels"},
		{"enroll label key", "POST", "/v1/agents", ag, `{"name":"a2","labels":{"ro\u0000le":"web"}}`, "labels"},
		{"enroll version", "POST", "/v1/agents", ag, `{"name":"a3","version":"1.0\u001b]0;owned\u0007"}`, "version"},
		{"token name", "POST", "/v1/tokens", c.admin, `{"role":"read-only","name":"x\u001b[31m"}`, "name"},
		{"join token label", "POST", "/v1/join-tokens", c.admin, `{"labels":{"role":"a\nb"}}`, "labels"},
		{"policy selector", "POST", "/v1/policies", c.admin, `{"name":"p","repository":"r","schedule":"@every 1h","paths":["/srv"],"agents":{"role":"web\u001b"}}`, "agents"},
		{"drill runner", "POST", "/v1/policies", c.admin, `{"name":"p","repository":"r","schedule":"@every 1h","paths":["/srv"],"drill":{"runner":{"r\u007fole":"dr"}}}`, "drill.runner"},
	} {
		status, b := httpCall(t, tc.method, u+tc.path, tc.token, []byte(tc.body), "application/json")
		if status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %s", tc.name, status, b)
			continue
		}
		eb := errBody(t, status, b, http.StatusBadRequest)
		if !strings.Contains(eb.Error, tc.field) || !strings.Contains(eb.Error, "control character") {
			t.Errorf("%s: error %q should name %s and the control characters", tc.name, eb.Error, tc.field)
		}
	}
	// The agent itself may report its version only in plain text too.
	var er EnrollResult
	c.mustJSON(http.MethodPost, u+"/v1/agents", ag, EnrollRequest{Name: "good", Labels: map[string]string{"role": "web"}}, &er)
	status, b := httpCall(t, "POST", u+"/v1/agents/good/seen", er.Credential, []byte(`{"version":"x\u001b[2J","capabilities":[]}`), "application/json")
	if eb := errBody(t, status, b, http.StatusBadRequest); !strings.Contains(eb.Error, "version") {
		t.Errorf("seen: error %q does not name version", eb.Error)
	}
	c.nodes[0].View(func(s *State) {
		for name, a := range s.Agents {
			if name != "good" {
				t.Errorf("agent %q enrolled", name)
			}
			if a.Version != "" && strings.ContainsAny(a.Version, "\x1b") {
				t.Errorf("agent %q version %q stored", name, a.Version)
			}
		}
		if len(s.Policies) != 0 {
			t.Errorf("policies stored: %v", s.PolicyNames())
		}
	})
}

// yaml.v3 truncates a float written for an integer field (keep_last: 1.9
// became 1, keep_daily: 0.5 became 0: no daily rule at all). A count that
// is not a whole number is a problem naming its line and field.
func TestParsePoliciesRefusesFractionalCounts(t *testing.T) {
	base := "name: web\nrepository: r\nschedule: \"@daily\"\npaths: [/srv]\n"
	for _, tc := range []struct {
		yaml, field string
		line        int
	}{
		{"retention: {keep_last: 1.9}\n", "retention.keep_last", 5},
		{"retention:\n  keep_daily: 0.5\n", "retention.keep_daily", 6},
		{"max_attempts: 2.5\n", "max_attempts", 5},
		{"max_concurrent: 1e0\n", "max_concurrent", 5},
	} {
		_, err := ParsePolicies([]byte(base+tc.yaml), "p.yaml")
		ve, ok := err.(*ValidationError)
		if !ok {
			t.Errorf("%q: got %v, want a validation error", tc.yaml, err)
			continue
		}
		if len(ve.Problems) != 1 || ve.Problems[0].Field != tc.field || ve.Problems[0].Line != tc.line ||
			!strings.Contains(ve.Problems[0].Msg, "integer") {
			t.Errorf("%q: problems %v, want one at line %d naming %s and an integer", tc.yaml, ve.Problems, tc.line, tc.field)
		}
	}
	ps, err := ParsePolicies([]byte(base+"retention: {keep_last: 3, keep_daily: 0x7}\n"), "p.yaml")
	if err != nil || ps[0].Retention.KeepLast != 3 || ps[0].Retention.KeepDaily != 7 {
		t.Fatalf("integers: %v %+v", err, ps)
	}
}

// A certificate the client does not trust, or an https:// address that
// answers plain HTTP, fails in the TLS handshake: the request was never
// sent, and retrying will not help. The client says so at once (not after
// 30 s of retries), with the fix, and a write is not reported as "may or
// may not have been applied".
func TestClientTLSMisconfigurationFailsFast(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request reached the server: %s %s", r.Method, r.URL)
	}))
	defer tlsSrv.Close()
	plainSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request reached the server: %s %s", r.Method, r.URL)
	}))
	defer plainSrv.Close()
	for _, tc := range []struct{ name, addr, want string }{
		{"untrusted certificate", tlsSrv.URL, "LIFEBOAT_CACERT"},
		{"https to an http server", strings.Replace(plainSrv.URL, "http://", "https://", 1), "http://"},
	} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			cl, err := NewClient(ClientConfig{Addrs: []string{tc.addr}, Token: "lbt_x_y", RetryFor: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, _, err = cl.Raw(context.Background(), method, "/v1/policies", []byte("{}"), "application/json")
			took := time.Since(start)
			if err == nil {
				t.Fatalf("%s %s: no error", tc.name, method)
			}
			msg := err.Error()
			if took > 2*time.Second {
				t.Errorf("%s %s: took %s (retried): %s", tc.name, method, took, msg)
			}
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, tc.addr) {
				t.Errorf("%s %s: %q should name the address and the fix (%s)", tc.name, method, msg, tc.want)
			}
			if strings.Contains(msg, "may or may not") {
				t.Errorf("%s %s: %q: a failed handshake sent nothing", tc.name, method, msg)
			}
		}
	}
}

// Revoking the last admin token that has not expired would leave the
// cluster with nobody who may create tokens, change membership or approve
// drill.verify commands, for good: no command brings an admin back. It
// is refused (409) with the fix; with another admin token it works.
func TestAPIRevokeLastAdminTokenRefused(t *testing.T) {
	c := newAPICluster(t, 1)
	u := c.url(0)
	first, _, _ := strings.Cut(strings.TrimPrefix(c.admin, "lbt_"), "_")
	status, b := httpCall(t, http.MethodDelete, u+"/v1/tokens/"+first, c.admin, nil, "")
	eb := errBody(t, status, b, http.StatusConflict)
	if !strings.Contains(eb.Error, "last admin token") || !strings.Contains(eb.Error, "token create --role admin") {
		t.Fatalf("error %q should say it is the last admin token and how to make another", eb.Error)
	}
	c.mustJSON(http.MethodGet, u+"/v1/tokens", c.admin, nil, nil) // still works

	// An expired admin token does not count.
	var short TokenCreateResult
	c.mustJSON(http.MethodPost, u+"/v1/tokens", c.admin, TokenCreateRequest{Role: RoleAdmin, Name: "short", TTL: Duration(time.Second)}, &short)
	time.Sleep(1100 * time.Millisecond)
	status, b = httpCall(t, http.MethodDelete, u+"/v1/tokens/"+first, c.admin, nil, "")
	errBody(t, status, b, http.StatusConflict)

	var second TokenCreateResult
	c.mustJSON(http.MethodPost, u+"/v1/tokens", c.admin, TokenCreateRequest{Role: RoleAdmin, Name: "second"}, &second)
	c.mustJSON(http.MethodDelete, u+"/v1/tokens/"+first, second.Token, nil, nil)
	status, b = httpCall(t, http.MethodDelete, u+"/v1/tokens/"+second.ID, second.Token, nil, "")
	errBody(t, status, b, http.StatusConflict)
	// Other tokens, expired admin ones included, are revoked as before.
	c.mustJSON(http.MethodDelete, u+"/v1/tokens/"+short.ID, second.Token, nil, nil)
}

// One typo in 'lifeboat cluster join' (an address without its port, a
// wrong host) made a single-node cluster a two-voter one whose second
// voter never answers: no quorum, no leader, every write refused, for
// good (removing the voter needs a quorum too). The address must be
// HOST:PORT and reachable from the leader before the voter is added.
func TestAPIClusterJoinRefusesBadOrUnreachableAddress(t *testing.T) {
	c := newAPICluster(t, 1)
	u := c.url(0)
	for _, tc := range []struct{ addr, want string }{
		{"10.255.255.1", "HOST:PORT"},
		{"10.0.0.4:99999", "HOST:PORT"},
		{":8421", "HOST:PORT"},
		{"127.0.0.1:1", "cannot be reached"},
	} {
		status, b := httpCall(t, http.MethodPost, u+"/v1/cluster/join", c.admin, JoinRequest{ID: "n9", Addr: tc.addr}, "")
		eb := errBody(t, status, b, http.StatusBadRequest)
		if !strings.Contains(eb.Error, tc.want) || !strings.Contains(eb.Error, tc.addr) {
			t.Errorf("join %s: error %q should name the address and say %q", tc.addr, eb.Error, tc.want)
		}
	}
	if m := c.nodes[0].Status().Members; len(m) != 1 {
		t.Fatalf("members after refused joins: %+v", m)
	}
	// The cluster still commits writes.
	c.token(RoleReadOnly)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// The body was read (up to 16 MiB for a job's completion) before the
// credential was looked at: anyone who could connect made a node buffer
// 16 MiB per request. A request without a valid credential, or one whose
// role may not call the route, is answered without reading its body.
func TestAPIBodyNotReadBeforeAuthentication(t *testing.T) {
	c := newAPICluster(t, 1)
	ro := c.token(RoleReadOnly)
	adminID, _, _ := strings.Cut(strings.TrimPrefix(c.admin, "lbt_"), "_")
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong secret", "Bearer lbt_" + adminID + "_00", http.StatusUnauthorized},
		{"unknown agent", "Bearer lba_ghost_00", http.StatusUnauthorized},
		{"read-only on an agent route", "Bearer " + ro, http.StatusForbidden},
	} {
		body := &countingReader{r: io.LimitReader(zeros{}, MaxReportBody)}
		req := httptest.NewRequest(http.MethodPost, "/v1/jobs/j1/complete", body)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		c.apis[0].ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: status %d, want %d: %s", tc.name, rec.Code, tc.want, rec.Body)
		}
		if body.n > 0 {
			t.Errorf("%s: %d bytes of the body read before the request was refused", tc.name, body.n)
		}
	}
	// An authorized request still gets its body, and the limit.
	req := httptest.NewRequest(http.MethodPost, "/v1/tokens", io.LimitReader(zeros{}, DefaultMaxBody+1))
	req.Header.Set("Authorization", "Bearer "+c.admin)
	rec := httptest.NewRecorder()
	c.apis[0].ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: status %d: %s", rec.Code, rec.Body)
	}
}

// A follower that does not know a credential streams the request to the
// leader (which refuses it without reading the body, or serves it).
func TestAPIFollowerForwardsUnknownCredentialStreaming(t *testing.T) {
	c := newAPICluster(t, 3)
	c.addRepo(c.admin)
	f := c.follower()
	big, _ := io.ReadAll(io.LimitReader(zeros{}, 2*DefaultMaxBody))
	status, b := httpCall(t, http.MethodPost, c.url(f)+"/v1/jobs/j1/complete", "lbt_abcdef012345_00", big, "application/json")
	errBody(t, status, b, http.StatusUnauthorized)

	// A token the follower may not have yet: created on the leader and used
	// at once on the follower, with a body.
	var tk TokenCreateResult
	c.mustJSON(http.MethodPost, c.url(c.leader())+"/v1/tokens", c.admin, TokenCreateRequest{Role: RoleOperator, Name: "fresh"}, &tk)
	status, b = httpCall(t, http.MethodPost, c.url(f)+"/v1/policies", tk.Token, []byte(testPolicyYAML), "application/yaml")
	if status != http.StatusOK {
		t.Fatalf("apply through a follower: %d %s", status, b)
	}
}

// Several fields on one line (a flow mapping): a bad duration is reported
// under its own field, not under the first field written on that line.
func TestParsePoliciesDurationProblemNamesItsField(t *testing.T) {
	base := "name: web\nrepository: r\nschedule: \"@daily\"\npaths: [/srv]\n"
	for _, tc := range []struct{ yaml, field string }{
		{"drill: {verify: [{command: x, timeout: 100000w}]}\n", "drill.verify[0].timeout"},
		{"targets: {rto: 1h, rpo: 2x}\n", "targets.rpo"},
		{"retention: {keep_last: 1, keep_within: soon}\n", "retention.keep_within"},
	} {
		_, err := ParsePolicies([]byte(base+tc.yaml), "p.yaml")
		ve, ok := err.(*ValidationError)
		if !ok || len(ve.Problems) != 1 || ve.Problems[0].Field != tc.field || ve.Problems[0].Line != 5 {
			t.Errorf("%q: got %v, want one problem at line 5 naming %s", tc.yaml, err, tc.field)
		}
	}
}

// The Authorization scheme is case-insensitive (RFC 7235): "bearer" and
// "BEARER" work as "Bearer"; another scheme, or none, is refused.
func TestAPIBearerSchemeCaseInsensitive(t *testing.T) {
	c := newAPICluster(t, 1)
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"Bearer " + c.admin, http.StatusOK},
		{"bearer " + c.admin, http.StatusOK},
		{"BEARER " + c.admin, http.StatusOK},
		{"Basic " + c.admin, http.StatusUnauthorized},
		{"Bearer" + c.admin, http.StatusUnauthorized},
		{c.admin, http.StatusUnauthorized},
	} {
		req, err := http.NewRequest(http.MethodGet, c.url(0)+"/v1/tokens", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", tc.header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Authorization: %.12s...: %d, want %d", tc.header, resp.StatusCode, tc.want)
		}
	}
}
