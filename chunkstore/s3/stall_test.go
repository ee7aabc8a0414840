package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/s3"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// stallProxy forwards TCP connections to an S3 server. The next
// `stalls` connections it accepts forward only the first `after` bytes
// in one direction (the answers, down, or the requests, up) and then
// nothing more, holding the connection open: a server or middlebox that
// stopped mid-transfer.
type stallProxy struct {
	addr    string
	stalls  atomic.Int64
	after   int64
	up      bool
	stalled atomic.Int64 // connections that stalled

	mu    sync.Mutex
	conns []net.Conn
}

func newStallProxy(t *testing.T, target string, up bool, after int64) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{addr: ln.Addr().String(), up: up, after: after}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			limit := int64(-1)
			if p.stalls.Add(-1) >= 0 {
				limit = p.after
			}
			pipe := func(dst, src net.Conn, limit int64) {
				if limit >= 0 {
					io.CopyN(dst, src, limit)
					p.stalled.Add(1)
					io.Copy(io.Discard, src) // forward nothing more
					return
				}
				io.Copy(dst, src)
				dst.Close()
			}
			if p.up {
				go pipe(c, u, -1)
				go pipe(u, c, limit)
			} else {
				go pipe(c, u, limit)
				go pipe(u, c, -1)
			}
		}
	}()
	return p
}

// openThrough opens env's store through proxy p, with a stall timeout of
// stall and a transport of its own, whose idle connections a test closes
// once it has set p to stall the next ones.
func openThrough(t *testing.T, env storetest.S3Env, p *stallProxy, stall time.Duration) (*s3.Store, *http.Transport) {
	t.Helper()
	cfg := config(env)
	cfg.Endpoint = p.addr
	cfg.StallTimeout = stall
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg.Transport = tr
	return open(t, cfg), tr
}

// TestStalledTransfersRetried: a GET whose answer stops part-way and a
// PUT whose body the server stops reading are abandoned after the stall
// timeout and retried, and succeed on a connection that works; a reader
// of a range stream that takes longer than the stall timeout between
// reads is not taken for a stall.
func TestStalledTransfersRetried(t *testing.T) {
	env := storetest.MinIO(t)
	data := storetest.Data(7, 4<<20)
	for _, up := range []bool{false, true} {
		p := newStallProxy(t, env.Endpoint, up, 64<<10)
		raw, tr := openThrough(t, env, p, 300*time.Millisecond)
		if err := raw.Put(t.Context(), "data/big", data); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		st := chunkstore.WithRetry(raw, fastRetry(4, &logs))
		tr.CloseIdleConnections()
		p.stalls.Store(1)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		start := time.Now()
		var err error
		if up {
			err = st.Put(ctx, "data/big2", data)
		} else {
			var got []byte
			got, err = st.Get(ctx, "data/big", 0, -1)
			if err == nil && !bytes.Equal(got, data) {
				t.Errorf("up %v: Get returned other bytes", up)
			}
		}
		cancel()
		if err != nil {
			t.Fatalf("up %v: %v after %v", up, err, time.Since(start))
		}
		if p.stalled.Load() != 1 || !strings.Contains(logs.String(), "stalled") {
			t.Errorf("up %v: %d stalled connections, retry log:\n%s", up, p.stalled.Load(), logs.String())
		}
		if up {
			got, err := raw.Get(t.Context(), "data/big2", 0, -1)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("the object put through a stall: %d bytes, %v", len(got), err)
			}
			continue
		}
		// A slow reader is not a stalled server.
		rc, err := raw.OpenRange(t.Context(), "data/big", 0, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		buf := make([]byte, 1<<20)
		for got.Len() < len(data) {
			n, err := io.ReadFull(rc, buf)
			got.Write(buf[:n])
			if err != nil {
				t.Fatalf("slow reader: %v after %d bytes", err, got.Len())
			}
			time.Sleep(400 * time.Millisecond) // longer than the stall timeout
		}
		if err := rc.Close(); err != nil || !bytes.Equal(got.Bytes(), data) {
			t.Errorf("slow reader: %d bytes, close %v", got.Len(), err)
		}
	}
}

