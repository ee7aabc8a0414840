package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
)

// The HTTP API (docs/api.md). Every node serves it. Reads are answered
// from the node's own state; a write that reaches a follower is forwarded
// as it is to the leader's API (the leader authenticates it again), so a
// client may be given every node's address. During an election a write
// gets 503 with "retryable": true and changes nothing that a retry would
// duplicate. Bodies are size-limited and decoded strictly (unknown fields
// are errors); every error is {"error": "...", "retryable": bool}.

// DefaultMaxBody bounds request bodies (policy files included).
const DefaultMaxBody = 1 << 20

// MaxReportBody bounds a job's completion: a verify report lists every
// pack it read (about 90 bytes each).
const MaxReportBody = 16 << 20

// DefaultWriteTimeout bounds how long a request may take from its start to
// the last byte of its answer, so that a client that stops reading cannot
// hold a connection and a goroutine: 2 minutes covers a write's wait for
// the cluster and a forward to the leader. A long poll gets its wait on top
// (see work), a forwarded request the forwarding client's timeout.
const DefaultWriteTimeout = 2 * time.Minute

// APIConfig configures a node's API.
type APIConfig struct {
	Node     *Node
	Logger   *slog.Logger
	Clock    Clock        // default: the node's clock
	Client   *http.Client // for forwarding and node-to-node calls (carries the TLS roots)
	SelfURL  string       // this node's advertised base URL (http(s)://host:port)
	Version  string
	MaxBody  int64         // default DefaultMaxBody
	DataDir  string        // where the first leader writes admin-token
	MaxWait  time.Duration // longest long poll (default 5m)
	LeaseTTL time.Duration // default lease of a job handed out by a long poll (default 2m)
	// WriteTimeout is each answer's write deadline, from the request's
	// start (default DefaultWriteTimeout).
	WriteTimeout time.Duration
}

// API is the HTTP handler of one node.
type API struct {
	cfg     APIConfig
	node    *Node
	log     *slog.Logger
	clock   Clock
	hc      *http.Client
	mux     *http.ServeMux
	metrics *Metrics
	waiting atomic.Int64 // long polls in progress on this node

	adminToken  atomic.Pointer[string] // set if this node initialized the cluster
	barrierTerm atomic.Uint64          // the term in which syncLeader last passed a barrier
}

// NewAPI builds the handler. Call Maintain to keep the node's address
// registered and to initialize a new cluster.
func NewAPI(cfg APIConfig) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = cfg.Node.clock
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 5 * time.Minute
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 2 * time.Minute
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	a := &API{cfg: cfg, node: cfg.Node, log: cfg.Logger, clock: cfg.Clock, hc: cfg.Client, mux: http.NewServeMux()}
	a.metrics = newMetrics(a)
	a.routes()
	return a
}

