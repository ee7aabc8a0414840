package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"
)

// RetryConfig tunes the retry decorator returned by WithRetry.
type RetryConfig struct {
	// Attempts is the total number of tries per operation, including the
	// first one. Values below 1 mean 1.
	Attempts int
	// MinDelay is the pause before the first retry; each further retry
	// doubles it, up to MaxDelay. The actual pause is jittered to a random
	// value between half the delay and the delay.
	MinDelay, MaxDelay time.Duration
	// Logger receives one Warn record per retry. nil means slog.Default().
	Logger *slog.Logger
	// Sleep waits for d or until ctx is done, returning ctx's error in the
	// latter case. nil means a real timer; tests inject a fake.
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultRetryConfig returns the configuration used for repositories opened
// by the CLI, agents and the coordinator: 6 attempts, 200ms doubling to 5s
// (about 10 s of waiting in total before giving up).
func DefaultRetryConfig() RetryConfig {
	return RetryConfig{Attempts: 6, MinDelay: 200 * time.Millisecond, MaxDelay: 5 * time.Second}
}

// Do runs fn until it succeeds, returns an error for which IsPermanent is
// true, ctx is done, or cfg.Attempts tries have been made. op and name
// describe the operation in log records and in the final error ("put",
// "data/ab/ab12..."). A permanent error is returned unchanged; exhausting
// the attempts returns an error that says how many were made and wraps the
// last error.
func (cfg RetryConfig) Do(ctx context.Context, op, name string, fn func(context.Context) error) error {
	return cfg.do(ctx, nil, op, name, fn)
}

// do is Do that, given a reach (the state a WithRetry store shares
// between its calls), gives up at once on a connection failure while
// another call has found the store unreachable, and marks it so when it
// exhausts its own attempts on one.
func (cfg RetryConfig) do(ctx context.Context, rs *reach, op, name string, fn func(context.Context) error) error {
	attempts := max(cfg.Attempts, 1)
	var err error
	for i := 1; ; i++ {
		started := rs.clock()
		err = fn(ctx)
		if err == nil {
			rs.up()
			return nil
		}
		if IsPermanent(err) {
			if !errors.Is(err, context.Canceled) && !IsConnectionError(err) {
				// An answer too (a missing object, a refusal):
				// a store that says "not found" is reachable.
				rs.up()
			}
			return err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("%s %s: %w (after %d attempts, last error: %w)", op, name, ctxErr, i, err)
		}
		if rs != nil {
			if !IsConnectionError(err) {
				rs.up() // the store answered, if only with an error
			} else if down := rs.isDown(started); down != "" {
				// This attempt was the probe: the store still does
				// not answer, so waiting through the backoff again
				// for every object would only make the user wait.
				return fmt.Errorf("%s %s: %w: %s: %s, and this request failed too: %w; check the endpoint and the credentials",
					op, name, ErrUnreachable, rs.loc, down, err)
			}
		}
		if i >= attempts {
			if rs != nil && IsConnectionError(err) {
				rs.markDown(fmt.Sprintf("%s %s gave up after %d attempts", op, name, i))
				return fmt.Errorf("%s %s: %w: %s: giving up after %d attempts: %w; check the endpoint and the credentials",
					op, name, ErrUnreachable, rs.loc, i, err)
			}
			return fmt.Errorf("%s %s: giving up after %d attempts: %w", op, name, i, err)
		}
		d := cfg.delay(i)
		cfg.logger().LogAttrs(ctx, slog.LevelWarn, "storage operation failed, retrying",
			slog.String("op", op), slog.String("object", name), slog.Int("attempt", i),
			slog.Int("attempts", attempts), slog.Duration("delay", d), slog.Any("error", err))
		if sErr := cfg.sleep(ctx, d); sErr != nil {
			return fmt.Errorf("%s %s: %w (after %d attempts, last error: %w)", op, name, sErr, i, err)
		}
	}
}

// delay returns the jittered pause before retry number i (1-based).
func (cfg RetryConfig) delay(i int) time.Duration {
	d := cfg.MinDelay
	for j := 1; j < i && (cfg.MaxDelay <= 0 || d < cfg.MaxDelay); j++ {
		d *= 2
	}
	if cfg.MaxDelay > 0 && d > cfg.MaxDelay {
		d = cfg.MaxDelay
	}
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

func (cfg RetryConfig) logger() *slog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return slog.Default()
}

func (cfg RetryConfig) sleep(ctx context.Context, d time.Duration) error {
	if cfg.Sleep != nil {
		return cfg.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// WithRetry wraps s so that every operation is retried according to cfg
// when it fails with an error that IsPermanent does not recognise
// (network failures, 5xx answers, throttling). It is the single retry point
// of the storage seam: callers never retry themselves.
//
// A List that fails part-way is restarted from the beginning; names that
// were already passed to fn are not passed again, so fn sees each object
// at most once. An error returned by fn is returned unchanged, never
// retried.
//
// Once one operation has used up its attempts on a connection failure
// (IsConnectionError), the store counts as unreachable: every later
// operation, and every retry of one already under way, makes one
// attempt, the probe, and fails at once with ErrUnreachable if that
// meets a connection failure too. A command reading hundreds of packs
// from a store that died thus learns it within one round of retries
// instead of one per object. Any answer from the store (success, or an
// error that is not a connection failure) makes it reachable again, so
// one reset connection or a burst of 5xx answers is retried as before.
// So does a minute (unreachableLapse) without a request that failed to
// connect: a store kept open long gets a full round of retries again
// after a quiet spell.
func WithRetry(s Store, cfg RetryConfig) Store {
	return &retryStore{s: s, cfg: cfg, reach: &reach{loc: s.Location()}}
}

type retryStore struct {
	s     Store
	cfg   RetryConfig
	reach *reach
}

// ErrUnreachable is wrapped by the errors of a WithRetry store's
// operations that gave up because the store does not answer at all.
// Callers that read many objects (restore, check --read-data) stop at
// it instead of failing object after object.
var ErrUnreachable = errors.New("storage unreachable")

// IsConnectionError reports whether err is a failure to talk to the
// store at all, as opposed to an answer from it: a connection refused,
// reset or aborted, a host or network unreachable, a name that does not
// resolve, or a timeout. A TLS alert is an answer: the server took the
// connection and refused the handshake (a client certificate it wants,
// a protocol it does not speak).
func IsConnectionError(err error) bool {
	if err == nil {
		return false
	}
	var (
		dnsErr *net.DNSError
		opErr  *net.OpError
		netErr net.Error
	)
	if errors.As(err, &opErr) && (opErr.Op == "remote error" || opErr.Op == "local error") {
		// crypto/tls's names for an alert received or sent.
		return false
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ETIMEDOUT),
		errors.As(err, &dnsErr), errors.As(err, &opErr):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	case errors.Is(err, context.DeadlineExceeded):
		// The transport's own deadline (for connecting, or for an
		// answer): the caller's is checked before this is asked.
		return true
	}
	return false
}

// unreachableLapse is how long a WithRetry store counts as unreachable
// after the last request that found it so. A store kept open for hours
// (an agent's backup, whose session refreshes may fail without failing
// it) must not carry an outage long over: without the lapse, the first
// request made after a quiet spell gave up at one reset connection, as
// if the store were still dead. Requests that keep failing to connect
// keep the state; an answer ends it at once.
const unreachableLapse = time.Minute

// reach is whether a WithRetry store is reachable, shared by all its
// operations.
type reach struct {
	loc  string // the store's Location, for messages
	mu   sync.Mutex
	down string    // what found it unreachable; "" while it is reachable
	seen time.Time // when a request last found it unreachable
	now  func() time.Time
}

func (rs *reach) up() {
	if rs == nil {
		return
	}
	rs.mu.Lock()
	rs.down = ""
	rs.mu.Unlock()
}

func (rs *reach) clock() time.Time {
	if rs == nil {
		return time.Time{}
	}
	if rs.now != nil {
		return rs.now()
	}
	return time.Now()
}

func (rs *reach) markDown(why string) {
	rs.mu.Lock()
	if rs.down == "" {
		rs.down = why
	}
	rs.seen = rs.clock()
	rs.mu.Unlock()
}

// isDown returns what found the store unreachable, or "" if it is
// reachable or that was more than unreachableLapse before started, when
// the caller's failed attempt began. A caller given a reason is the probe
// that failed to connect again: that renews the state. The lapse counts
// to the attempt's start, not its end: a probe of a hung server fails
// only after its stall timeout (a minute, as long as the lapse), and
// must not find the state lapsed by its own wait.
func (rs *reach) isDown(started time.Time) string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.down == "" {
		return ""
	}
	if started.Sub(rs.seen) > unreachableLapse {
		rs.down = ""
		return ""
	}
	if now := rs.clock(); now.After(rs.seen) {
		rs.seen = now
	}
	return rs.down
}

func (r *retryStore) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	var data []byte
	err := r.cfg.do(ctx, r.reach, "get", name, func(ctx context.Context) error {
		var err error
		data, err = r.s.Get(ctx, name, offset, length)
		return err
	})
	return data, err
}

