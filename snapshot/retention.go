package snapshot

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Retention says which snapshots to keep; see Keep. The zero value keeps
// everything.
type Retention struct {
	KeepLast    int
	KeepHourly  int
	KeepDaily   int
	KeepWeekly  int
	KeepMonthly int
	KeepYearly  int
	KeepWithin  time.Duration
	// KeepTags protects snapshots that carry any of these tags (a legal
	// hold, the last backup before a migration) from the other rules. It
	// is not a rule of its own: a Retention with only KeepTags keeps
	// everything, as an empty one does.
	KeepTags []string
}

// IsZero reports whether r has no rule that forgets anything: it keeps
// every snapshot.
func (r Retention) IsZero() bool {
	return r.KeepLast == 0 && r.KeepHourly == 0 && r.KeepDaily == 0 && r.KeepWeekly == 0 &&
		r.KeepMonthly == 0 && r.KeepYearly == 0 && r.KeepWithin == 0
}

// GroupKey identifies the group retention rules are applied to: the host
// and the set of backed-up paths (cleaned, in any order).
func GroupKey(host string, paths []string) string {
	clean := make([]string, len(paths))
	for i, p := range paths {
		clean[i] = filepath.Clean(p)
	}
	sort.Strings(clean)
	return host + "\x00" + strings.Join(clean, "\x00")
}

// Group is the snapshots of one host and set of paths (see GroupKey),
// in the order of the list given to Groups (List's: oldest first).
type Group struct {
	Key       string
	Host      string
	Paths     []string // sorted
	Snapshots []*Snapshot
}

// Refs returns the group's snapshots as Keep takes them.
func (g Group) Refs() []SnapshotRef {
	refs := make([]SnapshotRef, len(g.Snapshots))
	for i, s := range g.Snapshots {
		refs[i] = SnapshotRef{ID: s.ID.String(), Time: s.Time, Tags: s.Tags}
	}
	return refs
}

// Groups sorts the snapshots that flt matches into their retention groups,
// ordered by key.
func Groups(list []*Snapshot, flt Filter) []Group {
	byKey := map[string]*Group{}
	var keys []string
	for _, s := range list {
		if !flt.Match(s) {
			continue
		}
		k := GroupKey(s.Host, s.Paths)
		g := byKey[k]
		if g == nil {
			paths := append([]string(nil), s.Paths...)
			sort.Strings(paths)
			g = &Group{Key: k, Host: s.Host, Paths: paths}
			byKey[k] = g
			keys = append(keys, k)
		}
		g.Snapshots = append(g.Snapshots, s)
	}
	sort.Strings(keys)
	out := make([]Group, len(keys))
	for i, k := range keys {
		out[i] = *byKey[k]
	}
	return out
}

// SnapshotRef is the part of a snapshot retention looks at.
type SnapshotRef struct {
	ID   string
	Time time.Time
	Tags []string
}

// Keep applies a restic-style retention policy to one policy's snapshots.
// It returns the snapshots to keep and to forget (both newest first) and,
// for each kept snapshot, the rules that keep it.
//
// Snapshots are considered newest first (ties broken by ID, so the result
// does not depend on input order):
//   - keep_last N keeps the N newest;
//   - keep_hourly/daily/weekly/monthly/yearly N keep the newest snapshot of
//     each of the N newest hours, days, ISO weeks, months or years that have
//     a snapshot (periods are UTC, so every coordinator agrees);
//   - keep_within D keeps every snapshot taken within D of the newest one —
//     measured from the newest snapshot, not from now, so backups that stop
//     running never age the last good ones out;
//   - keep_tags keeps every snapshot that carries one of the tags, besides
//     those the other rules keep (which count it as they count any other).
//
// A snapshot newer than now (a skewed clock) is always kept and left out
// of the rules: "newest" above means the newest not after now, so one
// snapshot dated a year ahead cannot have the others forgotten. An empty
// Retention keeps everything: forgetting needs an explicit rule.
//
// 'lifeboat forget' applies it to each group of snapshots (same host and
// paths); an agent applies a policy's retention to the policy's snapshots
// after each backup.
func Keep(snaps []SnapshotRef, r Retention, now time.Time) (keep, forget []SnapshotRef, reasons map[string][]string) {
	list := append([]SnapshotRef(nil), snaps...)
	sort.SliceStable(list, func(i, j int) bool {
		if !list[i].Time.Equal(list[j].Time) {
			return list[i].Time.After(list[j].Time)
		}
		return list[i].ID > list[j].ID
	})
	reasons = map[string][]string{}
	if r.IsZero() {
		for _, s := range list {
			reasons[s.ID] = []string{"no retention rules"}
		}
		return list, nil, reasons
	}

	type bucket struct {
		name  string
		count int
		key   func(time.Time) string
		last  string
	}
	buckets := []*bucket{
		{name: "last", count: r.KeepLast},
		{name: "hourly", count: r.KeepHourly, key: func(t time.Time) string { return t.Format("2006-01-02T15") }},
		{name: "daily", count: r.KeepDaily, key: func(t time.Time) string { return t.Format("2006-01-02") }},
		{name: "weekly", count: r.KeepWeekly, key: func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{name: "monthly", count: r.KeepMonthly, key: func(t time.Time) string { return t.Format("2006-01") }},
		{name: "yearly", count: r.KeepYearly, key: func(t time.Time) string { return t.Format("2006") }},
	}
	// A snapshot dated after now is kept, and counts for nothing else: a
	// host whose clock ran a year ahead must not make keep_within measure
	// from its snapshot, nor take keep_last's places or a period's, and so
	// have every correctly dated snapshot forgotten.
	var future int
	for future < len(list) && list[future].Time.After(now) {
		reasons[list[future].ID] = []string{"newer than now (a clock ahead?): kept, and not counted by the rules"}
		keep = append(keep, list[future])
		future++
	}
	list = list[future:]
	var newest time.Time
	if len(list) > 0 {
		newest = list[0].Time
	}
	for i, s := range list {
		t := s.Time.UTC()
		var why []string
		for _, b := range buckets {
			if b.count <= 0 {
				continue
			}
			if b.key == nil { // keep_last: one per snapshot
				why = append(why, fmt.Sprintf("last snapshot (%d of %d)", i+1, r.KeepLast))
				b.count--
				continue
			}
			if k := b.key(t); k != b.last {
				b.last = k
				b.count--
				why = append(why, b.name+" snapshot ("+k+")")
			}
		}
		if r.KeepWithin > 0 && !s.Time.Before(newest.Add(-r.KeepWithin)) {
			why = append(why, "within "+r.KeepWithin.String()+" of the newest snapshot")
		}
		for _, tag := range r.KeepTags {
			if slices.Contains(s.Tags, tag) {
				why = append(why, "tagged "+tag)
			}
		}
		if len(why) > 0 {
			keep = append(keep, s)
			reasons[s.ID] = why
		} else {
			forget = append(forget, s)
		}
	}
	return keep, forget, reasons
}
