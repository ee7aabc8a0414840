package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// ---- problems ------------------------------------------------------------

// Problem is one thing wrong (or worth a warning) in a policy. File and
// Line are set when the policy came from a file; Field is the YAML path
// ("schedule", "paths[1]", "retention.keep_daily").
type Problem struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Policy string `json:"policy,omitempty"`
	Field  string `json:"field,omitempty"`
	Msg    string `json:"message"`
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteString(":")
	}
	if p.Line > 0 {
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteString(":")
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError lists every problem found in a policy or a policy file.
// A file with any problem is rejected whole.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0].String()
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return fmt.Sprintf("%d problems:\n  %s", len(e.Problems), strings.Join(lines, "\n  "))
}

// ---- validation ----------------------------------------------------------

var policyNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Bounds of a policy's counts. A job retried a billion times never
// fails, so its alert never fires; a billion concurrent backups is no
// limit. Both are typos, not intents.
const (
	MaxPolicyAttempts   = 100
	MaxPolicyConcurrent = 10000
)

// Validate checks p on its own (not against registered repositories or
// agents) and returns a *ValidationError listing every problem, or nil.
func (p Policy) Validate() error {
	probs, _ := p.check()
	if len(probs) == 0 {
		return nil
	}
	return &ValidationError{Problems: probs}
}

// Warnings lists things that are legal but probably not what the author
// meant, such as an RPO target the schedule cannot meet.
func (p Policy) Warnings() []Problem {
	_, warns := p.check()
	return warns
}

