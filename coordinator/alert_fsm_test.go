package coordinator

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestFSMAlertSyncDeterministic applies the same alert commands to two
// FSMs and demands byte-identical states, then checks what each step did.
func TestFSMAlertSyncDeterministic(t *testing.T) {
	hs := []*fsmHarness{newFSMHarness(t), newFSMHarness(t)}
	cond := func(key, msg string) Condition {
		return Condition{Key: key, Kind: AlertAgentUnseen, Subject: key, Message: msg, Since: t0}
	}
	steps := []struct {
		at      time.Duration
		typ     CommandType
		payload any
	}{
		{0, CmdPutAlertTarget, PutAlertTarget{Name: "hook", Kind: TargetWebhook, URL: "http://x/hook", Kinds: []AlertKind{AlertDamage, AlertAgentUnseen, AlertDamage}}},
		{0, CmdPutAlertTarget, PutAlertTarget{Name: "chat", Kind: TargetSlack, URL: "https://hooks.example/s"}},
		{time.Minute, CmdSyncAlerts, SyncAlerts{Open: []Condition{cond("k1", "one"), cond("k2", "two"), cond("k3", "three")}}},
		{2 * time.Minute, CmdAlertDelivered, AlertDelivered{Key: "k1", Target: "hook", Phase: PhaseOpen, OpenedAt: t0.Add(time.Minute)}},
		{2 * time.Minute, CmdAlertDelivered, AlertDelivered{Key: "k1", Target: "chat", Phase: PhaseOpen, OpenedAt: t0.Add(time.Minute)}},
		{3 * time.Minute, CmdSyncAlerts, SyncAlerts{Update: []Condition{cond("k2", "two, changed")}, Resolve: []string{"k1"}}},
		{4 * time.Minute, CmdAlertDelivered, AlertDelivered{Key: "k1", Target: "hook", Phase: PhaseResolve, OpenedAt: t0.Add(time.Minute)}},
		// Re-proposed sync (after a failover): nothing changes.
		{5 * time.Minute, CmdSyncAlerts, SyncAlerts{Open: []Condition{cond("k2", "two, changed")}, Update: []Condition{cond("k3", "three")}, Resolve: []string{"k1"}}},
		// k1 comes back: a new alert, nothing delivered.
		{6 * time.Minute, CmdSyncAlerts, SyncAlerts{Open: []Condition{cond("k1", "one again")}}},
		{7 * time.Minute, CmdDeleteAlertTarget, DeleteAlertTarget{Name: "chat"}},
	}
	for _, h := range hs {
		for _, st := range steps {
			h.now = t0.Add(st.at)
			h.must(st.typ, st.payload)
		}
	}
	a, b := hs[0].snapshot(), hs[1].snapshot()
	if !bytes.Equal(a, b) {
		t.Fatalf("states differ:\n%s\n%s", a, b)
	}
	s := hs[0].fsm.State()
	k1, k2, k3 := s.Alerts["k1"], s.Alerts["k2"], s.Alerts["k3"]
	switch {
	case !k1.Firing() || !k1.OpenedAt.Equal(t0.Add(6*time.Minute)) || k1.Message != "one again" || k1.Delivered != nil:
		t.Errorf("re-opened k1: %+v", k1)
	case k2.Message != "two, changed" || !k2.UpdatedAt.Equal(t0.Add(3*time.Minute)) || !k2.OpenedAt.Equal(t0.Add(time.Minute)):
		t.Errorf("updated k2: %+v", k2)
	case !k3.Firing() || k3.Message != "three":
		t.Errorf("k3: %+v", k3)
	case s.AlertTargets["chat"] != nil || len(s.AlertTargets["hook"].Kinds) != 2:
		t.Errorf("targets: %+v", s.AlertTargets)
	}

	// A stale acknowledgement (for k1's first opening) is ignored, and so
	// is one that would move a phase back or name an unknown target.
	before := hs[0].snapshot()
	for _, ack := range []AlertDelivered{
		{Key: "k1", Target: "hook", Phase: PhaseOpen, OpenedAt: t0.Add(time.Minute)},
		{Key: "k1", Target: "hook", Phase: PhaseResolve, OpenedAt: t0.Add(6 * time.Minute)}, // k1 is open
		{Key: "k2", Target: "nobody", Phase: PhaseOpen, OpenedAt: t0.Add(time.Minute)},
		{Key: "gone", Target: "hook", Phase: PhaseOpen, OpenedAt: t0},
	} {
		if v := hs[0].must(CmdAlertDelivered, ack); v != false {
			t.Errorf("ack %+v recorded", ack)
		}
	}
	if !bytes.Equal(stripIndex(before), stripIndex(hs[0].snapshot())) {
		t.Error("ignored acknowledgements changed the state")
	}

	// Malformed commands are rejected.
	for _, bad := range []struct {
		typ CommandType
		p   any
	}{
		{CmdSyncAlerts, SyncAlerts{Open: []Condition{{Key: "", Kind: AlertDamage}}}},
		{CmdSyncAlerts, SyncAlerts{Open: []Condition{{Key: "x", Kind: "nope"}}}},
		{CmdSyncAlerts, SyncAlerts{Open: []Condition{cond("x", "")}, Resolve: []string{"x"}}},
		{CmdAlertDelivered, AlertDelivered{Key: "k2", Target: "hook", Phase: "sent"}},
		{CmdPutAlertTarget, PutAlertTarget{Name: "t", Kind: "email", URL: "http://x"}},
	} {
		if _, err := hs[0].apply(bad.typ, bad.p); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s %+v: %v, want ErrInvalidCommand", bad.typ, bad.p, err)
		}
	}
	if _, err := hs[0].apply(CmdDeleteAlertTarget, DeleteAlertTarget{Name: "chat"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete missing target: %v", err)
	}

	// Resolved alerts older than the cutoff are pruned.
	hs[0].now = t0.Add(10 * time.Minute)
	hs[0].must(CmdSyncAlerts, SyncAlerts{Resolve: []string{"k2"}})
	hs[0].now = t0.Add(time.Hour)
	v := hs[0].must(CmdSyncAlerts, SyncAlerts{PruneBefore: t0.Add(30 * time.Minute)})
	if res := v.(SyncAlertsResult); res.Pruned != 1 || hs[0].fsm.State().Alerts["k1"] == nil || hs[0].fsm.State().Alerts["k2"] != nil {
		t.Errorf("prune: %+v", res)
	}
}
