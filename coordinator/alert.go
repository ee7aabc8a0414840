package coordinator

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Alerts. The leader evaluates the replicated state every few seconds
// (EvaluateAlerts, a pure function of the state, the time and AlertConfig)
// into the set of problems that exist now, each with a key that names the
// problem ("drill_failed/db"), not the observation. It diffs that set
// against the open alerts (DiffAlerts) and proposes one alerts.sync
// command: new keys open an alert, a changed message updates it (no new
// notification: one ongoing problem is one alert), and open keys no longer
// present resolve. Resolved alerts stay for AlertHistory, so the history is
// visible, and a key that comes back opens a new alert.
//
// Delivery (notify.go) runs on the leader only and records each delivery
// to each target in the replicated state (alert.delivered), so a new leader
// does not resend what was recorded. Delivery is at least once: a leader
// that dies between a receiver's 2xx and the record commits makes the next
// leader send that message again.

// AlertKind names a condition that alerts.
type AlertKind string

// Alert kinds.
const (
	AlertBackupFailed AlertKind = "backup_failed" // a policy's newest backup on an agent failed
	AlertRPOMissed    AlertKind = "rpo_missed"    // no successful backup within the policy's RPO target
	AlertDrillFailed  AlertKind = "drill_failed"  // the newest drill failed (incl. over its RTO target)
	AlertDamage       AlertKind = "verify_damage" // verification found damaged packs
	AlertAgentUnseen  AlertKind = "agent_unseen"  // an agent has not been in touch for too long
	AlertPruneFailed  AlertKind = "prune_failed"  // the newest prune of a policy's repository failed
)

// AlertKinds lists every kind, in the order documentation shows them.
var AlertKinds = []AlertKind{AlertBackupFailed, AlertRPOMissed, AlertDrillFailed, AlertDamage, AlertAgentUnseen, AlertPruneFailed}

// Valid reports whether k is a defined kind.
func (k AlertKind) Valid() bool { return slices.Contains(AlertKinds, k) }

// Title is the kind as a notification headline names it.
func (k AlertKind) Title() string {
	switch k {
	case AlertBackupFailed:
		return "backup failed"
	case AlertRPOMissed:
		return "RPO target missed"
	case AlertDrillFailed:
		return "drill failed"
	case AlertDamage:
		return "verification found damage"
	case AlertAgentUnseen:
		return "agent unseen"
	case AlertPruneFailed:
		return "prune failed"
	}
	return string(k)
}

// Delivery phases (Alert.Delivered values).
const (
	PhaseOpen    = "open"
	PhaseResolve = "resolve"
)

// AlertHistory is how long resolved alerts are kept.
const AlertHistory = 7 * 24 * time.Hour

