package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is an alert webhook receiver that records what it accepted and
// refuses the first fail requests with 500.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	fail     int
	requests int
	bodies   []string // accepted bodies
}

func newReceiver(t *testing.T, fail int) *receiver {
	r := &receiver{fail: fail}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		if r.fail > 0 {
			r.fail--
			http.Error(w, "receiver is down", http.StatusInternalServerError)
			return
		}
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" || !json.Valid(b) {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		r.bodies = append(r.bodies, string(b))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) accepted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

func (r *receiver) count() (requests, accepted int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, len(r.bodies)
}

// webhooks decodes the accepted generic webhook bodies.
func (r *receiver) webhooks(t *testing.T) []WebhookPayload {
	t.Helper()
	var out []WebhookPayload
	for _, b := range r.accepted() {
		var p WebhookPayload
		if err := json.Unmarshal([]byte(b), &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func alertCluster(t *testing.T, n int) *testCluster {
	c := newTestCluster(t, n, func(cfg *Config) {
		cfg.Alerts = AlertConfig{Interval: time.Millisecond, AgentUnseenAfter: -1}
		cfg.Notify = NotifyConfig{MinBackoff: time.Second, MaxBackoff: 4 * time.Second, Timeout: 5 * time.Second}
	})
	c.seed("0 0 1 1 *") // policy p on agent a1; its schedule stays out of the way
	return c
}

// tickUntil moves the clock a second at a time (one leader tick) until
// cond holds.
func (c *testCluster) tickUntil(cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatal("condition not met within 15s")
		}
		c.clock.Advance(time.Second)
		time.Sleep(10 * time.Millisecond)
	}
}

// tickAfter advances the clock by d and waits until the leader has ticked
// at the new time and waits for its next tick. It is deterministic where
// the one-node cluster's leader loop is the clock's only waiter (no alert
// targets): after Advance the loop's wait fired (or was never made, if it
// was mid-tick), and it waits again only after a tick that began at the
// new time.
func (c *testCluster) tickAfter(d time.Duration) {
	c.t.Helper()
	c.clock.Advance(d)
	waitFor(c.t, func() bool { return c.clock.waiting() > 0 })
}

// ticks lets n leader ticks pass.
func (c *testCluster) ticks(n int) {
	for range n {
		c.clock.Advance(time.Second)
		time.Sleep(10 * time.Millisecond)
	}
}

// runBackup creates backup job id of policy p on a1 (one attempt), leases
// it and completes it.
func (c *testCluster) runBackup(id string, success bool) {
	c.t.Helper()
	c.must(CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: id, Kind: KindBackup, Trigger: TriggerManual, Policy: "p", Agent: "a1",
		ScheduledAt: c.clock.Now(), MaxAttempts: 1}}})
	n := c.nodes[c.leader()]
	ctx := context.Background()
	j, err := n.LeaseJob(ctx, "a1", id, time.Minute)
	if err != nil || j == nil {
		c.t.Fatalf("lease %s: %v %v", id, j, err)
	}
	cj := CompleteJob{JobID: id, Agent: "a1", Token: j.Lease.Token, Success: success, Error: "disk full"}
	if success {
		cj.Error = ""
		cj.Snapshot = &SnapshotInfo{ID: "snap-" + id, Host: "a1", Time: c.clock.Now()}
	}
	if _, err := n.CompleteJob(ctx, cj); err != nil {
		c.t.Fatalf("complete %s: %v", id, err)
	}
}

func (c *testCluster) addTarget(name, kind, url string, kinds ...AlertKind) {
	c.must(CmdPutAlertTarget, PutAlertTarget{Name: name, Kind: kind, URL: url, Kinds: kinds})
}

