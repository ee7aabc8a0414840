package chunkstore

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// UploadBurst is how many bytes an UploadLimiter lets through at once
// after a quiet spell: one default-size pack.
const UploadBurst = DefaultPackSize

// UploadLimiter paces uploads to a number of bytes per second with a token
// bucket of UploadBurst bytes. One limiter may be shared by several stores
// (Wrap) so that they share one budget: an agent's limit holds across all
// its jobs.
//
// A Put larger than what the bucket holds is not refused: it takes what
// is there and leaves a debt that later Puts wait out, so the long-run
// rate is the limit whatever the object sizes.
type UploadLimiter struct {
	rate  float64 // bytes per second
	burst float64

	// now and sleep are the clock; tests inject fakes. sleep waits for d
	// or until ctx is done, returning ctx's error then.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu     sync.Mutex
	tokens float64   // may be negative: a debt
	last   time.Time // when tokens was last brought up to date
}

// NewUploadLimiter returns a limiter of bytesPerSec, which must be > 0.
// The bucket starts full.
func NewUploadLimiter(bytesPerSec int64) *UploadLimiter {
	if bytesPerSec <= 0 {
		panic(fmt.Sprintf("chunkstore: upload limit %d bytes/s", bytesPerSec))
	}
	return &UploadLimiter{rate: float64(bytesPerSec), burst: UploadBurst, tokens: UploadBurst,
		now: time.Now, sleep: sleepCtx}
}

// Limit returns the limit in bytes per second.
func (l *UploadLimiter) Limit() int64 { return int64(l.rate) }

// WaitN waits until n bytes may be sent, or until ctx is done; then it
// returns ctx's error and gives the bytes back.
func (l *UploadLimiter) WaitN(ctx context.Context, n int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	now := l.now()
	if l.last.IsZero() {
		l.last = now
	}
	if el := now.Sub(l.last); el > 0 {
		l.tokens = min(l.burst, l.tokens+el.Seconds()*l.rate)
		l.last = now
	}
	l.tokens -= float64(n)
	var wait time.Duration
	if l.tokens < 0 {
		wait = time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	l.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	if err := l.sleep(ctx, wait); err != nil {
		l.mu.Lock()
		l.tokens = min(l.burst, l.tokens+float64(n)) // not sent: give them back
		l.mu.Unlock()
		return err
	}
	return nil
}

// Wrap returns s with every Put paced by l. Get, Stat, List and Delete
// are passed through untouched.
func (l *UploadLimiter) Wrap(s Store) Store { return &limitStore{Store: s, l: l} }

// WithUploadLimit returns s with Put paced to bytesPerSec (burst: one
// 16 MiB pack). bytesPerSec <= 0 returns s unchanged. Waiting ends early,
// with ctx's error, when ctx is done.
func WithUploadLimit(s Store, bytesPerSec int64) Store {
	if bytesPerSec <= 0 {
		return s
	}
	return NewUploadLimiter(bytesPerSec).Wrap(s)
}

type limitStore struct {
	Store
	l *UploadLimiter
}

func (s *limitStore) Put(ctx context.Context, name string, data []byte) error {
	if err := s.l.WaitN(ctx, len(data)); err != nil {
		return fmt.Errorf("put %s: waiting for the upload limit (%d B/s): %w", name, s.l.Limit(), err)
	}
	return s.Store.Put(ctx, name, data)
}

// OpenRange implements RangeOpener.
func (s *limitStore) OpenRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	return OpenRange(ctx, s.Store, name, offset, length)
}

// GetBuffer implements BufferGetter.
func (s *limitStore) GetBuffer(ctx context.Context, name string, offset, length int64, buf []byte) ([]byte, error) {
	return GetInto(ctx, s.Store, name, offset, length, buf)
}

// Unwrap returns the decorated store.
func (s *limitStore) Unwrap() Store { return s.Store }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