func (p Policy) check() (errs, warns []Problem) {
	add := func(field, format string, args ...any) {
		errs = append(errs, Problem{Policy: p.Name, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	warn := func(field, format string, args ...any) {
		warns = append(warns, Problem{Policy: p.Name, Field: field, Msg: fmt.Sprintf(format, args...)})
	}

	switch {
	case p.Name == "":
		add("name", "required")
	case !policyNameRE.MatchString(p.Name):
		add("name", "%q must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit", p.Name)
	}
	if strings.TrimSpace(p.Repository) == "" {
		add("repository", "required (the name given to 'lifeboat repo add')")
	}

	var sched Schedule
	if p.Schedule == "" {
		add("schedule", "%v", errNoSchedule)
	} else if s, err := ParseSchedule(p.Schedule); err != nil {
		add("schedule", "%v", err)
	} else {
		sched = s
	}

	if sched.DSTAffected() {
		warn("schedule", "daylight saving time in %s shifts this schedule around clock changes: a wall time that is skipped does not run that day, one that repeats runs twice; schedule outside the change or in UTC", sched.cron.Location)
	}
	if len(p.Agents) == 0 {
		warn("agents", "no selector: the policy runs on every agent")
	}
	for _, k := range policyKeys(p.Agents) {
		if strings.TrimSpace(k) == "" {
			add("agents", "selector has an empty label name")
		} else if location.HasControl(k) || location.HasControl(p.Agents[k]) {
			add("agents", "selector %q: %q holds control characters", k, p.Agents[k])
		}
	}

	if len(p.Paths) == 0 {
		add("paths", "at least one path to back up is required")
	}
	for i, pth := range p.Paths {
		f := fmt.Sprintf("paths[%d]", i)
		switch {
		case pth == "":
			add(f, "empty path")
		case !isAbsPath(pth):
			add(f, "%q is not an absolute path", pth)
		case location.HasControl(pth):
			add(f, "%q holds control characters", pth)
		case path.Clean(pth) != pth && path.Clean(pth)+"/" != pth:
			add(f, "%q is not in its plain form (no '.', '..' or doubled '/'): write %q", pth, path.Clean(pth))
		}
	}
	for _, list := range []struct {
		field string
		pats  []string
	}{{"exclude", p.Exclude}, {"changing", p.Changing}} {
		for i, pat := range list.pats {
			f := fmt.Sprintf("%s[%d]", list.field, i)
			if pat == "" {
				add(f, "empty pattern")
			} else if _, err := snapshot.NewPattern(pat); err != nil {
				add(f, "invalid pattern %q: %v", pat, err)
			} else if snapshot.MatchesNothing(pat) {
				warn(f, "pattern %q has a slash, so it is matched against whole paths, which all start with '/': it matches nothing (write /%s?)", pat, pat)
			}
		}
	}
	for i, spec := range p.ExcludeIfPresent {
		if name, _, _ := strings.Cut(spec, ":"); !snapshot.ValidName(name) {
			add(fmt.Sprintf("exclude_if_present[%d]", i), "%q: give a file name, without '/' (not empty, '.' or '..'), optionally followed by ':' and the bytes the file must begin with", spec)
		}
	}
	if p.ExcludeLargerThan != "" {
		if _, err := ParseExcludeLargerThan(p.ExcludeLargerThan); err != nil {
			add("exclude_larger_than", "%v", err)
		}
	}
	for i, t := range p.Tags {
		if bad := snapshot.TagProblem(t); bad != "" {
			add(fmt.Sprintf("tags[%d]", i), "%q is not a tag (%s)", t, bad)
		}
	}

	r := p.Retention
	for _, c := range []struct {
		field string
		n     int
	}{{"keep_last", r.KeepLast}, {"keep_hourly", r.KeepHourly}, {"keep_daily", r.KeepDaily},
		{"keep_weekly", r.KeepWeekly}, {"keep_monthly", r.KeepMonthly}, {"keep_yearly", r.KeepYearly}} {
		if c.n < 0 {
			add("retention."+c.field, "must not be negative (got %d)", c.n)
		}
	}
	if r.KeepWithin < 0 {
		add("retention.keep_within", "must not be negative (got %s)", r.KeepWithin)
	}
	if r.KeepWithin > 0 && time.Duration(r.KeepWithin) < time.Hour {
		// "6m" is six months to restic; here it forgets all but what is
		// within six minutes of the newest snapshot.
		warn("retention.keep_within", "%s keeps only the snapshots within %s of the newest: m is minutes, not months (for months give days, 6 months: 183d)", r.KeepWithin, time.Duration(r.KeepWithin))
	}
	if r.Prune != "" {
		if _, err := ParseSchedule(r.Prune); err != nil {
			add("retention.prune", "%v", err)
		}
	}
	for i, tag := range r.KeepTags {
		if bad := snapshot.TagProblem(tag); bad != "" {
			add(fmt.Sprintf("retention.keep_tags[%d]", i), "%q is not a tag (%s)", tag, bad)
		}
	}
	if len(r.KeepTags) > 0 && r.Rules().IsZero() {
		warn("retention.keep_tags", "protects snapshots from the other retention rules, and there are none: every snapshot is kept")
	}
	if _, err := ParseMaxUnused(r.MaxUnused); err != nil {
		add("retention.max_unused", "%v", err)
	} else if r.MaxUnused != "" && r.Prune == "" {
		warn("retention.max_unused", "has no effect without retention.prune")
	}
	switch {
	case !r.Rules().IsZero() && r.Prune == "":
		warn("retention", "applied by the agent after each backup (it forgets snapshots, which needs storage credentials that may delete); only a prune frees their data: set retention.prune to have a drill runner prune on a schedule, or run 'lifeboat prune' with the identity (docs/operations.md)")
	case !r.Rules().IsZero():
		warn("retention", "applied by the agent after each backup (it forgets snapshots, which needs storage credentials that may delete); a drill runner frees their data on the retention.prune schedule")
	}
	if r.Prune != "" && (p.Drill == nil || len(p.Drill.Runner) == 0) {
		warn("retention.prune", "runs on any drill runner (drill.runner selects none): an agent with the identity that an admin allowed to run drills")
	}

	if p.Targets.RPO < 0 {
		add("targets.rpo", "must be positive (got %s)", p.Targets.RPO)
	} else if p.Targets.RPO > 0 && time.Duration(p.Targets.RPO) < time.Minute {
		warn("targets.rpo", "%s is under a minute: no backup is that fresh, so the target is always missed (a typo for %dm?)", p.Targets.RPO, time.Duration(p.Targets.RPO)/time.Second)
	} else if p.Targets.RPO > 0 && !sched.IsZero() {
		if gap := sched.LongestGap(); gap > 0 && time.Duration(p.Targets.RPO) < gap {
			warn("targets.rpo", "%s is shorter than the %s between scheduled runs: the target will be missed even when every backup succeeds", p.Targets.RPO, Duration(gap))
		}
	}
	if p.Targets.RTO < 0 {
		add("targets.rto", "must be positive (got %s)", p.Targets.RTO)
	} else if p.Targets.RTO > 0 && time.Duration(p.Targets.RTO) < time.Minute {
		warn("targets.rto", "%s is under a minute: no drill restores and verifies that fast, so the target is always missed (a typo for %dm?)", p.Targets.RTO, time.Duration(p.Targets.RTO)/time.Second)
	}

	if p.MaxConcurrent < 0 {
		add("max_concurrent", "must not be negative (got %d)", p.MaxConcurrent)
	} else if p.MaxConcurrent > MaxPolicyConcurrent {
		add("max_concurrent", "want 0 (no limit) to %d (got %d)", MaxPolicyConcurrent, p.MaxConcurrent)
	}
	if p.VerifyEvery < 0 || p.VerifyEvery > 0 && time.Duration(p.VerifyEvery) < time.Hour {
		add("verify_every", "want at least 1h (got %s): every pack of the repository is read once per period", p.VerifyEvery)
	}
	if p.MaxAttempts < 0 {
		add("max_attempts", "must not be negative (got %d)", p.MaxAttempts)
	} else if p.MaxAttempts > MaxPolicyAttempts {
		add("max_attempts", "want 0 (the default, %d) to %d (got %d)", DefaultMaxAttempts, MaxPolicyAttempts, p.MaxAttempts)
	}
	if p.Jitter < 0 {
		add("jitter", "must not be negative (got %s)", p.Jitter)
	} else if p.Jitter > 0 && !sched.IsZero() {
		if iv := sched.Interval(); iv > 0 && time.Duration(p.Jitter) >= iv {
			add("jitter", "%s must be shorter than the %s between scheduled runs", p.Jitter, Duration(iv))
		}
	}

	if d := p.Drill; d != nil {
		if d.Schedule != "" {
			if _, err := ParseSchedule(d.Schedule); err != nil {
				add("drill.schedule", "%v", err)
			}
		}
		for _, k := range policyKeys(d.Runner) {
			if strings.TrimSpace(k) == "" {
				add("drill.runner", "selector has an empty label name")
			} else if location.HasControl(k) || location.HasControl(d.Runner[k]) {
				add("drill.runner", "selector %q: %q holds control characters", k, d.Runner[k])
			}
		}
		if d.Scratch != "" && !isAbsPath(d.Scratch) {
			add("drill.scratch", "%q is not an absolute path", d.Scratch)
		}
		if err := CheckSnapshotSelector(d.Snapshot); err != nil {
			add("drill.snapshot", "%v", err)
		}
		if _, err := ParseSample(d.Sample); err != nil {
			add("drill.sample", "%v", err)
		}
		if d.ScratchLimit != "" {
			if _, err := ParseSize(d.ScratchLimit); err != nil {
				add("drill.scratch_limit", "%v", err)
			}
		}
		if d.Schedule != "" && p.Repository == "" {
			add("drill", "a drill needs the policy's repository")
		}
		for i, v := range d.Verify {
			f := fmt.Sprintf("drill.verify[%d]", i)
			if strings.TrimSpace(v.Command) == "" {
				add(f+".command", "required")
			}
			if v.Timeout < 0 {
				add(f+".timeout", "must not be negative (got %s)", v.Timeout)
			}
		}
	}
	return errs, warns
}

// isAbsPath accepts POSIX absolute paths and Windows drive paths: the agent
// that reads them may run on another OS than the coordinator.
func isAbsPath(p string) bool {
	if path.IsAbs(p) {
		return true
	}
	return len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/') &&
		(p[0] >= 'A' && p[0] <= 'Z' || p[0] >= 'a' && p[0] <= 'z')
}

func policyKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// normalize makes empty collections nil so that a policy compares equal
// after a YAML or JSON round trip.
func (p *Policy) normalize() {
	if len(p.Agents) == 0 {
		p.Agents = nil
	}
	if len(p.Paths) == 0 {
		p.Paths = nil
	}
	if len(p.Exclude) == 0 {
		p.Exclude = nil
	}
	if len(p.Changing) == 0 {
		p.Changing = nil
	}
	if len(p.ExcludeIfPresent) == 0 {
		p.ExcludeIfPresent = nil
	}
	if len(p.Tags) == 0 {
		p.Tags = nil
	}
	if d := p.Drill; d != nil {
		if len(d.Runner) == 0 {
			d.Runner = nil
		}
		if len(d.Verify) == 0 {
			d.Verify = nil
		}
	}
}

// ---- parsing -------------------------------------------------------------

// ParsePolicies reads one or more policies from a YAML file (documents
// separated by "---"). It is strict: unknown fields, wrong types, duplicate
// keys, duplicate policy names and invalid values are all errors, and every
// problem of the file is reported in one *ValidationError whose entries name
// the file, line and field:
//
//	policy.yaml:7: schedule: invalid cron expression "61 * * * *": minute: ...
//
// filename is used only in messages.
func ParsePolicies(data []byte, filename string) ([]Policy, error) {
	ps, _, err := ParsePoliciesWithWarnings(data, filename)
	return ps, err
}

// ParsePoliciesWithWarnings is ParsePolicies that also returns the warnings
// (see Policy.Warnings) located in the file. Warnings never reject a file.
func ParsePoliciesWithWarnings(data []byte, filename string) ([]Policy, []Problem, error) {
	var (
		policies []Policy
		errs     []Problem
		warns    []Problem
		firstAt  = map[string]int{} // policy name → line of its first definition
	)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, syntaxProblem(err))
			break // the rest of the stream cannot be read reliably
		}
		root := &doc
		if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
			root = root.Content[0]
		}
		if yamlIsNull(root) || (root.Kind == yaml.DocumentNode && len(root.Content) == 0) {
			continue // an empty document, e.g. after a trailing "---"
		}
		p, perrs, pwarns := parsePolicyNode(root)
		errs = append(errs, perrs...)
		warns = append(warns, pwarns...)
		if p == nil {
			continue
		}
		if p.Name != "" {
			if at, dup := firstAt[p.Name]; dup {
				errs = append(errs, Problem{Line: root.Line, Policy: p.Name, Field: "name",
					Msg: fmt.Sprintf("policy %q is already defined at line %d", p.Name, at)})
			} else {
				firstAt[p.Name] = root.Line
			}
		}
		policies = append(policies, *p)
	}
	if len(errs) == 0 && len(policies) == 0 {
		errs = append(errs, Problem{Msg: "no policy in file"})
	}
	for i := range errs {
		errs[i].File = filename
	}
	for i := range warns {
		warns[i].File = filename
	}
	if len(errs) > 0 {
		sortProblems(errs)
		return nil, warns, &ValidationError{Problems: errs}
	}
	sortProblems(warns)
	return policies, warns, nil
}

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func syntaxProblem(err error) Problem {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return Problem{Line: n, Msg: "invalid YAML: " + m[2]}
	}
	return Problem{Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

func yamlIsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// parsePolicyNode decodes one document. It returns nil if the document is
// not a mapping at all.
func parsePolicyNode(root *yaml.Node) (*Policy, []Problem, []Problem) {
	if root.Kind != yaml.MappingNode {
		return nil, []Problem{{Line: root.Line, Msg: "a policy must be a mapping of fields (name: ..., schedule: ...)"}}, nil
	}
	ix := &nodeIndex{lines: map[string]int{}, fieldAt: map[int]string{}, valueAt: map[[2]int]string{}, docLine: root.Line, dupKeys: map[string]bool{}}
	var errs []Problem
	ix.walk(root, reflect.TypeOf(Policy{}), "", &errs, 0)

	var p Policy
	if err := root.Decode(&p); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, e := range te.Errors {
				errs = append(errs, ix.typeProblem(e))
			}
		} else {
			errs = append(errs, Problem{Line: root.Line, Msg: err.Error()})
		}
	}
	p.normalize()
	verrs, vwarns := p.check()
	if ix.dupKeys[""] {
		// Nothing of the document was decoded: the duplicate key is the
		// problem, not the fields it leaves unset.
		verrs, vwarns = nil, nil
	}
	// A field that already failed to decode would only add noise.
	bad := map[string]bool{}
	for _, e := range errs {
		if e.Field != "" {
			bad[e.Field] = true
		}
	}
	maps.Copy(bad, ix.dupKeys)
	for _, e := range verrs {
		if !fieldCoveredBy(e.Field, bad) {
			errs = append(errs, ix.locate(e))
		}
	}
	for i := range errs {
		errs[i].Policy = p.Name
	}
	var warns []Problem
	for _, w := range vwarns {
		if !fieldCoveredBy(w.Field, ix.dupKeys) {
			warns = append(warns, ix.locate(w))
		}
	}
	return &p, errs, warns
}

