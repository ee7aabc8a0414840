package coordinator

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

const drillPolicyYAML = `name: db
repository: r
schedule: "@every 1h"
agents: {role: db}
paths: [/srv/db]
drill:
  runner: {drill: "yes"}
  verify:
    - command: pg_verifybackup "$LIFEBOAT_DRILL_DIR/srv/db"
`

func TestAPIDrills(t *testing.T) {
	c := newAPICluster(t, 1)
	l := c.leader()
	u := c.url(l)
	op := c.token(RoleOperator)
	c.addRepo(c.admin)

	// Verify commands run where the identity is: an operator may not set them.
	status, b := httpCall(t, http.MethodPut, u+"/v1/policies", op, []byte(drillPolicyYAML), "application/yaml")
	if status != http.StatusForbidden || !strings.Contains(string(b), "needs an admin token") {
		t.Fatalf("operator applying verify commands: %d %s", status, b)
	}
	if status, b := httpCall(t, http.MethodPut, u+"/v1/policies", c.admin, []byte(drillPolicyYAML), "application/yaml"); status != 200 {
		t.Fatalf("admin applying verify commands: %d %s", status, b)
	}
	// Changing something else is an operator's to do; the commands stay.
	other := strings.Replace(drillPolicyYAML, "@every 1h", "@every 2h", 1)
	if status, b := httpCall(t, http.MethodPut, u+"/v1/policies", op, []byte(other), "application/yaml"); status != 200 {
		t.Fatalf("operator changing the schedule: %d %s", status, b)
	}
	other = strings.Replace(other, "drill:\n", "drill:\n  schedule: \"@weekly\"\n", 1)
	if status, b := httpCall(t, http.MethodPut, u+"/v1/policies", op, []byte(other), "application/yaml"); status != 200 {
		t.Fatalf("operator changing the drill schedule: %d %s", status, b)
	}
	// But not what the approved commands run on, or where: an approved
	// "./selftest" would run whatever the operator backed up there.
	for field, changed := range map[string]string{
		"paths":  strings.Replace(other, "[/srv/db]", "[/home/op]", 1),
		"agents": strings.Replace(other, "{role: db}", "{role: web}", 1),
		"drill":  strings.Replace(other, `{drill: "yes"}`, `{drill: "op"}`, 1),
	} {
		status, b := httpCall(t, http.MethodPut, u+"/v1/policies", op, []byte(changed), "application/yaml")
		if status != http.StatusForbidden || !strings.Contains(string(b), "changing its "+field+" needs an admin token") {
			t.Errorf("operator changing the %s of a policy with verify commands: %d %s", field, status, b)
		}
	}
	// Without the commands it may.
	bare := strings.Replace(other, "  verify:\n    - command: pg_verifybackup \"$LIFEBOAT_DRILL_DIR/srv/db\"\n", "", 1)
	bare = strings.Replace(bare, "[/srv/db]", "[/home/op]", 1)
	if status, b := httpCall(t, http.MethodPut, u+"/v1/policies", op, []byte(bare), "application/yaml"); status != 200 {
		t.Fatalf("operator removing the verify commands and changing the paths: %d %s", status, b)
	}
	if status, b := httpCall(t, http.MethodPut, u+"/v1/policies", c.admin, []byte(drillPolicyYAML), "application/yaml"); status != 200 {
		t.Fatalf("admin putting the verify commands back: %d %s", status, b)
	}

	// No runner: 409 naming the selector.
	status, b = httpCall(t, http.MethodPost, u+"/v1/policies/db/drill", op, nil, "")
	if status != http.StatusConflict || !strings.Contains(string(b), "runner selector drill=yes") {
		t.Fatalf("drill without a runner: %d %s", status, b)
	}
	if status, _ := httpCall(t, http.MethodPost, u+"/v1/policies/nope/drill", op, nil, ""); status != http.StatusNotFound {
		t.Fatalf("drill of an unknown policy: %d", status)
	}

	// A drill-capable agent: the drill is created on it, listed as pending.
	ctx := t.Context()
	n := c.nodes[l]
	if _, err := n.Propose(ctx, CmdEnrollAgent, "test", EnrollAgent{Name: "r1", Labels: map[string]string{"drill": "yes"},
		CredentialHash: hashSecret("r1"), Capabilities: []string{CapDrill}, Grants: []string{CapDrill}}); err != nil {
		t.Fatal(err)
	}
	var run DrillRunResult
	c.mustJSON(http.MethodPost, u+"/v1/policies/db/drill", op, DrillRunRequest{Snapshot: "random-within:7d"}, &run)
	if run.ID == "" || run.Agent != "r1" {
		t.Fatalf("drill run = %+v", run)
	}
	var list []DrillView
	c.mustJSON(http.MethodGet, u+"/v1/drills?policy=db", c.admin, nil, &list)
	if len(list) != 1 || list[0].ID != run.ID || list[0].State != "pending" {
		t.Fatalf("drill list = %+v", list)
	}
	// The runner reports a failed verdict: the record is served.
	j, err := n.LeaseJob(ctx, "r1", run.ID, time.Minute)
	if err != nil || j.Drill == nil || j.Drill.Snapshot != "random-within:7d" {
		t.Fatalf("lease: %+v %v", j, err)
	}
	rep := DrillReport{Reasons: []string{"check"}, Summary: "FAILED (check)", StartedAt: time.Now(), FinishedAt: time.Now(), RTOSeconds: 2,
		Result: []byte(`{"id":"x","passed":false}`)}
	if _, err := n.CompleteJob(ctx, CompleteJob{JobID: run.ID, Agent: "r1", Token: j.Lease.Token, Error: "drill failed", Drill: &rep}); err != nil {
		t.Fatal(err)
	}
	var d DrillView
	c.mustJSON(http.MethodGet, u+"/v1/drills/"+run.ID, c.admin, nil, &d)
	if d.State != "failed" || d.Passed || d.Runner != "r1" || d.Trigger != TriggerManual || !strings.HasPrefix(d.TriggeredBy, "token:") ||
		string(d.Result) != `{"id":"x","passed":false}` {
		t.Fatalf("drill show = %+v", d)
	}
	if status, _ := httpCall(t, http.MethodGet, u+"/v1/drills?since=yesterday", c.admin, nil, ""); status != http.StatusBadRequest {
		t.Fatalf("bad since: %d", status)
	}
	var st StatusReport
	c.mustJSON(http.MethodGet, u+"/v1/status", c.admin, nil, &st)
	if len(st.Policies) != 1 || st.Policies[0].LastDrill == nil || st.Policies[0].LastDrill.Passed || len(st.Coverage) != 1 {
		t.Fatalf("status = %+v", st)
	}
}