// TestNotifyBackupFailedOnceThenResolved: a failed backup is one firing
// webhook however many ticks pass; a later success one resolved webhook.
// A Slack target gets Slack's format, and a target filtered to other kinds
// gets nothing.
func TestNotifyBackupFailedOnceThenResolved(t *testing.T) {
	c := alertCluster(t, 1)
	hook, slack, drills := newReceiver(t, 0), newReceiver(t, 0), newReceiver(t, 0)
	c.addTarget("hook", TargetWebhook, hook.URL)
	c.addTarget("chat", TargetSlack, slack.URL)
	c.addTarget("drills", TargetWebhook, drills.URL, AlertDrillFailed)

	c.runBackup("j1", false)
	c.tickUntil(func() bool { _, n := hook.count(); _, m := slack.count(); return n == 1 && m == 1 })
	c.ticks(20)
	ps := hook.webhooks(t)
	if len(ps) != 1 {
		t.Fatalf("%d webhooks after 20 more ticks, want 1: %v", len(ps), hook.accepted())
	}
	p := ps[0]
	if p.Kind != AlertBackupFailed || p.Key != "backup_failed/p/a1" || p.Status != "firing" || p.Subject != "p/a1" ||
		!strings.Contains(p.Message, "disk full") || p.OpenedAt.IsZero() {
		t.Errorf("webhook %+v", p)
	}
	var sp SlackPayload
	if err := json.Unmarshal([]byte(slack.accepted()[0]), &sp); err != nil ||
		!strings.HasPrefix(sp.Text, ":rotating_light: [lifeboat] backup failed: policy p on agent a1 — backup of policy p on agent a1 failed") {
		t.Errorf("slack message %q (%v)", sp.Text, err)
	}
	var a *Alert
	c.nodes[0].View(func(s *State) { a = cloneJSON(s.Alerts["backup_failed/p/a1"]) })
	if a == nil || a.Delivered["hook"] != PhaseOpen || a.Delivered["chat"] != PhaseOpen || a.Delivered["drills"] != "" {
		t.Fatalf("delivery records %+v", a)
	}

	c.runBackup("j2", true)
	c.tickUntil(func() bool { _, n := hook.count(); _, m := slack.count(); return n == 2 && m == 2 })
	c.ticks(20)
	ps = hook.webhooks(t)
	if len(ps) != 2 || ps[1].Status != "resolved" || ps[1].Key != p.Key || ps[1].ResolvedAt.IsZero() || !ps[1].OpenedAt.Equal(p.OpenedAt) {
		t.Fatalf("after the success: %v", hook.accepted())
	}
	if err := json.Unmarshal([]byte(slack.accepted()[1]), &sp); err != nil || !strings.HasPrefix(sp.Text, ":white_check_mark: [lifeboat] resolved: backup failed") {
		t.Errorf("slack resolve %q", sp.Text)
	}
	if req, _ := drills.count(); req != 0 {
		t.Errorf("filtered target got %d requests", req)
	}
}

// TestNotifyRetries: a receiver that fails twice gets the alert on the
// third attempt, recorded once.
func TestNotifyRetries(t *testing.T) {
	c := alertCluster(t, 1)
	hook := newReceiver(t, 2)
	c.addTarget("hook", TargetWebhook, hook.URL)
	c.runBackup("j1", false)
	c.tickUntil(func() bool { _, n := hook.count(); return n == 1 })
	c.ticks(20)
	if req, n := hook.count(); req != 3 || n != 1 {
		t.Fatalf("%d requests, %d accepted; want 3 and 1", req, n)
	}
	c.nodes[0].View(func(s *State) {
		if d := s.Alerts["backup_failed/p/a1"].Delivered["hook"]; d != PhaseOpen {
			t.Errorf("delivered %q", d)
		}
	})
}