func fieldCoveredBy(field string, bad map[string]bool) bool {
	for f := field; f != ""; f = parentYAMLField(f) {
		if bad[f] {
			return true
		}
	}
	return false
}

func parentYAMLField(f string) string {
	i := strings.LastIndexAny(f, ".[")
	if i < 0 {
		return ""
	}
	return f[:i]
}

// nodeIndex maps YAML field paths to the lines they are written on.
type nodeIndex struct {
	lines   map[string]int    // field path → line of its value
	fieldAt map[int]string    // line → the deepest field path written there
	valueAt map[[2]int]string // line, column of a value → its field path
	docLine int
	// dupKeys holds the field paths of mappings with a key written twice
	// ("" for the document's own): yaml decodes none of such a mapping,
	// so what validation says of its fields (all missing) is noise.
	dupKeys map[string]bool
}

// noteDuplicateKeys records field's mapping n in dupKeys if one of its
// keys is written twice (the decoder names the keys).
func (ix *nodeIndex) noteDuplicateKeys(n *yaml.Node, field string) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			continue
		}
		if seen[k.Value] {
			ix.dupKeys[field] = true
			return
		}
		seen[k.Value] = true
	}
}

func (ix *nodeIndex) record(field string, line int) {
	if field == "" {
		return
	}
	if _, ok := ix.lines[field]; !ok {
		ix.lines[field] = line
	}
	if cur, ok := ix.fieldAt[line]; !ok || len(field) > len(cur) {
		ix.fieldAt[line] = field
	}
}

