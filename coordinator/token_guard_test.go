package coordinator

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// The last-admin-token rule is the FSM's, judged at the instant the
// command carries: the second of two revokes is refused however they
// reach the log, an admin token expired at that instant does not count,
// and an entry without the instant (written before the rule) is applied
// as it was then.
func TestFSMRevokeLastAdminTokenRefused(t *testing.T) {
	h := newFSMHarness(t)
	admin := func(id string, exp time.Time) {
		h.must(CmdCreateToken, CreateToken{ID: id, Hash: hashOf(id), Role: RoleAdmin, Expires: exp})
	}
	admin("a", time.Time{})
	admin("b", time.Time{})
	admin("c", t0.Add(time.Hour))
	h.must(CmdRevokeToken, RevokeToken{ID: "a", CheckedAt: t0})
	// c still counts at t0: b may go.
	h.must(CmdRevokeToken, RevokeToken{ID: "b", CheckedAt: t0})
	admin("b", time.Time{})
	// Judged after c expired, b is the last one.
	_, err := h.apply(CmdRevokeToken, RevokeToken{ID: "b", CheckedAt: t0.Add(2 * time.Hour)})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "last admin token") {
		t.Fatalf("revoking the last unexpired admin token: %v, want a conflict naming the rule", err)
	}
	// Expired tokens and non-admin ones are revoked as before.
	h.must(CmdRevokeToken, RevokeToken{ID: "c", CheckedAt: t0.Add(2 * time.Hour)})
	_, err = h.apply(CmdRevokeToken, RevokeToken{ID: "b", CheckedAt: t0})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("revoking the only admin token: %v, want a conflict", err)
	}
	// An entry from before the rule carries no instant: applied.
	h.must(CmdRevokeToken, RevokeToken{ID: "b"})

	// Replaying the log gives the same answers and the same state.
	r := NewFSM()
	for i, b := range h.log {
		r.ApplyBytes(uint64(i+1), b)
	}
	got, err := r.SnapshotBytes()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(h.snapshot()) {
		t.Fatal("replay gave another state")
	}
}

// Two revokes of the last two admin tokens sent at once, each token
// revoking itself (so both requests are authenticated whatever the
// order): the API does not check (its check raced), the FSM refuses
// whichever comes second in the log.
func TestAPIConcurrentRevokesKeepAnAdminToken(t *testing.T) {
	c := newAPICluster(t, 3)
	u := c.url(c.leader())
	first, _, _ := strings.Cut(strings.TrimPrefix(c.admin, "lbt_"), "_")
	var second TokenCreateResult
	c.mustJSON(http.MethodPost, u+"/v1/tokens", c.admin, TokenCreateRequest{Role: RoleAdmin, Name: "second"}, &second)
	reqs := []struct{ id, with string }{{first, c.admin}, {second.ID, second.Token}}
	var wg sync.WaitGroup
	statuses := make([]int, len(reqs))
	for i, q := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Through different nodes, so neither waits for the other.
			statuses[i], _ = httpCall(t, http.MethodDelete, c.url(i)+"/v1/tokens/"+q.id, q.with, nil, "")
		}()
	}
	wg.Wait()
	if min(statuses[0], statuses[1]) != http.StatusOK || max(statuses[0], statuses[1]) != http.StatusConflict {
		t.Fatalf("statuses %v, want one 200 and one 409", statuses)
	}
	for _, n := range c.nodes {
		waitFor(t, func() bool {
			admins := 0
			n.View(func(s *State) {
				for _, tk := range s.Tokens {
					if tk.Role == RoleAdmin {
						admins++
					}
				}
			})
			return admins == 1
		})
	}
}