// TestNotifyOpenAndResolveBeforeDelivery: an alert that opens and resolves
// while its target refuses still gets both messages, in order.
func TestNotifyOpenAndResolveBeforeDelivery(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.Alerts = AlertConfig{Interval: time.Millisecond, AgentUnseenAfter: -1}
		cfg.Notify = NotifyConfig{MinBackoff: 30 * time.Second, MaxBackoff: 30 * time.Second}
	})
	c.seed("0 0 1 1 *")
	hook := newReceiver(t, 1)
	c.addTarget("hook", TargetWebhook, hook.URL)
	c.runBackup("j1", false)
	c.tickUntil(func() bool { r, _ := hook.count(); return r == 1 }) // refused; next try in 15-30s
	c.runBackup("j2", true)
	c.tickUntil(func() bool { _, n := hook.count(); return n == 2 })
	ps := hook.webhooks(t)
	if ps[0].Status != "firing" || ps[1].Status != "resolved" {
		t.Fatalf("order: %v", hook.accepted())
	}
}

// TestNotifyNoResendAfterFailover: once a delivery is recorded, a new
// leader does not send it again.
func TestNotifyNoResendAfterFailover(t *testing.T) {
	c := alertCluster(t, 3)
	hook := newReceiver(t, 0)
	c.addTarget("hook", TargetWebhook, hook.URL)
	c.runBackup("j1", false)
	c.tickUntil(func() bool { _, n := hook.count(); return n == 1 })
	// Every node has applied the delivery record.
	waitFor(t, func() bool {
		for _, n := range c.nodes {
			rec := ""
			n.View(func(s *State) {
				if a := s.Alerts["backup_failed/p/a1"]; a != nil {
					rec = a.Delivered["hook"]
				}
			})
			if rec != PhaseOpen {
				return false
			}
		}
		return true
	})
	old := c.leader()
	c.stop(old)
	var rest []int
	for i := range c.nodes {
		if i != old {
			rest = append(rest, i)
		}
	}
	c.leader(rest...)
	c.ticks(30)
	if req, n := hook.count(); req != 1 || n != 1 {
		t.Fatalf("after failover: %d requests, %d accepted; want 1", req, n)
	}
	// The new leader still delivers what is new: the resolve.
	c.runBackup("j2", true)
	c.tickUntil(func() bool { _, n := hook.count(); return n == 2 })
	if ps := hook.webhooks(t); ps[1].Status != "resolved" {
		t.Errorf("second message %+v", ps[1])
	}
}

// TestAlertsAfterClockStepsBack: a leader whose wall clock steps back (an
// NTP correction) keeps evaluating alerts; it used to wait until the clock
// caught up with its last evaluation, an hour without alerts.
func TestAlertsAfterClockStepsBack(t *testing.T) {
	c := alertCluster(t, 1)
	hook := newReceiver(t, 0)
	c.addTarget("hook", TargetWebhook, hook.URL)
	c.ticks(2)
	c.clock.Step(-time.Hour)
	c.runBackup("j1", false)
	c.tickUntil(func() bool { _, n := hook.count(); return n == 1 })
}

// TestNotifyRetryAfterClockStepsBack: a retry waiting when the wall clock
// steps back is still sent after its backoff, not after the step too.
func TestNotifyRetryAfterClockStepsBack(t *testing.T) {
	c := alertCluster(t, 1)
	hook := newReceiver(t, 1)
	c.addTarget("hook", TargetWebhook, hook.URL)
	c.runBackup("j1", false)
	c.tickUntil(func() bool { r, _ := hook.count(); return r == 1 })
	c.clock.Step(-time.Hour)
	c.tickUntil(func() bool { _, n := hook.count(); return n == 1 })
}

