package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
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
	attempts := max(cfg.Attempts, 1)
	var err error
	for i := 1; ; i++ {
		if err = fn(ctx); err == nil || IsPermanent(err) {
			return err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("%s %s: %w (after %d attempts, last error: %w)", op, name, ctxErr, i, err)
		}
		if i >= attempts {
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
func WithRetry(s Store, cfg RetryConfig) Store {
	return &retryStore{s: s, cfg: cfg}
}

type retryStore struct {
	s   Store
	cfg RetryConfig
}

func (r *retryStore) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	var data []byte
	err := r.cfg.Do(ctx, "get", name, func(ctx context.Context) error {
		var err error
		data, err = r.s.Get(ctx, name, offset, length)
		return err
	})
	return data, err
}

// GetBuffer implements BufferGetter.
func (r *retryStore) GetBuffer(ctx context.Context, name string, offset, length int64, buf []byte) ([]byte, error) {
	var data []byte
	err := r.cfg.Do(ctx, "get", name, func(ctx context.Context) error {
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
	err := r.cfg.Do(ctx, "get", name, func(ctx context.Context) error {
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
	err := r.cfg.Do(ctx, "stat", name, func(ctx context.Context) error {
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
	err := r.cfg.Do(ctx, "list", prefix+"*", func(ctx context.Context) error {
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
	return r.cfg.Do(ctx, "put", name, func(ctx context.Context) error {
		return r.s.Put(ctx, name, data)
	})
}

func (r *retryStore) Delete(ctx context.Context, name string) error {
	return r.cfg.Do(ctx, "delete", name, func(ctx context.Context) error {
		return r.s.Delete(ctx, name)
	})
}

func (r *retryStore) Location() string { return r.s.Location() }

// Unwrap returns the decorated store.
func (r *retryStore) Unwrap() Store { return r.s }
