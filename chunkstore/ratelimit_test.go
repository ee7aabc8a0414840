package chunkstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// recStore records Puts and serves one fixed object.
type recStore struct {
	mu   sync.Mutex
	puts []string
}

func (r *recStore) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	return []byte("x"), nil
}
func (r *recStore) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	return ObjectInfo{Name: name, Size: 1}, nil
}
func (r *recStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	return fn(ObjectInfo{Name: prefix + "a", Size: 1})
}
func (r *recStore) Put(ctx context.Context, name string, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.puts = append(r.puts, name)
	return nil
}
func (r *recStore) Delete(ctx context.Context, name string) error { return nil }
func (r *recStore) Location() string                              { return "rec:" }

// fakeClock is a clock whose sleeps return at once, advancing it.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept time.Duration
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.slept += d
	return nil
}

func fakeLimiter(rate int64, burst float64) (*UploadLimiter, *fakeClock) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	l := NewUploadLimiter(rate)
	l.now, l.sleep = c.now, c.sleep
	l.burst, l.tokens = burst, burst
	return l, c
}

func near(got, want time.Duration) bool {
	d := got - want
	return d > -time.Millisecond && d < time.Millisecond
}

func TestUploadLimitPaces(t *testing.T) {
	const MiB = 1 << 20
	ctx := context.Background()
	// 3 x 1 MiB at 2 MiB/s with an empty bucket: 1.5 s.
	l, c := fakeLimiter(2*MiB, 0)
	rs := &recStore{}
	st := l.Wrap(rs)
	for _, n := range []string{"a", "b", "c"} {
		if err := st.Put(ctx, n, make([]byte, MiB)); err != nil {
			t.Fatal(err)
		}
	}
	if !near(c.slept, 1500*time.Millisecond) {
		t.Fatalf("slept %v for 3 MiB at 2 MiB/s from empty, want 1.5s", c.slept)
	}
	if len(rs.puts) != 3 {
		t.Fatalf("puts = %v", rs.puts)
	}

	// The real burst: 20 x 1 MiB at 2 MiB/s; 16 MiB go at once, the
	// other 4 MiB take 2 s.
	st2 := WithUploadLimit(rs, 2*MiB)
	c2 := &fakeClock{t: time.Unix(1e9, 0)}
	l2 := st2.(*limitStore).l
	l2.now, l2.sleep = c2.now, c2.sleep
	for i := 0; i < 20; i++ {
		if err := st2.Put(ctx, "x", make([]byte, MiB)); err != nil {
			t.Fatal(err)
		}
		if i < 16 && c2.slept != 0 {
			t.Fatalf("put %d waited %v within the burst", i, c2.slept)
		}
	}
	if !near(c2.slept, 2*time.Second) {
		t.Fatalf("slept %v, want 2s", c2.slept)
	}

	// Idle time refills the bucket, up to the burst only.
	c2.t = c2.t.Add(time.Hour)
	c2.slept = 0
	if err := st2.Put(ctx, "big", make([]byte, 20*MiB)); err != nil {
		t.Fatal(err)
	}
	if !near(c2.slept, 2*time.Second) { // 20 MiB - 16 MiB burst at 2 MiB/s
		t.Fatalf("a 20 MiB put after an idle hour slept %v, want 2s", c2.slept)
	}
}

func TestUploadLimitSharedAcrossStores(t *testing.T) {
	l, c := fakeLimiter(1<<20, 0)
	a, b := l.Wrap(&recStore{}), l.Wrap(&recStore{})
	ctx := context.Background()
	for _, st := range []Store{a, b, a, b} {
		if err := st.Put(ctx, "x", make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
	}
	if !near(c.slept, 4*time.Second) { // one budget for both
		t.Fatalf("slept %v, want 4s", c.slept)
	}
}

func TestUploadLimitCancel(t *testing.T) {
	// A real clock: 1 B/s, so a 17 MiB put would wait for weeks.
	rs := &recStore{}
	st := WithUploadLimit(rs, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := st.Put(ctx, "big", make([]byte, UploadBurst+1<<20))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cancelled wait took %v", d)
	}
	if len(rs.puts) != 0 {
		t.Fatalf("put %v despite the cancelled wait", rs.puts)
	}
	// The bytes were given back: the burst still allows a full pack.
	l := st.(*limitStore).l
	l.mu.Lock()
	tok := l.tokens
	l.mu.Unlock()
	if tok < UploadBurst-1 {
		t.Fatalf("tokens %v after a cancelled wait, want the burst back", tok)
	}
	// An already cancelled context does not even reserve.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := st.Put(cctx, "x", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestUploadLimitReadsUntouched(t *testing.T) {
	l, c := fakeLimiter(1, 0)
	st := l.Wrap(&recStore{})
	ctx := context.Background()
	if _, err := st.Get(ctx, "a", 0, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := st.List(ctx, "p/", func(ObjectInfo) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if c.slept != 0 || st.Location() != "rec:" {
		t.Fatalf("slept %v, location %q", c.slept, st.Location())
	}
	if WithUploadLimit(st, 0) != st {
		t.Fatal("a zero limit wraps")
	}
}
