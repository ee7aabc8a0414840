package coordinator

import (
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func mustSchedule(t *testing.T, spec string) Schedule {
	t.Helper()
	s, err := ParseSchedule(spec)
	if err != nil {
		t.Fatalf("ParseSchedule(%q): %v", spec, err)
	}
	return s
}

func TestParseScheduleNext(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		after string
		want  []string // the next instants, in order
	}{
		// 5 fields, UTC regardless of the node's zone.
		{"*/15 * * * *", "2026-05-01T10:07:00Z", []string{"2026-05-01T10:15:00Z", "2026-05-01T10:30:00Z"}},
		{"0 9 * * 1-5", "2026-05-01T10:00:00Z", []string{"2026-05-04T09:00:00Z", "2026-05-05T09:00:00Z"}}, // Fri → Mon
		{"0 0 1 jan,jul *", "2026-02-01T00:00:00Z", []string{"2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"}},
		// 6 fields: seconds first.
		{"30 */5 * * * *", "2026-05-01T10:00:00Z", []string{"2026-05-01T10:00:30Z", "2026-05-01T10:05:30Z"}},
		{"*/20 * * * * *", "2026-05-01T10:00:05.5Z", []string{"2026-05-01T10:00:20Z", "2026-05-01T10:00:40Z"}},
		// Strictly after: an instant equal to `after` is not returned.
		{"0 * * * *", "2026-05-01T10:00:00Z", []string{"2026-05-01T11:00:00Z"}},
		// Descriptors.
		{"@hourly", "2026-05-01T10:59:59Z", []string{"2026-05-01T11:00:00Z"}},
		{"@daily", "2026-05-01T10:00:00Z", []string{"2026-05-02T00:00:00Z"}},
		{"@midnight", "2026-05-01T10:00:00Z", []string{"2026-05-02T00:00:00Z"}},
		{"@weekly", "2026-05-01T10:00:00Z", []string{"2026-05-03T00:00:00Z", "2026-05-10T00:00:00Z"}}, // Sundays
		{"@monthly", "2026-05-01T10:00:00Z", []string{"2026-06-01T00:00:00Z"}},
		{"@yearly", "2026-05-01T10:00:00Z", []string{"2027-01-01T00:00:00Z"}},
		{"@annually", "2026-05-01T10:00:00Z", []string{"2027-01-01T00:00:00Z"}},
		// @every: multiples of D since the Unix epoch, whatever `after` is.
		{"@every 1h", "2026-05-01T10:20:00Z", []string{"2026-05-01T11:00:00Z", "2026-05-01T12:00:00Z"}},
		{"@every 90m", "2026-05-01T00:00:00Z", []string{"2026-05-01T01:30:00Z", "2026-05-01T03:00:00Z"}},
		{"@every 7s", "1970-01-01T00:00:00Z", []string{"1970-01-01T00:00:07Z"}},
		{"@every 7s", "1969-12-31T23:59:50Z", []string{"1969-12-31T23:59:53Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:07Z"}},
		{"@every 1d", "2026-05-01T23:59:59.999Z", []string{"2026-05-02T00:00:00Z"}},
		{"@every 2w", "1970-01-01T00:00:00Z", []string{"1970-01-15T00:00:00Z"}},
		{"@every 1500ms", "2026-05-01T00:00:00.1Z", []string{"2026-05-01T00:00:01.5Z", "2026-05-01T00:00:03Z"}},
		// Zones.
		{"CRON_TZ=Europe/Berlin 0 3 * * *", "2026-07-01T00:00:00Z", []string{"2026-07-01T01:00:00Z"}}, // CEST
		{"CRON_TZ=Europe/Berlin 0 3 * * *", "2026-01-15T00:00:00Z", []string{"2026-01-15T02:00:00Z"}}, // CET
		{"TZ=Asia/Kolkata 0 0 * * *", "2026-05-01T00:00:00Z", []string{"2026-05-01T18:30:00Z"}},
		{"CRON_TZ=America/New_York @daily", "2026-05-01T00:00:00Z", []string{"2026-05-01T04:00:00Z"}},
		{"CRON_TZ=UTC @every 1h", "2026-05-01T00:30:00Z", []string{"2026-05-01T01:00:00Z"}},
		{"  @hourly  ", "2026-05-01T10:30:00Z", []string{"2026-05-01T11:00:00Z"}},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			s := mustSchedule(t, tc.spec)
			if s.String() != tc.spec {
				t.Errorf("String() = %q", s.String())
			}
			at := utc(tc.after)
			for i, w := range tc.want {
				got := s.Next(at)
				if !got.Equal(utc(w)) || got.Location() != time.UTC {
					t.Fatalf("instant %d after %s: got %s, want %s", i, tc.after, got.Format(time.RFC3339Nano), w)
				}
				at = got
			}
		})
	}
}

func TestParseScheduleErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"", "empty schedule"},
		{"   ", "empty schedule"},
		{"61 * * * *", `invalid cron expression "61 * * * *": minute: end of range (61) above maximum (59)`},
		{"* 24 * * *", "hour: "},
		{"* * 0 * *", "day of month: "},
		{"* * * 13 *", "month: "},
		{"* * * * 8", "day of week: "},
		{"* * * * mon-fry", "day of week: "},
		{"60 * * * * *", "second: "},
		{"* * * *", "expected 5 fields"},
		{"* * * * * * *", "expected 5 fields"},
		{"0 0 30 2 *", "never matches a date"},
		{"@fortnightly", "unrecognized descriptor"},
		{"@everyday", "unknown descriptor"},
		{"@every", "unknown descriptor"},
		{"@every 0s", "at least 1s"},
		{"@every 500ms", "at least 1s"},
		{"@every -1h", "at least 1s"},
		{"@every soon", "invalid duration"},
		{"@every 1h extra", "invalid duration"},
		{"TZ=UTC", "not followed by a schedule"},
		{"CRON_TZ=Europe/Berlin", "not followed by a schedule"},
		{"CRON_TZ= 0 * * * *", "name an IANA zone"},
		{"CRON_TZ=Local 0 * * * *", "name an IANA zone"},
		{"CRON_TZ=Mars/Olympus 0 * * * *", `unknown time zone "Mars/Olympus"`},
		{"CRON_TZ=Europe/Berlin @every 1h", "takes no time zone"},
	} {
		_, err := ParseSchedule(tc.spec)
		if err == nil {
			t.Errorf("ParseSchedule(%q): no error", tc.spec)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "invalid cron expression ") {
			t.Errorf("ParseSchedule(%q) = %q, want it to contain %q", tc.spec, err, tc.want)
		}
	}
}

// In a zone with daylight saving time the instants are the wall-clock
// matches: a wall time skipped by spring forward does not fire, one repeated
// by fall back fires twice (at two distinct absolute instants).
func TestScheduleDST(t *testing.T) {
	for _, tc := range []struct {
		name, spec, after, until string
		want                     []string
		affected                 bool
	}{
		{"spring forward skips 02:30 on 8 March", "CRON_TZ=America/New_York 30 2 * * *",
			"2026-03-06T12:00:00Z", "2026-03-09T12:00:00Z",
			[]string{"2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"}, true},
		{"fall back repeats 01:30 on 1 November", "CRON_TZ=America/New_York 30 1 * * *",
			"2026-10-30T12:00:00Z", "2026-11-02T12:00:00Z",
			[]string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-02T06:30:00Z"}, true},
		{"a time outside the change shifts by an hour in UTC only", "CRON_TZ=Europe/Berlin 0 4 * * *",
			"2026-03-27T12:00:00Z", "2026-03-31T12:00:00Z",
			[]string{"2026-03-28T03:00:00Z", "2026-03-29T02:00:00Z", "2026-03-30T02:00:00Z", "2026-03-31T02:00:00Z"}, false},
		{"hourly is unaffected on spring forward", "CRON_TZ=Europe/Berlin 0 * * * *",
			"2026-03-28T23:30:00Z", "2026-03-29T03:30:00Z",
			[]string{"2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z", "2026-03-29T03:00:00Z"}, false},
		{"hourly is unaffected on fall back", "CRON_TZ=Europe/Berlin 0 * * * *",
			"2026-10-24T23:30:00Z", "2026-10-25T02:30:00Z",
			[]string{"2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSchedule(t, tc.spec)
			got := Instants(s, utc(tc.after), utc(tc.until), 0)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if !got[i].Equal(utc(tc.want[i])) {
					t.Errorf("instant %d = %s, want %s", i, got[i].Format(time.RFC3339), tc.want[i])
				}
			}
			if s.DSTAffected() != tc.affected {
				t.Errorf("DSTAffected() = %v, want %v", s.DSTAffected(), tc.affected)
			}
		})
	}
}

