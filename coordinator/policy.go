package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// Duration is a time.Duration that reads and writes as a duration string
// in YAML and JSON: Go syntax ("36h", "15m") plus days ("30d") and weeks
// ("2w"). See ParseDuration.
type Duration time.Duration

// Policy says what to back up, where, when, and what recovery targets the
// result must meet. Policies are written in YAML and applied with
// 'lifeboat policy apply -f FILE'.
type Policy struct {
	Name       string            `json:"name" yaml:"name"`
	Repository string            `json:"repository" yaml:"repository"` // name of a repository registered with 'lifeboat repo add'
	Schedule   string            `json:"schedule" yaml:"schedule"`     // cron (5 or 6 fields), @every D, @daily..., optional CRON_TZ= prefix
	Agents     map[string]string `json:"agents" yaml:"agents"`         // label selector: every key must match
	Paths      []string          `json:"paths" yaml:"paths"`
	Exclude    []string          `json:"exclude,omitempty" yaml:"exclude,omitempty"`
	// Changing names files expected to change while they are read (logs
	// being written to), as 'lifeboat backup --changing' does.
	Changing []string `json:"changing,omitempty" yaml:"changing,omitempty"`
	// IgnoreInode makes the files cache ignore inode and device numbers, as
	// 'lifeboat backup --ignore-inode' does.
	IgnoreInode bool `json:"ignore_inode,omitempty" yaml:"ignore_inode,omitempty"`
	// OneFileSystem, ExcludeCaches, ExcludeIfPresent and
	// ExcludeLargerThan (a size, ParseSize) leave out what 'lifeboat
	// backup' -x, --exclude-caches, --exclude-if-present and
	// --exclude-larger-than do. Agents of earlier releases ignore them.
	OneFileSystem     bool       `json:"one_file_system,omitempty" yaml:"one_file_system,omitempty"`
	ExcludeCaches     bool       `json:"exclude_caches,omitempty" yaml:"exclude_caches,omitempty"`
	ExcludeIfPresent  []string   `json:"exclude_if_present,omitempty" yaml:"exclude_if_present,omitempty"`
	ExcludeLargerThan string     `json:"exclude_larger_than,omitempty" yaml:"exclude_larger_than,omitempty"`
	Tags              []string   `json:"tags,omitempty" yaml:"tags,omitempty"`
	Retention         Retention  `json:"retention" yaml:"retention"`
	Targets           Targets    `json:"targets" yaml:"targets"`
	Drill             *DrillSpec `json:"drill,omitempty" yaml:"drill,omitempty"`
	// MaxConcurrent limits running jobs of this policy across agents (0 = no limit).
	MaxConcurrent int `json:"max_concurrent,omitempty" yaml:"max_concurrent,omitempty"`
	// Jitter delays each agent's run by a deterministic offset in [0, Jitter).
	Jitter Duration `json:"jitter,omitempty" yaml:"jitter,omitempty"`
	// MaxAttempts bounds retries of a failed or expired job (0 = 3).
	MaxAttempts int `json:"max_attempts,omitempty" yaml:"max_attempts,omitempty"`
	// VerifyEvery is how often every pack of the policy's repository must
	// be read and verified (0 = DefaultVerifyEvery; a repository shared by
	// several policies uses the shortest).
	VerifyEvery Duration `json:"verify_every,omitempty" yaml:"verify_every,omitempty"`
}

// Retention is a restic-style keep policy.
type Retention struct {
	KeepLast    int      `json:"keep_last,omitempty" yaml:"keep_last,omitempty"`
	KeepHourly  int      `json:"keep_hourly,omitempty" yaml:"keep_hourly,omitempty"`
	KeepDaily   int      `json:"keep_daily,omitempty" yaml:"keep_daily,omitempty"`
	KeepWeekly  int      `json:"keep_weekly,omitempty" yaml:"keep_weekly,omitempty"`
	KeepMonthly int      `json:"keep_monthly,omitempty" yaml:"keep_monthly,omitempty"`
	KeepYearly  int      `json:"keep_yearly,omitempty" yaml:"keep_yearly,omitempty"`
	KeepWithin  Duration `json:"keep_within,omitempty" yaml:"keep_within,omitempty"`
	// KeepTags protects the snapshots that carry any of these tags (a
	// legal hold set with 'lifeboat tag --add') from the rules above.
	KeepTags []string `json:"keep_tags,omitempty" yaml:"keep_tags,omitempty"`
	// Prune is a schedule (like the policy's) on which one of the
	// policy's drill runners — agents that hold the identity — prunes the
	// policy's repository, freeing what forgotten snapshots held;
	// MaxUnused is that prune's --max-unused ("10%" when empty).
	Prune     string `json:"prune,omitempty" yaml:"prune,omitempty"`
	MaxUnused string `json:"max_unused,omitempty" yaml:"max_unused,omitempty"`
}

