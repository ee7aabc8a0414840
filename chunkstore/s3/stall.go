package s3

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultStallTimeout is how long a request may go without moving a
// byte before it is abandoned as stalled: the HTTP transport bounds only
// connecting and the wait for an answer's headers, so a server or
// middlebox that stops sending a body (or reading one) would otherwise
// hold a restore or a backup forever. A stalled request fails with a
// timeout (errStalledRequest), which the retry layer retries and, like
// any failure to talk to the store, counts towards finding the store
// unreachable (chunkstore.IsConnectionError).
const DefaultStallTimeout = time.Minute

// errStalled is the cause a stallWatch cancels its request with.
var errStalled = errors.New("no progress")

// stallWatch cancels a request's context once it has gone its timeout
// without progress while armed. Its owner arms it while it waits on the
// network, and pauses it while the caller holds the data (a restore
// writing out what it read must not count as the server's stall).
type stallWatch struct {
	d      time.Duration
	timer  *time.Timer
	cancel context.CancelCauseFunc
}

// watch returns a context for one request, derived from ctx, and its
// watch, armed. done must be called when the request is over.
func (s *Store) watch(ctx context.Context) (context.Context, *stallWatch) {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &stallWatch{d: s.stall, cancel: cancel}
	w.timer = time.AfterFunc(w.d, func() { cancel(errStalled) })
	return wctx, w
}

// progress (re)arms the watch: bytes moved, or the wait starts again.
func (w *stallWatch) progress() { w.timer.Reset(w.d) }

// pause stops the watch while the caller, not the network, has the turn.
func (w *stallWatch) pause() { w.timer.Stop() }

func (w *stallWatch) done() {
	w.timer.Stop()
	w.cancel(nil)
}

// Read makes the watch an io.Reader for PutObjectOptions.Progress, which
// is handed every part of the body as it goes out.
func (w *stallWatch) Read(p []byte) (int, error) {
	w.progress()
	return len(p), nil
}

// errStalledRequest is the error of a request the stall watch
// abandoned. It is a net.Error whose Timeout is true: a server that takes
// connections and then moves nothing is as unreachable as one that
// refuses them, so once one request has spent its retries on stalls,
// the others of the same command stop after one more (a restore from a
// hung endpoint fails in minutes, not after a round of retries per
// pack).
type errStalledRequest struct{ msg string }

func (e *errStalledRequest) Error() string   { return e.msg }
func (e *errStalledRequest) Timeout() bool   { return true }
func (e *errStalledRequest) Temporary() bool { return true }

// stallErr returns, for a request whose context wctx (of watch, derived
// from ctx) the watch cancelled while ctx itself is live, a transient
// error saying so, and nil otherwise.
func (s *Store) stallErr(ctx, wctx context.Context, op, name string) error {
	if ctx.Err() != nil || !errors.Is(context.Cause(wctx), errStalled) {
		return nil
	}
	return &errStalledRequest{fmt.Sprintf("%s %s: no data moved for %s: the connection to %s stalled, so the request was abandoned", op, s.describe(name), s.stall, s.endpoint)}
}

// requestErr maps err, the error of a request made with wctx (of watch,
// derived from ctx): the stall, if the watch ended it, or mapErr's
// error.
func (s *Store) requestErr(ctx, wctx context.Context, op, name string, err error) error {
	if err == nil {
		return nil
	}
	if serr := s.stallErr(ctx, wctx, op, name); serr != nil {
		return serr
	}
	return s.mapErr(op, name, err)
}
