package chunkstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
