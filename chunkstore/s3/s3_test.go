package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/s3"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/testnet"
)

func config(env storetest.S3Env) s3.Config {
	return s3.Config{
		Endpoint:  env.Endpoint,
		Bucket:    env.Bucket,
		Prefix:    "repo",
		Region:    "us-east-1",
		AccessKey: env.AccessKey,
		SecretKey: env.SecretKey,
	}
}

func open(t *testing.T, cfg s3.Config) *s3.Store {
	t.Helper()
	s, err := s3.Open(t.Context(), cfg, false)
	if err != nil {
		t.Fatalf("s3.Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) chunkstore.Store {
		return open(t, config(storetest.MinIO(t)))
	})
}

func TestConformanceNoPrefix(t *testing.T) {
	storetest.Run(t, func(t *testing.T) chunkstore.Store {
		cfg := config(storetest.MinIO(t))
		cfg.Prefix = ""
		return open(t, cfg)
	})
}

func TestLocation(t *testing.T) {
	env := storetest.MinIO(t)
	s := open(t, config(env))
	if want := "s3:http://" + env.Endpoint + "/" + env.Bucket + "/repo"; s.Location() != want {
		t.Errorf("Location() = %q, want %q", s.Location(), want)
	}
}

func TestOpenMissingBucket(t *testing.T) {
	env := storetest.MinIO(t)
	cfg := config(env)
	cfg.Bucket = storetest.UniqueBucket(t) // not created
	_, err := s3.Open(t.Context(), cfg, false)
	if !errors.Is(err, chunkstore.ErrBucketNotFound) {
		t.Fatalf("Open(missing bucket) = %v, want ErrBucketNotFound", err)
	}
	t.Log(err)
	for _, want := range []string{cfg.Bucket, "lifeboat init"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	s, err := s3.Open(t.Context(), cfg, true)
	if err != nil {
		t.Fatalf("Open(missing bucket, create): %v", err)
	}
	t.Cleanup(func() {
		env.Client(t).RemoveBucket(context.Background(), cfg.Bucket)
	})
	if err := s.Put(t.Context(), "config", []byte("x")); err != nil {
		t.Fatalf("Put into created bucket: %v", err)
	}
	s.Delete(t.Context(), "config")
	if _, err := s3.Open(t.Context(), cfg, true); err != nil {
		t.Errorf("Open(existing bucket, create): %v", err)
	}
}

func TestBucketRemovedUnderneath(t *testing.T) {
	env := storetest.MinIO(t)
	s := open(t, config(env))
	if err := s.Put(t.Context(), "data/x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := env.Client(t).RemoveBucketWithOptions(t.Context(), env.Bucket, minioForceDelete); err != nil {
		t.Fatal(err)
	}
	err := s.List(t.Context(), "", func(chunkstore.ObjectInfo) error { return nil })
	if !errors.Is(err, chunkstore.ErrBucketNotFound) {
		t.Errorf("List on a removed bucket = %v, want ErrBucketNotFound (never an empty listing)", err)
	}
	if err := s.Put(t.Context(), "data/y", []byte("y")); !errors.Is(err, chunkstore.ErrBucketNotFound) {
		t.Errorf("Put on a removed bucket = %v, want ErrBucketNotFound", err)
	}
	if _, err := s.Stat(t.Context(), "data/x"); !errors.Is(err, chunkstore.ErrBucketNotFound) {
		t.Errorf("Stat on a removed bucket = %v, want ErrBucketNotFound", err)
	}
	if _, err := s.Get(t.Context(), "data/x", 0, -1); !errors.Is(err, chunkstore.ErrBucketNotFound) {
		t.Errorf("Get on a removed bucket = %v, want ErrBucketNotFound", err)
	}
}

func TestWrongCredentials(t *testing.T) {
	env := storetest.MinIO(t)
	for _, tt := range []struct{ name, access, secret, want string }{
		{"wrong secret", env.AccessKey, env.SecretKey + "x", "AWS_SECRET_ACCESS_KEY"},
		{"unknown key", "nosuchuser", "nosuchsecret", `no access key "nosuchuser"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(env)
			cfg.AccessKey, cfg.SecretKey = tt.access, tt.secret
			_, err := s3.Open(t.Context(), cfg, false)
			if err == nil {
				t.Fatal("Open with wrong credentials succeeded")
			}
			t.Log(err)
			if !chunkstore.IsPermanent(err) {
				t.Errorf("error %v is not permanent", err)
			}
			if !strings.Contains(err.Error(), "credentials") || !strings.Contains(err.Error(), env.Bucket) {
				t.Errorf("error %q should mention credentials and the bucket", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q should say which credential is wrong (%s)", err, tt.want)
			}
		})
	}
}

// With no credentials anywhere, the requests go unsigned and the server
// refuses them: the error says that none were found, not merely to check
// them.
func TestNoCredentials(t *testing.T) {
	env := storetest.MinIO(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	cfg := config(env)
	cfg.AccessKey, cfg.SecretKey = "", ""
	_, err := s3.Open(t.Context(), cfg, false)
	if err == nil {
		t.Fatal("Open without credentials succeeded")
	}
	if !chunkstore.IsPermanent(err) || !strings.Contains(err.Error(), "no S3 credentials were found") || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("Open without credentials = %v, want a permanent error saying none were found", err)
	}
}

func TestCredentialsFromEnvironment(t *testing.T) {
	env := storetest.MinIO(t)
	t.Setenv("AWS_ACCESS_KEY_ID", env.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", env.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_REGION", "us-east-1")
	cfg := config(env)
	cfg.AccessKey, cfg.SecretKey, cfg.Region = "", "", ""
	s := open(t, cfg)
	if err := s.Put(t.Context(), "x", []byte("x")); err != nil {
		t.Errorf("Put with credentials from the environment: %v", err)
	}
}

func fastRetry(attempts int, logs io.Writer) chunkstore.RetryConfig {
	return chunkstore.RetryConfig{
		Attempts: attempts, MinDelay: time.Millisecond, MaxDelay: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Sleep:  func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	}
}

func TestUnreachableEndpoint(t *testing.T) {
	// Needs no S3 server.
	addr := testnet.FreeAddr(t) // nothing listens there
	cfg := s3.Config{Endpoint: addr, Bucket: "lifeboat", Region: "us-east-1", AccessKey: "a", SecretKey: "b"}
	calls := 0
	var logs bytes.Buffer
	err := fastRetry(3, &logs).Do(t.Context(), "open", "s3:http://"+addr+"/lifeboat", func(ctx context.Context) error {
		calls++
		_, err := s3.Open(ctx, cfg, false)
		return err
	})
	if err == nil || calls != 3 {
		t.Fatalf("Open on a closed port: err %v after %d calls, want an error after 3", err, calls)
	}
	t.Log(err)
	for _, want := range []string{addr, "unreachable", "3 attempts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// hookTransport is a real HTTP transport into which a test can inject
// faults: refused connections, 503 answers, damaged request and response
// bodies. It also records the requests it saw.
type hookTransport struct {
	base *http.Transport

	mu          sync.Mutex
	down        string // when set, dial this (closed) address instead
	fail503     int    // answer the next n requests with 503 SlowDown
	corruptPut  bool   // flip a bit in PUT bodies
	truncateGet bool   // drop the last byte of GET bodies (fixing up Content-Length)
	lengthenGet bool   // add a byte to GET bodies (leaving Content-Length as it was)
	shiftRange  bool   // make GET answers claim a range starting one byte later
	// noEcho drops the x-amz-checksum-sha256 a PUT's answer echoes, as a
	// server that ignores the header does; etag, when set, replaces the
	// ETag of PUT answers.
	noEcho   bool
	echo     string // when set, replaces the x-amz-checksum-sha256 of PUT answers
	etag     string
	requests []string // "METHOD URI", and " md5" when it carried a Content-MD5
}

// hookedStore opens a store on the test MinIO whose requests go through
// a hookTransport.
func hookedStore(t *testing.T) (*s3.Store, *hookTransport) {
	t.Helper()
	h := newHookTransport()
	cfg := config(storetest.MinIO(t))
	cfg.Transport = h
	return open(t, cfg), h
}

func newHookTransport() *hookTransport {
	h := &hookTransport{}
	h.base = http.DefaultTransport.(*http.Transport).Clone()
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	h.base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		h.mu.Lock()
		if h.down != "" {
			addr = h.down
		}
		h.mu.Unlock()
		return dialer.DialContext(ctx, network, addr)
	}
	return h
}

func (h *hookTransport) set(fn func(h *hookTransport)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(h)
}

func (h *hookTransport) puts() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.requests {
		if strings.HasPrefix(r, "PUT ") || strings.HasPrefix(r, "POST ") {
			n++
		}
	}
	return n
}

func (h *hookTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h.mu.Lock()
	rec := req.Method + " " + req.URL.RequestURI()
	if req.Header.Get("Content-MD5") != "" {
		rec += " md5"
	}
	h.requests = append(h.requests, rec)
	noEcho, echo, etag := h.noEcho, h.echo, h.etag
	fail := h.fail503 > 0
	if fail {
		h.fail503--
	}
	corrupt, truncate, lengthen, shift := h.corruptPut, h.truncateGet, h.lengthenGet, h.shiftRange
	h.mu.Unlock()
	if fail {
		if req.Body != nil {
			req.Body.Close()
		}
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>`
		return &http.Response{
			StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"application/xml"}},
			Body:          io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: req,
		}, nil
	}
	if corrupt && req.Method == http.MethodPut && req.ContentLength > 0 {
		req = req.Clone(req.Context())
		req.Body = &flipReader{r: req.Body}
	}
	resp, err := h.base.RoundTrip(req)
	if err == nil && req.Method == http.MethodPut && resp.StatusCode == http.StatusOK {
		if noEcho {
			resp.Header.Del("x-amz-checksum-sha256")
			resp.Header.Del("x-amz-checksum-type")
		}
		if echo != "" {
			resp.Header.Set("x-amz-checksum-sha256", echo)
		}
		if etag != "" {
			resp.Header.Set("ETag", `"`+etag+`"`)
		}
	}
	if err == nil && shift && req.Method == http.MethodGet {
		var first, last, total int64
		if _, serr := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &total); serr == nil {
			resp.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first+1, last+1, total))
		}
	}
	if err != nil || !(truncate || lengthen) || req.Method != http.MethodGet || resp.StatusCode/100 != 2 || resp.ContentLength <= 0 {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if lengthen {
		resp.Body = io.NopCloser(bytes.NewReader(append(b, 'x')))
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(b[:len(b)-1]))
	resp.ContentLength = int64(len(b) - 1)
	resp.Header.Del("Content-Length")
	return resp, nil
}

