package coordinator

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // CRON_TZ zones resolve the same on every node, even without system zoneinfo

	"github.com/robfig/cron/v3"
)

// Schedule is a parsed policy schedule. Its instants are a pure function of
// the spec: they never depend on when the coordinator started, which node is
// leader, or the node's local time zone. That is what lets a new leader
// recompute exactly the instants an old leader was going to fire.
//
// Three forms are accepted:
//
//   - cron with 5 fields (minute hour day-of-month month day-of-week) or 6
//     fields (a leading seconds field). Instants are the wall-clock times
//     matching the expression in the schedule's zone: UTC, or the zone of a
//     "CRON_TZ=Zone " (or "TZ=Zone ") prefix. In a zone with daylight saving
//     time a wall time that does not exist (spring forward) is skipped and a
//     wall time that occurs twice (fall back) fires twice: the instants are
//     distinct absolute times either way.
//   - descriptors: @yearly (@annually), @monthly, @weekly, @daily (@midnight),
//     @hourly, the same as their cron equivalents (zone prefix allowed).
//   - "@every D" with D a duration of at least one second ("90s", "6h", "1d",
//     "2w"). Its instants are the multiples of D since the Unix epoch
//     (1970-01-01T00:00:00Z): "@every 1h" fires on the hour, "@every 90m" at
//     00:00, 01:30, 03:00 UTC and so on. (robfig/cron's own @every counts from
//     the time it was started, which a failover would shift.)
//
// The zero Schedule never fires.
type Schedule struct {
	spec  string
	every time.Duration      // > 0 for "@every D"
	cron  *cron.SpecSchedule // otherwise
}

// cronParser accepts 5 fields, 6 with seconds, and descriptors. Zone prefixes
// are stripped before it sees the spec (its own handling panics on "TZ=X"
// without a space and defaults to the node's local zone).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

var cronFieldNames = [...]string{"second", "minute", "hour", "day of month", "month", "day of week"}

// ParseSchedule parses a policy schedule (see Schedule). Errors read
// `invalid cron expression "61 * * * *": minute: end of range (61) above
// maximum (59): 61`.
func ParseSchedule(spec string) (Schedule, error) {
	bad := func(format string, args ...any) (Schedule, error) {
		return Schedule{}, fmt.Errorf("invalid cron expression %q: %s", spec, fmt.Sprintf(format, args...))
	}
	rest := strings.TrimSpace(spec)
	if rest == "" {
		return bad("empty schedule")
	}
	loc := time.UTC
	zoned, ok := strings.CutPrefix(rest, "CRON_TZ=")
	if !ok {
		zoned, ok = strings.CutPrefix(rest, "TZ=")
	}
	if ok {
		name, after, found := strings.Cut(zoned, " ")
		if !found || strings.TrimSpace(after) == "" {
			return bad("time zone %q is not followed by a schedule", name)
		}
		if name == "" || name == "Local" {
			return bad("time zone %q: name an IANA zone such as Europe/Berlin or UTC", name)
		}
		l, err := loadLocation(name)
		if err != nil {
			return bad("unknown time zone %q", name)
		}
		loc, rest = l, strings.TrimSpace(after)
	}
	if d, ok := strings.CutPrefix(rest, "@every"); ok {
		if d == "" || (d[0] != ' ' && d[0] != '\t') {
			return bad("unknown descriptor %q", rest)
		}
		every, err := parseDuration(strings.TrimSpace(d))
		if err != nil {
			return bad("@every: %v", err)
		}
		if every < time.Second {
			return bad("@every: interval must be at least 1s")
		}
		if loc != time.UTC {
			return bad("@every counts from the Unix epoch and takes no time zone")
		}
		return Schedule{spec: spec, every: every}, nil
	}
	if !strings.HasPrefix(rest, "@") {
		fields := strings.Fields(rest)
		if len(fields) != 5 && len(fields) != 6 {
			return bad("expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), got %d", len(fields))
		}
	}
	s, err := cronParser.Parse(rest)
	if err != nil {
		if f := failingField(rest); f != "" {
			return bad("%s: %v", f, err)
		}
		return bad("%v", err)
	}
	spec6, ok := s.(*cron.SpecSchedule)
	if !ok { // cannot happen: @every is handled above
		return bad("unsupported schedule")
	}
	spec6.Location = loc
	sc := Schedule{spec: spec, cron: spec6}
	// A day that never comes ("0 0 30 2 *") would make Next return the zero
	// time; reject it here rather than let a policy silently never run.
	if sc.Next(scheduleEpoch).IsZero() {
		return bad("the expression never matches a date")
	}
	return sc, nil
}

