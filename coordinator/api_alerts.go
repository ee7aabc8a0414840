package coordinator

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// ---- alerts and alert targets ------------------------------------------------

// AlertTargetRequest is the body of POST /v1/alert-targets: it creates a
// target or replaces the one of the same name.
type AlertTargetRequest struct {
	Name  string      `json:"name"`
	Kind  string      `json:"kind,omitempty"` // webhook (default) or slack
	URL   string      `json:"url"`
	Kinds []AlertKind `json:"kinds,omitempty"` // only these kinds; empty: all
}

var targetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidateAlertTarget checks a target request and fills in defaults. Its
// error names the offending field.
func ValidateAlertTarget(r *AlertTargetRequest) error {
	if r.Kind == "" {
		r.Kind = TargetWebhook
	}
	if !targetName.MatchString(r.Name) {
		return badRequest("name: %q is not a valid target name (letters, digits, '.', '_', '-'; at most 63)", r.Name)
	}
	if r.Kind != TargetWebhook && r.Kind != TargetSlack {
		return badRequest("kind: %q is not a target kind (want webhook or slack)", r.Kind)
	}
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || len(r.URL) > 2048 {
		return badRequest("url: must be an http:// or https:// URL with a host (and no user info)")
	}
	for _, k := range r.Kinds {
		if !k.Valid() {
			var names []string
			for _, v := range AlertKinds {
				names = append(names, string(v))
			}
			return badRequest("kinds: %q is not an alert kind (want %s)", k, strings.Join(names, ", "))
		}
	}
	return nil
}

// AlertTargetView is a target as the API lists it: the URL reduced to
// scheme and host, since a Slack webhook URL is a secret.
type AlertTargetView struct {
	AlertTarget
}

func (a *API) listAlertTargets(w http.ResponseWriter, _ *http.Request, _ *call) error {
	out := []AlertTargetView{}
	a.node.View(func(s *State) {
		for _, name := range sortedKeys(s.AlertTargets) {
			t := *s.AlertTargets[name]
			t.URL = RedactURL(t.URL)
			t.Kinds = append([]AlertKind(nil), t.Kinds...)
			out = append(out, AlertTargetView{t})
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) addAlertTarget(w http.ResponseWriter, r *http.Request, c *call) error {
	var q AlertTargetRequest
	if err := decodeJSON(c.body, &q); err != nil {
		return err
	}
	if err := ValidateAlertTarget(&q); err != nil {
		return err
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.apply(func() error {
		_, err := a.node.Propose(ctx, CmdPutAlertTarget, c.p.Actor, PutAlertTarget{Name: q.Name, Kind: q.Kind, URL: q.URL, Kinds: q.Kinds})
		return err
	}); err != nil {
		return err
	}
	var view AlertTargetView
	a.node.View(func(s *State) {
		if t := s.AlertTargets[q.Name]; t != nil {
			view.AlertTarget = *t
			view.URL = RedactURL(t.URL)
		}
	})
	writeJSON(w, http.StatusOK, view)
	return nil
}

func (a *API) removeAlertTarget(w http.ResponseWriter, r *http.Request, c *call) error {
	return a.proposeNamed(w, r, c, "name", "deleted", func(name string) (CommandType, any) {
		return CmdDeleteAlertTarget, DeleteAlertTarget{Name: name}
	})
}

// AlertTestResult answers POST /v1/alert-targets/{name}/test.
type AlertTestResult struct {
	Target    string `json:"target"`
	Node      string `json:"node"` // the node that sent it
	Delivered bool   `json:"delivered"`
}

func (a *API) testAlertTarget(w http.ResponseWriter, r *http.Request, _ *call) error {
	name, err := pathName(r, "name")
	if err != nil {
		return err
	}
	if err := a.node.TestAlertTarget(r.Context(), name); err != nil {
		if errors.Is(err, ErrNotFound) {
			return err
		}
		return &apiError{status: http.StatusBadGateway, msg: "test message not delivered: " + err.Error()}
	}
	writeJSON(w, http.StatusOK, AlertTestResult{Target: name, Node: a.node.ID(), Delivered: true})
	return nil
}

// AlertView is an alert as the API lists it.
type AlertView struct {
	Alert
	Status string `json:"status"` // "firing" or "resolved"
}

// listAlerts answers GET /v1/alerts: the open alerts, newest first; with
// ?all=1 the resolved ones kept in history too.
func (a *API) listAlerts(w http.ResponseWriter, r *http.Request, _ *call) error {
	all := false
	switch v := r.URL.Query().Get("all"); v {
	case "", "0", "false":
	case "1", "true":
		all = true
	default:
		return badRequest("all=%q: want 1 or 0", v)
	}
	out := []AlertView{}
	a.node.View(func(s *State) {
		for _, key := range sortedKeys(s.Alerts) {
			al := s.Alerts[key]
			if !al.Firing() && !all {
				continue
			}
			v := AlertView{Alert: cloneJSON(*al), Status: "firing"}
			if !al.Firing() {
				v.Status = "resolved"
			}
			out = append(out, v)
		}
	})
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].Status == "firing") != (out[j].Status == "firing") {
			return out[i].Status == "firing"
		}
		return out[i].OpenedAt.After(out[j].OpenedAt)
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}
