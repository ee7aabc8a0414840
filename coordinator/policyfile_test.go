package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		out  string // String() of the result
	}{
		{"90s", 90 * time.Second, "1m30s"},
		{"36h", 36 * time.Hour, "36h"},
		{"30d", 30 * 24 * time.Hour, "30d"},
		{"2w", 14 * 24 * time.Hour, "2w"},
		{"14d", 14 * 24 * time.Hour, "2w"},
		{"1w2d12h", 9*24*time.Hour + 12*time.Hour, "228h"},
		{"1.5d", 36 * time.Hour, "36h"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"2h0m", 2 * time.Hour, "2h"},
		{"250ms", 250 * time.Millisecond, "250ms"},
		{"0", 0, "0s"},
		{"0s", 0, "0s"},
		{"-1h", -time.Hour, "-1h"},
		{"-2d", -48 * time.Hour, "-2d"},
		{"+5m", 5 * time.Minute, "5m"},
	} {
		got, err := ParseDuration(tc.in)
		if err != nil || time.Duration(got) != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, time.Duration(got), err, tc.want)
			continue
		}
		if got.String() != tc.out {
			t.Errorf("Duration(%v).String() = %q, want %q", tc.want, got.String(), tc.out)
		}
		if back, err := ParseDuration(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q: %v, %v", got.String(), back, err)
		}
	}
	for _, in := range []string{"", "-", "d", "5", "30 days", "5x", "1y", "1.2.3h", "99999999999999999999d", "3000000w", "h1"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, d)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	p := Policy{Name: "p", Jitter: Duration(90 * time.Second),
		Retention: Retention{KeepWithin: Duration(30 * 24 * time.Hour)},
		Targets:   Targets{RPO: Duration(time.Hour + time.Nanosecond)}}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"jitter":"1m30s"`, `"keep_within":"30d"`, `"rpo":"1h0m0.000000001s"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	var back Policy
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, p) {
		t.Errorf("JSON round trip: %+v, %v", back, err)
	}
	var d Duration
	if err := json.Unmarshal([]byte(`3600`), &d); err == nil {
		t.Error("a bare number is ambiguous and must be rejected")
	}
}

func readPolicyFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "policies", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePoliciesValid(t *testing.T) {
	ps, warns, err := ParsePoliciesWithWarnings(readPolicyFile(t, "valid.yaml"), "valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Name != "web" || ps[1].Name != "db-dumps" {
		t.Fatalf("policies %+v", ps)
	}
	web := ps[0]
	if web.Retention.KeepWithin != Duration(48*time.Hour) || web.Targets.RPO != Duration(6*time.Hour) ||
		web.Jitter != Duration(10*time.Minute) || web.Agents["env"] != "prod" || len(web.Paths) != 2 ||
		web.Drill == nil || web.Drill.Verify[0].Timeout != Duration(time.Minute) || web.MaxAttempts != 4 ||
		len(web.Changing) != 1 || web.Changing[0] != "*.log" || !web.IgnoreInode || ps[1].IgnoreInode ||
		!web.OneFileSystem || !web.ExcludeCaches || len(web.ExcludeIfPresent) != 1 || web.ExcludeIfPresent[0] != ".nobackup" ||
		web.ExcludeLargerThan != "4GiB" || ps[1].OneFileSystem || ps[1].ExcludeCaches || ps[1].ExcludeIfPresent != nil {
		t.Errorf("web decoded wrong: %+v", web)
	}
	// Both policies keep snapshots by rules nothing applies yet: said once
	// each, nothing else.
	if len(warns) != 2 || !strings.Contains(warns[0].String(), "valid.yaml:21: retention: applied by the agent") ||
		!strings.Contains(warns[1].String(), "valid.yaml:49: retention: applied by the agent") {
		t.Errorf("warnings %v, want one about retention per policy", warns)
	}
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}
}

