package coordinator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAgentCannotTouchAnotherHostsCatalogEntries: an agent — one whose
// host was compromised — completing its own backup job cannot report
// another host's snapshot as forgotten (which dropped it from the catalog
// that coverage and alerts go by) nor report another job's snapshot ID as
// its own (which overwrote that entry). Both get 403 and change nothing;
// the honest report then succeeds.
func TestAgentCannotTouchAnotherHostsCatalogEntries(t *testing.T) {
	c := newAPICluster(t, 1)
	u := c.url(c.leader())
	c.addRepo(c.admin)
	c.mustJSON(http.MethodPut, u+"/v1/policies", c.admin, []byte(strings.Replace(testPolicyYAML, "@every 1h", farDaily(), 1)), nil)
	agentTok := c.token(RoleAgent)
	creds := map[string]string{}
	for _, name := range []string{"web-1", "web-2"} {
		var enr EnrollResult
		c.mustJSON(http.MethodPost, u+"/v1/agents", agentTok, EnrollRequest{Name: name, Labels: map[string]string{"role": "web"}}, &enr)
		creds[name] = enr.Credential
	}
	var run RunResult
	c.mustJSON(http.MethodPost, u+"/v1/policies/web/run", c.admin, nil, &run)
	if len(run.Jobs) != 2 {
		t.Fatalf("run: %+v", run)
	}
	lease := func(name string) WorkItem {
		t.Helper()
		status, b := httpCall(t, http.MethodPost, u+"/v1/agents/"+name+"/lease", creds[name], nil, "")
		if status != http.StatusOK {
			t.Fatalf("lease for %s: %d %s", name, status, b)
		}
		var item WorkItem
		if err := json.Unmarshal(b, &item); err != nil {
			t.Fatal(err)
		}
		return item
	}
	w1, w2 := lease("web-1"), lease("web-2")
	now := time.Now().UTC()
	c.mustJSON(http.MethodPost, u+"/v1/jobs/"+w1.Job.ID+"/complete", creds["web-1"],
		CompleteRequest{Agent: "web-1", Token: w1.Token, Success: true, Snapshot: &SnapshotInfo{ID: "snap-web-1", Host: "web-1", Time: now, Size: 1}}, nil)
	before := stateBytes(t, c.nodes[0])

	for _, tc := range []struct {
		name string
		req  CompleteRequest
	}{
		{"forgets another host's snapshot", CompleteRequest{Agent: "web-2", Token: w2.Token, Success: true,
			Snapshot: &SnapshotInfo{ID: "snap-web-2", Host: "web-2", Time: now}, Forgotten: []string{"snap-web-1"}}},
		{"reports another job's snapshot as its own", CompleteRequest{Agent: "web-2", Token: w2.Token, Success: true,
			Snapshot: &SnapshotInfo{ID: "snap-web-1", Host: "web-2", Time: now}}},
	} {
		status, b := httpCall(t, http.MethodPost, u+"/v1/jobs/"+w2.Job.ID+"/complete", creds["web-2"], tc.req, "")
		e := errBody(t, status, b, http.StatusForbidden)
		if !strings.Contains(e.Error, `"snap-web-1"`) {
			t.Errorf("%s: error does not name the snapshot: %s", tc.name, e.Error)
		}
		if after := stateBytes(t, c.nodes[0]); string(after) != string(before) {
			t.Fatalf("%s: the refused completion changed the state", tc.name)
		}
	}
	status, b := httpCall(t, http.MethodPost, u+"/v1/jobs/"+w2.Job.ID+"/complete", creds["web-2"], CompleteRequest{Agent: "web-2", Token: w2.Token, Success: true,
		Snapshot: &SnapshotInfo{ID: "snap-web-2\x1b[2J", Host: "web-2", Time: now}}, "")
	errBody(t, status, b, http.StatusBadRequest)

	c.mustJSON(http.MethodPost, u+"/v1/jobs/"+w2.Job.ID+"/complete", creds["web-2"],
		CompleteRequest{Agent: "web-2", Token: w2.Token, Success: true, Snapshot: &SnapshotInfo{ID: "snap-web-2", Host: "web-2", Time: now}}, nil)
	var snaps []CatalogEntry
	c.mustJSON(http.MethodGet, u+"/v1/snapshots", c.admin, nil, &snaps)
	hosts := map[string]string{}
	for _, e := range snaps {
		hosts[e.ID] = e.Host
	}
	if len(snaps) != 2 || hosts["snap-web-1"] != "web-1" || hosts["snap-web-2"] != "web-2" {
		t.Fatalf("catalog: %+v", snaps)
	}

	// Retention groups by host, paths and tags, not by policy: a daily
	// policy of the same paths honestly forgets the hourly one's snapshot
	// of its own host.
	daily := strings.Replace(strings.Replace(testPolicyYAML, "@every 1h", farDaily(), 1), "name: web", "name: web-daily", 1)
	c.mustJSON(http.MethodPut, u+"/v1/policies", c.admin, []byte(daily), nil)
	c.mustJSON(http.MethodPost, u+"/v1/policies/web-daily/run", c.admin, nil, &run)
	w3 := lease("web-1")
	c.mustJSON(http.MethodPost, u+"/v1/jobs/"+w3.Job.ID+"/complete", creds["web-1"], CompleteRequest{Agent: "web-1", Token: w3.Token, Success: true,
		Snapshot: &SnapshotInfo{ID: "snap-web-1-daily", Host: "web-1", Time: now}, Forgotten: []string{"snap-web-1"}}, nil)
	c.mustJSON(http.MethodGet, u+"/v1/snapshots", c.admin, nil, &snaps)
	for _, e := range snaps {
		if e.ID == "snap-web-1" {
			t.Fatalf("the daily job's honest forget was not applied: %+v", snaps)
		}
	}
}
