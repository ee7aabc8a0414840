package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestAPIPolicyCheckIndex: a policy PUT with check_index applies only if
// the policy is still at that version (0: does not exist yet); otherwise
// it is a 409 naming the current version and nothing changes. The FSM
// checks too, so a change committed after the API looked is refused.
func TestAPIPolicyCheckIndex(t *testing.T) {
	c := newAPICluster(t, 3)
	c.addRepo(c.admin)
	u := c.url(c.follower()) + "/v1/policies"
	put := func(check, schedule string) (int, string) {
		t.Helper()
		body := strings.Replace(testPolicyYAML, "@every 1h", schedule, 1)
		status, b := httpCall(t, http.MethodPut, u+"?check_index="+check, c.admin, []byte(body), "application/yaml")
		return status, string(b)
	}
	// version is the policy's version as the leader has it (a follower
	// may not have applied the last write yet).
	version := func() uint64 {
		var pr PolicyRecord
		c.mustJSON(http.MethodGet, c.url(c.leader())+"/v1/policies/web", c.admin, nil, &pr)
		return pr.Version
	}

	if status, b := put("0", "@every 1h"); status != http.StatusOK {
		t.Fatalf("create with check index 0: %d %s", status, b)
	}
	v1 := version()
	if status, b := put("0", "@every 2h"); status != http.StatusConflict || !strings.Contains(b, fmt.Sprintf("already exists, at index %d", v1)) {
		t.Errorf("check index 0 on an existing policy: %d %s", status, b)
	}
	if status, b := put(fmt.Sprint(v1), "@every 2h"); status != http.StatusOK {
		t.Fatalf("update at the current index: %d %s", status, b)
	}
	v2 := version()
	// A second writer that read v1 is refused, told the index to read.
	status, b := put(fmt.Sprint(v1), "@every 3h")
	if status != http.StatusConflict || !strings.Contains(b, fmt.Sprintf(`policy \"web\" is at index %d, not %d`, v2, v1)) || !strings.Contains(b, fmt.Sprintf("--check-index %d", v2)) {
		t.Errorf("stale check index: %d %s", status, b)
	}
	if v := version(); v != v2 {
		t.Errorf("a refused write changed the version: %d, want %d", v, v2)
	}
	if status, b := put("x", "@every 3h"); status != http.StatusBadRequest || !strings.Contains(b, "check_index") {
		t.Errorf("bad check index: %d %s", status, b)
	}
	two := testPolicyYAML + "---\nname: db\nrepository: r\nschedule: \"@every 1h\"\npaths: [/var/lib/db]\n"
	if status, b := httpCall(t, http.MethodPut, u+"?check_index=1", c.admin, []byte(two), "application/yaml"); status != http.StatusBadRequest || !strings.Contains(string(b), "exactly one policy") {
		t.Errorf("check index with two policies: %d %s", status, b)
	}

	// The FSM refuses a stale index too (a write between the API's look
	// and the commit).
	var pr PolicyRecord
	c.mustJSON(http.MethodGet, c.url(c.leader())+"/v1/policies/web", c.admin, nil, &pr)
	if _, err := c.nodes[c.leader()].PutPolicyAt(context.Background(), "test", pr.Policy, v1); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), fmt.Sprintf("at index %d, not %d", v2, v1)) {
		t.Errorf("stale PutPolicyAt: %v, want a conflict", err)
	}
}