// zoneCache memoizes time.LoadLocation, which reads zoneinfo from disk on
// every call; the planner parses every policy's schedule on each tick.
var zoneCache sync.Map // zone name → *time.Location

func loadLocation(name string) (*time.Location, error) {
	if l, ok := zoneCache.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zoneCache.Store(name, l)
	return l, nil
}

// failingField names the first field of a cron expression that does not
// parse on its own, by parsing each field with all others set to "*".
func failingField(expr string) string {
	fields := strings.Fields(expr)
	names := cronFieldNames[1:]
	if len(fields) == 6 {
		names = cronFieldNames[:]
	}
	if len(fields) != len(names) {
		return ""
	}
	for i := range fields {
		probe := make([]string, len(fields))
		for j := range probe {
			probe[j] = "*"
		}
		probe[i] = fields[i]
		if _, err := cronParser.Parse(strings.Join(probe, " ")); err != nil {
			return names[i]
		}
	}
	return ""
}

// scheduleEpoch is the fixed reference from which interval estimates are
// sampled, so that they too are a pure function of the spec.
var scheduleEpoch = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// String returns the spec the schedule was parsed from.
func (s Schedule) String() string { return s.spec }

// IsZero reports whether s is the zero Schedule (which never fires).
func (s Schedule) IsZero() bool { return s.every == 0 && s.cron == nil }

// Next returns the first instant of s strictly after t, in UTC, or the zero
// time if there is none (the zero Schedule, or a cron expression with no
// match within five years of t).
func (s Schedule) Next(t time.Time) time.Time {
	switch {
	case s.every > 0:
		return nextMultiple(t, s.every)
	case s.cron != nil:
		n := s.cron.Next(t)
		if n.IsZero() {
			return n
		}
		return n.UTC()
	}
	return time.Time{}
}

