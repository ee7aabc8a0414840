package coordinator

import "time"

// Duration is a time.Duration that reads and writes as a Go duration
// string ("36h", "15m") in YAML and JSON. Days are accepted as "30d".
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
	Tags       []string          `json:"tags,omitempty" yaml:"tags,omitempty"`
	Retention  Retention         `json:"retention" yaml:"retention"`
	Targets    Targets           `json:"targets" yaml:"targets"`
	Drill      *DrillSpec        `json:"drill,omitempty" yaml:"drill,omitempty"`
	// MaxConcurrent limits running jobs of this policy across agents (0 = no limit).
	MaxConcurrent int `json:"max_concurrent,omitempty" yaml:"max_concurrent,omitempty"`
	// Jitter delays each agent's run by a deterministic offset in [0, Jitter).
	Jitter Duration `json:"jitter,omitempty" yaml:"jitter,omitempty"`
	// MaxAttempts bounds retries of a failed or expired job (0 = 3).
	MaxAttempts int `json:"max_attempts,omitempty" yaml:"max_attempts,omitempty"`
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