// locate fills in the line of a validation problem from its field path,
// falling back to the nearest enclosing field, then the document start.
func (ix *nodeIndex) locate(p Problem) Problem {
	for f := p.Field; f != ""; f = parentYAMLField(f) {
		if l, ok := ix.lines[f]; ok {
			p.Line = l
			return p
		}
	}
	p.Line = ix.docLine
	return p
}

// typeProblem turns one of yaml's "line N: cannot unmarshal ..." messages
// into a Problem naming the field written on that line.
func (ix *nodeIndex) typeProblem(msg string) Problem {
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Line: ix.docLine, Msg: msg}
	}
	n, _ := strconv.Atoi(m[1])
	text := m[2]
	field := ix.fieldAt[n]
	if cm := yamlColumnRE.FindStringSubmatch(text); cm != nil {
		col, _ := strconv.Atoi(cm[1])
		text = cm[2]
		if f, ok := ix.valueAt[[2]int{n, col}]; ok {
			field = f
		}
	}
	if u := yamlUnmarshalRE.FindStringSubmatch(text); u != nil {
		want, ok := yamlTypeNames[u[3]]
		if !ok {
			want = strings.TrimPrefix(u[3], "coordinator.")
		}
		got := strings.TrimPrefix(u[1], "!!")
		if u[2] != "" {
			got += " " + strconv.Quote(u[2])
		}
		text = fmt.Sprintf("expected %s, got %s", want, got)
	}
	return Problem{Line: n, Field: field, Msg: text}
}