type flipReader struct {
	r    io.ReadCloser
	done bool
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 && !f.done {
		p[0] ^= 0x01
		f.done = true
	}
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }

func TestRetryRecoversFrom503(t *testing.T) {
	raw, h := hookedStore(t)
	var logs bytes.Buffer
	s := chunkstore.WithRetry(raw, fastRetry(4, &logs))
	ctx := t.Context()

	h.set(func(h *hookTransport) { h.fail503 = 2 })
	if err := s.Put(ctx, "data/obj", []byte("payload")); err != nil {
		t.Fatalf("Put through two 503s: %v", err)
	}
	h.set(func(h *hookTransport) { h.fail503 = 2 })
	if b, err := s.Get(ctx, "data/obj", 0, -1); err != nil || string(b) != "payload" {
		t.Fatalf("Get through two 503s = %q, %v", b, err)
	}
	h.set(func(h *hookTransport) { h.fail503 = 2 })
	n := 0
	if err := s.List(ctx, "data/", func(chunkstore.ObjectInfo) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("List through two 503s = %d objects, %v", n, err)
	}
	if c := strings.Count(logs.String(), "level=WARN"); c != 6 {
		t.Errorf("logged %d retries, want 6:\n%s", c, logs.String())
	}
	// Without the decorator, the 503 comes straight back: minio-go does not retry.
	h.set(func(h *hookTransport) { h.fail503 = 1 })
	if _, err := raw.Stat(ctx, "data/obj"); err == nil || chunkstore.IsPermanent(err) {
		t.Errorf("Stat through one 503 without retry = %v, want a transient error", err)
	}
	// Too many failures: the final error counts the attempts.
	h.set(func(h *hookTransport) { h.fail503 = 10 })
	err := s.Put(ctx, "data/obj2", []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "4 attempts") {
		t.Errorf("Put through 10 503s = %v, want to give up after 4 attempts", err)
	}
}

