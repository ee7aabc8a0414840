package chunkstore_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// fakeSleep records requested delays and returns at once.
type fakeSleep struct{ delays []time.Duration }

func (f *fakeSleep) sleep(ctx context.Context, d time.Duration) error {
	f.delays = append(f.delays, d)
	return ctx.Err()
}

func newRetry(t *testing.T, attempts int) (*storetest.Faulty, chunkstore.Store, *fakeSleep, *bytes.Buffer) {
	t.Helper()
	f := storetest.NewFaulty(mem.New())
	sl := &fakeSleep{}
	var logs bytes.Buffer
	s := chunkstore.WithRetry(f, chunkstore.RetryConfig{
		Attempts: attempts,
		MinDelay: 100 * time.Millisecond,
		MaxDelay: time.Second,
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		Sleep:    sl.sleep,
	})
	return f, s, sl, &logs
}

func TestRetryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) chunkstore.Store {
		return chunkstore.WithRetry(mem.New(), chunkstore.DefaultRetryConfig())
	})
}

func TestRetryRecovers(t *testing.T) {
	ops := []struct {
		op  storetest.Op
		run func(ctx context.Context, s chunkstore.Store) error
	}{
		{storetest.OpPut, func(ctx context.Context, s chunkstore.Store) error { return s.Put(ctx, "obj", []byte("new")) }},
		{storetest.OpGet, func(ctx context.Context, s chunkstore.Store) error {
			b, err := s.Get(ctx, "obj", 0, -1)
			if err == nil && string(b) != "data" {
				err = fmt.Errorf("got %q", b)
			}
			return err
		}},
		{storetest.OpStat, func(ctx context.Context, s chunkstore.Store) error {
			oi, err := s.Stat(ctx, "obj")
			if err == nil && oi.Size != 4 {
				err = fmt.Errorf("got %+v", oi)
			}
			return err
		}},
		{storetest.OpDelete, func(ctx context.Context, s chunkstore.Store) error { return s.Delete(ctx, "obj") }},
		{storetest.OpList, func(ctx context.Context, s chunkstore.Store) error {
			return s.List(ctx, "", func(chunkstore.ObjectInfo) error { return nil })
		}},
	}
	for _, tt := range ops {
		t.Run(string(tt.op), func(t *testing.T) {
			f, s, sl, logs := newRetry(t, 4)
			f.Store.Put(t.Context(), "obj", []byte("data"))
			f.FailNext(tt.op, 3, nil)
			if err := tt.run(t.Context(), s); err != nil {
				t.Fatalf("%s after 3 transient failures: %v", tt.op, err)
			}
			if got := f.Calls(tt.op); got != 4 {
				t.Errorf("%d calls, want 4", got)
			}
			if len(sl.delays) != 3 {
				t.Errorf("slept %d times, want 3", len(sl.delays))
			}
			if n := strings.Count(logs.String(), "level=WARN"); n != 3 {
				t.Errorf("%d warnings logged, want 3:\n%s", n, logs)
			}
			if !strings.Contains(logs.String(), "op="+string(tt.op)) || !strings.Contains(logs.String(), storetest.ErrInjected.Error()) {
				t.Errorf("log lacks op or error:\n%s", logs)
			}
		})
	}
}

func TestRetryGivesUp(t *testing.T) {
	f, s, sl, _ := newRetry(t, 3)
	f.FailNext(storetest.OpPut, 10, nil)
	err := s.Put(t.Context(), "data/x", []byte("x"))
	if !errors.Is(err, storetest.ErrInjected) {
		t.Fatalf("err = %v, want it to wrap the last error", err)
	}
	if !strings.Contains(err.Error(), "3 attempts") || !strings.Contains(err.Error(), "data/x") {
		t.Errorf("err = %q, want it to name the object and say 3 attempts", err)
	}
	if f.Calls(storetest.OpPut) != 3 || len(sl.delays) != 2 {
		t.Errorf("calls %d, sleeps %d; want 3 and 2", f.Calls(storetest.OpPut), len(sl.delays))
	}
}

