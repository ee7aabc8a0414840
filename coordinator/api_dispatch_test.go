package coordinator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAPIDispatch(t *testing.T) {
	c := newAPICluster(t, 3)
	l, f := c.leader(), c.follower()
	c.addRepo(c.admin)
	// Every job comes from the test: no scheduled instant while it runs.
	c.mustJSON(http.MethodPut, c.url(l)+"/v1/policies", c.admin, []byte(strings.Replace(testPolicyYAML, "@every 1h", farDaily(), 1)), nil)
	agentTok := c.token(RoleAgent)
	var enr EnrollResult
	c.mustJSON(http.MethodPost, c.url(f)+"/v1/agents", agentTok, EnrollRequest{Name: "web-1", Labels: map[string]string{"role": "web"}}, &enr)
	if !strings.HasPrefix(enr.Credential, agentCredPrefix+"web-1_") {
		t.Fatalf("enroll: %+v", enr)
	}
	cred := enr.Credential

	// Nothing to do: the long poll (on a follower) ends with 204.
	start := time.Now()
	status, b := httpCall(t, http.MethodGet, c.url(f)+"/v1/agents/web-1/work?wait=300ms", cred, nil, "")
	if status != http.StatusNoContent || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("idle poll: %d after %v: %s", status, time.Since(start), b)
	}
	// An agent credential acts for its own agent only.
	status, b = httpCall(t, http.MethodGet, c.url(f)+"/v1/agents/other/work?wait=0s", cred, nil, "")
	errBody(t, status, b, 403)

	// A poll waiting on a follower gets the job as soon as it is created.
	type got struct {
		status int
		body   []byte
	}
	done := make(chan got, 1)
	go func() {
		s, b := httpCall(t, http.MethodGet, c.url(f)+"/v1/agents/web-1/work?wait=10s", cred, nil, "")
		done <- got{s, b}
	}()
	time.Sleep(100 * time.Millisecond)
	var run RunResult
	c.mustJSON(http.MethodPost, c.url(f)+"/v1/policies/web/run", c.admin, nil, &run)
	if len(run.Jobs) != 1 {
		t.Fatalf("run: %+v", run)
	}
	r := <-done
	if r.status != 200 {
		t.Fatalf("poll: %d %s", r.status, r.body)
	}
	var item WorkItem
	if err := json.Unmarshal(r.body, &item); err != nil {
		t.Fatal(err)
	}
	if item.Job.ID != run.Jobs[0] || item.Token == 0 || item.Repository == nil || item.Repository.WriterKey == "" || item.Policy == nil {
		t.Fatalf("work item: %+v", item)
	}
	if IsIdentity([]byte(item.Repository.WriterKey)) {
		t.Fatal("the work item carries an identity")
	}
	jobURL := c.url(f) + "/v1/jobs/" + item.Job.ID
	c.mustJSON(http.MethodPost, jobURL+"/heartbeat", cred, HeartbeatRequest{Agent: "web-1", Token: item.Token, Progress: &Progress{Files: 3}}, nil)
	// A stale token is refused and changes nothing.
	status, b = httpCall(t, http.MethodPost, jobURL+"/complete", cred, CompleteRequest{Agent: "web-1", Token: item.Token - 1, Success: true, Snapshot: &SnapshotInfo{ID: "s1"}}, "")
	errBody(t, status, b, 409)
	snap := &SnapshotInfo{ID: "snap-1", Host: "web-1", Time: time.Now().UTC(), Size: 42}
	c.mustJSON(http.MethodPost, jobURL+"/complete", cred, CompleteRequest{Agent: "web-1", Token: item.Token, Success: true, Snapshot: snap}, nil)

	time.Sleep(100 * time.Millisecond)
	var jobs []Job
	c.mustJSON(http.MethodGet, c.url(f)+"/v1/jobs?policy=web&state=succeeded", c.admin, nil, &jobs)
	if len(jobs) != 1 || jobs[0].State != JobSucceeded {
		t.Fatalf("jobs: %+v", jobs)
	}
	var snaps []CatalogEntry
	c.mustJSON(http.MethodGet, c.url(f)+"/v1/snapshots", c.admin, nil, &snaps)
	if len(snaps) != 1 || snaps[0].ID != "snap-1" || snaps[0].Repository != "r" {
		t.Fatalf("snapshots: %+v", snaps)
	}
	var st StatusReport
	c.mustJSON(http.MethodGet, c.url(f)+"/v1/status", c.admin, nil, &st)
	if len(st.Policies) != 1 || st.Policies[0].LastSnapshot != "snap-1" || st.Policies[0].Overdue ||
		len(st.Agents) != 1 || st.Agents[0].Overdue || !st.Agents[0].Connected {
		t.Fatalf("status: %+v", st)
	}
	// Metrics are served without a token and carry the state gauges.
	status, b = httpCall(t, http.MethodGet, c.url(f)+"/metrics", "", nil, "")
	for _, want := range []string{`lifeboat_jobs{state="succeeded"} 1`, "lifeboat_raft_state{state=\"Follower\"} 1", `lifeboat_policy_rpo_target_seconds{policy="web"} 7200`, "lifeboat_agents_connected 1"} {
		if status != 200 || !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestEnrollCannotTakeOverAnAgent: a second enrollment under a live
// agent's name — with an agent token, which could otherwise hijack the
// agent's jobs and writer keys — is refused and the first credential keeps
// working; only an admin may re-enroll (replace) it.
func TestEnrollCannotTakeOverAnAgent(t *testing.T) {
	c := newAPICluster(t, 1)
	l := c.leader()
	agentTok := c.token(RoleAgent)
	var first EnrollResult
	c.mustJSON(http.MethodPost, c.url(l)+"/v1/agents", agentTok, EnrollRequest{Name: "db-1"}, &first)

	status, b := httpCall(t, http.MethodPost, c.url(l)+"/v1/agents", agentTok, EnrollRequest{Name: "db-1"}, "")
	errBody(t, status, b, http.StatusConflict)
	status, b = httpCall(t, http.MethodGet, c.url(l)+"/v1/agents/db-1/work?wait=0s", first.Credential, nil, "")
	if status != http.StatusNoContent {
		t.Fatalf("the original credential stopped working after a refused takeover: %d %s", status, b)
	}

	var second EnrollResult
	c.mustJSON(http.MethodPost, c.url(l)+"/v1/agents", c.admin, EnrollRequest{Name: "db-1"}, &second)
	status, _ = httpCall(t, http.MethodGet, c.url(l)+"/v1/agents/db-1/work?wait=0s", first.Credential, nil, "")
	if status != http.StatusUnauthorized {
		t.Errorf("after an admin re-enrolled db-1 the old credential got %d, want 401", status)
	}
}

// TestAPILeaseTTLBounded: the lease and heartbeat endpoints cut a TTL to
// MaxLeaseTTL (as /work does) and refuse a negative one.
func TestAPILeaseTTLBounded(t *testing.T) {
	c := newAPICluster(t, 1)
	l := c.leader()
	c.addRepo(c.admin)
	c.mustJSON(http.MethodPut, c.url(l)+"/v1/policies", c.admin, []byte(testPolicyYAML), nil)
	var enr EnrollResult
	c.mustJSON(http.MethodPost, c.url(l)+"/v1/agents", c.token(RoleAgent), EnrollRequest{Name: "web-1", Labels: map[string]string{"role": "web"}}, &enr)
	cred := enr.Credential
	var run RunResult
	c.mustJSON(http.MethodPost, c.url(l)+"/v1/policies/web/run", c.admin, nil, &run)
	if len(run.Jobs) != 1 {
		t.Fatalf("run: %+v", run)
	}
	huge := Duration(100000 * time.Hour)

	status, b := httpCall(t, http.MethodPost, c.url(l)+"/v1/agents/web-1/lease", cred, LeaseRequest{TTL: -Duration(time.Minute)}, "")
	errBody(t, status, b, 400)
	var item WorkItem
	c.mustJSON(http.MethodPost, c.url(l)+"/v1/agents/web-1/lease", cred, LeaseRequest{TTL: huge}, &item)
	if item.Token == 0 {
		t.Fatalf("lease: %+v", item)
	}
	if max := time.Now().Add(MaxLeaseTTL + time.Minute); item.Deadline.After(max) {
		t.Fatalf("lease deadline %s: more than %s ahead", item.Deadline, MaxLeaseTTL)
	}

	hb := c.url(l) + "/v1/jobs/" + item.Job.ID + "/heartbeat"
	status, b = httpCall(t, http.MethodPost, hb, cred, HeartbeatRequest{Agent: "web-1", Token: item.Token, TTL: -Duration(time.Minute)}, "")
	errBody(t, status, b, 400)
	var res HeartbeatResult
	c.mustJSON(http.MethodPost, hb, cred, HeartbeatRequest{Agent: "web-1", Token: item.Token, TTL: huge}, &res)
	if max := time.Now().Add(MaxLeaseTTL + time.Minute); res.Deadline.IsZero() || res.Deadline.After(max) {
		t.Fatalf("heartbeat deadline %s: more than %s ahead", res.Deadline, MaxLeaseTTL)
	}
	var j Job
	c.mustJSON(http.MethodGet, c.url(l)+"/v1/jobs/"+item.Job.ID, c.admin, nil, &j)
	if j.Lease == nil || j.Lease.Deadline.After(time.Now().Add(MaxLeaseTTL+time.Minute)) {
		t.Fatalf("stored lease %+v", j.Lease)
	}
}
