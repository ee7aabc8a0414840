package coordinator

import (
	"context"
	"testing"
	"time"
)

// finishJob creates job nj for agent a1 (one attempt), leases it and
// completes it as cj says (JobID, Agent and Token are filled in).
func (c *testCluster) finishJob(nj NewJob, cj CompleteJob) {
	c.t.Helper()
	nj.Trigger, nj.Agent, nj.ScheduledAt, nj.MaxAttempts = TriggerManual, "a1", c.clock.Now(), 1
	c.must(CmdCreateJobs, CreateJobs{Jobs: []NewJob{nj}})
	n := c.nodes[c.leader()]
	ctx := context.Background()
	j, err := n.LeaseJob(ctx, "a1", nj.ID, time.Minute)
	if err != nil || j == nil {
		c.t.Fatalf("lease %s: %v %v", nj.ID, j, err)
	}
	cj.JobID, cj.Agent, cj.Token = nj.ID, "a1", j.Lease.Token
	if _, err := n.CompleteJob(ctx, cj); err != nil {
		c.t.Fatalf("complete %s: %v", nj.ID, err)
	}
}

// failDrill runs drill job id of policy p on a1 to a failed verdict.
func (c *testCluster) failDrill(id string) {
	c.t.Helper()
	now := c.clock.Now().UTC()
	c.finishJob(NewJob{ID: id, Kind: KindDrill, Policy: "p", Drill: &DrillParams{Snapshot: "latest"}},
		CompleteJob{Error: "drill failed", Drill: &DrillReport{Reasons: []string{"verify"}, Summary: "1 check failed", StartedAt: now, FinishedAt: now}})
}

// firing returns the keys of the firing alerts.
func (c *testCluster) firing() map[string]bool {
	out := map[string]bool{}
	c.nodes[c.leader()].View(func(s *State) {
		for k, a := range s.Alerts {
			if a.Firing() {
				out[k] = true
			}
		}
	})
	return out
}

// TestAlertsResolveWithTheirSubject: an alert resolves when what it is
// about goes away, not only when it is fixed. Removing a policy's drill
// block resolves its drill_failed (a policy without drills has no drill
// problem); deleting a policy resolves every alert of it; revoking an
// agent resolves its backup alerts.
func TestAlertsResolveWithTheirSubject(t *testing.T) {
	c := alertCluster(t, 1)
	withDrill := Policy{Name: "p", Repository: "r", Schedule: "0 0 1 1 *", Paths: []string{"/data"}, Agents: map[string]string{"role": "db"},
		Drill: &DrillSpec{Runner: map[string]string{"role": "db"}}}
	c.must(CmdPutPolicy, PutPolicy{Policy: withDrill})
	c.must(CmdGrantAgent, GrantAgent{Name: "a1", Grants: []string{CapDrill}})
	c.must(CmdAgentSeen, AgentSeen{Name: "a1", Capabilities: []string{CapDrill}})

	// The drill block removed.
	c.failDrill("d1")
	c.tickUntil(func() bool { return c.firing()["drill_failed/p"] })
	noDrill := withDrill
	noDrill.Drill = nil
	c.must(CmdPutPolicy, PutPolicy{Policy: noDrill})
	c.tickUntil(func() bool { return !c.firing()["drill_failed/p"] })
	// Put back, the failed drill is the newest again: it fires again.
	c.must(CmdPutPolicy, PutPolicy{Policy: withDrill})
	c.tickUntil(func() bool { return c.firing()["drill_failed/p"] })

	// The policy deleted, with an alert of every kind a policy has open.
	rpo := withDrill
	rpo.Targets.RPO = Duration(time.Hour)
	c.must(CmdPutPolicy, PutPolicy{Policy: rpo})
	c.runBackup("b1", false)
	c.finishJob(NewJob{ID: "pr1", Kind: KindPrune, Policy: "p", Repository: "r"}, CompleteJob{Error: "prune refused: index damaged"})
	c.clock.Advance(2 * time.Hour)
	all := []string{"drill_failed/p", "backup_failed/p/a1", "rpo_missed/p/a1", "prune_failed/p"}
	c.tickUntil(func() bool {
		f := c.firing()
		return f[all[0]] && f[all[1]] && f[all[2]] && f[all[3]]
	})
	c.must(CmdDeletePolicy, DeletePolicy{Name: "p"})
	c.tickUntil(func() bool { return len(c.firing()) == 0 })

	// A new policy of the deleted one's name does not inherit its failed
	// drill and prune: only what fails after its creation counts. (One
	// evaluation opens every alert there is, so when the new backup's
	// opens, an inherited one would be open too.)
	c.must(CmdPutPolicy, PutPolicy{Policy: rpo})
	c.runBackup("b2", false)
	c.tickUntil(func() bool { return c.firing()["backup_failed/p/a1"] })
	if f := c.firing(); len(f) != 1 {
		t.Errorf("firing for a new policy of a deleted one's name after its first failed backup: %v; want only backup_failed/p/a1", f)
	}

	// The agent revoked.
	c.clock.Advance(2 * time.Hour)
	c.tickUntil(func() bool { return c.firing()["rpo_missed/p/a1"] })
	c.failDrill("d2")
	c.tickUntil(func() bool { return c.firing()["drill_failed/p"] })
	c.must(CmdRevokeAgent, RevokeAgent{Name: "a1"})
	c.tickUntil(func() bool { f := c.firing(); return !f["backup_failed/p/a1"] && !f["rpo_missed/p/a1"] })
	if f := c.firing(); len(f) != 1 || !f["drill_failed/p"] {
		t.Errorf("firing after the revocation: %v; want only drill_failed/p (the policy's, not the agent's)", f)
	}
}
