// The state machine's transitions of agents, their join tokens and the
// API tokens (see fsm.go).

package coordinator

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// --- agents and tokens ---

func checkHash(h string) error {
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
		return fmt.Errorf("hash must be 64 hex digits (SHA-256)")
	}
	return nil
}

func enrollAgent(s *State, c *Command, _ uint64, p *EnrollAgent) (outcome, error) {
	if p.Name == "" {
		return outcome{}, invalid("agent without a name")
	}
	if err := checkHash(p.CredentialHash); err != nil {
		return outcome{}, invalid("agent %q: credential %v", p.Name, err)
	}
	old := s.Agents[p.Name]
	if old != nil && old.Revoked {
		return outcome{}, fmt.Errorf("agent %q: %w: enroll it under a new name", p.Name, ErrRevoked)
	}
	if old != nil && !p.Replace {
		return outcome{}, conflict("agent %q is already enrolled; an admin can re-enroll it (replacing its credential) or revoke it", p.Name)
	}
	var jt *JoinToken
	if p.JoinToken != "" {
		jt = s.JoinTokens[p.JoinToken]
		switch {
		case jt == nil:
			return outcome{}, notFound("join token", p.JoinToken)
		case !jt.Expires.IsZero() && !c.Time.Before(jt.Expires):
			return outcome{}, conflict("join token %q expired at %s", jt.ID, jt.Expires.Format(time.RFC3339))
		case jt.MaxUses > 0 && jt.Uses >= jt.MaxUses:
			return outcome{}, conflict("join token %q has been used %d times, its limit", jt.ID, jt.Uses)
		}
	}
	// A join token with fixed labels decides the agent's labels, and an
	// agent enrolled with one keeps them when an admin re-enrolls it:
	// otherwise a machine holding the token could ask for the labels of
	// another policy's agents and be given that repository's writer key.
	var fixed map[string]string
	isFixed := (jt != nil && jt.FixedLabels) || (old != nil && old.FixedLabels)
	switch {
	case jt != nil && jt.FixedLabels:
		fixed = jt.Labels
		if bad := labelsOutside(p.Labels, fixed); bad != "" {
			return outcome{}, conflict("join token %q fixes the labels of the agents it enrolls to {%s}: agent %q may not set %s; "+
				"start the agent without --label (or with only those labels), or have an admin create a token with the labels it should have", jt.ID, labelList(fixed), p.Name, bad)
		}
	case old != nil && old.FixedLabels:
		fixed = old.Labels
		if bad := labelsOutside(p.Labels, fixed); bad != "" {
			return outcome{}, conflict("agent %q was enrolled with fixed labels {%s}: re-enrolling it may not set %s; "+
				"re-enroll it without labels (it keeps its own), or revoke it and enroll it under a new name with a join token that has the labels it should have", p.Name, labelList(fixed), bad)
		}
	}
	labels := cloneMap(p.Labels)
	if isFixed {
		labels = cloneMap(fixed)
	}
	if jt != nil {
		jt.Uses++
		for k, v := range jt.Labels {
			if labels == nil {
				labels = map[string]string{}
			}
			labels[k] = v
		}
	}
	grants := sortedStrings(p.Grants)
	if jt != nil {
		grants = sortedStrings(append(grants, jt.Grants...))
	}
	a := &Agent{Name: p.Name, Labels: labels, Version: p.Version, CredentialHash: p.CredentialHash,
		EnrolledAt: c.Time, LastSeen: c.Time, MaxConcurrent: p.MaxConcurrent, Grants: grants,
		Capabilities: granted(p.Capabilities, grants), FixedLabels: isFixed}
	if old != nil {
		a.Running = old.Running
	}
	s.Agents[p.Name] = a
	return outcome{value: a.Name, target: "agent/" + p.Name}, nil
}

// labelsOutside lists, sorted as "k=v, ...", the labels of asked that
// fixed does not have with the same value ("" if none).
func labelsOutside(asked, fixed map[string]string) string {
	var bad []string
	for _, k := range sortedKeys(asked) {
		if v, ok := fixed[k]; !ok || v != asked[k] {
			bad = append(bad, k+"="+asked[k])
		}
	}
	return strings.Join(bad, ", ")
}

// labelList is m as "k=v, ..." in key order.
func labelList(m map[string]string) string {
	var kv []string
	for _, k := range sortedKeys(m) {
		kv = append(kv, k+"="+m[k])
	}
	return strings.Join(kv, ", ")
}

func agentSeen(s *State, c *Command, _ uint64, p *AgentSeen) (outcome, error) {
	a := s.Agents[p.Name]
	if a == nil {
		return outcome{}, notFound("agent", p.Name)
	}
	if c.Time.After(a.LastSeen) {
		a.LastSeen = c.Time
	}
	if p.Version != "" {
		a.Version = p.Version
	}
	if p.Capabilities != nil {
		a.Capabilities = granted(p.Capabilities, a.Grants)
	}
	return outcome{target: "agent/" + p.Name}, nil
}