func (a *API) routes() {
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.mux.Handle("GET /metrics", a.metrics.Handler())

	a.handle("GET /v1/policies", permRead, a.listPolicies)
	a.handle("PUT /v1/policies", permWrite, a.applyPolicies)
	a.handle("POST /v1/policies", permWrite, a.applyPolicies)
	a.handle("GET /v1/policies/{name}", permRead, a.getPolicy)
	a.handle("DELETE /v1/policies/{name}", permWrite, a.deletePolicy)
	a.handle("POST /v1/policies/{name}/run", permWrite, a.runPolicy)

	a.handle("GET /v1/repos", permRead, a.listRepos)
	a.handle("POST /v1/repos", permWrite, a.addRepo)
	a.handle("GET /v1/repos/{name}", permRead, a.getRepo)
	a.handle("DELETE /v1/repos/{name}", permWrite, a.removeRepo)

	a.handle("GET /v1/jobs", permRead, a.listJobs)
	a.handle("GET /v1/jobs/{id}", permRead, a.getJob)
	a.handle("POST /v1/jobs/{id}/cancel", permWrite, a.cancelJob)
	a.handle("POST /v1/jobs/{id}/heartbeat", permAgent, a.heartbeat)
	a.handle("POST /v1/jobs/{id}/complete", permAgent, a.completeJob)

	a.handle("GET /v1/agents", permRead, a.listAgents)
	a.handle("POST /v1/agents", permEnroll, a.enrollAgent)
	a.handle("GET /v1/agents/{name}", permRead, a.getAgent)
	a.handle("POST /v1/agents/{name}/revoke", permWrite, a.revokeAgent)
	a.handle("GET /v1/agents/{name}/work", permAgent, a.work)
	a.handle("POST /v1/agents/{name}/lease", permAgent, a.lease)
	a.handle("POST /v1/agents/{name}/seen", permAgent, a.seen)
	a.handle("POST /v1/agents/{name}/grants", permAdmin, a.grantAgent)

	a.handle("GET /v1/cluster", permRead, a.clusterStatus)
	a.handle("GET /v1/cluster/self", permRead, a.clusterSelf)
	a.handle("POST /v1/cluster/join", permAdmin, a.clusterJoin)
	a.handle("POST /v1/cluster/remove", permAdmin, a.clusterRemove)
	a.handle("POST /v1/cluster/node-secret", permAdmin, a.rotateNodeSecretAPI)
	a.handle("POST /v1/cluster/nodes", permNode, a.registerNode)

	a.handle("GET /v1/audit", permRead, a.listAudit)
	a.handle("GET /v1/status", permRead, a.status)
	a.handle("GET /v1/snapshots", permRead, a.listSnapshots)

	a.handle("GET /v1/drills", permRead, a.listDrills)
	a.handle("GET /v1/drills/{id}", permRead, a.getDrill)
	a.handle("POST /v1/policies/{name}/drill", permWrite, a.runDrill)
	a.handle("POST /v1/policies/{name}/prune", permWrite, a.runPrune)
	a.handle("GET /v1/coverage", permRead, a.coverage)
	a.handle("POST /v1/repos/{name}/verify", permWrite, a.verifyRepo)

	// Alerts (api_alerts.go).
	a.handle("GET /v1/alerts", permRead, a.listAlerts)
	a.handle("GET /v1/alert-targets", permRead, a.listAlertTargets)
	a.handle("POST /v1/alert-targets", permAdmin, a.addAlertTarget)
	a.handle("DELETE /v1/alert-targets/{name}", permAdmin, a.removeAlertTarget)
	a.handle("POST /v1/alert-targets/{name}/test", permWrite, a.testAlertTarget)

	a.handle("GET /v1/tokens", permAdmin, a.listTokens)
	a.handle("POST /v1/tokens", permAdmin, a.createToken)
	a.handle("DELETE /v1/tokens/{id}", permAdmin, a.revokeToken)
	a.handle("POST /v1/join-tokens", permAdmin, a.createJoinToken)
	a.handle("DELETE /v1/join-tokens/{id}", permAdmin, a.revokeJoinToken)

	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no such endpoint: %s %s (see docs/api.md)", r.Method, r.URL.Path)})
	})
}

// ServeHTTP implements http.Handler. Every answer gets a write deadline
// here: the server has no WriteTimeout, which would cut long polls (see
// newHTTPServer), so the routes that wait longer extend it themselves.
// Writing the answer extends it as the client takes it (progressWriter).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pw := &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w), step: a.cfg.WriteTimeout}
	a.writeDeadline(pw, 0)
	a.mux.ServeHTTP(pw, r)
}

// progressChunk is how much of an answer progressWriter writes under one
// extension of the write deadline.
const progressChunk = 32 << 10

// progressWriter writes an answer in chunks and gives each chunk step to
// be taken by the client, if the deadline set is sooner: a client that
// stops reading is cut off, one that reads a large answer (a status or an
// audit listing of many megabytes, a forwarded answer relayed at the
// client's pace) slowly but steadily gets all of it. The deadline it
// tracks is the last one set; it never shortens it.
type progressWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	step     time.Duration
	deadline time.Time
}