// TestParsePoliciesInvalid pins every problem of a three-document file with
// many mistakes: one error, all of them, each with its line and field.
func TestParsePoliciesInvalid(t *testing.T) {
	ps, err := ParsePolicies(readPolicyFile(t, "invalid.yaml"), "invalid.yaml")
	if ps != nil {
		t.Error("an invalid file must be rejected whole")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *ValidationError, got %v", err)
	}
	want := []struct {
		line  int
		field string
		msg   string
	}{
		{1, "name", `"Web_Servers" must be 1-63 lower-case letters`},
		{3, "schedule", `invalid cron expression "61 * * * *": minute: end of range (61) above maximum (59)`},
		{8, "paths[1]", `"relative/path" is not an absolute path`},
		{9, "exclude[0]", `invalid pattern "[unclosed"`},
		{11, "retention.keep_daily", "must not be negative"},
		{12, "retention.keep_hourlyy", "unknown field"},
		{14, "targets.rpo", `invalid duration "5 days"`},
		{16, "repository", "required"},
		{19, "jitter", "2h must be shorter than the 1h between scheduled runs"},
		{20, "max_concurrent", `expected an integer, got str "many"`},
		{22, "", "a policy must be a mapping"},
		{25, "name", `policy "db" is already defined at line 16`},
		{30, "drill.schedule", "never matches a date"},
		{32, "drill.verify[0].command", "required"},
		{33, "changing[0]", `invalid pattern "[x"`},
	}
	if len(ve.Problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(ve.Problems), len(want), err)
	}
	for i := 0; i < len(want) && i < len(ve.Problems); i++ {
		p, w := ve.Problems[i], want[i]
		if p.File != "invalid.yaml" || p.Line != w.line || p.Field != w.field || !strings.Contains(p.Msg, w.msg) {
			t.Errorf("problem %d = %s; want invalid.yaml:%d: %s: ...%s...", i, p, w.line, w.field, w.msg)
		}
	}
	if !strings.Contains(err.Error(), `invalid.yaml:3: schedule: invalid cron expression "61 * * * *": minute:`) {
		t.Errorf("message does not read file:line: field: ...\n%s", err)
	}
}