// Rules returns the retention as the snapshot package applies it
// ('lifeboat forget' with the same --keep-* values).
func (r Retention) Rules() snapshot.Retention {
	return snapshot.Retention{
		KeepLast: r.KeepLast, KeepHourly: r.KeepHourly, KeepDaily: r.KeepDaily, KeepWeekly: r.KeepWeekly,
		KeepMonthly: r.KeepMonthly, KeepYearly: r.KeepYearly, KeepWithin: time.Duration(r.KeepWithin),
		KeepTags: r.KeepTags,
	}
}

// Targets are the recovery objectives a policy promises.
type Targets struct {
	RPO Duration `json:"rpo,omitempty" yaml:"rpo,omitempty"` // maximum age of the newest good snapshot
	RTO Duration `json:"rto,omitempty" yaml:"rto,omitempty"` // maximum time to a verified restore (measured by drills)
}

// DrillSpec configures restore drills (used by the drill subsystem).
type DrillSpec struct {
	Schedule      string            `json:"schedule,omitempty" yaml:"schedule,omitempty"`
	Runner        map[string]string `json:"runner,omitempty" yaml:"runner,omitempty"`
	Snapshot      string            `json:"snapshot,omitempty" yaml:"snapshot,omitempty"`
	Sample        string            `json:"sample,omitempty" yaml:"sample,omitempty"`
	Verify        []VerifyCommand   `json:"verify,omitempty" yaml:"verify,omitempty"`
	Scratch       string            `json:"scratch,omitempty" yaml:"scratch,omitempty"`
	ScratchLimit  string            `json:"scratch_limit,omitempty" yaml:"scratch_limit,omitempty"`
	KeepOnFailure bool              `json:"keep_on_failure,omitempty" yaml:"keep_on_failure,omitempty"`
}

// VerifyCommand is a user check run against a drill's restored tree.
type VerifyCommand struct {
	Command string   `json:"command" yaml:"command"`
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// ---- Duration encoding ----

const (
	durDay  = 24 * time.Hour
	durWeek = 7 * durDay
)

// String formats d the way policy files write it: "30d", "2w", "36h",
// "1h30m", "1m30s". Whole weeks and days use w and d; everything else is Go's
// duration syntax without trailing zero units. ParseDuration(d.String()) == d.
func (d Duration) String() string {
	td := time.Duration(d)
	switch {
	case td == 0:
		return "0s"
	case td%durWeek == 0:
		return strconv.FormatInt(int64(td/durWeek), 10) + "w"
	case td%durDay == 0:
		return strconv.FormatInt(int64(td/durDay), 10) + "d"
	}
	s := td.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseDuration reads a policy duration: Go syntax ("90s", "36h", "1h30m")
// plus days ("30d") and weeks ("2w"), which may be combined ("1w2d12h").
// A day is always 24 hours.
func ParseDuration(s string) (Duration, error) {
	d, err := parseDuration(s)
	return Duration(d), err
}

func parseDuration(s string) (time.Duration, error) {
	orig := s
	if s == "" {
		return 0, errors.New("empty duration")
	}
	neg := false
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, fmt.Errorf("invalid duration %q", orig)
	}
	var total float64 // nanoseconds; checked against the int64 range below
	var exact time.Duration
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		num := s[:i]
		j := i
		for j < len(s) && !(s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
			j++
		}
		unit := s[i:j]
		s = s[j:]
		if num == "" || num == "." {
			return 0, fmt.Errorf("invalid duration %q: expected a number before %q", orig, unit)
		}
		if unit == "" {
			return 0, fmt.Errorf("invalid duration %q: missing unit (use s, m, h, d or w, e.g. \"30d\")", orig)
		}
		var part time.Duration
		switch unit {
		case "d", "w":
			mult := durDay
			if unit == "w" {
				mult = durWeek
			}
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q", orig)
			}
			if f*float64(mult) > math.MaxInt64 {
				return 0, fmt.Errorf("invalid duration %q: too long", orig)
			}
			if strings.Contains(num, ".") {
				part = time.Duration(f * float64(mult))
			} else {
				n, err := strconv.ParseInt(num, 10, 64)
				if err != nil || n > int64(math.MaxInt64/mult) {
					return 0, fmt.Errorf("invalid duration %q: too long", orig)
				}
				part = time.Duration(n) * mult
			}
		default:
			p, err := time.ParseDuration(num + unit)
			switch {
			case err != nil && !slices.Contains([]string{"ns", "us", "µs", "μs", "ms", "s", "m", "h"}, unit):
				return 0, fmt.Errorf("invalid duration %q: unknown unit %q (use ns, us, ms, s, m, h, d or w)", orig, unit)
			case err != nil: // a known unit: the number is out of range
				return 0, fmt.Errorf("invalid duration %q: too long", orig)
			}
			part = p
		}
		total += float64(part)
		if total > math.MaxInt64 || exact > math.MaxInt64-part {
			return 0, fmt.Errorf("invalid duration %q: too long", orig)
		}
		exact += part
	}
	if neg {
		exact = -exact
	}
	return exact, nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalJSON writes d as a duration string ("36h").
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"36h\" or \"30d\": %w", err)
	}
	return d.UnmarshalText([]byte(s))
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string; errors carry the node's line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: expected a duration such as \"36h\" or \"30d\"", n.Line)}}
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		// The column tells ParsePolicies which of the fields written on
		// that line (a flow mapping) this is.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: column %d: %v", n.Line, n.Column, err)}}
	}
	*d = v
	return nil
}