func TestRetryPermanentNotRetried(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"permanent", chunkstore.Permanent(errors.New("access denied"))},
		{"not found", chunkstore.ErrNotFound},
		{"bucket not found", chunkstore.ErrBucketNotFound},
		{"canceled", context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, s, sl, _ := newRetry(t, 5)
			f.FailNext(storetest.OpGet, 1, tt.err)
			_, err := s.Get(t.Context(), "obj", 0, -1)
			if !errors.Is(err, tt.err) {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
			if f.Calls(storetest.OpGet) != 1 || len(sl.delays) != 0 {
				t.Errorf("calls %d, sleeps %d; want 1 and 0", f.Calls(storetest.OpGet), len(sl.delays))
			}
		})
	}
	// Not found from the real store is not retried either.
	f, s, _, _ := newRetry(t, 5)
	if _, err := s.Stat(t.Context(), "missing"); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Errorf("Stat(missing) = %v", err)
	}
	if f.Calls(storetest.OpStat) != 1 {
		t.Errorf("Stat(missing) called the store %d times, want 1", f.Calls(storetest.OpStat))
	}
}

func TestRetryBackoff(t *testing.T) {
	f, s, sl, _ := newRetry(t, 8)
	f.FailNext(storetest.OpStat, 7, nil)
	s.Stat(t.Context(), "obj")
	if len(sl.delays) != 7 {
		t.Fatalf("slept %d times, want 7", len(sl.delays))
	}
	// Nominal delays 100, 200, 400, 800, 1000, 1000, 1000 ms, jittered to [d/2, d].
	nominal := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, d := range sl.delays {
		want := nominal[i] * time.Millisecond
		if d < want/2 || d > want {
			t.Errorf("delay %d = %v, want within [%v, %v]", i, d, want/2, want)
		}
	}
}