func TestParsePoliciesErrors(t *testing.T) {
	const ok = "name: p\nrepository: r\nschedule: '@daily'\nagents: {a: b}\npaths: [/x]\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"empty file", "", "p.yaml: no policy in file"},
		{"only separators", "---\n---\n", "no policy in file"},
		{"syntax error", ok + "tags: x\n  more: y\n", "p.yaml:7: invalid YAML: mapping values are not allowed"},
		{"unclosed quote", ok + "tags: \"x\n", "p.yaml:6: invalid YAML: found unexpected end of stream"},
		{"tab indentation", "name: p\n\tschedule: x\n", "p.yaml:2: invalid YAML"},
		{"duplicate key", ok + "name: q\n", "p.yaml:6: "},
		{"unknown top-level field", ok + "retain: 3\n", "p.yaml:6: retain: unknown field"},
		{"unknown nested field", ok + "drill:\n  verify:\n    - command: x\n      timeoutt: 1m\n", "p.yaml:9: drill.verify[0].timeoutt: unknown field"},
		{"scalar document", "just a string\n", "p.yaml:1: a policy must be a mapping"},
		{"wrong type for a struct", ok + "retention: 7\n", "p.yaml:6: retention: expected a mapping"},
		{"wrong type for a list", strings.Replace(ok, "paths: [/x]", "paths: /x", 1), "p.yaml:5: paths: expected a list of strings"},
		{"duration as a number", ok + "jitter: 60\n", "p.yaml:6: jitter: invalid duration \"60\": missing unit"},
		{"duration as a mapping", ok + "jitter: {a: 1}\n", "p.yaml:6: jitter: expected a duration"},
		{"missing everything", "tags: [x]\n", "p.yaml:1: name: required"},
		{"empty selector key", strings.Replace(ok, "{a: b}", `{"": b}`, 1), "p.yaml:4: agents: selector has an empty label name"},
		{"negative max_attempts", ok + "max_attempts: -1\n", "p.yaml:6: max_attempts: must not be negative"},
		{"negative rpo", ok + "targets: {rpo: -1h}\n", "p.yaml:6: targets.rpo: must be positive"},
		{"negative jitter", ok + "jitter: -1m\n", "p.yaml:6: jitter: must not be negative"},
		{"bad prune schedule", ok + "retention: {keep_last: 3, prune: 'every sunday'}\n", "p.yaml:6: retention.prune: "},
		{"bad max_unused", ok + "retention: {prune: '@weekly', max_unused: 10}\n", `p.yaml:6: retention.max_unused: "10": a fraction must be under 1; did you mean 10%?`},
		{"max_unused of 100%", ok + "retention: {prune: '@weekly', max_unused: 100%}\n", `retention.max_unused: "100%": must be under 100%`},
		{"empty keep tag", ok + "retention: {keep_daily: 7, keep_tags: [hold, ' ']}\n", `p.yaml:6: retention.keep_tags[1]: " " is not a tag (empty)`},
		{"keep tag with a space around it", ok + "retention: {keep_daily: 7, keep_tags: [' hold']}\n", `p.yaml:6: retention.keep_tags[0]: " hold" is not a tag (with a space around it)`},
		{"tag with a space around it", ok + "tags: ['daily ']\n", `p.yaml:6: tags[0]: "daily " is not a tag (with a space around it)`},
		{"tag with a comma", ok + "tags: ['a,b']\n", `p.yaml:6: tags[0]: "a,b" is not a tag (with a comma)`},
		{"path with ..", strings.Replace(ok, "paths: [/x]", "paths: [/etc/../root]", 1), `p.yaml:5: paths[0]: "/etc/../root" is not in its plain form (no '.', '..' or doubled '/'): write "/root"`},
		{"path with a NUL", strings.Replace(ok, "paths: [/x]", `paths: ["/a\0b"]`, 1), `paths[0]: "/a\x00b" holds control characters`},
		{"tag with a newline", ok + `tags: ["daily\nweekly"]` + "\n", `p.yaml:6: tags[0]: "daily\nweekly" is not a tag (with a control character)`},
		{"bad exclude_larger_than", ok + "exclude_larger_than: 4 gigs\n", `p.yaml:6: exclude_larger_than: size "4 gigs": unknown unit`},
		{"zero exclude_larger_than", ok + "exclude_larger_than: 0\n", `p.yaml:6: exclude_larger_than: size "0": 0 would leave out every file`},
		{"marker with a slash", ok + "exclude_if_present: [ok, a/b]\n", `p.yaml:6: exclude_if_present[1]: "a/b": give a file name`},
		{"anchor and alias", ok + "tags: &t [a]\n---\n" + strings.Replace(ok, "name: p", "name: q", 1) + "tagz: *t\n", "p.yaml:13: tagz: unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicies([]byte(tc.yaml), "p.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n  %s\nwant it to contain\n  %s", err, tc.want)
			}
		})
	}
}

