package coordinator

import (
	"maps"
	"net/http"
	"strings"
	"testing"
)

// TestJoinTokenFixedLabels: a join token made with fixed_labels gives its
// agents exactly its labels. An enrolment that asks for a label the token
// does not set, or for one of its keys with another value (the labels of
// another policy's agents), is refused with a 409 naming those labels and
// the token, consumes no use and enrolls nothing; one that asks for no
// labels or for the token's gets the token's. An admin re-enrolling such
// an agent cannot change its labels either. Requests go to a follower, so
// they are forwarded as agents' are.
func TestJoinTokenFixedLabels(t *testing.T) {
	c := newAPICluster(t, 3)
	l, f := c.leader(), c.follower()
	u := c.url(f)
	web := map[string]string{"tier": "web"}

	// A token without fixed_labels still lets the agent add labels.
	var open TokenCreateResult
	c.mustJSON(http.MethodPost, u+"/v1/join-tokens", c.admin, JoinTokenRequest{Labels: web}, &open)
	c.mustJSON(http.MethodPost, u+"/v1/agents", open.Token, EnrollRequest{Name: "free", Labels: map[string]string{"tier": "db", "env": "prod"}}, nil)
	agent := func(name string) AgentView {
		t.Helper()
		var v AgentView
		c.mustJSON(http.MethodGet, c.url(l)+"/v1/agents/"+name, c.admin, nil, &v)
		return v
	}
	if v := agent("free"); !maps.Equal(v.Labels, map[string]string{"tier": "web", "env": "prod"}) || v.FixedLabels {
		t.Fatalf("agent of a token without fixed labels: labels %v, fixed %v", v.Labels, v.FixedLabels)
	}

	var jt TokenCreateResult
	c.mustJSON(http.MethodPost, u+"/v1/join-tokens", c.admin, JoinTokenRequest{Labels: web, FixedLabels: true, MaxUses: 2}, &jt)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		bad    string
	}{
		{"another value of the token's key", map[string]string{"tier": "db"}, "tier=db"},
		{"a key the token does not set", map[string]string{"tier": "web", "role": "db"}, "role=db"},
		{"both", map[string]string{"tier": "db", "env": "prod"}, "env=prod, tier=db"},
	} {
		status, b := httpCall(t, http.MethodPost, u+"/v1/agents", jt.Token, EnrollRequest{Name: "h1", Labels: tc.labels}, "")
		e := errBody(t, status, b, http.StatusConflict)
		for _, want := range []string{"may not set " + tc.bad + ";", jt.ID, "tier=web", "without --label"} {
			if !strings.Contains(e.Error, want) {
				t.Errorf("%s: the refusal does not say %q: %s", tc.name, want, e.Error)
			}
		}
		if status, _ := httpCall(t, http.MethodGet, c.url(l)+"/v1/agents/h1", c.admin, nil, ""); status != http.StatusNotFound {
			t.Fatalf("%s: a refused enrolment created the agent (%d)", tc.name, status)
		}
	}
	// The refusals used none of the token's two uses.
	c.mustJSON(http.MethodPost, u+"/v1/agents", jt.Token, EnrollRequest{Name: "h1", Labels: web}, nil)
	c.mustJSON(http.MethodPost, u+"/v1/agents", jt.Token, EnrollRequest{Name: "h2"}, nil)
	for _, name := range []string{"h1", "h2"} {
		if v := agent(name); !maps.Equal(v.Labels, web) || !v.FixedLabels {
			t.Fatalf("%s: labels %v, fixed %v; want exactly the token's, fixed", name, v.Labels, v.FixedLabels)
		}
	}
	c.nodes[l].View(func(s *State) {
		if got := formatOf(s); got != 3 {
			t.Errorf("a state with fixed labels is written as snapshot format %d, want 3", got)
		}
	})

	// An admin's re-enrolment keeps them: it may not set others, and
	// without labels the agent keeps the token's.
	status, b := httpCall(t, http.MethodPost, u+"/v1/agents", c.admin, EnrollRequest{Name: "h1", Labels: map[string]string{"tier": "db"}}, "")
	if e := errBody(t, status, b, http.StatusConflict); !strings.Contains(e.Error, `agent "h1" was enrolled with fixed labels {tier=web}: re-enrolling it may not set tier=db`) {
		t.Errorf("re-enrolment refusal: %s", e.Error)
	}
	c.mustJSON(http.MethodPost, u+"/v1/agents", c.admin, EnrollRequest{Name: "h1"}, nil)
	if v := agent("h1"); !maps.Equal(v.Labels, web) || !v.FixedLabels {
		t.Fatalf("re-enrolled h1: labels %v, fixed %v", v.Labels, v.FixedLabels)
	}
}