func TestRetryContext(t *testing.T) {
	f := storetest.NewFaulty(mem.New())
	f.FailNext(storetest.OpPut, 100, nil)
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	s := chunkstore.WithRetry(f, chunkstore.RetryConfig{
		Attempts: 100, MinDelay: time.Millisecond, MaxDelay: time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
		Sleep: func(ctx context.Context, d time.Duration) error {
			if calls++; calls == 2 {
				cancel()
			}
			return ctx.Err()
		},
	})
	err := s.Put(ctx, "obj", []byte("x"))
	if !errors.Is(err, context.Canceled) || !errors.Is(err, storetest.ErrInjected) {
		t.Errorf("err = %v, want it to wrap both context.Canceled and the last error", err)
	}
	if f.Calls(storetest.OpPut) != 2 {
		t.Errorf("%d calls, want 2", f.Calls(storetest.OpPut))
	}
	// The real sleep honours the context too.
	s = chunkstore.WithRetry(f, chunkstore.RetryConfig{Attempts: 3, MinDelay: time.Hour, MaxDelay: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Put(ctx, "obj", []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("retry slept through a canceled context")
	}
}

func TestRetryListResumesWithoutDuplicates(t *testing.T) {
	f, s, _, _ := newRetry(t, 3)
	for i := range 10 {
		f.Store.Put(t.Context(), fmt.Sprintf("l/%d", i), []byte{byte(i)})
	}
	f.FailListAfter(4, nil)
	seen := map[string]int{}
	err := s.List(t.Context(), "l/", func(oi chunkstore.ObjectInfo) error {
		seen[oi.Name]++
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(seen) != 10 {
		t.Errorf("saw %d names, want 10", len(seen))
	}
	for n, c := range seen {
		if c != 1 {
			t.Errorf("%s passed to fn %d times", n, c)
		}
	}
	if f.Calls(storetest.OpList) != 2 {
		t.Errorf("List called %d times, want 2", f.Calls(storetest.OpList))
	}
}

func TestRetryListFnErrorUnchanged(t *testing.T) {
	f, s, _, _ := newRetry(t, 3)
	f.Store.Put(t.Context(), "a", []byte("x"))
	stop := chunkstore.Permanent(errors.New("stop"))
	for _, want := range []error{errors.New("plain"), stop} {
		err := s.List(t.Context(), "", func(chunkstore.ObjectInfo) error { return want })
		if err != want {
			t.Errorf("List returned %v, want the callback's error unchanged", err)
		}
	}
	if f.Calls(storetest.OpList) != 2 {
		t.Errorf("List called %d times, want 2 (no retries)", f.Calls(storetest.OpList))
	}
}

func TestRetryListFailsAfterAttempts(t *testing.T) {
	f, s, _, _ := newRetry(t, 2)
	f.Store.Put(t.Context(), "a", []byte("x"))
	f.FailNext(storetest.OpList, 5, nil)
	err := s.List(t.Context(), "", func(chunkstore.ObjectInfo) error { return nil })
	if !errors.Is(err, storetest.ErrInjected) {
		t.Errorf("List = %v, want the injected error after 2 attempts", err)
	}
}

func TestFaultyCorruption(t *testing.T) {
	f := storetest.NewFaulty(mem.New())
	ctx := t.Context()
	f.Put(ctx, "x", []byte("hello"))
	f.TruncateGet("x", 2)
	if b, _ := f.Get(ctx, "x", 0, -1); string(b) != "hel" {
		t.Errorf("truncated Get = %q", b)
	}
	f.Reset()
	f.FlipGet("x", 8)
	if b, _ := f.Get(ctx, "x", 0, -1); string(b) != "hdllo" {
		t.Errorf("bit-flipped Get = %q", b)
	}
	f.Reset()
	f.FailPuts("data/", nil)
	if err := f.Put(ctx, "data/a", nil); !errors.Is(err, storetest.ErrInjected) {
		t.Errorf("Put(data/a) = %v", err)
	}
	if err := f.Put(ctx, "index/a", nil); err != nil {
		t.Errorf("Put(index/a) = %v", err)
	}
	if _, err := f.Stat(ctx, "data/a"); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Errorf("failed Put stored something: %v", err)
	}
}

// refused is the error of a request to a server that is not listening.
var refused = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}

// TestRetryUnreachable: once one operation has used up its attempts on
// connection failures, later ones (and one already retrying) stop after
// a single attempt, with an error that names the object and the store
// and says what to check; an answer from the store, or a connection
// failure that a retry gets past, keeps retrying as before.
func TestRetryUnreachable(t *testing.T) {
	ctx := t.Context()
	f, s, _, _ := newRetry(t, 6)
	for _, name := range []string{"data/a", "data/b", "data/c"} {
		if err := s.Put(ctx, name, []byte(name)); err != nil {
			t.Fatal(err)
		}
	}
	get := func(name string) (int, error) {
		before := f.Calls(storetest.OpGet)
		_, err := s.Get(ctx, name, 0, -1)
		return f.Calls(storetest.OpGet) - before, err
	}

	// One reset connection, then a burst of 5xx-like failures that uses
	// up every attempt: neither marks the store unreachable.
	f.FailNext(storetest.OpGet, 1, refused)
	if n, err := get("data/a"); err != nil || n != 2 {
		t.Fatalf("one refused connection: %d attempts, err %v; want 2 and success", n, err)
	}
	f.FailNext(storetest.OpGet, 6, nil)
	if n, err := get("data/a"); errors.Is(err, chunkstore.ErrUnreachable) || n != 6 {
		t.Fatalf("answers that are errors: %d attempts, err %v; want 6, not unreachable", n, err)
	}
	f.FailNext(storetest.OpGet, 2, nil)
	if n, err := get("data/a"); err != nil || n != 3 {
		t.Fatalf("after failed answers: %d attempts, err %v; want 3 and success", n, err)
	}

	// The store dies.
	for _, name := range []string{"data/a", "data/b", "data/c"} {
		f.FailGets(name, refused)
	}
	n, err := get("data/a")
	if n != 6 || !errors.Is(err, chunkstore.ErrUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("first read from a dead store: %d attempts, err %v; want 6, unreachable, wrapping the refusal", n, err)
	}
	for _, want := range []string{"data/a", s.Location(), "6 attempts", "check the endpoint"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to contain %q", err, want)
		}
	}
	n, err = get("data/b")
	if n != 1 || !errors.Is(err, chunkstore.ErrUnreachable) {
		t.Fatalf("next read from the dead store: %d attempts, err %v; want 1 (the probe), unreachable", n, err)
	}
	for _, want := range []string{"data/b", s.Location(), "get data/a gave up", "check the endpoint"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to contain %q", err, want)
		}
	}

	// It answers again, if only with an error: a refused connection
	// right after is retried again.
	f.Reset()
	f.FailNext(storetest.OpGet, 1, nil)
	f.FailNext(storetest.OpGet, 1, refused)
	if n, err := get("data/c"); err != nil || n != 3 {
		t.Fatalf("store answering an error, then refusing once: %d attempts, err %v; want 3 and success", n, err)
	}

	// It dies again, and comes back: the probe succeeds, and a refused
	// connection is retried again.
	f.FailGets("data/a", refused)
	if n, err := get("data/a"); n != 6 || !errors.Is(err, chunkstore.ErrUnreachable) {
		t.Fatalf("read from the store dead again: %d attempts, err %v; want 6, unreachable", n, err)
	}
	f.Reset()
	if n, err := get("data/c"); err != nil || n != 1 {
		t.Fatalf("store back: %d attempts, err %v; want 1 and success", n, err)
	}
	f.FailNext(storetest.OpGet, 2, refused)
	if n, err := get("data/c"); err != nil || n != 3 {
		t.Fatalf("store back, two refusals: %d attempts, err %v; want 3 and success", n, err)
	}
}