// TestNotifyResolveOwedWhenReopened: a problem that resolves and comes back
// while a target is down still gets the first opening's resolve to that
// target, before the new opening: a receiver keyed on (key, opened_at)
// would otherwise show the first one firing forever.
func TestNotifyResolveOwedWhenReopened(t *testing.T) {
	c := alertCluster(t, 1)
	hook := newReceiver(t, 0)
	c.addTarget("hook", TargetWebhook, hook.URL)
	c.runBackup("j1", false)
	c.tickUntil(func() bool { _, n := hook.count(); return n == 1 })
	hook.mu.Lock()
	hook.fail = 1 << 30 // down
	hook.mu.Unlock()
	c.runBackup("j2", true)
	c.tickUntil(func() bool { r, _ := hook.count(); return r >= 3 })
	c.runBackup("j3", false)
	c.ticks(3)
	hook.mu.Lock()
	hook.fail = 0 // back
	hook.mu.Unlock()
	c.tickUntil(func() bool { _, n := hook.count(); return n >= 3 })
	c.ticks(20)
	ps := hook.webhooks(t)
	if len(ps) != 3 || ps[0].Status != "firing" || ps[1].Status != "resolved" || !ps[1].OpenedAt.Equal(ps[0].OpenedAt) ||
		ps[2].Status != "firing" || !ps[2].OpenedAt.After(ps[0].OpenedAt) {
		t.Fatalf("messages: %v", hook.accepted())
	}
}

// TestNotifySlowTargetDoesNotHoldOthers: a target that never answers does
// not hold up delivery to the others: it used to take every delivery slot
// until its attempts timed out, one alert per timeout for the rest.
func TestNotifySlowTargetDoesNotHoldOthers(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.Alerts = AlertConfig{Disabled: true}
		cfg.Notify = NotifyConfig{Timeout: time.Minute, Parallel: 4}
	})
	c.seed("0 0 1 1 *")
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(hang) })
	hook := newReceiver(t, 0)
	c.addTarget("a-slow", TargetWebhook, slow.URL)
	c.addTarget("b-hook", TargetWebhook, hook.URL)
	var sync SyncAlerts
	for i := range 12 {
		sync.Open = append(sync.Open, Condition{Key: fmt.Sprintf("drill_failed/p%02d", i), Kind: AlertDrillFailed,
			Subject: fmt.Sprintf("p%02d", i), Message: "drill failed"})
	}
	c.must(CmdSyncAlerts, sync)
	waitFor(t, func() bool { _, n := hook.count(); return n == 12 })
}

// TestBackupFailedWithShortSchedule: a policy that backs up every minute
// and always fails raises backup_failed. Each failing job used to be
// cancelled as superseded by the next minute's job while it waited for its
// retry, so no job ever failed after its retries and the alert never came.
func TestBackupFailedWithShortSchedule(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.Alerts = AlertConfig{Interval: time.Millisecond, AgentUnseenAfter: -1}
	})
	c.seed("@every 1m")
	n := c.nodes[c.leader()]
	firing := func() bool {
		var a *Alert
		n.View(func(s *State) { a = s.Alerts["backup_failed/p/a1"] })
		return a != nil && a.Firing()
	}
	for i := 0; i < 60 && !firing(); i++ {
		c.must(CmdAgentSeen, AgentSeen{Name: "a1"})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		j, err := n.LeaseJob(ctx, "a1", "", time.Minute)
		cancel()
		if err == nil && j != nil {
			if _, err := n.CompleteJob(context.Background(), CompleteJob{JobID: j.ID, Agent: "a1", Token: j.Lease.Token, Error: "disk full"}); err != nil {
				t.Fatal(err)
			}
		}
		c.ticks(10)
	}
	if !firing() {
		var jobs []string
		n.View(func(s *State) {
			for _, id := range sortedKeys(s.Jobs) {
				j := s.Jobs[id]
				jobs = append(jobs, fmt.Sprintf("%s %s attempt %d: %v", id, j.State, j.Attempt, j.Result))
			}
		})
		t.Fatalf("no backup_failed alert after 10 minutes of failures; jobs:\n%s", strings.Join(jobs, "\n"))
	}
}

