package coordinator

import (
	"net/http"
	"strings"
	"testing"
)

// TestJoinTokenRevoked: a leaked join token (no use limit by default) can
// be revoked by an admin; it then enrolls nothing, while an agent it
// enrolled before keeps working. Only an admin may revoke, and an unknown
// ID is a 404 naming it.
func TestJoinTokenRevoked(t *testing.T) {
	c := newAPICluster(t, 3)
	l, f := c.leader(), c.follower()
	var jt TokenCreateResult
	c.mustJSON(http.MethodPost, c.url(l)+"/v1/join-tokens", c.admin, JoinTokenRequest{}, &jt)
	var enr EnrollResult
	c.mustJSON(http.MethodPost, c.url(l)+"/v1/agents", jt.Token, EnrollRequest{Name: "h1"}, &enr)

	op := c.token(RoleOperator)
	status, b := httpCall(t, http.MethodDelete, c.url(f)+"/v1/join-tokens/"+jt.ID, op, nil, "")
	errBody(t, status, b, http.StatusForbidden)
	status, b = httpCall(t, http.MethodDelete, c.url(f)+"/v1/join-tokens/nosuch", c.admin, nil, "")
	if e := errBody(t, status, b, http.StatusNotFound); !strings.Contains(e.Error, `"nosuch"`) {
		t.Errorf("404 does not name the token: %s", e.Error)
	}
	c.mustJSON(http.MethodDelete, c.url(f)+"/v1/join-tokens/"+jt.ID, c.admin, nil, nil)

	status, b = httpCall(t, http.MethodPost, c.url(l)+"/v1/agents", jt.Token, EnrollRequest{Name: "h2"}, "")
	errBody(t, status, b, http.StatusUnauthorized)
	status, b = httpCall(t, http.MethodGet, c.url(l)+"/v1/agents/h1/work?wait=0s", enr.Credential, nil, "")
	if status != http.StatusNoContent {
		t.Fatalf("the agent enrolled before the revocation: %d %s", status, b)
	}
}
