package coordinator

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Credentials the API accepts, all as "Authorization: Bearer ...":
//
//	lbt_<id>_<secret>     API token (role admin, operator, agent, read-only)
//	lba_<agent>_<secret>  an enrolled agent's own credential (acts as that agent only)
//	lbj_<id>_<secret>     join token: may enroll one agent, nothing else
//	lbn_<secret>          the cluster's node secret (node-to-node calls)
//
// Only the SHA-256 of a token, agent or join secret is in the replicated
// state; the node secret is in it as is, since every member must present it.
const (
	tokenPrefix     = "lbt_"
	agentCredPrefix = "lba_"
	joinTokenPrefix = "lbj_"
	nodeCredPrefix  = "lbn_"
)

// Header names of node-to-node calls.
const (
	headerNode      = "X-Lifeboat-Node"         // the calling node's ID (with a node credential)
	headerForwarded = "X-Lifeboat-Forwarded-By" // set on a write a follower forwards to the leader
	headerLeader    = "X-Lifeboat-Leader"       // the leader's HTTP address, on a retryable error
)

// Principal is who made a request, as far as the API is concerned.
type Principal struct {
	Actor string // recorded in the audit log: token:ID, agent:NAME, join:ID, node:ID
	Role  Role
	Agent string // set for an agent credential: the only agent it may act as
	Join  string // join token ID
}

// Roles that are not token roles.
const (
	roleNode Role = "node"
	roleJoin Role = "join"
)

// perm is what a route requires.
type perm int

const (
	permRead   perm = iota // admin, operator, read-only (and nodes)
	permWrite              // admin, operator
	permAdmin              // admin
	permAgent              // admin, agent tokens, agent credentials
	permEnroll             // admin, agent tokens, join tokens
	permNode               // nodes only
)

func (p perm) String() string {
	return [...]string{"read", "write", "admin", "agent", "enroll", "node"}[p]
}

func (pr Principal) allowed(p perm) bool {
	switch pr.Role {
	case RoleAdmin:
		return p != permNode
	case RoleOperator:
		return p == permRead || p == permWrite
	case RoleReadOnly:
		return p == permRead
	case RoleAgent:
		return p == permAgent || (p == permEnroll && pr.Agent == "")
	case roleJoin:
		return p == permEnroll
	case roleNode:
		return p == permNode || p == permRead
	}
	return false
}

// errUnknownToken: the token's ID is not in this node's state (it may be
// too new for a follower: the request is then sent to the leader).
var errUnknownToken = errors.New("unknown token")

func unauthorized(format string, args ...any) *apiError {
	return &apiError{status: http.StatusUnauthorized, msg: fmt.Sprintf(format, args...)}
}

// authenticate checks the request's bearer credential against s at now.
func authenticate(s *State, r *http.Request, now time.Time) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Principal{}, unauthorized("missing bearer token: pass --token or set LIFEBOAT_TOKEN")
	}
	// The scheme is case-insensitive (RFC 7235 section 2.1): some
	// clients and proxies send "bearer".
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, unauthorized("Authorization header must be 'Bearer TOKEN'")
	}
	raw = strings.TrimSpace(raw)
	switch {
	case strings.HasPrefix(raw, tokenPrefix):
		id, secret, ok := strings.Cut(raw[len(tokenPrefix):], "_")
		if !ok || id == "" || secret == "" {
			return Principal{}, unauthorized("malformed token")
		}
		tk := s.Tokens[id]
		if tk == nil {
			return Principal{}, fmt.Errorf("token %s: %w", id, errUnknownToken)
		}
		if !hashMatches(tk.Hash, secret) {
			return Principal{}, unauthorized("invalid token")
		}
		if tk.Expired(now) {
			return Principal{}, unauthorized("token %s expired at %s: create a new one with 'lifeboat token create'", id, tk.Expires.Format(time.RFC3339))
		}
		return Principal{Actor: "token:" + id, Role: tk.Role}, nil
	case strings.HasPrefix(raw, agentCredPrefix):
		rest := raw[len(agentCredPrefix):]
		i := strings.LastIndexByte(rest, '_')
		if i <= 0 || i == len(rest)-1 {
			return Principal{}, unauthorized("malformed agent credential")
		}
		name, secret := rest[:i], rest[i+1:]
		a := s.Agents[name]
		if a == nil {
			return Principal{}, fmt.Errorf("agent %s: %w", name, errUnknownToken)
		}
		if !hashMatches(a.CredentialHash, secret) {
			return Principal{}, unauthorized("invalid agent credential")
		}
		if a.Revoked {
			return Principal{}, &apiError{status: http.StatusForbidden, msg: fmt.Sprintf("agent %q is revoked: enroll it under a new name", name)}
		}
		return Principal{Actor: "agent:" + name, Role: RoleAgent, Agent: name}, nil
	case strings.HasPrefix(raw, joinTokenPrefix):
		id, secret, ok := strings.Cut(raw[len(joinTokenPrefix):], "_")
		if !ok || id == "" || secret == "" {
			return Principal{}, unauthorized("malformed join token")
		}
		jt := s.JoinTokens[id]
		if jt == nil {
			return Principal{}, fmt.Errorf("join token %s: %w", id, errUnknownToken)
		}
		if !hashMatches(jt.Hash, secret) {
			return Principal{}, unauthorized("invalid join token")
		}
		return Principal{Actor: "join:" + id, Role: roleJoin, Join: id}, nil
	case strings.HasPrefix(raw, nodeCredPrefix):
		if s.Cluster == nil {
			return Principal{}, fmt.Errorf("node credential: %w", errUnknownToken)
		}
		if subtle.ConstantTimeCompare([]byte(raw[len(nodeCredPrefix):]), []byte(s.Cluster.NodeSecret)) != 1 {
			return Principal{}, unauthorized("invalid node credential")
		}
		id := r.Header.Get(headerNode)
		if id == "" {
			id = "?"
		}
		return Principal{Actor: "node:" + id, Role: roleNode}, nil
	}
	return Principal{}, unauthorized("unrecognized token format (API tokens start with %s)", tokenPrefix)
}

// hashMatches compares the hex SHA-256 of secret with want in constant time.
func hashMatches(want, secret string) bool {
	got := hashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// randomHex returns n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("coordinator: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// NewAPIToken makes a token for role: the command that stores its hash,
// and the plaintext that only the caller ever sees.
func NewAPIToken(role Role, name string, expires time.Time) (CreateToken, string) {
	id, secret := randomHex(6), randomHex(32)
	return CreateToken{ID: id, Hash: hashSecret(secret), Role: role, Name: name, Expires: expires},
		tokenPrefix + id + "_" + secret
}

// NewJoinToken makes a join token: the command and the plaintext.
func NewJoinToken(labels map[string]string, expires time.Time, maxUses int) (CreateJoinToken, string) {
	id, secret := randomHex(6), randomHex(32)
	return CreateJoinToken{ID: id, Hash: hashSecret(secret), Labels: labels, Expires: expires, MaxUses: maxUses},
		joinTokenPrefix + id + "_" + secret
}

// newAgentCredential returns an agent's credential and its hash.
func newAgentCredential(name string) (cred, hash string) {
	secret := randomHex(32)
	return agentCredPrefix + name + "_" + secret, hashSecret(secret)
}

// nodeCredential is the bearer value nodes present to each other.
func nodeCredential(secret string) string { return nodeCredPrefix + secret }
