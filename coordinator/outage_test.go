package coordinator

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestOutageRunsMissedInstant stops a one-node cluster across a policy's
// instant for longer than the agent timeout. Nobody could record the agent
// as seen meanwhile, so it looks disconnected when the node comes back; the
// instant must still get its job once the agent polls, not be recorded as
// missed (which left the nightly backup for the next night).
func TestOutageRunsMissedInstant(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.AgentTimeout = 2 * time.Minute })
	c.seed("0 4 * * *") // t0 is 03:00
	c.leader()
	c.stop(0)
	c.clock.Advance(65 * time.Minute) // down from 03:00 to 04:05
	c.start(0)
	c.leader()
	c.ticks(2) // the new leader plans before the agent polls
	c.must(CmdAgentSeen, AgentSeen{Name: "a1"})
	want := JobID("p", t0.Add(time.Hour), "a1")
	c.tickUntil(func() bool {
		var lf time.Time
		c.nodes[0].View(func(s *State) { lf = s.LastFired["p"] })
		return !lf.Before(t0.Add(time.Hour))
	})
	c.nodes[0].View(func(s *State) {
		if s.Jobs[want] == nil {
			t.Fatalf("no job for the 04:00 instant missed during the outage; jobs: %v", s.FindJobs(JobFilter{}))
		}
	})
}

// TestOutageGivesUpOnGoneAgent: an agent that does not come back after the
// outage does not hold its policy for longer than the agent timeout; its
// run is recorded missed and the watermark moves on.
func TestOutageGivesUpOnGoneAgent(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.AgentTimeout = 2 * time.Minute })
	c.seed("0 4 * * *")
	c.leader()
	c.stop(0)
	c.clock.Advance(65 * time.Minute)
	c.start(0)
	c.leader()
	lastFired := func() time.Time {
		var lf time.Time
		c.nodes[0].View(func(s *State) { lf = s.LastFired["p"] })
		return lf
	}
	c.ticks(5)
	if lf := lastFired(); !lf.Before(t0.Add(time.Hour)) {
		t.Fatalf("watermark moved to %v before the agent timeout passed", lf)
	}
	c.tickUntil(func() bool { return !lastFired().Before(t0.Add(time.Hour)) })
	c.nodes[0].View(func(s *State) {
		if n := len(s.Jobs); n != 0 {
			t.Fatalf("%d jobs for an agent that never came back", n)
		}
	})
}

// TestOutageCatchUpRunsOnce: three hourly instants missed during an outage
// each get a job, but the agent runs one backup for them, the latest; the
// older are cancelled as superseded (three back-to-back snapshots of the
// same data would, with keep_last, forget three older ones).
func TestOutageCatchUpRunsOnce(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.AgentTimeout = 2 * time.Minute })
	c.seed("0 * * * *") // t0 is 03:00
	c.leader()
	c.stop(0)
	c.clock.Advance(3*time.Hour + 5*time.Minute) // down until 06:05
	c.start(0)
	c.leader()
	c.must(CmdAgentSeen, AgentSeen{Name: "a1"})
	c.tickUntil(func() bool {
		var lf time.Time
		c.nodes[0].View(func(s *State) { lf = s.LastFired["p"] })
		return !lf.Before(t0.Add(3 * time.Hour))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	j, err := c.nodes[0].LeaseJob(ctx, "a1", "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if j == nil || !j.ScheduledAt.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("leased %+v, want the job of 06:00", j)
	}
	c.nodes[0].View(func(s *State) {
		for _, h := range []time.Duration{1, 2} {
			old := s.Jobs[JobID("p", t0.Add(h*time.Hour), "a1")]
			if old == nil || old.State != JobCancelled || old.Result == nil || !strings.Contains(old.Result.Error, "superseded by job "+j.ID) {
				t.Fatalf("job of %v: %+v, want cancelled as superseded by %s", t0.Add(h*time.Hour), old, j.ID)
			}
		}
	})
}

// TestManualRunsNotSuperseded: two manual runs of a policy both run.
func TestManualRunsNotSuperseded(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	c.seed("0 4 * * *")
	n := c.nodes[c.leader()]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	first, err := n.RunPolicy(ctx, "test", "p")
	if err != nil {
		t.Fatal(err)
	}
	c.clock.Advance(time.Second)
	second, err := n.RunPolicy(ctx, "test", "p")
	if err != nil {
		t.Fatal(err)
	}
	j, err := n.LeaseJob(ctx, "a1", "", time.Minute)
	if err != nil || j == nil || j.ID != first[0] {
		t.Fatalf("leased %v, %v; want %s", j, err, first[0])
	}
	n.View(func(s *State) {
		if st := s.Jobs[second[0]].State; st != JobPending {
			t.Fatalf("second manual run is %s, want pending", st)
		}
	})
}