func TestPolicyWarnings(t *testing.T) {
	base := "name: p\nrepository: r\npaths: [/x]\n"
	for _, tc := range []struct{ yaml, want string }{
		{base + "schedule: '0 9 * * 1-5'\nagents: {a: b}\ntargets: {rpo: 25h}\n",
			"p.yaml:6: targets.rpo: 25h is shorter than the 3d between scheduled runs"},
		{base + "schedule: '@daily'\n", "p.yaml:1: agents: no selector"},
		{base + "schedule: '@daily'\nagents: {a: b}\ntargets: {rpo: 30s}\n", "p.yaml:6: targets.rpo: 30s is under a minute"},
		{base + "schedule: '@daily'\nagents: {a: b}\ntargets:\n  rpo: 25h\n  rto: 45s\n", "p.yaml:8: targets.rto: 45s is under a minute"},
		{base + "schedule: 'CRON_TZ=Europe/Berlin 30 2 * * *'\nagents: {a: b}\n", "p.yaml:4: schedule: daylight saving time in Europe/Berlin"},
		{base + "schedule: '@daily'\nagents: {a: b}\nretention: {keep_daily: 7}\n", "p.yaml:6: retention: applied by the agent"},
		{base + "schedule: '@daily'\nagents: {a: b}\nretention: {max_unused: 5%}\n", "p.yaml:6: retention.max_unused: has no effect without retention.prune"},
		{base + "schedule: '@daily'\nagents: {a: b}\nretention: {prune: '@weekly'}\n", "p.yaml:6: retention.prune: runs on any drill runner"},
		{base + "schedule: '@daily'\nagents: {a: b}\nretention: {keep_tags: [hold]}\n", "p.yaml:6: retention.keep_tags: protects snapshots from the other retention rules, and there are none"},
		{base + "schedule: '@daily'\nagents: {a: b}\nchanging: [/var/log/*.log, var/log/app.log]\n", `p.yaml:6: changing[1]: pattern "var/log/app.log" has a slash`},
		{base + "schedule: '@daily'\nagents: {a: b}\nexclude: [cache/, '**/node_modules/*.js', '*/srv/x', tmp/cache/]\n", `p.yaml:6: exclude[3]: pattern "tmp/cache/" has a slash, so it is matched against whole paths`},
	} {
		ps, warns, err := ParsePoliciesWithWarnings([]byte(tc.yaml), "p.yaml")
		if err != nil || len(ps) != 1 {
			t.Fatalf("warnings must not reject a file: %v", err)
		}
		if len(warns) != 1 || !strings.Contains(warns[0].String(), tc.want) {
			t.Errorf("warnings %v, want %q", warns, tc.want)
		}
	}
	// keep_within: 6m, six months to restic, is six minutes here.
	_, warns, err := ParsePoliciesWithWarnings([]byte(base+"schedule: '@daily'\nagents: {a: b}\nretention: {keep_within: 6m}\n"), "p.yaml")
	if err != nil || !strings.Contains(fmt.Sprint(warns), "p.yaml:6: retention.keep_within: 6m keeps only the snapshots within 6m0s of the newest: m is minutes, not months") {
		t.Errorf("keep_within: 6m: warnings %v, %v; want one saying m is minutes", warns, err)
	}
	p := testPolicy("p", "@hourly", map[string]string{"a": "b"})
	p.Targets.RPO = Duration(2 * time.Hour)
	if w := p.Warnings(); len(w) != 0 {
		t.Errorf("an achievable RPO warns: %v", w)
	}
}

func TestMarshalPolicyYAMLRoundTrip(t *testing.T) {
	ps, err := ParsePolicies(readPolicyFile(t, "valid.yaml"), "valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		b, err := MarshalPolicyYAML(p)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePolicies(b, "show.yaml")
		if err != nil {
			t.Fatalf("re-parse of\n%s: %v", b, err)
		}
		if len(back) != 1 || !reflect.DeepEqual(back[0], p) {
			t.Errorf("round trip changed %s:\n%+v\n%+v", p.Name, p, back)
		}
		if p.Name == "db-dumps" && !strings.Contains(string(b), "rpo: 1h\n") {
			t.Errorf("durations are written the way people write them:\n%s", b)
		}
	}
}

func TestValidateWithoutFile(t *testing.T) {
	p := Policy{Name: "x", Schedule: "@daily", Paths: []string{"/a", `C:\data`, "b"}}
	err := p.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 {
		t.Fatalf("want 2 problems (repository, paths[2]), got %v", err)
	}
	if ve.Problems[0].Line != 0 || ve.Problems[0].File != "" || ve.Problems[0].Policy != "x" {
		t.Errorf("problem %+v", ve.Problems[0])
	}
	if got := ve.Problems[1].String(); got != `paths[2]: "b" is not an absolute path` {
		t.Errorf("problem reads %q", got)
	}
}