// SetWriteDeadline is what http.ResponseController calls through the
// writers wrapping this one (writeDeadline).
func (p *progressWriter) SetWriteDeadline(t time.Time) error {
	p.deadline = t
	return p.rc.SetWriteDeadline(t)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		c := b[:min(len(b), progressChunk)]
		if next := time.Now().Add(p.step); next.After(p.deadline) {
			// Not supported (a test's recorder): nothing to extend.
			_ = p.SetWriteDeadline(next)
		}
		m, err := p.ResponseWriter.Write(c)
		n += m
		if err != nil {
			return n, err
		}
		b = b[len(c):]
	}
	return n, nil
}

// Flush keeps the answer flushable through this writer.
func (p *progressWriter) Flush() { _ = p.rc.Flush() }

// Unwrap lets http.ResponseController reach the connection.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// writeDeadline sets the answer's write deadline to WriteTimeout plus
// extra from now. A connection whose client has not read the answer by
// then (or, for a large answer, its next part: progressWriter) is closed,
// and the handler's writes fail.
func (a *API) writeDeadline(w http.ResponseWriter, extra time.Duration) {
	err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(a.cfg.WriteTimeout + extra))
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		a.log.Warn("set the answer's write deadline", "err", err)
	}
}

// call is what a handler gets besides the request.
type call struct {
	p    Principal
	body []byte
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, c *call) error

// handle registers pattern with the checks every API route goes through:
// body limit, authentication, authorization, forwarding of writes.
func (a *API) handle(pattern string, need perm, h handlerFunc) {
	route := pattern
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		err := a.serve(rec, r, need, h)
		if err != nil {
			writeError(rec, err)
		}
		a.metrics.observeRequest(route, rec.status, time.Since(start))
		if rec.status >= 500 {
			a.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "status", rec.status, "err", err)
		}
	})
}

func (a *API) serve(w http.ResponseWriter, r *http.Request, need perm, h handlerFunc) error {
	c := &call{}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	// The body is read only once the credential is known to be good and
	// allowed here: a request anyone can send must not make this node
	// buffer up to MaxReportBody.
	limit := a.cfg.MaxBody
	readBody := func(limit int64) error {
		if !write {
			return nil
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				return &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body larger than %d bytes", limit)}
			}
			return badRequest("read request body: %v", err)
		}
		c.body = b
		return nil
	}
	var err error
	a.node.View(func(s *State) { c.p, err = authenticate(s, r, a.clock.Now()) })
	if err != nil {
		if errors.Is(err, errUnknownToken) && !a.node.IsLeader() && r.Header.Get(headerForwarded) == "" {
			// Perhaps created a moment ago and not replicated here yet:
			// the body is streamed to the leader, which authenticates
			// the request before it reads the body, and applies the limit.
			var body io.Reader
			if write {
				body = r.Body
			}
			return a.forward(w, r, body)
		}
		if errors.Is(err, errUnknownToken) {
			return unauthorized("invalid token")
		}
		return err
	}
	if !c.p.allowed(need) {
		return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf("%s may not do this: %s %s needs %s access", roleName(c.p), r.Method, r.URL.Path, need)}
	}
	if need == permAgent && strings.HasSuffix(r.URL.Path, "/complete") {
		limit = max(limit, MaxReportBody)
	}
	if err := readBody(limit); err != nil {
		return err
	}
	if write && !a.node.IsLeader() {
		return a.forward(w, r, bytes.NewReader(c.body))
	}
	return h(w, r, c)
}

func roleName(p Principal) string {
	if p.Agent != "" {
		return "agent " + p.Agent
	}
	return "a " + string(p.Role) + " token"
}