// TestRetryUnreachableInFlight: a read already retrying when another
// gives up on the store stops at its next attempt.
func TestRetryUnreachableInFlight(t *testing.T) {
	ctx := t.Context()
	f := storetest.NewFaulty(mem.New())
	var s chunkstore.Store
	var other error
	sleeps := 0
	s = chunkstore.WithRetry(f, chunkstore.RetryConfig{
		Attempts: 6, MinDelay: time.Millisecond, MaxDelay: time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
		Sleep: func(ctx context.Context, d time.Duration) error {
			sleeps++
			if sleeps == 1 {
				// While the first read waits to retry, another
				// one uses up its attempts.
				_, other = s.Get(ctx, "data/b", 0, -1)
			}
			return ctx.Err()
		},
	})
	f.FailGets("data/a", refused)
	f.FailGets("data/b", refused)
	_, err := s.Get(ctx, "data/a", 0, -1)
	if !errors.Is(other, chunkstore.ErrUnreachable) {
		t.Fatalf("the other read: %v, want unreachable", other)
	}
	// 6 attempts of the other read, 2 of the first.
	if n := f.Calls(storetest.OpGet); n != 8 || !errors.Is(err, chunkstore.ErrUnreachable) {
		t.Fatalf("%d attempts in all, first read's err %v; want 8, unreachable", n, err)
	}
}

// TestRetryUnreachableLapses: a store kept open long (an agent's
// backup) that a request found unreachable gets a full round of retries
// again once a minute passed without a request failing to connect, so a
// reset connection after a quiet spell is not taken for the old outage;
// while requests keep failing to connect, it stays unreachable.
func TestRetryUnreachableLapses(t *testing.T) {
	ctx := t.Context()
	f, s, _, _ := newRetry(t, 6)
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	chunkstore.SetRetryClockForTest(s, func() time.Time { return now })
	if err := s.Put(ctx, "data/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	get := func() (int, error) {
		before := f.Calls(storetest.OpGet)
		_, err := s.Get(ctx, "data/a", 0, -1)
		return f.Calls(storetest.OpGet) - before, err
	}

	f.FailGets("data/a", refused)
	if n, err := get(); n != 6 || !errors.Is(err, chunkstore.ErrUnreachable) {
		t.Fatalf("read from a dead store: %d attempts, err %v; want 6, unreachable", n, err)
	}
	// Probes that fail to connect keep the state, each for another
	// lapse, though the first failure is long past.
	for range 3 {
		now = now.Add(chunkstore.UnreachableLapseForTest * 3 / 4)
		if n, err := get(); n != 1 || !errors.Is(err, chunkstore.ErrUnreachable) {
			t.Fatalf("probe of the still dead store: %d attempts, err %v; want 1, unreachable", n, err)
		}
	}

	// The network comes back, quiet for a while; the first request
	// meets one reset connection (the pool's, from before the outage).
	f.Reset()
	now = now.Add(chunkstore.UnreachableLapseForTest + time.Second)
	f.FailNext(storetest.OpGet, 1, refused)
	if n, err := get(); err != nil || n != 2 {
		t.Fatalf("first read a while after the outage, one refusal: %d attempts, err %v; want 2 and success", n, err)
	}
}

// slowGets makes every Get of its store take `took` on a fake clock,
// as a probe of a hung server takes its stall timeout before it fails.
type slowGets struct {
	chunkstore.Store
	now  *time.Time
	took time.Duration
}

func (s slowGets) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	*s.now = s.now.Add(s.took)
	return s.Store.Get(ctx, name, offset, length)
}