func TestRetryOnRefusedConnection(t *testing.T) {
	env := storetest.MinIO(t)
	h := newHookTransport()
	cfg := config(env)
	cfg.Transport = h
	var logs bytes.Buffer
	s := chunkstore.WithRetry(open(t, cfg), fastRetry(3, &logs))
	h.set(func(h *hookTransport) { h.down = testnet.FreeAddr(t) }) // nothing listens there
	h.base.CloseIdleConnections()
	_, err := s.Stat(t.Context(), "anything")
	if err == nil || !strings.Contains(err.Error(), env.Endpoint) || !strings.Contains(err.Error(), "unreachable") ||
		!strings.Contains(err.Error(), "3 attempts") {
		t.Errorf("Stat with the endpoint down = %v, want 'unreachable' naming %s after 3 attempts", err, env.Endpoint)
	}
}

// TestCorruptedUploadRejected flips a bit of the body in flight, for a
// plain name (protected by Content-MD5) and for a content-addressed one
// (protected by the SHA-256 its name carries).
func TestCorruptedUploadRejected(t *testing.T) {
	data := storetest.Data(1, 100000)
	sum := sha256.Sum256(data)
	for _, name := range []string{"data/corrupt", "data/ab/" + hex.EncodeToString(sum[:])} {
		t.Run(path.Dir(name)+"/…", func(t *testing.T) {
			s, h := hookedStore(t)
			h.set(func(h *hookTransport) { h.corruptPut = true })
			err := s.Put(t.Context(), name, data)
			if err == nil {
				t.Fatal("Put with a bit flipped in flight succeeded: the server did not verify a checksum")
			}
			t.Log(err)
			if chunkstore.IsPermanent(err) {
				t.Errorf("damaged upload error %v should be transient (worth retrying)", err)
			}
			h.set(func(h *hookTransport) { h.corruptPut = false })
			if _, err := s.Stat(t.Context(), name); !errors.Is(err, chunkstore.ErrNotFound) {
				t.Errorf("Stat after a rejected upload = %v, want ErrNotFound", err)
			}
			if err := s.Put(t.Context(), name, data); err != nil {
				t.Fatalf("clean upload: %v", err)
			}
		})
	}
}

