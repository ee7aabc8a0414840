package snapshot

import "testing"

// TestFilterExactTags: ExactTags selects the snapshots whose tag set is
// the filter's, in any order; without tags, only untagged ones. Without
// it, a snapshot needs the filter's tags and may have more.
func TestFilterExactTags(t *testing.T) {
	for _, tc := range []struct {
		filter, snap []string
		exact, loose bool
	}{
		{[]string{"a"}, []string{"a"}, true, true},
		{[]string{"a", "b"}, []string{"b", "a"}, true, true},
		{[]string{"a"}, []string{"a", "b"}, false, true},
		{[]string{"a", "b"}, []string{"a"}, false, false},
		{nil, nil, true, true},
		{nil, []string{"manual"}, false, true},
	} {
		s := &Snapshot{Manifest: Manifest{Tags: tc.snap}}
		exact := Filter{Tags: tc.filter, ExactTags: true}
		if got := exact.Match(s); got != tc.exact {
			t.Errorf("exact filter %q, snapshot tags %q: %v, want %v", tc.filter, tc.snap, got, tc.exact)
		}
		if exact.IsZero() {
			t.Errorf("filter %q with ExactTags reports IsZero", tc.filter)
		}
		if got := (Filter{Tags: tc.filter}).Match(s); got != tc.loose {
			t.Errorf("filter %q, snapshot tags %q: %v, want %v", tc.filter, tc.snap, got, tc.loose)
		}
	}
}