// TestRetryUnreachableSlowProbe: a probe that starts within the lapse
// and takes longer than it to fail (a hung server's stall timeout is a
// minute, as long as the lapse) still finds the store unreachable: the
// lapse counts to the probe's start, not to its end.
func TestRetryUnreachableSlowProbe(t *testing.T) {
	ctx := t.Context()
	f := storetest.NewFaulty(mem.New())
	if err := f.Put(ctx, "data/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	s := chunkstore.WithRetry(slowGets{f, &now, chunkstore.UnreachableLapseForTest + time.Second}, chunkstore.RetryConfig{
		Attempts: 3, MinDelay: time.Millisecond, MaxDelay: time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
		Sleep:  func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	chunkstore.SetRetryClockForTest(s, func() time.Time { return now })
	f.FailGets("data/a", refused)
	get := func() (int, error) {
		before := f.Calls(storetest.OpGet)
		_, err := s.Get(ctx, "data/a", 0, -1)
		return f.Calls(storetest.OpGet) - before, err
	}
	if n, err := get(); n != 3 || !errors.Is(err, chunkstore.ErrUnreachable) {
		t.Fatalf("read from a hung store: %d attempts, err %v; want 3, unreachable", n, err)
	}
	for range 2 {
		if n, err := get(); n != 1 || !errors.Is(err, chunkstore.ErrUnreachable) {
			t.Fatalf("slow probe of the hung store: %d attempts, err %v; want 1, unreachable", n, err)
		}
	}
}

// TestRetryUnreachableEndsAtNotFound: an answer that is a permanent
// error (an object not found, as a backup's Stat of a pack it has yet
// to write gets) shows the store answers again, as a success does: a
// reset connection right after is retried, not taken for the outage.
func TestRetryUnreachableEndsAtNotFound(t *testing.T) {
	ctx := t.Context()
	f, s, _, _ := newRetry(t, 6)
	if err := s.Put(ctx, "data/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	f.FailGets("data/a", refused)
	if _, err := s.Get(ctx, "data/a", 0, -1); !errors.Is(err, chunkstore.ErrUnreachable) {
		t.Fatalf("read from a dead store: %v, want unreachable", err)
	}
	f.Reset()
	if _, err := s.Stat(ctx, "data/missing"); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Fatalf("stat of a missing object on the store back: %v, want not found", err)
	}
	f.FailNext(storetest.OpGet, 1, refused)
	before := f.Calls(storetest.OpGet)
	_, err := s.Get(ctx, "data/a", 0, -1)
	if n := f.Calls(storetest.OpGet) - before; err != nil || n != 2 {
		t.Fatalf("read after a not-found answer, one refusal: %d attempts, err %v; want 2 and success", n, err)
	}
	// A request the caller cancelled is no answer: the state stays.
	f.FailGets("data/a", refused)
	if _, err := s.Get(ctx, "data/a", 0, -1); !errors.Is(err, chunkstore.ErrUnreachable) {
		t.Fatalf("read from the dead store: %v, want unreachable", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Stat(cctx, "data/missing"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled stat: %v, want context.Canceled", err)
	}
	before = f.Calls(storetest.OpGet)
	if _, err := s.Get(ctx, "data/a", 0, -1); !errors.Is(err, chunkstore.ErrUnreachable) || f.Calls(storetest.OpGet)-before != 1 {
		t.Fatalf("read after a cancelled request: %d attempts, err %v; want 1, unreachable", f.Calls(storetest.OpGet)-before, err)
	}
}

// TestConnectionErrorTLSAlert: a server that takes the connection and
// refuses the TLS handshake with an alert (here: it wants a client
// certificate) answered; the store is not unreachable. A refused
// connection to the same address once the server is gone is.
func TestConnectionErrorTLSAlert(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	client := srv.Client()
	client.Timeout = 10 * time.Second
	resp, err := client.Get(srv.URL)
	if err == nil {
		resp.Body.Close()
		t.Fatal("the server took a request without a client certificate")
	}
	if chunkstore.IsConnectionError(err) {
		t.Errorf("IsConnectionError(%v) = true for a TLS alert, an answer", err)
	}
	srv.Close()
	if _, err = client.Get(srv.URL); err == nil || !chunkstore.IsConnectionError(err) {
		t.Errorf("IsConnectionError(%v) = false for a server gone", err)
	}
}