// TestUnconfirmedChecksum: a server that does not echo the SHA-256 of an
// upload may not have verified it. The upload is accepted if the ETag it
// answered is the MD5 of the bytes, and sent again with a Content-MD5 if
// not; either way one warning says so, and every later upload carries a
// Content-MD5 too. A server that echoes it gets no Content-MD5.
func TestUnconfirmedChecksum(t *testing.T) {
	ctx := t.Context()
	named := func(seed uint64) (string, []byte) {
		data := storetest.Data(seed, 50000)
		sum := sha256.Sum256(data)
		return "data/" + hex.EncodeToString(sum[:]), data
	}
	for _, tc := range []struct {
		name   string
		noEcho bool
		etag   string
		want   []string // PUTs of the first upload, then of a second one
		warned bool
	}{
		{"echoed", false, "", []string{"PUT", "PUT"}, false},
		{"not echoed, ETag is the MD5", true, "", []string{"PUT", "PUT md5"}, true},
		{"not echoed, ETag is not the MD5", true, strings.Repeat("ab", 16), []string{"PUT", "PUT md5", "PUT md5"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHookTransport()
			var logs bytes.Buffer
			cfg := config(storetest.MinIO(t))
			cfg.Transport = h
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			s := open(t, cfg)
			h.set(func(h *hookTransport) { h.noEcho, h.etag, h.requests = tc.noEcho, tc.etag, nil })
			for i := range uint64(2) {
				name, data := named(10*uint64(len(tc.want)) + i)
				if err := s.Put(ctx, name, data); err != nil {
					t.Fatal(err)
				}
				if got, err := s.Get(ctx, name, 0, -1); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("read back %d bytes, %v", len(got), err)
				}
			}
			var puts []string
			h.set(func(h *hookTransport) {
				for _, r := range h.requests {
					switch {
					case strings.HasPrefix(r, "PUT ") && strings.HasSuffix(r, " md5"):
						puts = append(puts, "PUT md5")
					case strings.HasPrefix(r, "PUT "):
						puts = append(puts, "PUT")
					}
				}
			})
			if !slices.Equal(puts, tc.want) {
				t.Errorf("PUTs %q, want %q", puts, tc.want)
			}
			if n := strings.Count(logs.String(), "did not confirm the SHA-256"); n != map[bool]int{true: 1}[tc.warned] {
				t.Errorf("warned %d times, want the warning %v:\n%s", n, tc.warned, logs.String())
			}
		})
	}
}