// Alert is one ongoing (or recently resolved) problem. Its Key identifies
// the problem ("drill_failed/db"), so the same problem is one alert however
// often it is observed.
type Alert struct {
	Key        string    `json:"key"`
	Kind       AlertKind `json:"kind"`
	Subject    string    `json:"subject"` // the policy, agent or repository concerned
	Message    string    `json:"message"`
	OpenedAt   time.Time `json:"opened_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// Since is when the underlying problem began, as far as the state
	// tells (the last good snapshot of an RPO miss, an agent's last
	// contact): notifications say how long ago that was when they are
	// sent, so the stored message never changes just because time passes.
	Since time.Time `json:"since,omitzero"`
	// Delivered maps a target name to the last phase delivered to it
	// ("open" or "resolve").
	Delivered map[string]string `json:"delivered,omitempty"`
}

// Firing reports whether the alert is open.
func (a *Alert) Firing() bool { return a.ResolvedAt.IsZero() }

// AlertTarget kinds.
const (
	TargetWebhook = "webhook" // generic JSON
	TargetSlack   = "slack"   // Slack-compatible incoming webhook
)

// AlertTarget is where alerts are sent.
type AlertTarget struct {
	Name      string      `json:"name"`
	Kind      string      `json:"kind"` // "webhook" (generic JSON) or "slack" (incoming webhook)
	URL       string      `json:"url"`
	Kinds     []AlertKind `json:"kinds,omitempty"` // only these kinds; empty: all
	CreatedAt time.Time   `json:"created_at"`
	CreatedBy string      `json:"created_by,omitempty"`
}

// Wants reports whether alerts of kind k go to the target.
func (t *AlertTarget) Wants(k AlertKind) bool {
	return len(t.Kinds) == 0 || slices.Contains(t.Kinds, k)
}

// AlertConfig holds the thresholds of alert evaluation (Config.Alerts).
type AlertConfig struct {
	// AgentUnseenAfter: a non-revoked agent not in touch for longer is
	// unseen (default 10m; negative: never alert).
	AgentUnseenAfter time.Duration
	// Interval is how often the leader evaluates (default 5s; at most
	// once per tick).
	Interval time.Duration
	// History is how long resolved alerts are kept (default AlertHistory).
	History time.Duration
	// Disabled turns evaluation off (no new alerts; delivery of recorded
	// ones continues).
	Disabled bool
}

func (c AlertConfig) withDefaults() AlertConfig {
	if c.AgentUnseenAfter == 0 {
		c.AgentUnseenAfter = 10 * time.Minute
	}
	if c.Interval <= 0 {
		c.Interval = 5 * time.Second
	}
	if c.History <= 0 {
		c.History = AlertHistory
	}
	return c
}

// ---- commands --------------------------------------------------------------

// SyncAlerts brings the alerts in line with what the leader's evaluation
// found at the command's time. It is idempotent: opening a key that is
// open updates it, and updating or resolving one that is not open is
// ignored, so re-proposing a sync after a failover is harmless.
type SyncAlerts struct {
	Open    []Condition `json:"open,omitempty"`
	Update  []Condition `json:"update,omitempty"`
	Resolve []string    `json:"resolve,omitempty"`
	// Keep lists keys of Open whose resolved previous opening still owes
	// a target a message (DiffAlerts): it is kept, under HistoryKey, so
	// the target gets its resolve before the new opening, instead of the
	// new opening replacing it and the receiver never hearing it resolved.
	Keep []string `json:"keep,omitempty"`
	// PruneBefore deletes resolved alerts resolved before it.
	PruneBefore time.Time `json:"prune_before,omitzero"`
}

// HistoryKey is where State.Alerts keeps an earlier opening of key that
// still owed a message when key opened again (SyncAlerts.Keep).
func HistoryKey(key string, openedAt time.Time) string {
	return key + "@" + openedAt.UTC().Format(time.RFC3339Nano)
}

// minVersion: a prune_failed alert is version 5 (an older node does not
// know the kind and refuses the sync cleanly).
func (p SyncAlerts) minVersion() int {
	if len(p.Keep) > 0 {
		return 9
	}
	for _, list := range [][]Condition{p.Open, p.Update} {
		for _, cd := range list {
			if cd.Kind == AlertPruneFailed {
				return 5
			}
		}
	}
	return 1
}

// SyncAlertsResult counts what a sync changed.
type SyncAlertsResult struct {
	Opened, Updated, Resolved, Pruned int
}

// AlertDelivered records that phase of the alert Key opened at OpenedAt
// was delivered to Target. An acknowledgement for another opening of the
// key (a stale one, after the alert was resolved and opened again), for a
// deleted alert or target, or one that would move a target's phase back is
// ignored.
type AlertDelivered struct {
	Key      string    `json:"key"`
	Target   string    `json:"target"`
	Phase    string    `json:"phase"`
	OpenedAt time.Time `json:"opened_at"`
}

// PutAlertTarget creates or replaces an alert target. The node validates
// it (ValidateAlertTarget) before proposing.
type PutAlertTarget struct {
	Name  string      `json:"name"`
	Kind  string      `json:"kind"`
	URL   string      `json:"url"`
	Kinds []AlertKind `json:"kinds,omitempty"`
}

// DeleteAlertTarget removes an alert target (and its delivery records).
type DeleteAlertTarget struct {
	Name string `json:"name"`
}

func syncAlerts(s *State, c *Command, _ uint64, p *SyncAlerts) (outcome, error) {
	seen := map[string]bool{}
	check := func(key string) error {
		if key == "" {
			return invalid("alert without a key")
		}
		if seen[key] {
			return invalid("alert %q twice in one sync", key)
		}
		seen[key] = true
		return nil
	}
	for _, list := range [][]Condition{p.Open, p.Update} {
		for _, cd := range list {
			if err := check(cd.Key); err != nil {
				return outcome{}, err
			}
			if !cd.Kind.Valid() {
				return outcome{}, invalid("alert %q: kind %q", cd.Key, cd.Kind)
			}
		}
	}
	for _, key := range p.Resolve {
		if err := check(key); err != nil {
			return outcome{}, err
		}
	}
	for _, key := range p.Keep {
		if !slices.ContainsFunc(p.Open, func(cd Condition) bool { return cd.Key == key }) {
			return outcome{}, invalid("alert %q kept but not opened", key)
		}
		if a := s.Alerts[key]; a != nil && !a.Firing() {
			s.Alerts[HistoryKey(key, a.OpenedAt)] = a
		}
	}
	var res SyncAlertsResult
	update := func(a *Alert, cd Condition) bool {
		if a.Subject == cd.Subject && a.Message == cd.Message && a.Since.Equal(cd.Since.UTC()) {
			return false
		}
		a.Subject, a.Message, a.Since, a.UpdatedAt = cd.Subject, cd.Message, cd.Since.UTC(), c.Time
		return true
	}
	for _, cd := range p.Open {
		if a := s.Alerts[cd.Key]; a != nil && a.Firing() {
			if update(a, cd) {
				res.Updated++
			}
			continue
		}
		s.Alerts[cd.Key] = &Alert{Key: cd.Key, Kind: cd.Kind, Subject: cd.Subject, Message: cd.Message,
			Since: cd.Since.UTC(), OpenedAt: c.Time, UpdatedAt: c.Time}
		res.Opened++
	}
	for _, cd := range p.Update {
		if a := s.Alerts[cd.Key]; a != nil && a.Firing() && update(a, cd) {
			res.Updated++
		}
	}
	for _, key := range p.Resolve {
		if a := s.Alerts[key]; a != nil && a.Firing() {
			a.ResolvedAt, a.UpdatedAt = c.Time, c.Time
			res.Resolved++
		}
	}
	if !p.PruneBefore.IsZero() {
		for _, key := range sortedKeys(s.Alerts) {
			if a := s.Alerts[key]; !a.Firing() && a.ResolvedAt.Before(p.PruneBefore) {
				delete(s.Alerts, key)
				res.Pruned++
			}
		}
	}
	noop := res == SyncAlertsResult{}
	return outcome{value: res, target: fmt.Sprintf("%d opened, %d resolved", res.Opened, res.Resolved), noop: noop}, nil
}

func alertDelivered(s *State, _ *Command, _ uint64, p *AlertDelivered) (outcome, error) {
	if p.Phase != PhaseOpen && p.Phase != PhaseResolve {
		return outcome{}, invalid("alert delivery phase %q (want open or resolve)", p.Phase)
	}
	if p.Key == "" || p.Target == "" {
		return outcome{}, invalid("alert delivery without a key or target")
	}
	a := s.Alerts[p.Key]
	if a != nil && !a.OpenedAt.Equal(p.OpenedAt.UTC()) {
		if old := s.Alerts[HistoryKey(p.Key, p.OpenedAt)]; old != nil {
			a = old
		}
	}
	switch {
	case a == nil, !a.OpenedAt.Equal(p.OpenedAt.UTC()), s.AlertTargets[p.Target] == nil,
		a.Delivered[p.Target] == p.Phase, a.Delivered[p.Target] == PhaseResolve,
		p.Phase == PhaseResolve && a.Firing():
		return outcome{value: false, noop: true}, nil
	}
	if a.Delivered == nil {
		a.Delivered = map[string]string{}
	}
	a.Delivered[p.Target] = p.Phase
	return outcome{value: true, target: "alert/" + p.Key}, nil
}

func putAlertTarget(s *State, c *Command, _ uint64, p *PutAlertTarget) (outcome, error) {
	switch {
	case p.Name == "":
		return outcome{}, invalid("alert target without a name")
	case p.Kind != TargetWebhook && p.Kind != TargetSlack:
		return outcome{}, invalid("alert target %q: kind %q (want webhook or slack)", p.Name, p.Kind)
	case p.URL == "":
		return outcome{}, invalid("alert target %q without a URL", p.Name)
	}
	kinds := slices.Clone(p.Kinds)
	slices.Sort(kinds)
	kinds = slices.Compact(kinds)
	t := &AlertTarget{Name: p.Name, Kind: p.Kind, URL: p.URL, Kinds: kinds, CreatedAt: c.Time, CreatedBy: c.Actor}
	if old := s.AlertTargets[p.Name]; old != nil {
		t.CreatedAt, t.CreatedBy = old.CreatedAt, old.CreatedBy
	}
	s.AlertTargets[p.Name] = t
	return outcome{target: "alert-target/" + p.Name}, nil
}

func deleteAlertTarget(s *State, _ *Command, _ uint64, p *DeleteAlertTarget) (outcome, error) {
	if s.AlertTargets[p.Name] == nil {
		return outcome{}, notFound("alert target", p.Name)
	}
	delete(s.AlertTargets, p.Name)
	for _, key := range sortedKeys(s.Alerts) {
		delete(s.Alerts[key].Delivered, p.Name)
		if len(s.Alerts[key].Delivered) == 0 {
			s.Alerts[key].Delivered = nil
		}
	}
	return outcome{target: "alert-target/" + p.Name}, nil
}

// ---- the leader's evaluation ---------------------------------------------------

// alertLoop is the leader loop's alerting bookkeeping.
type alertLoop struct {
	last time.Time // last evaluation (clock time)
	// gap is when an evaluation came a minute or more later than due:
	// the clock jumped forward or the leader was suspended, and agents
	// could not record contact across the gap.
	gap time.Time
}

// evaluateAlerts runs EvaluateAlerts at most every AlertConfig.Interval
// and proposes the sync that brings the replicated alerts in line.
func (n *Node) evaluateAlerts(ctx context.Context) {
	cfg := n.cfg.Alerts.withDefaults()
	now := n.clock.Now().UTC()
	// A clock that stepped back (now before last) evaluates now: waiting
	// for it to catch up would leave alerts unevaluated for the step.
	if cfg.Disabled || (!n.alerting.last.IsZero() && !now.Before(n.alerting.last) && now.Sub(n.alerting.last) < cfg.Interval) {
		return
	}
	if !n.alerting.last.IsZero() && now.Sub(n.alerting.last) > cfg.Interval+time.Minute {
		n.alerting.gap = now
	}
	n.alerting.last = now
	// Agents get AgentUnseenAfter to get back in touch after a gap, as
	// after a leader change.
	started := n.leaderSince
	if n.alerting.gap.After(started) {
		started = n.alerting.gap
	}
	var sync SyncAlerts
	var changed bool
	n.fsm.View(func(s *State) {
		conds := EvaluateAlerts(s, EvalInput{Now: now, Config: cfg, Started: started})
		sync, changed = DiffAlerts(s, conds, now, cfg.History)
	})
	if !changed {
		return
	}
	v, err := n.proposeAt(ctx, now, CmdSyncAlerts, ActorScheduler, sync)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Warn("sync alerts", "err", err)
		}
		return
	}
	if res, ok := v.(SyncAlertsResult); ok && (res.Opened > 0 || res.Resolved > 0) {
		n.log.Info("alerts changed", "opened", res.Opened, "updated", res.Updated, "resolved", res.Resolved, "pruned", res.Pruned)
	}
}
