package coordinator

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// ---- policies ----------------------------------------------------------------

// PolicyApplied is the outcome for one policy of an apply.
type PolicyApplied struct {
	Name    string `json:"name"`
	Version uint64 `json:"version,omitempty"`
	Status  string `json:"status"` // created, updated, unchanged, valid (dry run)
}

// PolicyApplyResult is the response to PUT/POST /v1/policies.
type PolicyApplyResult struct {
	Policies []PolicyApplied `json:"policies"`
	Warnings []Problem       `json:"warnings,omitempty"`
	DryRun   bool            `json:"dry_run,omitempty"`
}

// decodePolicies reads a policy body: JSON (one policy or an array) when
// the content type says so, otherwise a YAML policy file. Every problem is
// returned together in a *ValidationError.
func decodePolicies(body []byte, contentType, filename string) ([]Policy, []Problem, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt != "application/json" {
		return ParsePoliciesWithWarnings(body, filename)
	}
	var ps []Policy
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := decodeJSON(body, &ps); err != nil {
			return nil, nil, err
		}
	} else {
		var p Policy
		if err := decodeJSON(body, &p); err != nil {
			return nil, nil, err
		}
		ps = []Policy{p}
	}
	if len(ps) == 0 {
		return nil, nil, badRequest("no policy in the request")
	}
	var errs, warns []Problem
	seen := map[string]bool{}
	for i := range ps {
		ps[i].normalize()
		p := ps[i]
		if err := p.Validate(); err != nil {
			if ve, ok := err.(*ValidationError); ok {
				errs = append(errs, ve.Problems...)
			} else {
				errs = append(errs, Problem{Policy: p.Name, Msg: err.Error()})
			}
		}
		if p.Name != "" && seen[p.Name] {
			errs = append(errs, Problem{Policy: p.Name, Field: "name", Msg: fmt.Sprintf("policy %q is defined twice", p.Name)})
		}
		seen[p.Name] = true
		warns = append(warns, p.Warnings()...)
	}
	if len(errs) > 0 {
		return nil, warns, &ValidationError{Problems: errs}
	}
	return ps, warns, nil
}