// yamlColumnRE reads the column Duration.UnmarshalYAML puts in its errors.
var yamlColumnRE = regexp.MustCompile(`^column (\d+): (.*)$`)

var yamlUnmarshalRE = regexp.MustCompile("^cannot unmarshal (\\S+)(?: `(.*)`)? into (.+)$")

var yamlTypeNames = map[string]string{
	"int": "an integer", "string": "a string", "bool": "true or false",
	"map[string]string": "a mapping of label: value", "[]string": "a list of strings",
	"coordinator.Policy": "a mapping", "coordinator.Retention": "a mapping",
	"coordinator.Targets": "a mapping", "coordinator.DrillSpec": "a mapping",
	"[]coordinator.VerifyCommand": "a list of {command, timeout}",
	"coordinator.VerifyCommand":   "a mapping with command and timeout",
}

// policyMaxDepth bounds recursion through aliases and nesting in hostile input.
const policyMaxDepth = 32

// walk checks that every mapping key in n names a field of t (strictness)
// and records where each field is written.
func (ix *nodeIndex) walk(n *yaml.Node, t reflect.Type, field string, errs *[]Problem, depth int) {
	if depth > policyMaxDepth {
		*errs = append(*errs, Problem{Line: n.Line, Field: field, Msg: "nested too deeply"})
		return
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		ix.record(field, n.Line)
		ix.walk(n.Alias, t, field, errs, depth+1)
		return
	}
	ix.record(field, n.Line)
	if pos := [2]int{n.Line, n.Column}; field != "" && ix.valueAt[pos] == "" {
		ix.valueAt[pos] = field
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if yamlIsNull(n) {
		return
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		// yaml.v3 truncates a float into an integer field (1.9 → 1,
		// 0.5 → 0) without a word.
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
			*errs = append(*errs, Problem{Line: n.Line, Field: field,
				Msg: fmt.Sprintf("expected an integer, got float %q", n.Value)})
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // decode reports the type error
		}
		ix.noteDuplicateKeys(n, field)
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" && k.Tag == "!!merge" {
				ix.walkMerge(v, t, field, errs, depth+1)
				continue
			}
			f, ok := fields[k.Value]
			sub := joinYAMLField(field, k.Value)
			if !ok {
				*errs = append(*errs, Problem{Line: k.Line, Field: sub,
					Msg: fmt.Sprintf("unknown field (known fields: %s)", strings.Join(policyKeys(fields), ", "))})
				continue
			}
			ix.record(sub, k.Line)
			ix.walk(v, f, sub, errs, depth+1)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		ix.noteDuplicateKeys(n, field)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sub := joinYAMLField(field, k.Value)
			ix.record(sub, k.Line)
			ix.walk(v, t.Elem(), sub, errs, depth+1)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			ix.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", field, i), errs, depth+1)
		}
	}
}

func (ix *nodeIndex) walkMerge(v *yaml.Node, t reflect.Type, field string, errs *[]Problem, depth int) {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, item := range v.Content {
			ix.walkMerge(item, t, field, errs, depth+1)
		}
		return
	}
	ix.walk(v, t, field, errs, depth)
}

func joinYAMLField(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// yamlFields maps the YAML names of t's fields to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out[name] = sf.Type
	}
	return out
}

// MarshalPolicyYAML renders p as a policy file document (for 'lifeboat
// policy show'); ParsePolicies reads it back to an equal policy.
func MarshalPolicyYAML(p Policy) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("marshal policy %s: %w", p.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal policy %s: %w", p.Name, err)
	}
	return buf.Bytes(), nil
}
