package coordinator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestAPIAlertTargets(t *testing.T) {
	c := newAPICluster(t, 1)
	u := c.url(0)
	ro, op := c.token(RoleReadOnly), c.token(RoleOperator)
	good := newReceiver(t, 0)
	bad := newReceiver(t, 1000)

	// Validation: 400 naming the field; nothing stored.
	for _, tc := range []struct {
		req   any
		field string
	}{
		{AlertTargetRequest{Name: "x", URL: "ftp://example.com/hook"}, "url"},
		{AlertTargetRequest{Name: "x", URL: "not a url"}, "url"},
		{AlertTargetRequest{Name: "x", URL: "https://"}, "url"},
		{AlertTargetRequest{Name: "x", URL: "https://user:pw@example.com/"}, "url"},
		{AlertTargetRequest{Name: "x", Kind: "email", URL: "https://example.com/"}, "kind"},
		{AlertTargetRequest{Name: "x", URL: "https://example.com/", Kinds: []AlertKind{"disk_full"}}, "kinds"},
		{AlertTargetRequest{Name: "a/b", URL: "https://example.com/"}, "name"},
		{AlertTargetRequest{Name: "", URL: "https://example.com/"}, "name"},
		{map[string]any{"name": "x", "url": "https://example.com/", "secret": 1}, "unknown field"},
	} {
		status, b := httpCall(t, http.MethodPost, u+"/v1/alert-targets", c.admin, tc.req, "")
		if eb := errBody(t, status, b, http.StatusBadRequest); !strings.Contains(eb.Error, tc.field) {
			t.Errorf("%+v: error %q does not name %q", tc.req, eb.Error, tc.field)
		}
	}

	// Authorization: only admins change targets.
	req := AlertTargetRequest{Name: "chat", Kind: TargetSlack, URL: good.URL + "/services/T000/B000/SECRET", Kinds: []AlertKind{AlertDrillFailed}}
	for _, tok := range []string{ro, op} {
		status, b := httpCall(t, http.MethodPost, u+"/v1/alert-targets", tok, req, "")
		errBody(t, status, b, http.StatusForbidden)
	}
	var saved AlertTargetView
	c.mustJSON(http.MethodPost, u+"/v1/alert-targets", c.admin, req, &saved)
	c.mustJSON(http.MethodPost, u+"/v1/alert-targets", c.admin, AlertTargetRequest{Name: "broken", URL: bad.URL}, nil)

	// Listing (read-only may) shows URLs without their secret path.
	status, b := httpCall(t, http.MethodGet, u+"/v1/alert-targets", ro, nil, "")
	var list []AlertTargetView
	if status != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list) != 2 {
		t.Fatalf("list: %d %s", status, b)
	}
	if strings.Contains(string(b), "SECRET") || strings.Contains(saved.URL, "SECRET") || !strings.HasSuffix(list[1].URL, "/…") ||
		list[1].Name != "chat" || list[1].Kind != TargetSlack || len(list[1].Kinds) != 1 || list[0].Kind != TargetWebhook {
		t.Errorf("list %s, saved %+v", b, saved)
	}

	// Test sends: delivered, or 502 with the receiver's answer.
	var res AlertTestResult
	c.mustJSON(http.MethodPost, u+"/v1/alert-targets/chat/test", op, nil, &res)
	if !res.Delivered || res.Node != "n0" {
		t.Errorf("test result %+v", res)
	}
	if got := good.accepted(); len(got) != 1 || !strings.Contains(got[0], `"text":":wave: [lifeboat] test message`) {
		t.Errorf("receiver got %v", got)
	}
	status, b = httpCall(t, http.MethodPost, u+"/v1/alert-targets/broken/test", op, nil, "")
	if eb := errBody(t, status, b, http.StatusBadGateway); !strings.Contains(eb.Error, "HTTP 500") || !strings.Contains(eb.Error, "receiver is down") ||
		strings.Contains(eb.Error, bad.URL) {
		t.Errorf("502 error %q", eb.Error)
	}
	status, b = httpCall(t, http.MethodPost, u+"/v1/alert-targets/nope/test", op, nil, "")
	errBody(t, status, b, http.StatusNotFound)
	status, b = httpCall(t, http.MethodPost, u+"/v1/alert-targets/chat/test", ro, nil, "")
	errBody(t, status, b, http.StatusForbidden)

	// Alerts: none yet.
	status, b = httpCall(t, http.MethodGet, u+"/v1/alerts?all=1", ro, nil, "")
	if status != http.StatusOK || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("alerts: %d %s", status, b)
	}
	status, b = httpCall(t, http.MethodGet, u+"/v1/alerts?all=maybe", ro, nil, "")
	errBody(t, status, b, http.StatusBadRequest)

	// Removal.
	status, b = httpCall(t, http.MethodDelete, u+"/v1/alert-targets/chat", op, nil, "")
	errBody(t, status, b, http.StatusForbidden)
	c.mustJSON(http.MethodDelete, u+"/v1/alert-targets/chat", c.admin, nil, nil)
	status, b = httpCall(t, http.MethodDelete, u+"/v1/alert-targets/chat", c.admin, nil, "")
	errBody(t, status, b, http.StatusNotFound)
}

func TestAPIAlertsListed(t *testing.T) {
	c := newAPICluster(t, 1)
	u := c.url(0)
	l := c.nodes[c.leader()]
	ctx := t.Context()
	sync := SyncAlerts{Open: []Condition{
		{Key: "agent_unseen/a1", Kind: AlertAgentUnseen, Subject: "a1", Message: "agent a1 has not been in touch"},
		{Key: "drill_failed/db", Kind: AlertDrillFailed, Subject: "db", Message: "drill failed"},
	}}
	if _, err := l.Propose(ctx, CmdSyncAlerts, ActorScheduler, sync); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Propose(ctx, CmdSyncAlerts, ActorScheduler, SyncAlerts{Resolve: []string{"agent_unseen/a1"}}); err != nil {
		t.Fatal(err)
	}
	ro := c.token(RoleReadOnly)
	var open, all []AlertView
	c.mustJSON(http.MethodGet, u+"/v1/alerts", ro, nil, &open)
	c.mustJSON(http.MethodGet, u+"/v1/alerts?all=1", ro, nil, &all)
	if len(open) != 1 || open[0].Key != "drill_failed/db" || open[0].Status != "firing" {
		t.Errorf("open alerts %+v", open)
	}
	if len(all) != 2 || all[0].Status != "firing" || all[1].Status != "resolved" || all[1].ResolvedAt.IsZero() {
		t.Errorf("all alerts %+v", all)
	}
	status, b := httpCall(t, http.MethodGet, u+"/metrics", "", nil, "")
	if status != http.StatusOK || !strings.Contains(string(b), `lifeboat_alerts_open{kind="drill_failed"} 1`) ||
		!strings.Contains(string(b), `lifeboat_alerts_open{kind="agent_unseen"} 0`) {
		t.Errorf("metrics lack the open alerts gauge")
	}
}
