package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Delivery of alerts. The notifier runs on the leader only, next to the
// leader loop. After a barrier (so it sees every delivery an earlier leader
// recorded) it walks alerts × targets and sends what lags behind: the open
// message of an alert not yet delivered to a target, and the resolve
// message of a resolved alert whose open was delivered. An alert resolved
// before its open got through sends both, in order: the operator should
// know a problem happened. A target added after an alert was resolved gets
// nothing for it.
//
// Each delivery is one HTTP POST with a timeout; a 2xx answer is recorded
// with alert.delivered (carrying the alert's opened_at, so an answer about
// an earlier opening of the same key changes nothing). A failure is retried
// with jittered exponential backoff (NotifyConfig), kept in memory: a new
// leader starts the backoff afresh. A leader that dies between the POST and
// the record makes the next one send the same message again: delivery is at
// least once, never silently dropped.

// NotifyConfig configures alert delivery (Config.Notify).
type NotifyConfig struct {
	// Client sends the webhooks (default: a plain client; Timeout bounds
	// each attempt). Redirects are never followed, whatever the client's
	// CheckRedirect: a 3xx answer is a failed delivery.
	Client *http.Client
	// Timeout bounds one delivery attempt (default 10s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a retry: MinBackoff
	// doubling per failed attempt up to MaxBackoff, jittered (defaults 1s
	// and 5m).
	MinBackoff, MaxBackoff time.Duration
	// Parallel bounds deliveries in flight to one target (default 4), so
	// a target that does not answer holds up only its own messages.
	Parallel int
	// DashboardURL, if set, is sent with generic webhooks.
	DashboardURL string
	// Disabled stops delivery (alerts are still recorded).
	Disabled bool
}

func (c NotifyConfig) withDefaults() NotifyConfig {
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.Parallel <= 0 {
		c.Parallel = 4
	}
	return c
}

