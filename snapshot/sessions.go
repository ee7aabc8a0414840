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
	SessionGone  = "gone"  // live, but of this machine and its process no longer runs
	SessionStale = "stale" // not renewed for the stale limit: nothing waits for it
	SessionDone  = "done"  // closed (by credentials that may not delete)
)

// SessionStatus describes one session in the repository: a backup's (or
// a repaired snapshot's), or a prune's (or a repair's, which hold the
// prune session).
type SessionStatus struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // "backup" or "prune"
	// Command is what holds a prune session: "prune", "repair index",
	// "repair packs", "repair snapshots" (empty if not recorded).
	Command string `json:"command,omitempty"`
	Host    string `json:"host,omitempty"`    // a backup's --host
	Machine string `json:"machine,omitempty"` // where the process runs, if recorded
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
//
// A session's state (stale or not) is judged by the store's clock, which
// takes writing a small object. A store that refuses the write (a
// read-only mount or read-only credentials, a full disk) is still listed:
// by this machine's clock, and localClock says so. Only listing falls
// back: Unlock, which removes stale sessions, needs the store's clock.
func Sessions(ctx context.Context, repo *chunkstore.Repository, timing chunkstore.SessionTiming) (list []SessionStatus, localClock bool, err error) {
	host, _ := os.Hostname()
	return sessions(ctx, repo, timing, host, time.Now)
}

// sessions lists the sessions; with localNow non-nil, a store that
// refuses to write its clock object is judged by localNow's time instead
// (and localClock is true).
func sessions(ctx context.Context, repo *chunkstore.Repository, timing chunkstore.SessionTiming, host string, localNow func() time.Time) ([]SessionStatus, bool, error) {
	timing = timing.OrDefault()
	localClock := false
	now, err := repo.StoreNow(ctx)
	switch {
	case err == nil:
	case localNow != nil && errors.Is(err, chunkstore.ErrClockRefused) && !now.IsZero():
		// Written and timed, but not removed (credentials that may not
		// delete): the time is the store's.
	case localNow != nil && errors.Is(err, chunkstore.ErrClockRefused):
		now, localClock = localNow(), true
	default:
		return nil, false, err
	}
	list, err := repo.Sessions(ctx)
	if err != nil {
		return nil, false, err
	}
	out := make([]SessionStatus, 0, len(list))
	for _, s := range list {
		st := SessionStatus{ID: s.ID, Kind: "backup", Command: s.Info.Command, Host: s.Info.Host, Machine: s.Info.Machine,
			PID: s.Info.PID, Program: s.Info.Program, Started: s.Started, LastRenewed: s.LastBeat, State: SessionLive, state: s}
		if s.Info.Prune {
			st.Kind = "prune"
		}
		switch {
		case s.Done:
			st.State = SessionDone
		case !s.Live(now, timing.Stale):
			st.State = SessionStale
		case processGone(s.Info, host):
			st.State = SessionGone
		}
		out = append(out, st)
	}
	return out, localClock, nil
}

// UnlockResult says what Unlock removed, and the sessions it left that
// have not ended.
type UnlockResult struct {
	Removed []SessionStatus `json:"removed"`
	Left    []SessionStatus `json:"left"`
}

// Unlock removes sessions whose process no longer runs, so that they stop
// holding prunes and repairs back (a prune session of another host does
// so until it is stale, 30 minutes after its last renewal).
//
// Without ids it removes every session that has ended (done, stale) and
// every prune session of this machine whose process is gone (as prune
// itself does), and reports the others it left. With ids (each a session
// ID or a unique prefix of one) it removes exactly those: a prune session
// of another machine too — the caller vouches that its process is gone;
// should it still run, it notices before its next change to the
// repository (Session.Check) and stops —, but never a backup session that
// is not stale (a prune could then delete data that backup reuses and is
// about to commit; a process of another PID namespace can look gone), nor
// a prune session whose process runs on this machine. Nothing is removed
// if any id is refused.
func Unlock(ctx context.Context, repo *chunkstore.Repository, ids []string, timing chunkstore.SessionTiming) (*UnlockResult, error) {
	timing = timing.OrDefault()
	host, _ := os.Hostname()
	// The store's clock only: a stale session is removed, and this
	// machine's clock may run ahead of the store's.
	all, _, err := sessions(ctx, repo, timing, host, nil)
	if err != nil {
		return nil, err
	}
	res := &UnlockResult{Removed: []SessionStatus{}, Left: []SessionStatus{}}
	ended := func(s SessionStatus) bool {
		return s.State == SessionDone || s.State == SessionStale || s.State == SessionGone && s.Kind == "prune"
	}
	var remove []SessionStatus
	if len(ids) == 0 {
		for _, s := range all {
			if ended(s) {
				remove = append(remove, s)
			} else {
				res.Left = append(res.Left, s)
			}
		}
	} else {
		chosen := map[string]bool{}
		for _, id := range ids {
			s, err := findSession(all, id)
			if err != nil {
				return nil, err
			}
			switch {
			case ended(s):
			case s.Kind == "backup":
				return nil, fmt.Errorf("backup session %s (host %s, pid %d, last renewed %s) may still be running and is not removed: a prune could then delete data that backup reuses; it stops holding prunes back %s after its last renewal",
					s.ID, s.Host, s.PID, s.LastRenewed.UTC().Format(time.RFC3339), timing.Stale)
			case s.Machine == host || s.Machine == "" && s.Host == host:
				return nil, fmt.Errorf("%s session %s is running on this machine (pid %d): stop that process instead", pruneCommand(s.state.Info), s.ID, s.PID)
			}
			if !chosen[s.ID] {
				chosen[s.ID] = true
				remove = append(remove, s)
			}
		}
		for _, s := range all {
			if !chosen[s.ID] && !ended(s) {
				res.Left = append(res.Left, s)
			}
		}
	}
	for _, s := range remove {
		if err := repo.RemoveSession(ctx, s.state); err != nil {
			return res, fmt.Errorf("%w (unlock needs credentials that may delete; the sessions listed as removed are gone, the rest are not)", err)
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