// TestEchoedOtherChecksum: a server that answers an upload with another
// SHA-256 than the one sent stored other bytes without enforcing the
// checksum: the upload fails (transient: it is worth sending again),
// whether or not Content-MD5 is being sent.
func TestEchoedOtherChecksum(t *testing.T) {
	ctx := t.Context()
	other := sha256.Sum256([]byte("other bytes"))
	for _, md5First := range []bool{false, true} {
		h := newHookTransport()
		cfg := config(storetest.MinIO(t))
		cfg.Transport = h
		cfg.Logger = slog.New(slog.DiscardHandler)
		s := open(t, cfg)
		if md5First { // a server found earlier not to echo at all
			h.set(func(h *hookTransport) { h.noEcho = true })
			data := storetest.Data(50, 1000)
			sum := sha256.Sum256(data)
			if err := s.Put(ctx, "data/"+hex.EncodeToString(sum[:]), data); err != nil {
				t.Fatal(err)
			}
			h.set(func(h *hookTransport) { h.noEcho = false })
		}
		h.set(func(h *hookTransport) { h.echo = base64.StdEncoding.EncodeToString(other[:]) })
		data := storetest.Data(51, 50000)
		sum := sha256.Sum256(data)
		name := "data/" + hex.EncodeToString(sum[:])
		err := s.Put(ctx, name, data)
		if err == nil || !errors.Is(err, chunkstore.ErrCorrupt) || chunkstore.IsPermanent(err) || !strings.Contains(err.Error(), "SHA-256") {
			t.Errorf("Content-MD5 sent %v: Put answered with another checksum: %v; want a transient corruption error", md5First, err)
		}
	}
}