// nextMultiple returns the first multiple of d since the Unix epoch strictly
// after t. It works on (seconds, nanoseconds) so that no date Go can
// represent overflows.
func nextMultiple(t time.Time, d time.Duration) time.Time {
	if d%time.Second == 0 {
		ds := int64(d / time.Second)
		sec := t.Unix()
		q := floorDiv(sec, ds)
		// t >= q*ds; t is exactly q*ds only if no nanoseconds remain.
		return time.Unix((q+1)*ds, 0).UTC()
	}
	// Sub-second precision: nanoseconds since the epoch (years 1678–2262).
	n := t.UnixNano()
	q := floorDiv(n, int64(d))
	return time.Unix(0, (q+1)*int64(d)).UTC()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Interval estimates the shortest time between two consecutive instants of
// s, sampled over up to two years of instants from a fixed date. For
// "@every D" it is exactly D. A CRON_TZ schedule is measured as if its zone
// had no daylight saving time, so "CRON_TZ=Europe/Berlin 0 2 * * *" has an
// interval of 24h even though its instants around a clock change are 23 or
// 47 hours apart. It is meant for validation (jitter must be shorter), not
// for scheduling.
func (s Schedule) Interval() time.Duration {
	shortest, _ := s.nominal().gaps()
	return shortest
}

// LongestGap estimates the longest time between two consecutive instants
// (for "0 9 * * 1-5" it is three days, over a weekend), like Interval
// ignoring daylight saving time. An RPO target shorter than this is missed
// between runs even when every run succeeds.
func (s Schedule) LongestGap() time.Duration {
	_, longest := s.nominal().gaps()
	return longest
}

// DSTAffected reports whether daylight saving time in the schedule's zone
// skips or repeats some of its runs: a wall time that does not exist when
// clocks spring forward does not fire that day, one that occurs twice when
// they fall back fires twice. It looks at the zone's clock changes in one
// sample year.
func (s Schedule) DSTAffected() bool {
	if s.cron == nil || s.cron.Location == time.UTC {
		return false
	}
	loc := s.cron.Location
	nom := s.nominal()
	for _, tr := range zoneTransitions(loc, scheduleEpoch, scheduleEpoch.AddDate(1, 0, 0)) {
		// Wall-clock window around the change, as absolute instants in the
		// zone and as the same wall-clock fields read in UTC.
		from, to := tr.Add(-3*time.Hour).In(loc), tr.Add(3*time.Hour).In(loc)
		wall := func(t time.Time) time.Time {
			return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
		}
		zoned := Instants(s, from, to, 0)
		odd := len(zoned) != len(Instants(nom, wall(from), wall(to), 0)) // a skipped wall time
		for i := 1; i < len(zoned); i++ {
			if !wall(zoned[i].In(loc)).After(wall(zoned[i-1].In(loc))) {
				odd = true // a repeated wall time
			}
		}
		if !odd {
			continue
		}
		// Skips and repeats matter only where they change the spacing of
		// runs: an hourly schedule stays hourly across a change.
		lo, hi := nom.gaps()
		for i := 1; i < len(zoned); i++ {
			if g := zoned[i].Sub(zoned[i-1]); g < lo || g > hi {
				return true
			}
		}
		// A window holding one run cannot show a gap: compare with the
		// runs just outside it.
		if len(zoned) <= 1 {
			// prev: the last run before the window (the runs are at most hi
			// apart, give or take the change itself).
			prev, next := s.Next(from.Add(-2*hi-time.Hour)), s.Next(to)
			for n := s.Next(prev); !n.IsZero() && !n.After(from); n = s.Next(n) {
				prev = n
			}
			if len(zoned) == 1 {
				if g := zoned[0].Sub(prev); g < lo || g > hi {
					return true
				}
				if g := next.Sub(zoned[0]); g < lo || g > hi {
					return true
				}
			} else if g := next.Sub(prev); g > hi {
				return true
			}
		}
	}
	return false
}

// zoneTransitions returns the instants in [from, to) at which loc's UTC
// offset changes, to the second.
func zoneTransitions(loc *time.Location, from, to time.Time) []time.Time {
	offset := func(t time.Time) int { _, o := t.In(loc).Zone(); return o }
	var out []time.Time
	for t := from; t.Before(to); t = t.Add(24 * time.Hour) {
		next := t.Add(24 * time.Hour)
		if offset(t) == offset(next) {
			continue
		}
		lo, hi := t, next // offset(lo) != offset(hi)
		for hi.Sub(lo) > time.Second {
			mid := lo.Add(hi.Sub(lo) / 2).Truncate(time.Second)
			if offset(mid) == offset(lo) {
				lo = mid
			} else {
				hi = mid
			}
		}
		out = append(out, hi)
	}
	return out
}

// nominal is s evaluated in UTC.
func (s Schedule) nominal() Schedule {
	if s.cron == nil || s.cron.Location == time.UTC {
		return s
	}
	c := *s.cron
	c.Location = time.UTC
	return Schedule{spec: s.spec, cron: &c}
}

func (s Schedule) gaps() (shortest, longest time.Duration) {
	if s.every > 0 {
		return s.every, s.every
	}
	if s.cron == nil {
		return 0, 0
	}
	const maxSamples = 2000
	end := scheduleEpoch.AddDate(2, 0, 0)
	prev := s.Next(scheduleEpoch)
	for i := 0; i < maxSamples && !prev.IsZero() && prev.Before(end); i++ {
		next := s.Next(prev)
		if next.IsZero() {
			break
		}
		g := next.Sub(prev)
		if shortest == 0 || g < shortest {
			shortest = g
		}
		if g > longest {
			longest = g
		}
		prev = next
	}
	return shortest, longest
}

// Instants returns the instants of s strictly after `after` and no later
// than `until`, oldest first, at most max of them (max <= 0: no bound).
func Instants(s Schedule, after, until time.Time, max int) []time.Time {
	var out []time.Time
	for t := s.Next(after); !t.IsZero() && !t.After(until); t = s.Next(t) {
		if max > 0 && len(out) >= max {
			break
		}
		out = append(out, t)
	}
	return out
}

// errNoSchedule is returned by policy validation for a missing schedule.
var errNoSchedule = errors.New("required (cron expression, @every D or @daily ...)")
