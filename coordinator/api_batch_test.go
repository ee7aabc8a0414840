package coordinator

import (
	"context"
	"errors"
	"net/http"
	"testing"
)

// A policy file is one log entry: when the FSM refuses any policy of it
// (here the last names a repository that is not registered, as when one
// is removed between the API's check and the apply), none is applied, on
// any node; a batch it accepts reaches every node whole, every policy at
// the entry's index.
func TestAPIPolicyFileAppliedWholeOrNotAtAll(t *testing.T) {
	c := newAPICluster(t, 3)
	c.addRepo(c.admin)
	l := c.leader()

	pol := func(name, repo string) Policy {
		return Policy{Name: name, Repository: repo, Schedule: "@every 1h", Paths: []string{"/srv/" + name}}
	}
	_, err := c.nodes[l].PutPolicies(context.Background(), "test", []Policy{pol("x", "r"), pol("y", "r"), pol("z", "gone")})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("batch with an unregistered repository: %v, want ErrNotFound", err)
	}

	file := testPolicyYAML + "---\nname: db\nrepository: r\nschedule: \"@every 1h\"\npaths: [/var/lib/db]\n"
	var res PolicyApplyResult
	c.mustJSON(http.MethodPut, c.url(c.follower())+"/v1/policies", c.admin, []byte(file), &res)
	if len(res.Policies) != 2 || res.Policies[0].Name != "web" || res.Policies[1].Name != "db" ||
		res.Policies[0].Status != "created" || res.Policies[1].Status != "created" ||
		res.Policies[0].Version == 0 || res.Policies[0].Version != res.Policies[1].Version {
		t.Fatalf("apply: %+v, want web and db created at one version", res.Policies)
	}
	ver := res.Policies[0].Version
	for i, n := range c.nodes {
		// The refused batch is earlier in the log than the accepted one:
		// a node that has the accepted one has applied both.
		waitFor(t, func() bool {
			ok := false
			n.View(func(s *State) { ok = s.Policies["web"] != nil && s.Policies["db"] != nil })
			return ok
		})
		n.View(func(s *State) {
			for _, name := range []string{"x", "y", "z"} {
				if s.Policies[name] != nil {
					t.Errorf("node %d: policy %q of the refused batch was applied", i, name)
				}
			}
			if s.Policies["web"].Version != ver || s.Policies["db"].Version != ver {
				t.Errorf("node %d: versions %d and %d, want %d", i, s.Policies["web"].Version, s.Policies["db"].Version, ver)
			}
		})
	}

	// Changing one policy of the file updates it alone; the other stays
	// at its version.
	file = testPolicyYAML + "---\nname: db\nrepository: r\nschedule: \"@every 2h\"\npaths: [/var/lib/db]\n"
	c.mustJSON(http.MethodPut, c.url(l)+"/v1/policies", c.admin, []byte(file), &res)
	if res.Policies[0].Status != "unchanged" || res.Policies[0].Version != ver ||
		res.Policies[1].Status != "updated" || res.Policies[1].Version <= ver {
		t.Fatalf("second apply: %+v, want web unchanged at %d and db updated", res.Policies, ver)
	}
}

// The FSM refuses a batch naming a policy twice, and a batch whose last
// policy it would refuse alone, without changing anything.
func TestFSMPutPoliciesAllOrNothing(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.setup(wk)
	before := stripIndex(h.snapshot())
	p := Policy{Name: "q", Repository: "r", Schedule: "@every 1h", Paths: []string{"/q"}}
	bad := p
	bad.Name, bad.Repository = "s", "gone"
	for _, batch := range [][]Policy{{p, p}, {p, bad}, {{Name: "", Repository: "r"}}, nil} {
		if _, err := h.apply(CmdPutPolicies, PutPolicies{Policies: batch}); err == nil {
			t.Errorf("batch %+v accepted", batch)
		}
		if got := stripIndex(h.snapshot()); string(got) != string(before) {
			t.Fatalf("refused batch %+v changed the state", batch)
		}
	}
	q2 := p
	q2.Name = "q2"
	v := h.must(CmdPutPolicies, PutPolicies{Policies: []Policy{p, q2}})
	h.fsm.View(func(s *State) {
		if s.Policies["q"].Version != v || s.Policies["q2"].Version != v || s.Audit[len(s.Audit)-1].Target != "policy/q,policy/q2" {
			t.Errorf("versions %d, %d (want %v); audit %+v", s.Policies["q"].Version, s.Policies["q2"].Version, v, s.Audit[len(s.Audit)-1])
		}
	})
}
