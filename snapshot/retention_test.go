package snapshot

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func snapsEvery(start time.Time, step time.Duration, n int) []SnapshotRef {
	out := make([]SnapshotRef, n)
	for i := range out {
		t := start.Add(time.Duration(i) * step)
		out[i] = SnapshotRef{ID: t.Format("0102T15:04"), Time: t}
	}
	return out
}

func ids(ss []SnapshotRef) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestKeep(t *testing.T) {
	// Every 6 hours for 60 days, the newest at 2026-03-01T18:00Z.
	snaps := snapsEvery(utc("2025-12-31T00:00:00Z"), 6*time.Hour, 4*60+4)
	now := utc("2026-03-02T00:00:00Z")
	for _, tc := range []struct {
		name  string
		r     Retention
		kept  int
		first []string // the newest kept, in order
	}{
		{"nothing configured keeps all", Retention{}, len(snaps), nil},
		{"last 3", Retention{KeepLast: 3}, 3, []string{"0301T18:00", "0301T12:00", "0301T06:00"}},
		{"daily 3", Retention{KeepDaily: 3}, 3, []string{"0301T18:00", "0228T18:00", "0227T18:00"}},
		{"hourly 2 is the newest of each hour", Retention{KeepHourly: 2}, 2, []string{"0301T18:00", "0301T12:00"}},
		{"weekly 2 (ISO weeks: Sunday 1 March ends a week)", Retention{KeepWeekly: 2}, 2, []string{"0301T18:00", "0222T18:00"}},
		{"monthly 5 stops at the oldest month", Retention{KeepMonthly: 5}, 4, []string{"0301T18:00", "0228T18:00", "0131T18:00", "1231T18:00"}},
		{"yearly 10", Retention{KeepYearly: 10}, 2, []string{"0301T18:00", "1231T18:00"}},
		{"within 1d of the newest", Retention{KeepWithin: 24 * time.Hour}, 5, []string{"0301T18:00"}},
		{"last and daily overlap", Retention{KeepLast: 2, KeepDaily: 2}, 3, []string{"0301T18:00", "0301T12:00", "0228T18:00"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shuffled := append([]SnapshotRef(nil), snaps...)
			rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			keep, forget, reasons := Keep(shuffled, tc.r, now)
			if len(keep) != tc.kept || len(keep)+len(forget) != len(snaps) {
				t.Fatalf("kept %d, forgot %d; want %d kept of %d", len(keep), len(forget), tc.kept, len(snaps))
			}
			if tc.first != nil && !reflect.DeepEqual(ids(keep)[:len(tc.first)], tc.first) {
				t.Errorf("kept %v, want %v first", ids(keep), tc.first)
			}
			for _, k := range keep {
				if len(reasons[k.ID]) == 0 {
					t.Errorf("%s kept without a reason", k.ID)
				}
			}
			for _, f := range forget {
				if _, ok := reasons[f.ID]; ok {
					t.Errorf("%s forgotten with reasons %v", f.ID, reasons[f.ID])
				}
			}
			again, _, _ := Keep(snaps, tc.r, now)
			if !reflect.DeepEqual(again, keep) {
				t.Error("result depends on input order")
			}
		})
	}
}

func TestKeepEdges(t *testing.T) {
	now := utc("2026-03-02T00:00:00Z")
	if keep, forget, _ := Keep(nil, Retention{KeepLast: 1}, now); len(keep)+len(forget) != 0 {
		t.Error("no snapshots")
	}
	// Backups stopped a year ago: keep_within counts from the newest, so
	// the last good snapshots survive.
	old := snapsEvery(now.AddDate(-1, 0, 0), time.Hour, 48)
	keep, _, _ := Keep(old, Retention{KeepWithin: 12 * time.Hour}, now)
	if len(keep) != 13 {
		t.Errorf("kept %d, want 13", len(keep))
	}
	// A snapshot from the future is kept whatever the rules say, and
	// takes no rule's place: keep_last still keeps the newest real one.
	future := append(snapsEvery(now.Add(-10*time.Hour), time.Hour, 3), SnapshotRef{ID: "future", Time: now.Add(time.Hour)})
	keep, _, reasons := Keep(future, Retention{KeepLast: 1}, now)
	if len(keep) != 2 || keep[0].ID != "future" || !strings.HasPrefix(fmt.Sprint(reasons["future"]), "[newer than now") ||
		fmt.Sprint(reasons[keep[1].ID]) != "[last snapshot (1 of 1)]" || !keep[1].Time.Equal(now.Add(-8*time.Hour)) {
		t.Errorf("kept %v %v", ids(keep), reasons)
	}
	// A host whose clock ran a year ahead: keep_within measures from the
	// newest snapshot not after now, so the real ones of the last
	// 12 hours stay, and daily keeps a real day too.
	skewed := append(snapsEvery(now.Add(-47*time.Hour), time.Hour, 48), SnapshotRef{ID: "ahead", Time: now.AddDate(1, 0, 0)})
	keep, _, _ = Keep(skewed, Retention{KeepWithin: 12 * time.Hour}, now)
	if len(keep) != 14 || keep[0].ID != "ahead" {
		t.Errorf("keep_within with a snapshot a year ahead: kept %d (%v), want it and the 13 of the last 12 hours", len(keep), ids(keep)[:min(len(keep), 3)])
	}
	keep, _, _ = Keep(skewed, Retention{KeepDaily: 1}, now)
	if len(keep) != 2 || !keep[1].Time.Equal(now) {
		t.Errorf("keep_daily 1 with a snapshot a year ahead: kept %v, want it and the newest real one", ids(keep))
	}
	// Same time: ties broken by ID.
	tie := []SnapshotRef{{ID: "a", Time: now}, {ID: "b", Time: now}}
	keep, _, _ = Keep(tie, Retention{KeepLast: 1}, now)
	if keep[0].ID != "b" {
		t.Errorf("tie kept %v", ids(keep))
	}
}

// TestKeepTags: a tagged snapshot is kept whatever the rules, and counts
// in them as any other; tags alone forget nothing.
func TestKeepTags(t *testing.T) {
	snaps := snapsEvery(utc("2026-01-01T00:00:00Z"), 24*time.Hour, 10)
	snaps[2].Tags = []string{"daily", "hold"} // 0103T00:00
	snaps[9].Tags = []string{"hold"}          // the newest
	now := utc("2026-02-01T00:00:00Z")
	keep, forget, reasons := Keep(snaps, Retention{KeepLast: 2, KeepTags: []string{"hold", "legal"}}, now)
	if got := ids(keep); !reflect.DeepEqual(got, []string{"0110T00:00", "0109T00:00", "0103T00:00"}) {
		t.Fatalf("kept %v, want the two newest and the held one", got)
	}
	if len(forget) != 7 {
		t.Fatalf("forgot %d, want 7", len(forget))
	}
	if !reflect.DeepEqual(reasons["0103T00:00"], []string{"tagged hold"}) || len(reasons["0110T00:00"]) != 2 {
		t.Errorf("reasons %v", reasons)
	}
	r := Retention{KeepTags: []string{"hold"}}
	if !r.IsZero() {
		t.Error("keep_tags alone counts as a forgetting rule")
	}
	if keep, forget, _ := Keep(snaps, r, now); len(keep) != 10 || len(forget) != 0 {
		t.Errorf("keep_tags alone forgot %d", len(forget))
	}
}