func TestScheduleDSTAffected(t *testing.T) {
	for spec, want := range map[string]bool{
		"CRON_TZ=Europe/Berlin 30 2 * * *":   true,  // skipped in March, twice in October
		"CRON_TZ=Europe/Berlin 0 3 * * 0":    false, // 03:00 exists once on both Sundays
		"CRON_TZ=Europe/Berlin 0 */4 * * *":  false, // the wall times 00, 04, ... are never skipped
		"CRON_TZ=Europe/Berlin */10 * * * *": false, // spacing unchanged
		"CRON_TZ=America/New_York 0 2 * * *": true,
		"CRON_TZ=Asia/Tokyo 30 2 * * *":      false, // no DST
		"0 2 * * *":                          false,
		"@every 1h":                          false,
	} {
		if got := mustSchedule(t, spec).DSTAffected(); got != want {
			t.Errorf("%q: DSTAffected() = %v, want %v", spec, got, want)
		}
	}
}

func TestScheduleInterval(t *testing.T) {
	for _, tc := range []struct {
		spec              string
		interval, longest time.Duration
	}{
		{"@every 90m", 90 * time.Minute, 90 * time.Minute},
		{"*/5 * * * * *", 5 * time.Second, 5 * time.Second},
		{"0 */4 * * *", 4 * time.Hour, 4 * time.Hour},
		{"0 0,6 * * *", 6 * time.Hour, 18 * time.Hour},
		{"@daily", 24 * time.Hour, 24 * time.Hour},
		{"0 9 * * 1-5", 24 * time.Hour, 72 * time.Hour},
		{"@weekly", 7 * 24 * time.Hour, 7 * 24 * time.Hour},
		{"@monthly", 28 * 24 * time.Hour, 31 * 24 * time.Hour},
		// Measured without DST: 24h, not the 23h/25h/47h around a change.
		{"CRON_TZ=Europe/Berlin 0 2 * * *", 24 * time.Hour, 24 * time.Hour},
	} {
		s := mustSchedule(t, tc.spec)
		if got := s.Interval(); got != tc.interval {
			t.Errorf("%q: Interval() = %s, want %s", tc.spec, got, tc.interval)
		}
		if got := s.LongestGap(); got != tc.longest {
			t.Errorf("%q: LongestGap() = %s, want %s", tc.spec, got, tc.longest)
		}
	}
	var zero Schedule
	if !zero.IsZero() || !zero.Next(time.Now()).IsZero() || zero.Interval() != 0 {
		t.Error("the zero Schedule must never fire")
	}
}

func TestInstants(t *testing.T) {
	s := mustSchedule(t, "@every 1m")
	after, until := utc("2026-05-01T10:00:00Z"), utc("2026-05-01T10:10:00Z")
	got := Instants(s, after, until, 0)
	if len(got) != 10 || !got[0].Equal(after.Add(time.Minute)) || !got[9].Equal(until) {
		t.Fatalf("(after, until] must exclude after and include until: %v", got)
	}
	if got := Instants(s, after, until, 3); len(got) != 3 || !got[2].Equal(after.Add(3*time.Minute)) {
		t.Errorf("max 3: %v", got)
	}
	if got := Instants(s, until, after, 0); len(got) != 0 {
		t.Errorf("empty range: %v", got)
	}
}