// forward sends a request to the leader's API and relays the answer. A
// request that was already forwarded is not forwarded again: leadership
// moved meanwhile, and the client retries.
func (a *API) forward(w http.ResponseWriter, r *http.Request, body io.Reader) error {
	if by := r.Header.Get(headerForwarded); by != "" {
		return &apiError{status: http.StatusServiceUnavailable, retryable: true, msg: "leadership changed while the request was forwarded: retry"}
	}
	target, err := a.leaderURL()
	if err != nil {
		return err
	}
	ctx := r.Context()
	req, err := http.NewRequestWithContext(ctx, r.Method, target+r.URL.RequestURI(), body)
	if err != nil {
		return fmt.Errorf("forward to leader: %w", err)
	}
	for _, h := range []string{"Authorization", "Content-Type", "Accept", headerNode} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(headerForwarded, a.node.ID())
	// The leader may hold a forwarded long poll as long as the client
	// lets it: the answer is relayed after that.
	wait := a.hc.Timeout
	if wait <= 0 {
		wait = a.cfg.MaxWait
	}
	a.writeDeadline(w, wait)
	resp, err := a.hc.Do(req)
	if err != nil {
		return &apiError{status: http.StatusServiceUnavailable, retryable: true, leader: target,
			msg: fmt.Sprintf("forward to the leader at %s: %v", target, err)}
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", headerLeader} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	return nil
}

// leaderURL returns the leader's API address, or a retryable error.
func (a *API) leaderURL() (string, error) {
	id, _ := a.node.Leader()
	if id == "" {
		return "", fmt.Errorf("forward to leader: %w", ErrNoLeader)
	}
	var u string
	a.node.View(func(s *State) { u = s.NodeHTTP(id) })
	if u == "" {
		return "", &apiError{status: http.StatusServiceUnavailable, retryable: true,
			msg: fmt.Sprintf("the leader %s has not published its API address yet: retry", id)}
	}
	return u, nil
}

// ---- errors and encoding -------------------------------------------------

// apiError is an error with its HTTP status.
type apiError struct {
	status    int
	msg       string
	retryable bool
	problems  []Problem
	leader    string // the leader's API address, sent as X-Lifeboat-Leader
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Error     string    `json:"error"`
	Retryable bool      `json:"retryable"`
	Problems  []Problem `json:"problems,omitempty"`
	Leader    string    `json:"leader,omitempty"` // the leader's node ID, when known
}

// errorStatus maps an error to its HTTP status and whether a retry may
// succeed.
func errorStatus(err error) (int, bool) {
	if e, ok := errors.AsType[*apiError](err); ok {
		return e.status, e.retryable
	}
	if _, ok := errors.AsType[*ValidationError](err); ok {
		return http.StatusBadRequest, false
	}
	switch {
	case Retryable(err), errors.Is(err, ErrShutdown), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, true
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, false
	case errors.Is(err, ErrConflict), errors.Is(err, ErrStaleLease):
		return http.StatusConflict, false
	case errors.Is(err, ErrRevoked), errors.Is(err, ErrCatalogClaim):
		return http.StatusForbidden, false
	case errors.Is(err, ErrInvalidCommand), errors.Is(err, ErrUnsupportedCommand):
		return http.StatusBadRequest, false
	}
	return http.StatusInternalServerError, false
}

func writeError(w http.ResponseWriter, err error) {
	status, retry := errorStatus(err)
	body := ErrorBody{Error: err.Error(), Retryable: retry}
	if e, ok := errors.AsType[*apiError](err); ok {
		body.Problems = e.problems
		if e.leader != "" {
			w.Header().Set(headerLeader, e.leader)
		}
	}
	if ve, ok := errors.AsType[*ValidationError](err); ok {
		body.Problems = ve.Problems
	}
	if nl, ok := errors.AsType[*NotLeaderError](err); ok && body.Leader == "" {
		body.Leader = nl.LeaderID
	}
	if retry {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode response","retryable":false}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decodeJSON decodes a request body strictly: exactly one JSON value, no
// unknown fields, and every key spelled exactly once as documented.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("empty request body: a JSON object is expected")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("invalid JSON body: unexpected data after the object")
	}
	if err := checkKeys(body, reflect.TypeOf(v)); err != nil {
		return badRequest("invalid JSON body: %v", err)
	}
	return nil
}

// checkKeys refuses what encoding/json lets through silently, at any
// depth: a key named twice (encoding/json keeps the last value; another
// reader of the same body, a proxy or an audit tool, may take the first),
// and a struct field's key in another case ("NAME" or "Name" for "name":
// encoding/json matches keys case-insensitively). body was decoded into a
// value of type t already, so it is valid JSON of bounded nesting. Where t
// says nothing (a map's keys, an any, a type that decodes itself) only
// duplicates are refused.
func checkKeys(body []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	return walkKeys(dec, t)
}

// keyError is checkKeys' error; path is where, built on the way out.
type keyError struct {
	path string
	msg  string
}

func (e *keyError) Error() string {
	if e.path == "" {
		return e.msg + " (at the top level)"
	}
	return e.msg + " (at " + strings.TrimPrefix(e.path, ".") + ")"
}

func inPath(err error, seg string) error {
	if ke, ok := err.(*keyError); ok {
		ke.path = seg + ke.path
	}
	return err
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// walkKeys reads one JSON value from dec, checking its keys against t
// (nil: unknown).
func walkKeys(dec *json.Decoder, t reflect.Type) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler)) {
		t = nil
	}
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && !mayHoldObject(t) {
		// The body decoded into t, so this list holds no object and no
		// key: skip it whole rather than token by token (a long list of
		// numbers took four times as long as decoding the body).
		var skip json.RawMessage
		return dec.Decode(&skip)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkKeys(dec, elem); err != nil {
				return inPath(err, fmt.Sprintf("[%d]", i))
			}
		}
		_, err = dec.Token() // ]
		return err
	case json.Delim('{'):
		var fields map[string]reflect.Type
		var elem reflect.Type
		switch {
		case t == nil:
		case t.Kind() == reflect.Struct:
			fields = jsonFields(t)
		case t.Kind() == reflect.Map:
			elem = t.Elem()
		}
		// Most objects have a few keys: a list is cheaper than a map.
		var seen []string
		var seenMap map[string]bool
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			k, _ := tok.(string)
			dup := seenMap[k]
			if seenMap == nil {
				dup = slices.Contains(seen, k)
				seen = append(seen, k)
				if len(seen) > 16 {
					seenMap = map[string]bool{}
					for _, s := range seen {
						seenMap[s] = true
					}
				}
			} else {
				seenMap[k] = true
			}
			if dup {
				return &keyError{msg: fmt.Sprintf("duplicate key %q: write each field once", k)}
			}
			vt := elem
			if fields != nil {
				ft, ok := fields[k]
				if !ok {
					for name := range fields {
						if strings.EqualFold(name, k) {
							return &keyError{msg: fmt.Sprintf("key %q: write it %q (keys are case-sensitive)", k, name)}
						}
					}
					return &keyError{msg: fmt.Sprintf("unknown key %q", k)}
				}
				vt = ft
			}
			if err := walkKeys(dec, vt); err != nil {
				return inPath(err, "."+k)
			}
		}
		_, err = dec.Token() // }
		return err
	}
	return nil
}

