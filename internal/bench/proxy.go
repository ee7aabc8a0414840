package bench

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Request classes counted by the proxy.
const (
	ClassGET    = "GET"
	ClassPUT    = "PUT"
	ClassHEAD   = "HEAD"
	ClassLIST   = "LIST"
	ClassDELETE = "DELETE"
	ClassPOST   = "POST"
	ClassOTHER  = "OTHER"
)

// Classes lists the request classes in report order.
var Classes = []string{ClassGET, ClassPUT, ClassHEAD, ClassLIST, ClassDELETE, ClassPOST, ClassOTHER}

// Counts is a snapshot of the proxy's counters.
type Counts struct {
	Requests map[string]int64
	Errors   int64 // responses with status >= 400 (404 on HEAD/GET included)
	BytesUp  int64 // request bodies, client to S3
	BytesDn  int64 // response bodies, S3 to client
}

// Total is the number of requests of all classes.
func (c Counts) Total() int64 {
	var n int64
	for _, v := range c.Requests {
		n += v
	}
	return n
}

// Sub returns c - o.
func (c Counts) Sub(o Counts) Counts {
	out := Counts{Requests: map[string]int64{}, Errors: c.Errors - o.Errors, BytesUp: c.BytesUp - o.BytesUp, BytesDn: c.BytesDn - o.BytesDn}
	for k, v := range c.Requests {
		out.Requests[k] = v - o.Requests[k]
	}
	return out
}

// Breakdown renders the non-zero classes, e.g. "GET 12, PUT 80, LIST 3".
func (c Counts) Breakdown() string {
	var parts []string
	for _, k := range Classes {
		if v := c.Requests[k]; v != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Proxy is a counting reverse proxy in front of an S3 endpoint. Tools are
// pointed at it instead of at the S3 server; it forwards every request
// unchanged, keeping the Host header so SigV4 signatures stay valid.
type Proxy struct {
	Addr string // host:port the proxy listens on

	srv *http.Server
	ln  net.Listener

	mu       sync.Mutex
	requests map[string]int64
	errors   atomic.Int64
	up, dn   atomic.Int64
}

// StartProxy listens on a free loopback port and forwards to endpoint
// (host:port, plain HTTP).
func StartProxy(endpoint string) (*Proxy, error) {
	target, err := url.Parse("http://" + endpoint)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln, requests: map[string]int64{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // signed by the client
		},
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        512,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			WriteBufferSize:     256 << 10,
			ReadBufferSize:      256 << 10,
		},
		BufferPool: bufPool{},
		ErrorLog:   nil,
	}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.count(classify(r))
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = &countingBody{ReadCloser: r.Body, n: &p.up}
			}
			cw := &countingWriter{ResponseWriter: w, n: &p.dn}
			rp.ServeHTTP(cw, r)
			if cw.status >= 400 {
				p.errors.Add(1)
			}
		}),
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

// Snapshot returns the counters so far.
func (p *Proxy) Snapshot() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := Counts{Requests: map[string]int64{}, Errors: p.errors.Load(), BytesUp: p.up.Load(), BytesDn: p.dn.Load()}
	for k, v := range p.requests {
		c.Requests[k] = v
	}
	return c
}

func (p *Proxy) count(class string) {
	p.mu.Lock()
	p.requests[class]++
	p.mu.Unlock()
}

// classify maps an S3 request to a class. Path-style addressing is
// assumed (what minio-go and restic use for an IP endpoint): a GET on the
// bucket itself is a listing unless it asks for a bucket sub-resource
// such as ?location.
func classify(r *http.Request) string {
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if q.Has("list-type") || q.Has("prefix") || q.Has("delimiter") || q.Has("continuation-token") || q.Has("marker") || q.Has("uploads") {
			return ClassLIST
		}
		if isBucketPath(r.URL.Path) {
			if q.Has("location") || q.Has("versioning") || q.Has("policy") || q.Has("object-lock") || q.Has("lifecycle") {
				return ClassGET
			}
			return ClassLIST
		}
		return ClassGET
	case http.MethodPut:
		return ClassPUT
	case http.MethodHead:
		return ClassHEAD
	case http.MethodDelete:
		return ClassDELETE
	case http.MethodPost:
		return ClassPOST
	}
	return ClassOTHER
}

func isBucketPath(p string) bool {
	p = strings.Trim(p, "/")
	return !strings.Contains(p, "/")
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

type countingWriter struct {
	http.ResponseWriter
	n      *atomic.Int64
	status int
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

// Unwrap lets http.ResponseController reach Flush on the real writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type bufPool struct{}

var proxyBufs = sync.Pool{New: func() any { return make([]byte, 256<<10) }}

func (bufPool) Get() []byte  { return proxyBufs.Get().([]byte) }
func (bufPool) Put(b []byte) { proxyBufs.Put(b) }