// WebhookPayload is the JSON body a generic webhook target receives.
type WebhookPayload struct {
	Kind       AlertKind `json:"kind"` // or "test"
	Key        string    `json:"key"`
	Subject    string    `json:"subject"`
	Status     string    `json:"status"` // "firing" or "resolved"
	Message    string    `json:"message"`
	OpenedAt   time.Time `json:"opened_at"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	ClusterID  string    `json:"cluster_id"`
	Dashboard  string    `json:"dashboard,omitempty"`
}

// SlackPayload is what a Slack-compatible incoming webhook receives.
type SlackPayload struct {
	Text string `json:"text"`
}

// DeliveryError is a receiver's refusal (a non-2xx answer).
type DeliveryError struct {
	Target string
	Status int
	Body   string // the start of the answer
}

func (e *DeliveryError) Error() string {
	msg := fmt.Sprintf("alert target %q: receiver answered HTTP %d", e.Target, e.Status)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// alertText is the alert's message as a notification sent at now shows
// it: for problems that grow with time, how long it has been.
func alertText(a *Alert, now time.Time) string {
	if a.Firing() && !a.Since.IsZero() && (a.Kind == AlertRPOMissed || a.Kind == AlertAgentUnseen) {
		return fmt.Sprintf("%s (%s ago)", a.Message, Duration(max(now.Sub(a.Since), 0).Round(time.Second)))
	}
	return a.Message
}

// subjectPhrase names what an alert is about ("policy db on agent a1").
func subjectPhrase(k AlertKind, subject string) string {
	switch k {
	case AlertBackupFailed, AlertRPOMissed:
		if p, a, ok := strings.Cut(subject, "/"); ok {
			return "policy " + p + " on agent " + a
		}
		return "policy " + subject
	case AlertDrillFailed, AlertPruneFailed:
		return "policy " + subject
	case AlertDamage:
		return "repository " + subject
	case AlertAgentUnseen:
		return "agent " + subject
	}
	return subject
}

// alertBody encodes what target receives for phase of alert a at now.
func alertBody(t *AlertTarget, a *Alert, phase, clusterID, dashboard string, now time.Time) ([]byte, error) {
	text := alertText(a, now)
	if t.Kind == TargetSlack {
		head := ":rotating_light: [lifeboat] "
		if phase == PhaseResolve {
			head = ":white_check_mark: [lifeboat] resolved: "
		}
		return json.Marshal(SlackPayload{Text: head + slackEscape(a.Kind.Title()+": "+subjectPhrase(a.Kind, a.Subject)+" — "+text)})
	}
	p := WebhookPayload{Kind: a.Kind, Key: a.Key, Subject: a.Subject, Status: "firing", Message: text, OpenedAt: a.OpenedAt,
		ClusterID: clusterID, Dashboard: dashboard}
	if phase == PhaseResolve {
		p.Status, p.ResolvedAt = "resolved", a.ResolvedAt
	}
	return json.Marshal(p)
}

// slackEscape makes s plain text in a Slack message: Slack reads
// "<!channel>", "<@U123>" and "<https://x|label>" in a message's text as
// mentions and links, and an alert quotes what agents report (a job's
// error, a drill's output), which a compromised agent chooses. Slack's
// own escapes for '&', '<' and '>' show them as typed.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// testBody encodes a test message for target.
func testBody(t *AlertTarget, node, clusterID, dashboard string, now time.Time) ([]byte, error) {
	msg := fmt.Sprintf("test message from lifeboat node %s: alert target %s works", node, t.Name)
	if t.Kind == TargetSlack {
		return json.Marshal(SlackPayload{Text: ":wave: [lifeboat] " + msg})
	}
	return json.Marshal(WebhookPayload{Kind: "test", Key: "test", Subject: t.Name, Status: "firing", Message: msg, OpenedAt: now,
		ClusterID: clusterID, Dashboard: dashboard})
}

// postAlert POSTs body to target. Errors never contain the URL: a Slack
// webhook URL is a secret. A redirect is not followed: the answer is a
// 3xx, a failed delivery. Following it would send the alert (and, for a
// 307/308, its body again) to wherever the receiver points, and a
// coordinator may reach addresses its operators cannot.
func postAlert(ctx context.Context, hc *http.Client, timeout time.Duration, t *AlertTarget, body []byte) error {
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hc = &c
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("alert target %q: invalid URL", t.Name)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lifeboat-alerts")
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return fmt.Errorf("alert target %q: no answer from %s within %s (is the receiver up and fast enough?)", t.Name, RedactURL(t.URL), Duration(timeout))
		}
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return fmt.Errorf("alert target %q: post to %s: %w", t.Name, RedactURL(t.URL), err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return &DeliveryError{Target: t.Name, Status: resp.StatusCode, Body: strings.TrimSpace(string(head))}
	}
	return nil
}

// RedactURL shows only scheme and host of a target URL: a Slack incoming
// webhook's path is its secret.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// TestAlertTarget sends a test message to the named target now, once,
// from this node, and returns the receiver's refusal or the error.
func (n *Node) TestAlertTarget(ctx context.Context, name string) error {
	cfg := n.cfg.Notify.withDefaults()
	var t *AlertTarget
	var clusterID string
	n.fsm.View(func(s *State) {
		if at := s.AlertTargets[name]; at != nil {
			c := *at
			t = &c
		}
		if s.Cluster != nil {
			clusterID = s.Cluster.ID
		}
	})
	if t == nil {
		return notFound("alert target", name)
	}
	body, err := testBody(t, n.ID(), clusterID, cfg.DashboardURL, n.clock.Now().UTC())
	if err != nil {
		return err
	}
	return postAlert(ctx, cfg.Client, cfg.Timeout, t, body)
}

// ---- the notifier ----------------------------------------------------------------

// delivery is one message owed to one target.
type delivery struct {
	alert  Alert
	target AlertTarget
	phase  string
}

func (d *delivery) id() string {
	return d.alert.Key + "\x00" + d.alert.OpenedAt.Format(time.RFC3339Nano) + "\x00" + d.target.Name + "\x00" + d.phase
}

// owedPhase is the message about a that t is owed ("" for none): the
// open one of an alert of a kind it wants not yet delivered to it, the
// resolve one of a resolved alert whose open was (even if its kinds were
// narrowed since: its receiver would show the alert firing forever).
func owedPhase(a *Alert, t *AlertTarget) string {
	done := a.Delivered[t.Name]
	switch {
	case done == "" && t.Wants(a.Kind) && (a.Firing() || a.ResolvedAt.After(t.CreatedAt)):
		return PhaseOpen
	case done == PhaseOpen && !a.Firing():
		return PhaseResolve
	}
	return ""
}

// pendingDeliveries returns what is owed to the targets in s, alert by
// alert (sorted by key and opening), then target by target. Of the
// openings of one key (earlier ones kept by SyncAlerts.Keep) a target
// gets one at a time, oldest first, so it hears them in order.
func pendingDeliveries(s *State) []delivery {
	alerts := make([]*Alert, 0, len(s.Alerts))
	for _, a := range s.Alerts {
		alerts = append(alerts, a)
	}
	slices.SortFunc(alerts, func(a, b *Alert) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return a.OpenedAt.Compare(b.OpenedAt)
	})
	var out []delivery
	busy := map[string]bool{} // key and target with an earlier opening owed
	for _, a := range alerts {
		for _, name := range sortedKeys(s.AlertTargets) {
			t := s.AlertTargets[name]
			phase := owedPhase(a, t)
			if phase == "" || busy[a.Key+"\x00"+name] {
				continue
			}
			busy[a.Key+"\x00"+name] = true
			out = append(out, delivery{alert: *a, target: *t, phase: phase})
		}
	}
	return out
}

type retryState struct {
	attempts int
	next     time.Time
}

// notifier is the delivery loop of one leadership term.
type notifier struct {
	n   *Node
	cfg NotifyConfig
	wg  sync.WaitGroup

	mu       sync.Mutex
	inflight map[string]bool
	busy     map[string]int // deliveries in flight by target
	retry    map[string]*retryState
	sent     map[string]bool // delivered; the record is still to be made
	wake     chan struct{}
}

// startNotifier runs the notifier until ctx ends; the returned function
// waits for it (and its deliveries in flight) to stop.
func (n *Node) startNotifier(ctx context.Context) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		nt := &notifier{n: n, cfg: n.cfg.Notify.withDefaults(), inflight: map[string]bool{}, busy: map[string]int{}, retry: map[string]*retryState{},
			sent: map[string]bool{}, wake: make(chan struct{}, 1)}
		nt.run(ctx)
		nt.wg.Wait()
	}()
	return func() { <-done }
}

func (nt *notifier) run(ctx context.Context) {
	if nt.cfg.Disabled {
		return
	}
	for {
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := nt.n.raft.Barrier(bctx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrShutdown) {
			return
		}
	}
	for {
		changed := nt.n.fsm.Changed()
		wait := nt.dispatch(ctx)
		var timer <-chan time.Time
		if wait > 0 {
			timer = nt.n.clock.After(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-timer:
		case <-nt.wake:
		}
	}
}

// dispatch starts the deliveries that are due and returns how long until
// the next retry is (0: none waiting).
func (nt *notifier) dispatch(ctx context.Context) time.Duration {
	now := nt.n.clock.Now().UTC()
	var due []delivery
	var clusterID string
	nt.n.fsm.View(func(s *State) {
		due = pendingDeliveries(s)
		if s.Cluster != nil {
			clusterID = s.Cluster.ID
		}
	})
	nt.mu.Lock()
	defer nt.mu.Unlock()
	owed := map[string]bool{}
	var wait time.Duration
	for i := range due {
		d := &due[i]
		id := d.id()
		owed[id] = true
		if nt.inflight[id] {
			continue
		}
		// A retry more than MaxBackoff away was scheduled before the
		// clock stepped back: it is due, not due after the step too.
		if r := nt.retry[id]; r != nil && now.Before(r.next) && r.next.Sub(now) <= nt.cfg.MaxBackoff {
			if w := r.next.Sub(now); wait == 0 || w < wait {
				wait = w
			}
			continue
		}
		if nt.busy[d.target.Name] >= nt.cfg.Parallel {
			continue // a finishing delivery wakes the loop
		}
		nt.inflight[id] = true
		nt.busy[d.target.Name]++
		nt.wg.Add(1)
		go nt.deliver(ctx, *d, id, clusterID)
	}
	for id := range nt.retry {
		if !owed[id] && !nt.inflight[id] {
			delete(nt.retry, id)
		}
	}
	for id := range nt.sent {
		if !owed[id] && !nt.inflight[id] {
			delete(nt.sent, id)
		}
	}
	return wait
}

func (nt *notifier) deliver(ctx context.Context, d delivery, id, clusterID string) {
	defer nt.wg.Done()
	err := nt.send(ctx, d, id, clusterID)
	nt.mu.Lock()
	delete(nt.inflight, id)
	if nt.busy[d.target.Name]--; nt.busy[d.target.Name] <= 0 {
		delete(nt.busy, d.target.Name)
	}
	if err != nil && ctx.Err() == nil {
		r := nt.retry[id]
		if r == nil {
			r = &retryState{}
			nt.retry[id] = r
		}
		r.attempts++
		wait := nt.backoff(r.attempts)
		r.next = nt.n.clock.Now().UTC().Add(wait)
		nt.n.log.Warn("alert delivery failed; will retry", "alert", d.alert.Key, "target", d.target.Name, "phase", d.phase,
			"attempt", r.attempts, "retry_in", wait, "err", err)
	} else {
		delete(nt.retry, id)
	}
	nt.mu.Unlock()
	select {
	case nt.wake <- struct{}{}:
	default:
	}
}

// send posts the message unless an earlier attempt did, then records it.
func (nt *notifier) send(ctx context.Context, d delivery, id, clusterID string) error {
	nt.mu.Lock()
	sent := nt.sent[id]
	nt.mu.Unlock()
	if !sent {
		body, err := alertBody(&d.target, &d.alert, d.phase, clusterID, nt.cfg.DashboardURL, nt.n.clock.Now().UTC())
		if err == nil {
			err = postAlert(ctx, nt.cfg.Client, nt.cfg.Timeout, &d.target, body)
		}
		// An attempt cut short by the end of this node's leadership is
		// not the target's failure: the next leader sends it again.
		if err == nil || ctx.Err() == nil {
			nt.n.deliveries.add(d.target.Name, err == nil)
		}
		if err != nil {
			return err
		}
		nt.mu.Lock()
		nt.sent[id] = true
		nt.mu.Unlock()
		nt.n.log.Info("alert delivered", "alert", d.alert.Key, "target", d.target.Name, "phase", d.phase)
	}
	_, err := nt.n.proposeAt(ctx, nt.n.clock.Now().UTC(), CmdAlertDelivered, ActorScheduler,
		AlertDelivered{Key: d.alert.Key, Target: d.target.Name, Phase: d.phase, OpenedAt: d.alert.OpenedAt})
	if err != nil {
		return fmt.Errorf("record delivery: %w", err)
	}
	nt.mu.Lock()
	delete(nt.sent, id)
	nt.mu.Unlock()
	return nil
}

// backoff is the wait after the attempt-th failure: MinBackoff doubling,
// capped at MaxBackoff, with jitter in [d/2, d].
func (nt *notifier) backoff(attempt int) time.Duration {
	d := nt.cfg.MinBackoff
	for i := 1; i < attempt && d < nt.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, nt.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// deliveryCounts counts the alert messages a node posted, by target and
// result, for lifeboat_alert_deliveries_total. It counts attempts: a
// message refused twice and then accepted is two failed and one delivered.
type deliveryCounts struct {
	mu sync.Mutex
	n  map[string]*[2]uint64 // by target: delivered, failed
}

func (c *deliveryCounts) add(target string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]*[2]uint64{}
	}
	v := c.n[target]
	if v == nil {
		v = new([2]uint64)
		c.n[target] = v
	}
	if ok {
		v[0]++
	} else {
		v[1]++
	}
}

// each calls fn for every target a message was posted to, both results
// included (a target that never failed reports 0 failed).
func (c *deliveryCounts) each(fn func(target string, delivered, failed uint64)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for t, v := range c.n {
		fn(t, v[0], v[1])
	}
}