// GetBuffer implements BufferGetter.
func (r *retryStore) GetBuffer(ctx context.Context, name string, offset, length int64, buf []byte) ([]byte, error) {
	var data []byte
	err := r.cfg.do(ctx, r.reach, "get", name, func(ctx context.Context) error {
		var err error
		data, err = GetInto(ctx, r.s, name, offset, length, buf)
		return err
	})
	return data, err
}

// OpenRange implements RangeOpener. Opening is retried like Get;
// reading the stream is not (a caller whose stream fails part-way falls
// back to Get for what it still needs, which is retried).
func (r *retryStore) OpenRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := r.cfg.do(ctx, r.reach, "get", name, func(ctx context.Context) error {
		var err error
		rc, err = OpenRange(ctx, r.s, name, offset, length)
		if errors.Is(err, errors.ErrUnsupported) {
			return Permanent(err)
		}
		return err
	})
	return rc, err
}

func (r *retryStore) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	var info ObjectInfo
	err := r.cfg.do(ctx, r.reach, "stat", name, func(ctx context.Context) error {
		var err error
		info, err = r.s.Stat(ctx, name)
		return err
	})
	return info, err
}

// errFromFn carries an error returned by the caller's List callback through
// Do, which must neither retry nor wrap it.
type errFromFn struct{ err error }

func (e *errFromFn) Error() string { return e.err.Error() }

func (r *retryStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	seen := make(map[string]struct{})
	err := r.cfg.do(ctx, r.reach, "list", prefix+"*", func(ctx context.Context) error {
		err := r.s.List(ctx, prefix, func(oi ObjectInfo) error {
			if _, ok := seen[oi.Name]; ok {
				return nil
			}
			seen[oi.Name] = struct{}{}
			if err := fn(oi); err != nil {
				return Permanent(&errFromFn{err})
			}
			return nil
		})
		return err
	})
	if fe, ok := errors.AsType[*errFromFn](err); ok {
		return fe.err
	}
	return err
}

func (r *retryStore) Put(ctx context.Context, name string, data []byte) error {
	return r.cfg.do(ctx, r.reach, "put", name, func(ctx context.Context) error {
		return r.s.Put(ctx, name, data)
	})
}

func (r *retryStore) Delete(ctx context.Context, name string) error {
	return r.cfg.do(ctx, r.reach, "delete", name, func(ctx context.Context) error {
		return r.s.Delete(ctx, name)
	})
}

func (r *retryStore) Location() string { return r.s.Location() }

// Unwrap returns the decorated store.
func (r *retryStore) Unwrap() Store { return r.s }