// ParseSize reads a byte size: a number with an optional unit, "0",
// "1048576", "512MiB", "1.5GiB", "10G", "500kB". K, M, G, T, KiB, MiB, GiB,
// TiB are powers of 1024; kB, KB, MB, GB, TB powers of 1000.
func ParseSize(s string) (int64, error) {
	in := s
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(c rune) bool { return (c < '0' || c > '9') && c != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit, like 10GiB, 500MB or 1048576", in)
	}
	mult := map[string]float64{
		"": 1, "B": 1,
		"K": 1 << 10, "KiB": 1 << 10, "k": 1 << 10,
		"M": 1 << 20, "MiB": 1 << 20,
		"G": 1 << 30, "GiB": 1 << 30,
		"T": 1 << 40, "TiB": 1 << 40,
		"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (want B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)", in, unit)
	}
	v := f * m
	if v >= math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q: too large", in)
	}
	if v > 0 && v < 1 {
		v = 1
	}
	return int64(v), nil
}

// ParseExcludeLargerThan reads exclude_larger_than (backup's
// --exclude-larger-than): a size above 0. Zero is refused: BackupOptions
// takes it for no limit, so it silently kept every file it was written
// to leave out (all but empty ones).
func ParseExcludeLargerThan(s string) (int64, error) {
	n, err := ParseSize(s)
	if err == nil && n == 0 {
		err = fmt.Errorf("size %q: 0 would leave out every file that is not empty; give a size above 0, or none for no limit", s)
	}
	return n, err
}

// ParseSample reads a drill's sample: "" or "all" (every file, 100) or a
// percentage in (0, 100] such as "10%".
func ParseSample(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		return 100, nil
	}
	num, ok := strings.CutSuffix(s, "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if !ok || err != nil || !(f > 0 && f <= 100) {
		return 0, fmt.Errorf("sample %q: want \"all\" or a percentage in (0, 100], like \"10%%\"", s)
	}
	return f, nil
}

// CheckSnapshotSelector checks a drill's snapshot selector: "latest",
// "random-within:30d" (or "random-within 30d"), or a snapshot ID prefix.
func CheckSnapshotSelector(s string) error {
	s = strings.TrimSpace(s)
	if s == "" || s == "latest" {
		return nil
	}
	if rest, ok := strings.CutPrefix(s, "random-within"); ok {
		rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
		if d, err := ParseDuration(rest); err != nil || d <= 0 {
			return fmt.Errorf("snapshot %q: want random-within:DURATION, like random-within:30d", s)
		}
		return nil
	}
	if strings.Trim(s, "0123456789abcdef") != "" || len(s) < 4 || len(s) > 64 {
		return fmt.Errorf("snapshot %q: want latest, random-within:DURATION or a snapshot ID (at least 4 hex digits)", s)
	}
	return nil
}