// TestNotifyResolveAfterKindsNarrowed: a target that got an alert's open
// message gets its resolve even if its kinds were narrowed meanwhile, or
// its receiver would show the alert firing forever.
func TestNotifyResolveAfterKindsNarrowed(t *testing.T) {
	c := alertCluster(t, 1)
	hook := newReceiver(t, 0)
	c.addTarget("hook", TargetWebhook, hook.URL)
	c.runBackup("j1", false)
	c.tickUntil(func() bool { _, n := hook.count(); return n == 1 })
	c.addTarget("hook", TargetWebhook, hook.URL, AlertDrillFailed)
	c.runBackup("j2", true)
	c.tickUntil(func() bool { _, n := hook.count(); return n == 2 })
	if ps := hook.webhooks(t); ps[1].Status != "resolved" || ps[1].Key != "backup_failed/p/a1" {
		t.Fatalf("messages: %v", hook.accepted())
	}
	// A new problem of that kind is not sent.
	c.runBackup("j3", false)
	c.ticks(10)
	if _, n := hook.count(); n != 2 {
		t.Fatalf("messages: %v", hook.accepted())
	}
}

// TestNoAgentUnseenAfterClockJump: when the leader's clock jumps forward
// (or the leader was suspended) past the unseen threshold, agents get the
// threshold to get back in touch, as after a leader change: none of them
// could record contact across the gap, and each used to be reported unseen
// and resolved again moments later, to every target.
func TestNoAgentUnseenAfterClockJump(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.Alerts = AlertConfig{Interval: time.Millisecond, AgentUnseenAfter: 10 * time.Minute}
	})
	c.seed("0 0 1 1 *")
	c.leader()
	c.must(CmdAgentSeen, AgentSeen{Name: "a1"})
	c.tickAfter(time.Second)
	c.clock.Step(time.Hour)
	c.tickAfter(time.Second) // the leader evaluates an hour after the contact
	c.must(CmdAgentSeen, AgentSeen{Name: "a1"})
	c.tickAfter(time.Second)
	c.nodes[0].View(func(s *State) {
		if a := s.Alerts["agent_unseen/a1"]; a != nil {
			t.Fatalf("alert %+v", a)
		}
	})
	// An agent that stays away is still reported, a threshold later. The
	// clock moves in steps the leader sees one by one: steps it missed
	// would add up to a gap, which rightly grants another threshold (the
	// test failed so in CI when the leader loop lagged behind).
	firing := func() bool {
		var a *Alert
		c.nodes[0].View(func(s *State) { a = s.Alerts["agent_unseen/a1"] })
		return a != nil && a.Firing()
	}
	for i := 0; i < 40 && !firing(); i++ {
		c.tickAfter(30 * time.Second)
	}
	if !firing() {
		t.Fatal("agent_unseen/a1 not firing 20 minutes after the agent's last contact")
	}
}

// TestNotifyDeliveryMetrics: the delivering node counts alert messages by
// target and result on /metrics, failed attempts included, so a target
// that keeps refusing can be alerted on.
func TestNotifyDeliveryMetrics(t *testing.T) {
	c := alertCluster(t, 1)
	flaky, good := newReceiver(t, 2), newReceiver(t, 0)
	c.addTarget("flaky", TargetWebhook, flaky.URL)
	c.addTarget("good", TargetWebhook, good.URL)
	a := NewAPI(APIConfig{Node: c.nodes[0], SelfURL: "http://metrics.invalid"})
	scrape := func() string {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	if m := scrape(); strings.Contains(m, "lifeboat_alert_deliveries_total{") {
		t.Errorf("delivery counts before any delivery:\n%s", m)
	}

	c.runBackup("j1", false)
	// Counted once the receiver's answer is back: wait for the counts.
	var m string
	c.tickUntil(func() bool {
		m = scrape()
		return strings.Contains(m, `lifeboat_alert_deliveries_total{result="delivered",target="flaky"} 1`) &&
			strings.Contains(m, `lifeboat_alert_deliveries_total{result="delivered",target="good"} 1`)
	})
	if req, n := flaky.count(); req != 3 || n != 1 {
		t.Fatalf("flaky target: %d requests, %d accepted; want 3 and 1", req, n)
	}
	for _, want := range []string{
		`lifeboat_alert_deliveries_total{result="failed",target="flaky"} 2`,
		`lifeboat_alert_deliveries_total{result="failed",target="good"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", m)
	}
}