func FuzzParsePolicies(f *testing.F) {
	for _, name := range []string{"valid.yaml", "invalid.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", "policies", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("name: p\nrepository: r\nschedule: 'TZ=UTC'\npaths: [/x]\n"))
	f.Add([]byte("name: p\nrepository: r\nschedule: '@every 1h'\npaths: [/x]\nretention: &r {keep_last: 1}\n---\n<<: *r\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := ParsePolicies(data, "fuzz.yaml")
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error is not a non-empty *ValidationError: %v", err)
			}
			return
		}
		for _, p := range ps {
			if err := p.Validate(); err != nil {
				t.Fatalf("parsed policy does not validate: %v", err)
			}
			b, err := MarshalPolicyYAML(p)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParsePolicies(b, "again.yaml")
			if err != nil {
				t.Fatalf("re-parse of\n%s\n%v", b, err)
			}
			if len(back) != 1 || !reflect.DeepEqual(back[0], p) {
				t.Fatalf("round trip:\n%#v\n%#v", p, back)
			}
			j, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var pj Policy
			if err := json.Unmarshal(j, &pj); err != nil {
				t.Fatal(err)
			}
			pj.normalize()
			if !reflect.DeepEqual(pj, p) {
				t.Fatalf("JSON round trip:\n%#v\n%#v", p, pj)
			}
		}
	})
}

// A key written twice makes yaml decode none of its mapping: the
// duplicate is reported, and not the fields it leaves unset.
func TestParsePoliciesDuplicateKey(t *testing.T) {
	const ok = "name: p\nrepository: r\nschedule: '@daily'\nagents: {a: b}\npaths: [/x]\n"
	for _, tc := range []struct {
		name, yaml, want string
		line             int
	}{
		{"top level", ok + "name: q\n", `mapping key "name" already defined at line 1`, 6},
		{"nested", ok + "retention:\n  keep_last: 3\n  prune: '@weekly'\n  keep_last: 4\n", `mapping key "keep_last" already defined at line 7`, 9},
		{"in a selector", strings.Replace(ok, "{a: b}", "{a: b, a: c}", 1), `mapping key "a" already defined at line 4`, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, warns, err := ParsePoliciesWithWarnings([]byte(tc.yaml), "p.yaml")
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v, want a ValidationError", err)
			}
			if len(ve.Problems) != 1 || ve.Problems[0].Line != tc.line || !strings.Contains(ve.Problems[0].Msg, tc.want) {
				t.Errorf("problems:\n%s\nwant only line %d: ...%s", err, tc.line, tc.want)
			}
			if len(warns) != 0 {
				t.Errorf("warnings %v, want none", warns)
			}
		})
	}
}

// max_attempts and max_concurrent are bounded: a billion retries or
// concurrent backups is a typo. The problem names the field and line.
func TestParsePoliciesBoundsCounts(t *testing.T) {
	base := "name: p\nrepository: r\npaths: [/x]\nschedule: '@daily'\nagents: {a: b}\n"
	for _, tc := range []struct{ yaml, want string }{
		{base + "max_attempts: 1000000000\n", "p.yaml:6: max_attempts: want 0 (the default, 3) to 100 (got 1000000000)"},
		{base + "max_attempts: 101\n", "p.yaml:6: max_attempts: want 0"},
		{base + "max_concurrent: 1000000000\n", "p.yaml:6: max_concurrent: want 0 (no limit) to 10000 (got 1000000000)"},
		{base + "max_concurrent: 10001\n", "p.yaml:6: max_concurrent: want 0"},
		{base + "max_attempts: 100\nmax_concurrent: 10000\n", ""},
	} {
		_, err := ParsePolicies([]byte(tc.yaml), "p.yaml")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v, want accepted", tc.yaml, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestDurationErrors: an out-of-range number of a known unit is too long,
// not an unknown unit.
func TestDurationErrors(t *testing.T) {
	for in, want := range map[string]string{
		"9999999999999999999s": "too long",
		"3000000h":             "too long",
		"5x":                   `unknown unit "x"`,
		"1y":                   `unknown unit "y"`,
	} {
		if _, err := ParseDuration(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDuration(%q): %v, want an error saying %s", in, err, want)
		}
	}
}