// TestStalledServerUnreachable: a server that takes connections and then
// sends nothing is as unreachable as one that refuses them. Once one
// request has spent its attempts on stalls, the next makes one attempt
// and fails with ErrUnreachable, instead of waiting through its own
// round of stalls (one round per pack made a restore from a hung
// endpoint take hours).
func TestStalledServerUnreachable(t *testing.T) {
	env := storetest.MinIO(t)
	p := newStallProxy(t, env.Endpoint, false, 0)
	raw, tr := openThrough(t, env, p, 200*time.Millisecond)
	for _, name := range []string{"data/a", "data/b"} {
		if err := raw.Put(t.Context(), name, []byte(name)); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	st := chunkstore.WithRetry(raw, fastRetry(3, &logs))
	tr.CloseIdleConnections()
	p.stalls.Store(1 << 20) // every connection from now on hangs
	_, err := st.Get(t.Context(), "data/a", 0, -1)
	if !errors.Is(err, chunkstore.ErrUnreachable) || !strings.Contains(err.Error(), "stalled") || p.stalled.Load() != 3 {
		t.Fatalf("first Get from a hung server: %d connections (want 3): %v", p.stalled.Load(), err)
	}
	_, err = st.Get(t.Context(), "data/b", 0, -1)
	if !errors.Is(err, chunkstore.ErrUnreachable) || !strings.Contains(err.Error(), "data/b") || p.stalled.Load() != 4 {
		t.Errorf("second Get: %d connections in all (want 4, one more): %v", p.stalled.Load(), err)
	}
}

// TestTimeoutsRetried: a server that accepts connections and never
// answers runs into the transport's wait for an answer, a timeout that
// is retried like any network failure, not given up at once.
func TestTimeoutsRetried(t *testing.T) {
	env := storetest.MinIO(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	var silent atomic.Bool
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 200 * time.Millisecond
	dialer := &net.Dialer{}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if silent.Load() {
			addr = ln.Addr().String()
		}
		return dialer.DialContext(ctx, network, addr)
	}
	cfg := config(env)
	cfg.Transport = tr
	raw := open(t, cfg)
	silent.Store(true)
	tr.CloseIdleConnections()
	var logs bytes.Buffer
	err = chunkstore.WithRetry(raw, fastRetry(3, &logs)).Put(t.Context(), "data/x", []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts") || !strings.Contains(err.Error(), "did not answer in time") {
		t.Errorf("Put to a silent server: %v", err)
	}
	if accepted.Load() != 3 {
		t.Errorf("%d connections, want 3 (one per attempt)", accepted.Load())
	}
}

// fixedAnswer answers every request with one status, S3 error code and
// x-amz-bucket-region, and counts them.
type fixedAnswer struct {
	status int
	code   string
	n      atomic.Int64
}

func (f *fixedAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	f.n.Add(1)
	if req.Body != nil {
		req.Body.Close()
	}
	body := ""
	if req.Method != http.MethodHead {
		body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + f.code + `</Code><Message>injected</Message></Error>`
	}
	return &http.Response{StatusCode: f.status, Status: http.StatusText(f.status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/xml"}, "X-Amz-Bucket-Region": {"eu-central-1"}},
		Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
}

// TestAnswersRetriedOrNot: a bucket in another region than AWS_REGION
// names (AWS answers 301, to a HEAD without a body), a request the
// server does not implement (501), a clock too far off and expired
// temporary credentials (nothing renews exported ones) and a server
// whose storage is full (MinIO's 507) are refused at once, saying what
// to do.
func TestAnswersRetriedOrNot(t *testing.T) {
	env := storetest.MinIO(t)
	for _, tc := range []struct {
		status   int
		code     string
		requests int64
		want     string
	}{
		{http.StatusMovedPermanently, "PermanentRedirect", 1, "AWS_REGION=eu-central-1"},
		{http.StatusNotImplemented, "NotImplemented", 1, "does not implement"},
		{http.StatusForbidden, "RequestTimeTooSkewed", 1, "clock"},
		{http.StatusBadRequest, "ExpiredToken", 1, "check the S3 credentials"},
		{http.StatusInsufficientStorage, "XMinioStorageFull", 1, "storage is full"},
	} {
		f := &fixedAnswer{status: tc.status, code: tc.code}
		var logs bytes.Buffer
		if tc.status == http.StatusMovedPermanently {
			// Open's HEAD of the bucket.
			cfg := config(env)
			cfg.Transport = f
			calls := 0
			err := fastRetry(4, &logs).Do(t.Context(), "open", "bucket", func(ctx context.Context) error {
				calls++
				_, err := s3.Open(ctx, cfg, false)
				return err
			})
			if calls != 1 || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: Open tried %d times: %v", tc.code, calls, err)
			}
		}
		// A Put through a store opened before the answers changed.
		sw := &switchable{base: http.DefaultTransport}
		cfg := config(env)
		cfg.Transport = sw
		s := open(t, cfg)
		sw.to.Store(f)
		before := f.n.Load()
		err := chunkstore.WithRetry(s, fastRetry(4, &logs)).Put(t.Context(), "data/x", []byte("x"))
		if n := f.n.Load() - before; n != tc.requests || err == nil || !strings.Contains(err.Error(), tc.want) || chunkstore.IsPermanent(err) != (tc.requests == 1) {
			t.Errorf("%s: Put sent %d requests, want %d: %v", tc.code, n, tc.requests, err)
		}
	}
}

// switchable sends requests to base until to is set.
type switchable struct {
	base http.RoundTripper
	to   atomic.Pointer[fixedAnswer]
}

func (s *switchable) RoundTrip(req *http.Request) (*http.Response, error) {
	if f := s.to.Load(); f != nil {
		return f.RoundTrip(req)
	}
	return s.base.RoundTrip(req)
}

// TestClosingServerUnreachable: a server (or a middlebox before it) that
// takes each request and closes the connection without answering is as
// unreachable as one that refuses connections: once one request has
// spent its attempts, the next makes one attempt and fails with
// ErrUnreachable. (minio-go reports the EOF as a plain message, which
// was no connection error: a restore waited through a round of retries,
// twice, for every pack.)
func TestClosingServerUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int64
	var closing atomic.Bool
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					if _, err := c.Read(make([]byte, 4096)); err != nil {
						return
					}
					if closing.Load() {
						conns.Add(1)
						return // the request, unanswered
					}
					// Open's look at the bucket: it is there.
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
				}
			}()
		}
	}()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg := s3.Config{Endpoint: ln.Addr().String(), Bucket: "lifeboat", Region: "us-east-1", AccessKey: "a", SecretKey: "b", Transport: tr}
	var logs bytes.Buffer
	st := chunkstore.WithRetry(open(t, cfg), fastRetry(3, &logs))
	tr.CloseIdleConnections()
	closing.Store(true)
	_, err = st.Get(t.Context(), "data/a", 0, -1)
	if !errors.Is(err, chunkstore.ErrUnreachable) || !strings.Contains(err.Error(), "closed the connection") || conns.Load() != 3 {
		t.Fatalf("first Get from a server that closes: %d connections (want 3): %v", conns.Load(), err)
	}
	_, err = st.Get(t.Context(), "data/b", 0, -1)
	if !errors.Is(err, chunkstore.ErrUnreachable) || !strings.Contains(err.Error(), "data/b") || conns.Load() != 4 {
		t.Errorf("second Get: %d connections in all (want 4, one more): %v", conns.Load(), err)
	}
}
