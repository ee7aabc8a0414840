package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// TestCatalogClaimsCheckedWhenApplied: the API checks a completion's
// catalog change against the state it sees, but another completion may
// change the catalog before this one is applied. On a real three-node
// cluster: web-2's completion passes the API's check, then web-1's
// completion adds the snapshot web-2 reports; the FSM, checking again,
// refuses web-2's on every node, and a later honest report succeeds.
// (web-3 plays web-1's part for the second case.)
func TestCatalogClaimsCheckedWhenApplied(t *testing.T) {
	c := newAPICluster(t, 3)
	l := c.leader()
	u := c.url(l)
	c.addRepo(c.admin)
	c.mustJSON(http.MethodPut, u+"/v1/policies", c.admin, []byte(strings.Replace(testPolicyYAML, "@every 1h", farDaily(), 1)), nil)
	agentTok := c.token(RoleAgent)
	creds := map[string]string{}
	for _, name := range []string{"web-1", "web-2", "web-3"} {
		var enr EnrollResult
		c.mustJSON(http.MethodPost, u+"/v1/agents", agentTok, EnrollRequest{Name: name, Labels: map[string]string{"role": "web"}}, &enr)
		creds[name] = enr.Credential
	}
	var run RunResult
	c.mustJSON(http.MethodPost, u+"/v1/policies/web/run", c.admin, nil, &run)
	items := map[string]WorkItem{}
	for _, name := range []string{"web-1", "web-2", "web-3"} {
		var it WorkItem
		c.mustJSON(http.MethodPost, u+"/v1/agents/"+name+"/lease", creds[name], nil, &it)
		items[name] = it
	}
	w2 := items["web-2"]
	if items["web-1"].Job.ID == "" || w2.Job.ID == "" || items["web-3"].Job.ID == "" {
		t.Fatalf("leases: %+v", items)
	}
	now := time.Now().UTC()
	ctx := context.Background()

	for _, tc := range []struct {
		name, other, snap string // other adds snap between the API's check and the apply
		q                 CompleteRequest
	}{
		{"reports the snapshot another job added meanwhile", "web-1", "snap-x", CompleteRequest{Agent: "web-2", Token: w2.Token, Success: true,
			Snapshot: &SnapshotInfo{ID: "snap-x", Host: "web-2", Time: now}}},
		{"forgets a snapshot another host added meanwhile", "web-3", "snap-z", CompleteRequest{Agent: "web-2", Token: w2.Token, Success: true,
			Snapshot: &SnapshotInfo{ID: "snap-web-2", Host: "web-2", Time: now}, Forgotten: []string{"snap-z"}}},
	} {
		// The API's check, against the catalog as it is now: passes.
		claims, err := c.apis[l].checkCatalogClaims(ctx, w2.Job.ID, &tc.q)
		if err != nil || !claims {
			t.Fatalf("%s: API check before the race: claims %v, %v", tc.name, claims, err)
		}
		wo := items[tc.other]
		c.mustJSON(http.MethodPost, u+"/v1/jobs/"+wo.Job.ID+"/complete", creds[tc.other],
			CompleteRequest{Agent: tc.other, Token: wo.Token, Success: true, Snapshot: &SnapshotInfo{ID: tc.snap, Host: tc.other, Time: now, Size: 1}}, nil)
		before := stateBytes(t, c.nodes[l])
		_, err = c.nodes[l].CompleteJob(ctx, completion(w2.Job.ID, &tc.q, claims))
		if !errors.Is(err, ErrCatalogClaim) || !strings.Contains(err.Error(), `"`+tc.snap+`"`) {
			t.Fatalf("%s: applied completion: %v, want a refusal naming %s", tc.name, err, tc.snap)
		}
		if status, _ := errorStatus(err); status != http.StatusForbidden {
			t.Errorf("%s: the refusal maps to %d, want 403 as the API's own check", tc.name, status)
		}
		waitSameState(t, c, before)
	}

	c.mustJSON(http.MethodPost, u+"/v1/jobs/"+w2.Job.ID+"/complete", creds["web-2"],
		CompleteRequest{Agent: "web-2", Token: w2.Token, Success: true, Snapshot: &SnapshotInfo{ID: "snap-web-2", Host: "web-2", Time: now}}, nil)
	c.nodes[l].View(func(s *State) {
		for snap, host := range map[string]string{"snap-x": "web-1", "snap-z": "web-3"} {
			if e := s.Catalog[snap]; e == nil || e.Host != host || e.JobID != items[host].Job.ID {
				t.Errorf("%s: %+v, want %s's entry kept", snap, e, host)
			}
		}
		if e := s.Catalog["snap-web-2"]; e == nil || e.JobID != w2.Job.ID {
			t.Errorf("the honest completion was not applied: %+v", e)
		}
	})
}