func revokeAgent(s *State, _ *Command, _ uint64, p *RevokeAgent) (outcome, error) {
	a := s.Agents[p.Name]
	if a == nil {
		return outcome{}, notFound("agent", p.Name)
	}
	a.Revoked = true
	return outcome{target: "agent/" + p.Name}, nil
}

func createToken(s *State, c *Command, _ uint64, p *CreateToken) (outcome, error) {
	if p.ID == "" || !p.Role.Valid() {
		return outcome{}, invalid("token needs an ID and a role (admin, operator, agent, read-only)")
	}
	if err := checkHash(p.Hash); err != nil {
		return outcome{}, invalid("token %q: %v", p.ID, err)
	}
	if _, ok := s.Tokens[p.ID]; ok {
		return outcome{}, conflict("token %q exists", p.ID)
	}
	s.Tokens[p.ID] = &APIToken{ID: p.ID, Hash: p.Hash, Role: p.Role, Name: p.Name, Expires: p.Expires.UTC(),
		CreatedAt: c.Time, CreatedBy: c.Actor}
	return outcome{target: "token/" + p.ID}, nil
}

func revokeToken(s *State, _ *Command, _ uint64, p *RevokeToken) (outcome, error) {
	if _, ok := s.Tokens[p.ID]; !ok {
		return outcome{}, notFound("token", p.ID)
	}
	// Without an admin token that works, nobody may create tokens, change
	// membership or approve drill.verify commands again. Judged here, in
	// log order, so that two revokes racing through the API cannot both
	// pass; at the instant the command carries, so that a replay judges
	// expiry as it was judged then. An entry without one (written before
	// the rule) is applied as it was: allowed.
	if !p.CheckedAt.IsZero() && lastAdminToken(s, p.ID, p.CheckedAt) {
		return outcome{}, conflict("token %s is the last admin token that has not expired: revoking it would leave nobody who may create tokens or change membership; "+
			"create another first ('lifeboat token create --role admin'), then revoke this one", p.ID)
	}
	delete(s.Tokens, p.ID)
	return outcome{target: "token/" + p.ID}, nil
}

// lastAdminToken reports whether id is an admin token unexpired at t and
// no other admin token is.
func lastAdminToken(s *State, id string, t time.Time) bool {
	tk := s.Tokens[id]
	if tk == nil || tk.Role != RoleAdmin || tk.Expired(t) {
		return false
	}
	for oid, o := range s.Tokens {
		if oid != id && o.Role == RoleAdmin && !o.Expired(t) {
			return false
		}
	}
	return true
}

func createJoinToken(s *State, c *Command, _ uint64, p *CreateJoinToken) (outcome, error) {
	if p.ID == "" {
		return outcome{}, invalid("join token without an ID")
	}
	if err := checkHash(p.Hash); err != nil {
		return outcome{}, invalid("join token %q: %v", p.ID, err)
	}
	if _, ok := s.JoinTokens[p.ID]; ok {
		return outcome{}, conflict("join token %q exists", p.ID)
	}
	s.JoinTokens[p.ID] = &JoinToken{ID: p.ID, Hash: p.Hash, Labels: cloneMap(p.Labels), Expires: p.Expires.UTC(),
		MaxUses: p.MaxUses, CreatedAt: c.Time, CreatedBy: c.Actor, Grants: sortedStrings(p.Grants), FixedLabels: p.FixedLabels}
	return outcome{target: "jointoken/" + p.ID}, nil
}

func revokeJoinToken(s *State, _ *Command, _ uint64, p *RevokeJoinToken) (outcome, error) {
	if _, ok := s.JoinTokens[p.ID]; !ok {
		return outcome{}, notFound("join token", p.ID)
	}
	delete(s.JoinTokens, p.ID)
	return outcome{target: "jointoken/" + p.ID}, nil
}

// granted returns the capabilities in caps that grants allow, sorted.
func granted(caps, grants []string) []string {
	var out []string
	for _, c := range sortedStrings(caps) {
		if slices.Contains(grants, c) {
			out = append(out, c)
		}
	}
	return out
}

func grantAgent(s *State, _ *Command, _ uint64, p *GrantAgent) (outcome, error) {
	a := s.Agents[p.Name]
	if a == nil {
		return outcome{}, notFound("agent", p.Name)
	}
	for _, g := range p.Grants {
		if g != CapDrill {
			return outcome{}, invalid("grant %q: the only capability is %q", g, CapDrill)
		}
	}
	a.Grants = sortedStrings(p.Grants)
	a.Capabilities = granted(a.Capabilities, a.Grants)
	return outcome{target: "agent/" + p.Name}, nil
}