func (a *API) applyPolicies(w http.ResponseWriter, r *http.Request, c *call) error {
	filename := filepath.Base(r.URL.Query().Get("filename"))
	if filename == "." || filename == "/" {
		filename = ""
	}
	ps, warns, err := decodePolicies(c.body, r.Header.Get("Content-Type"), filename)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		return badRequest("no policy in the request")
	}
	// Checks against the state, before anything is proposed, so that a
	// refusal names every problem of the file; the FSM checks again.
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.syncLeader(ctx); err != nil {
		return err
	}
	res := PolicyApplyResult{Warnings: warns, DryRun: r.URL.Query().Get("dry_run") == "true"}
	// check_index: apply only if the policy is still at that version.
	var check *uint64
	if v := r.URL.Query().Get("check_index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badRequest("check_index %q: want the policy's version, a non-negative integer (0: create only)", v)
		}
		if len(ps) != 1 {
			return badRequest("check_index needs a request of exactly one policy, not %d", len(ps))
		}
		check = &n
	}
	var probs []Problem
	existing := map[string]*PolicyRecord{}
	var others []Policy // the stored policies the request leaves as they are
	var checkErr error  // the check_index refusal, if any
	a.node.View(func(s *State) {
		applied := map[string]bool{}
		for _, p := range ps {
			applied[p.Name] = true
		}
		for _, name := range s.PolicyNames() {
			if !applied[name] {
				others = append(others, clonePolicy(s.Policies[name].Policy))
			}
		}
		for _, p := range ps {
			if s.Repositories[p.Repository] == nil {
				probs = append(probs, Problem{File: filename, Policy: p.Name, Field: "repository",
					Msg: fmt.Sprintf("repository %q is not registered (add it with 'lifeboat repo add')", p.Repository)})
			}
			if pr := s.Policies[p.Name]; pr != nil {
				cp := *pr
				cp.Policy = clonePolicy(pr.Policy)
				existing[p.Name] = &cp
			}
		}
		if check != nil {
			checkErr = checkPolicyIndex(s, ps[0].Name, *check)
		}
	})
	if checkErr != nil {
		return checkErr
	}
	if len(probs) > 0 {
		return &ValidationError{Problems: probs}
	}
	res.Warnings = append(res.Warnings, sharedRetention(ps, others)...)
	// Drill verify commands run on drill runners, the agents that hold
	// the identity: whoever sets them could read every backup. Adding or
	// changing them takes an admin, not just an operator; so does
	// changing what approved commands run on, or where.
	if c.p.Role != RoleAdmin {
		for _, p := range ps {
			if verifyCommandsChanged(existing[p.Name], p) {
				return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf("policy %q: drill.verify commands run on drill runners, which hold the identity; "+
					"adding or changing them needs an admin token", p.Name)}
			}
			if f := verifyContextChanged(existing[p.Name], p); f != "" {
				return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf("policy %q: its drill.verify commands (approved by an admin) run on drill runners, against what the policy backs up; "+
					"changing its %s needs an admin token too (or remove the commands first)", p.Name, f)}
			}
		}
	}
	// The changed policies go in one log entry, which the FSM applies
	// whole or not at all: a refusal there (the leadership lost, a
	// repository removed since the check above) leaves none of them
	// applied.
	var changed []Policy
	for _, p := range ps {
		old := existing[p.Name]
		switch {
		case res.DryRun:
			res.Policies = append(res.Policies, PolicyApplied{Name: p.Name, Status: "valid"})
		case old != nil && reflect.DeepEqual(old.Policy, clonePolicy(p)):
			res.Policies = append(res.Policies, PolicyApplied{Name: p.Name, Version: old.Version, Status: "unchanged"})
		default:
			changed = append(changed, p)
			status := "created"
			if old != nil {
				status = "updated"
			}
			res.Policies = append(res.Policies, PolicyApplied{Name: p.Name, Status: status})
		}
	}
	if len(changed) > 0 {
		var ver uint64
		put := func() (err error) { ver, err = a.node.PutPolicies(ctx, c.p.Actor, changed); return err }
		if check != nil {
			// The FSM checks again: a change committed since the look
			// above is refused there.
			put = func() (err error) { ver, err = a.node.PutPolicyAt(ctx, c.p.Actor, changed[0], *check); return err }
		}
		if err := a.apply(put); err != nil {
			if len(changed) == 1 {
				return fmt.Errorf("policy %q: %w", changed[0].Name, err)
			}
			return fmt.Errorf("%d policies (none applied): %w", len(changed), err)
		}
		for i := range res.Policies {
			if res.Policies[i].Status == "created" || res.Policies[i].Status == "updated" {
				res.Policies[i].Version = ver
			}
		}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (a *API) listPolicies(w http.ResponseWriter, _ *http.Request, _ *call) error {
	out := []PolicyRecord{}
	a.node.View(func(s *State) {
		for _, name := range s.PolicyNames() {
			pr := *s.Policies[name]
			pr.Policy = clonePolicy(pr.Policy)
			out = append(out, pr)
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getPolicy(w http.ResponseWriter, r *http.Request, _ *call) error {
	pr, err := lookup(a, r, "name", "policy", func(s *State, name string) (PolicyRecord, bool) {
		if p := s.Policies[name]; p != nil {
			cp := *p
			cp.Policy = clonePolicy(p.Policy)
			return cp, true
		}
		return PolicyRecord{}, false
	})
	if err != nil {
		return err
	}
	if r.URL.Query().Get("format") == "yaml" {
		b, err := MarshalPolicyYAML(pr.Policy)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(b)
		return nil
	}
	writeJSON(w, http.StatusOK, pr)
	return nil
}

func (a *API) deletePolicy(w http.ResponseWriter, r *http.Request, c *call) error {
	return a.proposeNamed(w, r, c, "name", "deleted", func(key string) (CommandType, any) {
		return CmdDeletePolicy, DeletePolicy{Name: key}
	})
}

// RunResult is the response to POST /v1/policies/{name}/run.
type RunResult struct {
	Jobs []string `json:"jobs"`
}

func (a *API) runPolicy(w http.ResponseWriter, r *http.Request, c *call) error {
	name, err := pathName(r, "name")
	if err != nil {
		return err
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.syncLeader(ctx); err != nil {
		return err
	}
	var ids []string
	if err := a.apply(func() (err error) { ids, err = a.node.RunPolicy(ctx, c.p.Actor, name); return err }); err != nil {
		return err
	}
	if ids == nil {
		ids = []string{}
	}
	writeJSON(w, http.StatusOK, RunResult{Jobs: ids})
	return nil
}

// ---- repositories ------------------------------------------------------------

// RepoAddRequest is the body of POST /v1/repos.
type RepoAddRequest struct {
	Name      string            `json:"name"`
	URL       string            `json:"url"`
	WriterKey string            `json:"writer_key"` // the writer key file's contents
	Env       map[string]string `json:"env,omitempty"`
	Replace   bool              `json:"replace,omitempty"`
}

var repoNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate checks the request; an age identity is refused with a message
// that says why.
func (q RepoAddRequest) Validate() error {
	switch {
	case !repoNameRE.MatchString(q.Name):
		return badRequest("repository name %q: want 1-63 letters, digits, '.', '_' or '-'", q.Name)
	case q.URL == "":
		return badRequest("repository %q: url is required", q.Name)
	case IsIdentity([]byte(q.WriterKey)):
		return badRequest("repository %q: refused: the key given is an age identity, which can read every backup; the coordinator holds writer keys only (pass the writer key file written by 'lifeboat init', never the identity)", q.Name)
	}
	if _, err := location.Parse(q.URL); err != nil {
		return badRequest("repository %q: %v", q.Name, err)
	}
	if err := CheckWriterKey([]byte(q.WriterKey)); err != nil {
		return badRequest("repository %q: %v", q.Name, err)
	}
	for k := range q.Env {
		if !strings.HasPrefix(k, "AWS_") && !strings.HasPrefix(k, "LIFEBOAT_S3_") {
			return badRequest("repository %q: env %q: only AWS_* and LIFEBOAT_S3_* variables are stored", q.Name, k)
		}
	}
	return nil
}

func (a *API) addRepo(w http.ResponseWriter, r *http.Request, c *call) error {
	var q RepoAddRequest
	if err := decodeJSON(c.body, &q); err != nil {
		return err
	}
	if err := q.Validate(); err != nil {
		return err
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	if err := a.apply(func() error {
		return a.node.AddRepository(ctx, c.p.Actor, AddRepository{Name: q.Name, URL: q.URL, WriterKey: []byte(q.WriterKey), Env: q.Env, Replace: q.Replace})
	}); err != nil {
		return err
	}
	var out Repository
	a.node.View(func(s *State) {
		if rp := s.Repositories[q.Name]; rp != nil {
			out = rp.Public()
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) listRepos(w http.ResponseWriter, _ *http.Request, _ *call) error {
	out := []Repository{}
	a.node.View(func(s *State) {
		for _, name := range sortedKeys(s.Repositories) {
			out = append(out, s.Repositories[name].Public())
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getRepo(w http.ResponseWriter, r *http.Request, _ *call) error {
	out, err := lookup(a, r, "name", "repository", func(s *State, name string) (Repository, bool) {
		if rp := s.Repositories[name]; rp != nil {
			return rp.Public(), true
		}
		return Repository{}, false
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) removeRepo(w http.ResponseWriter, r *http.Request, c *call) error {
	return a.proposeNamed(w, r, c, "name", "removed", func(key string) (CommandType, any) {
		return CmdRemoveRepository, RemoveRepository{Name: key}
	})
}

// verifyContextChanged names the first field that applying p changes,
// compared with the stored record old, among those that decide what p's
// drill verify commands run on and where: the repository, agents, paths
// and excludes (which data a drill restores: an approved
// "./selftest" would run whatever an operator had backed up there) and
// the drill spec but its schedule (the runner, the snapshot, the
// scratch space). "" if p has no
// verify commands, is new, or changes none of them.
func verifyContextChanged(old *PolicyRecord, p Policy) string {
	if old == nil || p.Drill == nil || len(p.Drill.Verify) == 0 {
		return ""
	}
	o := old.Policy
	switch {
	case o.Repository != p.Repository:
		return "repository"
	case !reflect.DeepEqual(o.Agents, p.Agents):
		return "agents"
	case !slices.Equal(o.Paths, p.Paths):
		return "paths"
	case !slices.Equal(o.Exclude, p.Exclude):
		return "exclude"
	case o.Drill == nil:
		return "drill"
	}
	od, nd := *o.Drill, *p.Drill
	od.Verify, nd.Verify = nil, nil
	od.Schedule, nd.Schedule = "", "" // when, not what or where
	if !reflect.DeepEqual(od, nd) {
		return "drill"
	}
	return ""
}

// verifyCommandsChanged reports whether applying p adds or changes drill
// verify commands compared with the stored record old (nil: new policy).
func verifyCommandsChanged(old *PolicyRecord, p Policy) bool {
	var before, after []VerifyCommand
	if old != nil && old.Policy.Drill != nil {
		before = old.Policy.Drill.Verify
	}
	if p.Drill != nil {
		after = p.Drill.Verify
	}
	if len(after) == 0 {
		return false
	}
	return !reflect.DeepEqual(before, after)
}

// sharedRetention warns of each policy of ps that shares its retention
// group with another policy (of ps, or of others, the stored ones): an
// agent applies a policy's retention to the snapshots of its host with
// the policy's paths and exactly its tags, so two policies of one
// repository with the same paths and tags, on an agent both select, each
// forget the other's snapshots by their own rules (an hourly policy's
// keep_last: 24 forgets a monthly one's).
func sharedRetention(ps, others []Policy) []Problem {
	var out []Problem
	for i, p := range ps {
		for j, q := range slices.Concat(ps, others) {
			if j <= i || q.Name == p.Name || q.Repository != p.Repository ||
				(p.Retention.Rules().IsZero() && q.Retention.Rules().IsZero()) ||
				snapshot.GroupKey("", p.Paths) != snapshot.GroupKey("", q.Paths) ||
				!sameTags(p.Tags, q.Tags) || !selectorsOverlap(p.Agents, q.Agents) {
				continue
			}
			out = append(out, Problem{Policy: p.Name, Field: "tags", Msg: fmt.Sprintf(
				"policy %q backs up the same paths with the same tags into repository %q on agents both select: "+
					"their snapshots are one retention group, and each policy's retention forgets the other's snapshots; give one a tag of its own", q.Name, p.Repository)})
		}
	}
	return out
}

// sameTags reports whether a and b hold the same tags, in any order.
func sameTags(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// selectorsOverlap reports whether an agent can match both label
// selectors: every key must match, so only a key both name with
// different values rules it out.
func selectorsOverlap(a, b map[string]string) bool {
	for k, v := range a {
		if w, ok := b[k]; ok && w != v {
			return false
		}
	}
	return true
}
