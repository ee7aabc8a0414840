package coordinator

import (
	"net/http"
	"strings"
	"testing"
)

// TestSharedRetention: two policies of one repository with the same
// paths and tags, on agents both may select, forget each other's
// snapshots; apply warns of that, and of nothing else.
func TestSharedRetention(t *testing.T) {
	base := Policy{Name: "hourly", Repository: "r", Agents: map[string]string{"role": "db"}, Paths: []string{"/srv/db"},
		Tags: []string{"db"}, Retention: Retention{KeepLast: 24}}
	other := func(f func(*Policy)) Policy {
		q := clonePolicy(base)
		q.Name, q.Retention = "monthly", Retention{KeepMonthly: 12}
		if f != nil {
			f(&q)
		}
		return q
	}
	for _, c := range []struct {
		name    string
		q       Policy
		noRules bool // base without retention rules either
		warn    bool
	}{
		{"same group", other(nil), false, true},
		{"paths in another order, tags too", other(func(q *Policy) {
			q.Paths, q.Tags = []string{"/srv/db/"}, []string{"db", "db"}
		}), false, true},
		{"a wider selector", other(func(q *Policy) { q.Agents = map[string]string{} }), false, true},
		{"one without retention", other(func(q *Policy) { q.Retention = Retention{} }), false, true},
		{"its own tag", other(func(q *Policy) { q.Tags = []string{"db", "monthly"} }), false, false},
		{"other paths", other(func(q *Policy) { q.Paths = []string{"/srv/db", "/etc"} }), false, false},
		{"another repository", other(func(q *Policy) { q.Repository = "offsite" }), false, false},
		{"agents no one matches both", other(func(q *Policy) { q.Agents = map[string]string{"role": "web"} }), false, false},
		{"no retention in either", other(func(q *Policy) { q.Retention = Retention{} }), true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := base
			if c.noRules {
				p.Retention = Retention{}
			}
			got := sharedRetention([]Policy{p}, []Policy{c.q})
			if (len(got) > 0) != c.warn {
				t.Fatalf("warnings %v, want a warning: %v", got, c.warn)
			}
			if c.warn && (got[0].Policy != "hourly" || !strings.Contains(got[0].Msg, `"monthly"`)) {
				t.Errorf("warning %+v does not name both policies", got[0])
			}
			// Within one file, once per pair.
			if both := sharedRetention([]Policy{p, c.q}, nil); len(both) != len(got) {
				t.Errorf("in one file: %v, want %d warnings", both, len(got))
			}
		})
	}
}

// TestAPISharedRetentionWarning: applying the second policy of a shared
// group returns the warning; re-applying the first (its own name) does
// not count it against itself.
func TestAPISharedRetentionWarning(t *testing.T) {
	c := newAPICluster(t, 1)
	u := c.url(c.leader())
	c.addRepo(c.admin)
	first := "name: hourly\nrepository: r\nschedule: \"@hourly\"\nagents: {role: db}\npaths: [/srv/db]\nretention: {keep_last: 24}\n"
	second := strings.NewReplacer("hourly", "monthly", "keep_last: 24", "keep_monthly: 12").Replace(first)
	for i, body := range []string{first, second, first} {
		status, b := httpCall(t, http.MethodPut, u+"/v1/policies", c.admin, []byte(body), "application/yaml")
		if status != 200 {
			t.Fatalf("apply %d: %d %s", i, status, b)
		}
		warned := strings.Contains(string(b), "one retention group")
		if want := i > 0; warned != want {
			t.Errorf("apply %d: warned %v, want %v: %s", i, warned, want, b)
		}
	}
}