// TestMisnamedUploadRejected: a content-addressed name whose hash does not
// match the bytes is refused by the server, so a naming bug cannot store
// an object under the wrong hash.
func TestMisnamedUploadRejected(t *testing.T) {
	env := storetest.MinIO(t)
	s := open(t, config(env))
	other := sha256.Sum256([]byte("something else"))
	name := "index/" + hex.EncodeToString(other[:])
	if err := s.Put(t.Context(), name, storetest.Data(2, 5000)); err == nil {
		t.Fatal("Put of bytes under another content's hash succeeded")
	}
	if _, err := s.Stat(t.Context(), name); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Errorf("Stat after a rejected upload = %v, want ErrNotFound", err)
	}
}

// A GET body shorter or longer than the server announced is an error,
// for Get and for a stream.
func TestMisSizedGetDetected(t *testing.T) {
	for _, c := range []struct {
		name   string
		hook   func(*hookTransport)
		getErr string // in every Get's error; "" for any error
		stream func(t *testing.T, rc io.ReadCloser)
	}{
		{"truncated", func(h *hookTransport) { h.truncateGet = true }, "", func(t *testing.T, rc io.ReadCloser) {
			if b, err := io.ReadAll(rc); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("stream of a truncated body: %d bytes, %v; want io.ErrUnexpectedEOF", len(b), err)
			}
		}},
		{"one byte long", func(h *hookTransport) { h.lengthenGet = true }, "more than", func(t *testing.T, rc io.ReadCloser) {
			if b, err := io.ReadAll(rc); err != nil || len(b) != 100 {
				t.Fatalf("stream: %d bytes, %v; want the 100 asked for", len(b), err)
			}
			if err := rc.Close(); err == nil || !strings.Contains(err.Error(), "more than") {
				t.Errorf("Close of a stream whose body was one byte long = %v, want an error saying the server sent more", err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, h := hookedStore(t)
			if err := s.Put(t.Context(), "data/x", storetest.Data(2, 5000)); err != nil {
				t.Fatal(err)
			}
			h.set(c.hook)
			for _, r := range [][2]int64{{0, -1}, {10, -1}, {10, 100}} {
				if b, err := s.Get(t.Context(), "data/x", r[0], r[1]); err == nil || !strings.Contains(err.Error(), c.getErr) {
					t.Errorf("Get(%d, %d) of a %s body = %d bytes, %v; want an error containing %q", r[0], r[1], c.name, len(b), err, c.getErr)
				}
			}
			rc, err := s.OpenRange(t.Context(), "data/x", 10, 100)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			c.stream(t, rc)
		})
	}
}

// A server (or proxy) that answers a ranged GET with other bytes than
// those asked for is caught by the Content-Range it sends, not taken at
// its word.
func TestMovedRangeDetected(t *testing.T) {
	s, h := hookedStore(t)
	if err := s.Put(t.Context(), "data/x", storetest.Data(5, 5000)); err != nil {
		t.Fatal(err)
	}
	h.set(func(h *hookTransport) { h.shiftRange = true })
	for _, r := range [][2]int64{{10, -1}, {10, 100}} {
		if b, err := s.Get(t.Context(), "data/x", r[0], r[1]); err == nil || !strings.Contains(err.Error(), "answered with those from 11") {
			t.Errorf("Get(%d, %d) of a moved range: %d bytes, %v; want an error naming the offset the server answered with", r[0], r[1], len(b), err)
		}
	}
	if rc, err := s.OpenRange(t.Context(), "data/x", 10, 100); err == nil {
		rc.Close()
		t.Error("OpenRange of a moved range succeeded")
	}
}

func TestLargePutIsOneRequest(t *testing.T) {
	s, h := hookedStore(t)
	data := storetest.Data(3, 64<<20)
	if err := s.Put(t.Context(), "data/big", data); err != nil {
		t.Fatal(err)
	}
	if n := h.puts(); n != 1 {
		t.Errorf("64 MiB Put took %d PUT/POST requests, want 1: %q", n, h.requests)
	}
	got, err := s.Get(t.Context(), "data/big", 32<<20, 1<<20)
	if err != nil || !bytes.Equal(got, data[32<<20:33<<20]) {
		t.Errorf("ranged Get of the big object: %d bytes, %v", len(got), err)
	}
}

var minioForceDelete = minio.RemoveBucketOptions{ForceDelete: true}

// Open refuses a bucket name S3 cannot accept before any request, as a
// permanent error (it must not be retried as if the server were down).
func TestOpenInvalidBucketName(t *testing.T) {
	_, err := s3.Open(t.Context(), s3.Config{Endpoint: "127.0.0.1:1", Bucket: "lb", AccessKey: "k", SecretKey: "s"}, false)
	if err == nil || !chunkstore.IsPermanent(err) || !strings.Contains(err.Error(), `invalid bucket name "lb"`) {
		t.Fatalf("Open with bucket %q = %v, want a permanent invalid-bucket-name error", "lb", err)
	}
}

// TestTLSMisconfiguration covers TLS set-up mistakes no retry can fix
// (https to a server without TLS, an untrusted certificate, and http to
// a TLS server): each fails at once, as a permanent error that says what
// to change.
// Needs no S3 server: the TLS handshake fails before any S3 request.
func TestTLSMisconfiguration(t *testing.T) {
	tlsSrv := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	plainSrv := httptest.NewServer(http.NotFoundHandler())
	defer plainSrv.Close()
	notTLS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer notTLS.Close()
	go func() {
		for {
			c, err := notTLS.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
			c.Close()
		}
	}()
	// Trusts the test server's certificate, so that only the host name is wrong.
	trusting := tlsSrv.Client().Transport.(*http.Transport).Clone()
	_, tlsPort, _ := net.SplitHostPort(tlsSrv.Listener.Addr().String())
	expiredSrv, trustingExpired := expiredTLSServer(t)
	defer expiredSrv.Close()

	for _, tc := range []struct {
		name      string
		https     bool
		endpoint  string
		transport http.RoundTripper
		want      []string
	}{
		{"untrusted certificate", true, tlsSrv.Listener.Addr().String(), nil, []string{"not trusted", "SSL_CERT_FILE"}},
		{"wrong host name", true, net.JoinHostPort("localhost", tlsPort), trusting, []string{"not valid for that host name", "localhost"}},
		{"expired certificate", true, expiredSrv.Listener.Addr().String(), trustingExpired, []string{"expired", "renew it"}},
		{"plain HTTP server", true, plainSrv.Listener.Addr().String(), nil, []string{"plain HTTP", "s3:http://"}},
		{"not TLS at all", true, notTLS.Addr().String(), nil, []string{"does not speak TLS", "check the port"}},
		{"plain HTTP to a TLS server", false, tlsSrv.Listener.Addr().String(), nil, []string{"400 Bad Request", "use an s3:https:// location"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := s3.Config{Endpoint: tc.endpoint, Secure: tc.https, Bucket: "lifeboat", Region: "us-east-1", AccessKey: "a", SecretKey: "b", Transport: tc.transport}
			calls := 0
			var logs bytes.Buffer
			err := fastRetry(3, &logs).Do(t.Context(), "open", tc.endpoint, func(ctx context.Context) error {
				calls++
				_, err := s3.Open(ctx, cfg, false)
				return err
			})
			if err == nil || calls != 1 || !chunkstore.IsPermanent(err) {
				t.Fatalf("Open: err %v after %d calls, want a permanent error after 1", err, calls)
			}
			t.Log(err)
			for _, want := range append(tc.want, tc.endpoint) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// expiredTLSServer starts a TLS server whose self-signed certificate for
// 127.0.0.1 expired yesterday, and returns it with a transport that
// trusts that certificate: the expiry is the only fault.
func expiredTLSServer(t *testing.T) (*httptest.Server, http.RoundTripper) {
	t.Helper()
	cert, pool := testnet.SelfSignedCert(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return srv, tr
}
