package e2e

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// s3Proxy is an HTTP reverse proxy in front of the test S3 server. A hook
// sees every request first and decides to forward it, to answer it with an
// error status, to kill the process under test (SIGKILL) while the
// request is in flight, or to die itself as a killed server would. The Host header is forwarded unchanged, so SigV4
// signatures computed for the proxy's address stay valid.
type s3Proxy struct {
	srv      *httptest.Server
	requests atomic.Int64

	mu   sync.Mutex
	hook func(r *http.Request) proxyAction
	kill func() // kills the process under test
}

// proxyAction is what the proxy does with one request.
type proxyAction int

const (
	forward proxyAction = 0
	// killNow kills the process under test and never answers the request.
	killNow proxyAction = -1
	// dieNow stops the proxy as a killed server stops: its listening
	// socket is closed (later connections are refused) and so is every
	// connection open to it, this request's included.
	dieNow proxyAction = -2
	// Any positive value is an HTTP status to answer with.
)

func newS3Proxy(t testing.TB, endpoint string) *s3Proxy {
	t.Helper()
	target, err := url.Parse("http://" + endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &s3Proxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // keep the signed Host
		},
		ErrorLog: log.New(io.Discard, "", 0), // a killed client is expected
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		p.mu.Lock()
		hook, kill := p.hook, p.kill
		p.mu.Unlock()
		act := forward
		if hook != nil {
			act = hook(r)
		}
		switch {
		case act == killNow:
			if kill != nil {
				kill()
			}
			// Never answer: wait for the dead client's connection to close.
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		case act == dieNow:
			_ = p.srv.Listener.Close()
			p.srv.CloseClientConnections()
			return
		case act > 0:
			// What AWS answers for these statuses.
			code, msg := "InternalError", "We encountered an internal error. Please try again."
			if act == http.StatusServiceUnavailable {
				code, msg = "ServiceUnavailable", "Please reduce your request rate."
			}
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(int(act))
			if r.Method != http.MethodHead {
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>e2e</RequestId></Error>`, code, msg, r.URL.Path)
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// addr is the proxy's host:port.
func (p *s3Proxy) addr() string { return strings.TrimPrefix(p.srv.URL, "http://") }

func (p *s3Proxy) setHook(h func(r *http.Request) proxyAction) {
	p.mu.Lock()
	p.hook = h
	p.mu.Unlock()
}

func (p *s3Proxy) setKill(k func()) {
	p.mu.Lock()
	p.kill = k
	p.mu.Unlock()
}

// isPut reports whether r uploads an object whose key contains part
// ("/data/", "/index/", "/snapshots/").
func isPut(r *http.Request, part string) bool {
	return r.Method == http.MethodPut && strings.Contains(r.URL.Path, part)
}

// proxiedMinIORepo creates a repository in a new MinIO bucket and returns
// it twice: as it is, and reached through a new proxy (also returned), so
// a test can kill the process under test at a chosen request.
func proxiedMinIORepo(t *testing.T, packSize int) (repo, viaProxy testRepo, px *s3Proxy) {
	t.Helper()
	repoURL := storetest.MinIORepoURL(t)
	loc, err := location.Parse(repoURL)
	if err != nil {
		t.Fatal(err)
	}
	px = newS3Proxy(t, loc.Endpoint)
	repo = initAPI(t, repoURL, packSize, "")
	viaProxy = repo
	viaProxy.url = "s3:http://" + px.addr() + "/" + loc.Bucket + "/" + loc.Prefix
	return repo, viaProxy, px
}