// Only an admin makes an agent a drill runner: an agent enrolled with a
// plain join token cannot announce the capability (it could forge passing
// drills); a grant, or a join token made with grants, lets it.
func TestAPIDrillRunnerGrants(t *testing.T) {
	c := newAPICluster(t, 1)
	u := c.url(c.leader())
	enroll := func(name string, grants []string) string {
		t.Helper()
		var jt TokenCreateResult
		c.mustJSON(http.MethodPost, u+"/v1/join-tokens", c.admin, JoinTokenRequest{Grants: grants}, &jt)
		var res EnrollResult
		c.mustJSON(http.MethodPost, u+"/v1/agents", jt.Token, EnrollRequest{Name: name, Capabilities: []string{CapDrill}}, &res)
		return res.Credential
	}
	caps := func(name string) []string {
		var v AgentView
		c.mustJSON(http.MethodGet, u+"/v1/agents/"+name, c.admin, nil, &v)
		return v.Capabilities
	}
	seen := func(cred, name string) (int, string) {
		st, b := httpCall(t, http.MethodPost, u+"/v1/agents/"+name+"/seen", cred, []byte(`{"capabilities":["drill"]}`), "application/json")
		return st, string(b)
	}

	plain := enroll("plain", nil)
	if got := caps("plain"); len(got) != 0 {
		t.Fatalf("an agent enrolled with a plain join token announced %v", got)
	}
	if st, b := seen(plain, "plain"); st != http.StatusForbidden || !strings.Contains(b, "lifeboat agent grant plain --drill-runner") {
		t.Fatalf("ungranted announcement: %d %s", st, b)
	}
	// An operator may not grant; an admin may.
	op := c.token(RoleOperator)
	if st, _ := httpCall(t, http.MethodPost, u+"/v1/agents/plain/grants", op, []byte(`{"grants":["drill"]}`), "application/json"); st != http.StatusForbidden {
		t.Fatalf("operator grant: %d", st)
	}
	c.mustJSON(http.MethodPost, u+"/v1/agents/plain/grants", c.admin, GrantRequest{Grants: []string{CapDrill}}, nil)
	if st, b := seen(plain, "plain"); st != http.StatusNoContent || !slices.Equal(caps("plain"), []string{CapDrill}) {
		t.Fatalf("granted announcement: %d %s, capabilities %v", st, b, caps("plain"))
	}
	// Withdrawing the grant withdraws the capability at once.
	c.mustJSON(http.MethodPost, u+"/v1/agents/plain/grants", c.admin, GrantRequest{Grants: []string{}}, nil)
	if got := caps("plain"); len(got) != 0 {
		t.Fatalf("capabilities after the grant was withdrawn: %v", got)
	}
	// A join token made with the grant enrolls drill runners directly.
	enroll("runner", []string{CapDrill})
	if got := caps("runner"); !slices.Equal(got, []string{CapDrill}) {
		t.Fatalf("agent enrolled with a drill-runner token: %v", got)
	}
	if st, _ := httpCall(t, http.MethodPost, u+"/v1/join-tokens", c.admin, []byte(`{"grants":["root"]}`), "application/json"); st != http.StatusBadRequest {
		t.Fatalf("unknown grant: %d", st)
	}
}
