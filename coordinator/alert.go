package coordinator

import "time"

// AlertKind names a condition that alerts.
type AlertKind string

// Alert kinds.
const (
	AlertBackupFailed AlertKind = "backup_failed" // a policy's newest backup on an agent failed
	AlertRPOMissed    AlertKind = "rpo_missed"    // no successful backup within the policy's RPO target
	AlertDrillFailed  AlertKind = "drill_failed"  // the newest drill failed (incl. over its RTO target)
	AlertDamage       AlertKind = "verify_damage" // verification found damaged packs
	AlertAgentUnseen  AlertKind = "agent_unseen"  // an agent has not been in touch for too long
)

// Alert is one ongoing (or recently resolved) problem. Its Key identifies
// the problem ("drill_failed/db"), so the same problem is one alert however
// often it is observed.
type Alert struct {
	Key        string    `json:"key"`
	Kind       AlertKind `json:"kind"`
	Subject    string    `json:"subject"` // the policy, agent or repository concerned
	Message    string    `json:"message"`
	OpenedAt   time.Time `json:"opened_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// Delivered maps a target name to the last phase delivered to it
	// ("open" or "resolve").
	Delivered map[string]string `json:"delivered,omitempty"`
}

// AlertTarget is where alerts are sent.
type AlertTarget struct {
	Name      string      `json:"name"`
	Kind      string      `json:"kind"` // "webhook" (generic JSON) or "slack" (incoming webhook)
	URL       string      `json:"url"`
	Kinds     []AlertKind `json:"kinds,omitempty"` // only these kinds; empty: all
	CreatedAt time.Time   `json:"created_at"`
	CreatedBy string      `json:"created_by,omitempty"`
}
