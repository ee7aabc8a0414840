package coordinator

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestSlackAlertQuotesAgentTextAsPlainText: a job error an agent reports
// (a compromised agent chooses it) is quoted in the backup_failed alert;
// in a Slack message it must not become a mention of the whole channel or
// a link with a label of the agent's choosing. The generic webhook keeps
// the text as reported.
func TestSlackAlertQuotesAgentTextAsPlainText(t *testing.T) {
	c := alertCluster(t, 1)
	hook, slack := newReceiver(t, 0), newReceiver(t, 0)
	c.addTarget("hook", TargetWebhook, hook.URL)
	c.addTarget("chat", TargetSlack, slack.URL)

	const why = "<!channel> disk full & more: open <https://evil.example/login|the lifeboat dashboard>"
	c.must(CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: "j1", Kind: KindBackup, Trigger: TriggerManual, Policy: "p", Agent: "a1",
		ScheduledAt: c.clock.Now(), MaxAttempts: 1}}})
	n := c.nodes[c.leader()]
	j, err := n.LeaseJob(context.Background(), "a1", "j1", time.Minute)
	if err != nil || j == nil {
		t.Fatalf("lease: %v %v", j, err)
	}
	if _, err := n.CompleteJob(context.Background(), CompleteJob{JobID: "j1", Agent: "a1", Token: j.Lease.Token, Error: why}); err != nil {
		t.Fatal(err)
	}
	c.tickUntil(func() bool { _, h := hook.count(); _, m := slack.count(); return h == 1 && m == 1 })

	var sp SlackPayload
	if err := json.Unmarshal([]byte(slack.accepted()[0]), &sp); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(sp.Text, "<>") {
		t.Errorf("slack text holds Slack markup from the agent's error: %q", sp.Text)
	}
	if !strings.Contains(sp.Text, "&lt;!channel&gt; disk full &amp; more: open &lt;https://evil.example/login|the lifeboat dashboard&gt;") {
		t.Errorf("slack text does not show the error as typed: %q", sp.Text)
	}
	if ps := hook.webhooks(t); len(ps) != 1 || !strings.Contains(ps[0].Message, why) {
		t.Errorf("webhook message does not carry the error as reported: %+v", ps)
	}
}
