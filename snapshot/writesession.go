package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// writeSession is held by everything that adds a snapshot to a
// repository (Backup, Copy): its backup session, which tells prune that
// blobs are being deduplicated against the index.
type writeSession struct {
	sess *chunkstore.Session
	log  *slog.Logger
}

// beginWrite starts a backup session and then readies the repository's
// index for deduplication. The session comes first: a prune that marks
// packs after this point waits for it to end, and one that marked before
// is seen by ExcludeMarked, so no blob is deduplicated into a pack a
// prune is about to delete. It returns the number of orphaned packs (of
// an interrupted earlier writer) it adopted into the index. end must be
// called when the writing is over.
func beginWrite(ctx context.Context, repo *chunkstore.Repository, info chunkstore.SessionInfo, timing chunkstore.SessionTiming, log *slog.Logger) (*writeSession, int, error) {
	sess, err := repo.StartSession(ctx, info, timing)
	if err != nil {
		return nil, 0, err
	}
	ws := &writeSession{sess: sess, log: log}
	fail := func(err error) (*writeSession, int, error) {
		ws.end(ctx)
		return nil, 0, err
	}
	if err := repo.ExcludeMarked(ctx); err != nil {
		return fail(err)
	}
	if err := repo.LoadIndex(ctx); err != nil {
		return fail(err)
	}
	adopted, err := repo.AdoptOrphans(ctx, ws.indexBy(ctx))
	if err != nil {
		return fail(err)
	}
	// Reservations left by an earlier, failed writer on this Repository
	// name blobs that were never uploaded. (One writer at a time per
	// Repository value.)
	repo.Index().ClearPending()
	return ws, adopted, nil
}

// indexBy is the session's CommitByChecked, for a writer's IndexBy: an
// index file must not name packs a prune may have deleted.
func (ws *writeSession) indexBy(ctx context.Context) func() (time.Time, error) {
	return func() (time.Time, error) { return ws.sess.CommitByChecked(ctx) }
}

// end closes the session; ctx may already be cancelled.
func (ws *writeSession) end(ctx context.Context) {
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := ws.sess.End(ectx); err != nil {
		ws.log.Warn("could not end the backup session; prune takes it for ended once it is stale", "err", err)
	}
}

// commit saves manifest m, the commit point: everything it references
// must be in uploaded packs listed by index files (Writer.Flush). It
// saves only while no prune can have taken the session for dead, and
// the upload must end well before one could. deadline, if set, gives
// another limit (an agent's job lease); a zero time means none.
func (ws *writeSession) commit(ctx context.Context, repo *chunkstore.Repository, m Manifest, deadline func() (time.Time, error)) (chunkstore.ID, error) {
	commitBy, err := ws.sess.CommitByChecked(ctx)
	if err != nil {
		return chunkstore.ID{}, fmt.Errorf("not committing the snapshot: %w", err)
	}
	saveCtx, cancel := context.WithDeadline(ctx, commitBy)
	defer cancel()
	if deadline != nil {
		d, err := deadline()
		if err != nil {
			return chunkstore.ID{}, fmt.Errorf("not committing the snapshot: %w", err)
		}
		if !d.IsZero() {
			var cancel context.CancelFunc
			saveCtx, cancel = context.WithDeadline(saveCtx, d)
			defer cancel()
		}
	}
	// A change of recipients since the writer started: its packs are
	// wrapped to the old ones, which may include a removed identity.
	if err := repo.CheckGeneration(saveCtx); err != nil {
		return chunkstore.ID{}, fmt.Errorf("not committing the snapshot: %w", err)
	}
	id, err := Save(saveCtx, repo, m)
	if err != nil {
		return chunkstore.ID{}, fmt.Errorf("save snapshot: %w", err)
	}
	return id, nil
}