// mayHoldObject says whether a JSON value decoded into type t may be or
// contain an object: false for numbers, strings, booleans and lists of
// them, whose types have no decoding of their own.
func mayHoldObject(t reflect.Type) bool {
	for {
		if t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) {
			return true
		}
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			t = t.Elem()
		case reflect.Struct, reflect.Map, reflect.Interface:
			return true
		default:
			return false
		}
	}
}

var jsonFieldCache sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields maps the keys encoding/json reads into struct type t, spelled
// as its tags (or field names) give them, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := jsonFieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			// An embedded struct's fields are promoted (the outer
			// struct's own fields win).
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, ok := m[k]; !ok {
						m[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = ft
	}
	jsonFieldCache.Store(t, m)
	return m
}

type statusRecorder struct {
	http.ResponseWriter
	status  int
	written bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.written {
		s.status, s.written = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.written = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (write
// deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// writeCtx bounds a write's wait for the cluster.
func writeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}

// syncLeader makes sure this leader's state holds every entry committed
// before its term (a new leader learns the commit index only by committing
// in its term), so that checks made against the local state before a
// proposal are not made against stale state. One barrier per term.
func (a *API) syncLeader(ctx context.Context) error {
	term := a.node.Status().Term
	if a.barrierTerm.Load() == term {
		return nil
	}
	if err := a.node.raft.Barrier(ctx); err != nil {
		return err
	}
	a.barrierTerm.Store(term)
	return nil
}

// apply runs a write and records its latency.
func (a *API) apply(fn func() error) error {
	start := time.Now()
	err := fn()
	a.metrics.observeApply(time.Since(start), err)
	return err
}

// ---- health ----------------------------------------------------------------

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": a.node.ID()})
}

// Ready reports whether the node can serve: a leader is known and this
// node has applied everything it knows to be committed.
func (a *API) Ready() (bool, string) {
	st := a.node.Status()
	switch {
	case st.Leader == "":
		return false, "no leader"
	case st.AppliedIndex < st.CommitIndex:
		return false, fmt.Sprintf("applying: %d of %d", st.AppliedIndex, st.CommitIndex)
	}
	return true, "leader " + st.Leader
}

func (a *API) readyz(w http.ResponseWriter, _ *http.Request) {
	ok, why := a.Ready()
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ok, "reason": why, "node": a.node.ID()})
}

