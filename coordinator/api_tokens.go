package coordinator

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ---- audit and tokens --------------------------------------------------------------

// AuditView is an audit entry with the actor's token name and role.
type AuditView struct {
	AuditEntry
	ActorName string `json:"actor_name,omitempty"`
	ActorRole Role   `json:"actor_role,omitempty"`
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request, _ *call) error {
	q := r.URL.Query()
	limit, since := 100, uint64(0)
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return badRequest("limit=%q: want a positive number", v)
		}
		limit = n
	}
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badRequest("since=%q: want an audit sequence number", v)
		}
		since = n
	}
	out := []AuditView{}
	a.node.View(func(s *State) {
		for _, e := range s.Audit {
			if e.Seq <= since {
				continue
			}
			v := AuditView{AuditEntry: e}
			if id, ok := strings.CutPrefix(e.Actor, "token:"); ok {
				if tk := s.Tokens[id]; tk != nil {
					v.ActorName, v.ActorRole = tk.Name, tk.Role
				}
			}
			out = append(out, v)
		}
	})
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// TokenCreateRequest is the body of POST /v1/tokens.
type TokenCreateRequest struct {
	Role Role     `json:"role"`
	Name string   `json:"name,omitempty"`
	TTL  Duration `json:"ttl,omitempty"` // 0: no expiry
}

// TokenCreateResult carries the new token, shown this once.
type TokenCreateResult struct {
	ID      string    `json:"id"`
	Token   string    `json:"token"`
	Role    Role      `json:"role"`
	Name    string    `json:"name,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
}

// TokenView is a token without its hash.
type TokenView struct {
	ID        string    `json:"id"`
	Role      Role      `json:"role"`
	Name      string    `json:"name,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request, c *call) error {
	var q TokenCreateRequest
	if err := decodeJSON(c.body, &q); err != nil {
		return err
	}
	if !q.Role.Valid() {
		return badRequest("role %q: want admin, operator, agent or read-only", q.Role)
	}
	if q.TTL < 0 || len(q.Name) > 200 {
		return badRequest("ttl must not be negative and name at most 200 bytes")
	}
	if err := plainText("name", q.Name); err != nil {
		return err
	}
	var exp time.Time
	if q.TTL > 0 {
		exp = a.clock.Now().UTC().Add(time.Duration(q.TTL))
	}
	ct, plain := NewAPIToken(q.Role, q.Name, exp)
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.apply(func() error { _, err := a.node.Propose(ctx, CmdCreateToken, c.p.Actor, ct); return err }); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, TokenCreateResult{ID: ct.ID, Token: plain, Role: ct.Role, Name: ct.Name, Expires: exp})
	return nil
}

func (a *API) listTokens(w http.ResponseWriter, _ *http.Request, _ *call) error {
	out := []TokenView{}
	a.node.View(func(s *State) {
		for _, id := range sortedKeys(s.Tokens) {
			t := s.Tokens[id]
			out = append(out, TokenView{ID: t.ID, Role: t.Role, Name: t.Name, Expires: t.Expires, CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy})
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request, c *call) error {
	// The FSM refuses to revoke the last admin token (see revokeToken in
	// fsm.go), judging expiry at the instant set here. Only admin tokens
	// need it (a token's role never changes), so revoking others stays a
	// version-1 command that nodes older than the rule apply too.
	now := a.clock.Now().UTC()
	return a.proposeNamed(w, r, c, "id", "revoked", func(key string) (CommandType, any) {
		// A token this node does not know yet may be an admin one.
		other := false
		a.node.View(func(s *State) { other = s.Tokens[key] != nil && s.Tokens[key].Role != RoleAdmin })
		if other {
			return CmdRevokeToken, RevokeToken{ID: key}
		}
		return CmdRevokeToken, RevokeToken{ID: key, CheckedAt: now}
	})
}

// JoinTokenRequest is the body of POST /v1/join-tokens.
type JoinTokenRequest struct {
	Labels  map[string]string `json:"labels,omitempty"`
	TTL     Duration          `json:"ttl,omitempty"`
	MaxUses int               `json:"max_uses,omitempty"`
	// Grants lets the agents enrolled with it announce these
	// capabilities (["drill"]: drill runners).
	Grants []string `json:"grants,omitempty"`
	// FixedLabels: the agents enrolled with it get exactly Labels; an
	// enrolment that asks for any other label is refused (409).
	FixedLabels bool `json:"fixed_labels,omitempty"`
}

func (a *API) createJoinToken(w http.ResponseWriter, r *http.Request, c *call) error {
	var q JoinTokenRequest
	if err := decodeJSON(c.body, &q); err != nil {
		return err
	}
	if q.TTL < 0 || q.MaxUses < 0 {
		return badRequest("ttl and max_uses must not be negative")
	}
	if err := plainLabels("labels", q.Labels); err != nil {
		return err
	}
	var exp time.Time
	if q.TTL > 0 {
		exp = a.clock.Now().UTC().Add(time.Duration(q.TTL))
	}
	if err := checkCapabilities(q.Grants); err != nil {
		return err
	}
	jt, plain := NewJoinToken(q.Labels, exp, q.MaxUses)
	jt.Grants, jt.FixedLabels = q.Grants, q.FixedLabels
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.apply(func() error { _, err := a.node.Propose(ctx, CmdCreateJoinToken, c.p.Actor, jt); return err }); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, TokenCreateResult{ID: jt.ID, Token: plain, Expires: exp})
	return nil
}

// revokeJoinToken deletes a join token: a leaked one (unlimited uses by
// default, or no expiry) enrolls no more agents. Agents it enrolled keep
// their own credentials (revoke them with POST /v1/agents/{name}/revoke).
func (a *API) revokeJoinToken(w http.ResponseWriter, r *http.Request, c *call) error {
	return a.proposeNamed(w, r, c, "id", "revoked", func(key string) (CommandType, any) {
		return CmdRevokeJoinToken, RevokeJoinToken{ID: key}
	})
}