// waitSameState waits until every node of c holds want (the leader's
// state before a refused command: a refusal changes nothing anywhere).
func waitSameState(t *testing.T, c *apiCluster, want []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := range c.nodes {
		for {
			got := stateBytes(t, c.nodes[i])
			if bytes.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: state differs from the leader's before the refused command", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestCatalogClaimsVersionGate: a completion log entry is applied by the
// rules of its version. One written before version 12 (no check_claims)
// overwrites and drops other jobs' entries as it did then, so an old log
// replays as it applied; a version-12 one with check_claims is refused.
func TestCatalogClaimsVersionGate(t *testing.T) {
	wk, _ := testWriterKey(t)
	setup := func() (*fsmHarness, *Job) {
		h := newFSMHarness(t)
		h.setup(wk)
		j1 := h.leaseNew(NewJob{ID: "j1", Kind: KindBackup, Policy: "p"}, time.Hour)
		h.must(CmdCompleteJob, CompleteJob{JobID: "j1", Agent: "a1", Token: j1.Lease.Token, Success: true,
			Snapshot: &SnapshotInfo{ID: "s1", Host: "other", Time: t0}})
		return h, h.leaseNew(NewJob{ID: "j2", Kind: KindBackup, Policy: "p"}, time.Hour)
	}
	for _, tc := range []struct {
		name    string
		version int // 0: as NewCommand stamps it
		p       func(j2 *Job) CompleteJob
		refused bool
	}{
		{"an old entry reusing a snapshot ID", 0, func(j2 *Job) CompleteJob {
			return CompleteJob{JobID: "j2", Agent: "a1", Token: j2.Lease.Token, Success: true, Snapshot: &SnapshotInfo{ID: "s1", Host: "a1", Time: t0}}
		}, false},
		{"an old entry forgetting another host's snapshot", 0, func(j2 *Job) CompleteJob {
			return CompleteJob{JobID: "j2", Agent: "a1", Token: j2.Lease.Token, Success: true, Snapshot: &SnapshotInfo{ID: "s2", Host: "a1", Time: t0}, Forgotten: []string{"s1"}}
		}, false},
		{"check_claims under version 11", 11, func(j2 *Job) CompleteJob {
			return CompleteJob{JobID: "j2", Agent: "a1", Token: j2.Lease.Token, Success: true, Snapshot: &SnapshotInfo{ID: "s1", Host: "a1", Time: t0}, CheckClaims: true}
		}, false},
		{"a version-12 entry reusing a snapshot ID", 0, func(j2 *Job) CompleteJob {
			return CompleteJob{JobID: "j2", Agent: "a1", Token: j2.Lease.Token, Success: true, Snapshot: &SnapshotInfo{ID: "s1", Host: "a1", Time: t0}, CheckClaims: true}
		}, true},
		{"a version-12 entry forgetting another host's snapshot", 0, func(j2 *Job) CompleteJob {
			return CompleteJob{JobID: "j2", Agent: "a1", Token: j2.Lease.Token, Success: true, Snapshot: &SnapshotInfo{ID: "s2", Host: "a1", Time: t0}, Forgotten: []string{"s1"}, CheckClaims: true}
		}, true},
		{"a version-12 entry forgetting its own host's snapshot", 0, func(j2 *Job) CompleteJob {
			return CompleteJob{JobID: "j2", Agent: "a1", Token: j2.Lease.Token, Success: true, Snapshot: &SnapshotInfo{ID: "s2", Host: "other", Time: t0}, Forgotten: []string{"s1"}, CheckClaims: true}
		}, false},
	} {
		h, j2 := setup()
		cmd, err := NewCommand(CmdCompleteJob, "agent:a1", tc.p(j2))
		if err != nil {
			t.Fatal(err)
		}
		if tc.version != 0 {
			cmd.Version = tc.version
		}
		cmd.Time = h.now
		b, _ := cmd.Encode()
		before := h.snapshot()
		r := h.raw(b)
		if tc.refused {
			if !errors.Is(r.Err, ErrCatalogClaim) {
				t.Errorf("%s (version %d): %v, want refused", tc.name, cmd.Version, r.Err)
			}
			if !bytes.Equal(h.snapshot(), before) {
				t.Errorf("%s: the refused entry changed the state", tc.name)
			}
			continue
		}
		if r.Err != nil {
			t.Errorf("%s (version %d): refused: %v", tc.name, cmd.Version, r.Err)
			continue
		}
		if st := h.state(); st.Jobs["j2"].State != JobSucceeded {
			t.Errorf("%s: j2 is %s", tc.name, st.Jobs["j2"].State)
		}
	}
}