// queryDuration reads a duration query parameter.
func queryDuration(r *http.Request, name string, def, max time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	d, err := ParseDuration(v)
	if err != nil || d < 0 {
		return 0, badRequest("%s=%q: want a duration such as 30s", name, v)
	}
	if time.Duration(d) > max {
		return max, nil
	}
	return time.Duration(d), nil
}

// plainText refuses control characters (terminal escapes, NUL, line
// breaks) in a value that the CLI prints, naming field.
func plainText(field string, vals ...string) error {
	for _, v := range vals {
		if location.HasControl(v) {
			return badRequest("%s %q holds control characters: use plain text", field, v)
		}
	}
	return nil
}

// plainLabels is plainText for every key and value of a label map.
func plainLabels(field string, m map[string]string) error {
	for _, k := range policyKeys(m) {
		if err := plainText(field, k, m[k]); err != nil {
			return err
		}
	}
	return nil
}

func pathName(r *http.Request, key string) (string, error) {
	v := r.PathValue(key)
	if v == "" || strings.ContainsAny(v, "/\x00") {
		return "", badRequest("invalid %s %q", key, v)
	}
	return v, nil
}

// lookup resolves the path parameter param and finds that item in the
// state with find, which runs under the state's read lock and must return
// a copy. A missing item is a 404 naming what was asked for.
func lookup[T any](a *API, r *http.Request, param, what string, find func(*State, string) (T, bool)) (T, error) {
	var out T
	key, err := pathName(r, param)
	if err != nil {
		return out, err
	}
	found := false
	a.node.View(func(s *State) { out, found = find(s, key) })
	if !found {
		return out, notFound(what, key)
	}
	return out, nil
}

// proposeNamed serves a write on the item a path parameter names: it
// proposes the command cmd builds for that key and answers {verb: key}.
func (a *API) proposeNamed(w http.ResponseWriter, r *http.Request, c *call, param, verb string, cmd func(key string) (CommandType, any)) error {
	key, err := pathName(r, param)
	if err != nil {
		return err
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	typ, payload := cmd(key)
	if err := a.apply(func() error {
		_, err := a.node.Propose(ctx, typ, c.p.Actor, payload)
		return err
	}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{verb: key})
	return nil
}
