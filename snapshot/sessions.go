package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// Session states, as SessionStatus.State reports them.
const (
	SessionLive  = "live"  // renewed within the stale limit
	SessionGone  = "gone"  // of this host, and its process no longer runs
	SessionStale = "stale" // not renewed for the stale limit: nothing waits for it
	SessionDone  = "done"  // closed (by credentials that may not delete)
)

// SessionStatus describes one session in the repository: a backup's (or
// a repaired snapshot's), or a prune's (or a repair's, which hold the
// prune session).
type SessionStatus struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"` // "backup" or "prune"
	Host    string `json:"host,omitempty"`
	PID     int    `json:"pid,omitempty"`
	Program string `json:"program,omitempty"`
	// Started and LastRenewed are the store's times of the session's
	// first and newest objects.
	Started     time.Time `json:"started"`
	LastRenewed time.Time `json:"last_renewed"`
	State       string    `json:"state"`
	state       chunkstore.SessionState
}

// ErrSessionNotFound is returned by Unlock for an ID that matches no
// session.
var ErrSessionNotFound = errors.New("no such session")

// Sessions lists the repository's sessions, oldest first.
func Sessions(ctx context.Context, repo *chunkstore.Repository, timing chunkstore.SessionTiming) ([]SessionStatus, error) {
	timing = timing.OrDefault()
	now, err := repo.StoreNow(ctx)
	if err != nil {
		return nil, err
	}
	list, err := repo.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	out := make([]SessionStatus, 0, len(list))
	for _, s := range list {
		st := SessionStatus{ID: s.ID, Kind: "backup", Host: s.Info.Host, PID: s.Info.PID, Program: s.Info.Program,
			Started: s.Started, LastRenewed: s.LastBeat, State: SessionLive, state: s}
		if s.Info.Prune {
			st.Kind = "prune"
		}
		switch {
		case s.Done:
			st.State = SessionDone
		case !s.Live(now, timing.Stale):
			st.State = SessionStale
		case s.Info.Host != "" && s.Info.Host == host && s.Info.PID > 0 && !processAlive(s.Info.PID):
			st.State = SessionGone
		}
		out = append(out, st)
	}
	return out, nil
}

// UnlockResult says what Unlock removed and which live sessions it left.
type UnlockResult struct {
	Removed []SessionStatus `json:"removed"`
	Left    []SessionStatus `json:"left"`
}

// Unlock removes sessions whose process no longer runs, so that they stop
// holding prunes and repairs back (a prune session of another host does
// so until it is stale, 30 minutes after its last renewal).
//
// Without ids it removes every session that is done, stale, or of this
// host with its process gone, and reports the live ones it left. With ids
// (each a session ID or a unique prefix of one) it removes exactly those:
// a live prune session of another host too — the caller vouches that its
// process is gone —, but never a live backup session of another host (a
// prune could then delete data that backup reuses and is about to
// commit; it stops counting once stale) nor a session whose process runs
// on this host. Nothing is removed if any id is refused.
func Unlock(ctx context.Context, repo *chunkstore.Repository, ids []string, timing chunkstore.SessionTiming) (*UnlockResult, error) {
	all, err := Sessions(ctx, repo, timing)
	if err != nil {
		return nil, err
	}
	res := &UnlockResult{Removed: []SessionStatus{}, Left: []SessionStatus{}}
	var remove []SessionStatus
	if len(ids) == 0 {
		for _, s := range all {
			if s.State == SessionLive {
				res.Left = append(res.Left, s)
			} else {
				remove = append(remove, s)
			}
		}
	} else {
		chosen := map[string]bool{}
		for _, id := range ids {
			s, err := findSession(all, id)
			if err != nil {
				return nil, err
			}
			if s.State == SessionLive {
				switch host, _ := os.Hostname(); {
				case s.Host == host:
					return nil, fmt.Errorf("%s session %s is running on this host (pid %d): stop that process instead", s.Kind, s.ID, s.PID)
				case s.Kind == "backup":
					return nil, fmt.Errorf("backup session %s (host %s, pid %d, last renewed %s) may still be running and is not removed: a prune could then delete data that backup reuses; it stops holding prunes back %s after its last renewal",
						s.ID, s.Host, s.PID, s.LastRenewed.UTC().Format(time.RFC3339), timing.OrDefault().Stale)
				}
			}
			if !chosen[s.ID] {
				chosen[s.ID] = true
				remove = append(remove, s)
			}
		}
		for _, s := range all {
			if !chosen[s.ID] && s.State == SessionLive {
				res.Left = append(res.Left, s)
			}
		}
	}
	for _, s := range remove {
		if err := repo.RemoveSession(ctx, s.state); err != nil {
			return res, err
		}
		res.Removed = append(res.Removed, s)
	}
	return res, nil
}

// findSession returns the session whose ID is id or starts with it.
func findSession(all []SessionStatus, id string) (SessionStatus, error) {
	var found []SessionStatus
	for _, s := range all {
		if s.ID == id {
			return s, nil
		}
		if id != "" && strings.HasPrefix(s.ID, id) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return SessionStatus{}, fmt.Errorf("%w: %q ('lifeboat sessions' lists them)", ErrSessionNotFound, id)
	case 1:
		return found[0], nil
	}
	return SessionStatus{}, fmt.Errorf("session prefix %q is ambiguous: %d sessions start with it", id, len(found))
}
