package restore_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// The planning walk loads directory listings ahead on other cores; it
// must still visit every node exactly once, in the order of a plain
// depth-first walk, including directories that occur twice with the same
// listing.
func TestWalkLoadsAheadInOrder(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	tree := fixture.Tree{}
	for i := range 12 {
		for j := range 6 {
			d := fmt.Sprintf("d%02d/e%d", i, j)
			tree[d] = fixture.Entry{Dir: true}
			// Identical content in every e3: the same listing under many parents.
			name := "f"
			if j != 3 {
				name = fmt.Sprintf("f%d-%d", i, j)
			}
			tree[d+"/"+name] = fixture.Entry{Content: []byte(name)}
			tree[d+"/sub/deeper"] = fixture.Entry{Dir: true}
		}
	}
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)
	want := serialOrder(t, r, snap)
	for round := range 20 {
		if got := plannedOrder(t, r, snap); !slices.Equal(got, want) {
			t.Fatalf("round %d: walk visited %d nodes, want %d in the serial order\ngot  %v\nwant %v", round, len(got), len(want), got, want)
		}
	}
	if len(want) < 12*6*4 {
		t.Fatalf("the fixture has only %d nodes", len(want))
	}
}

// A walk stopped by its callback returns that error and leaves no helper
// running.
func TestWalkStopsOnCallbackError(t *testing.T) {
	r, _, _, snap := standardSnapshot(t, "local")
	before := runtime.NumGoroutine()
	stop := fmt.Errorf("stop here")
	n := 0
	err := restore.WalkTolerant(context.Background(), r.reader, snap.Tree, func(string, error) {}, func(string, *snapshot.Node) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("walk returned %v, want the callback's error", err)
	}
	// The helpers have returned; give their goroutines a moment to exit.
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i == 100 {
			t.Fatalf("%d goroutines after the walk, %d before: a helper is still running", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// On one core there are no helpers: the walk loads every listing itself
// and gives the same result.
func TestWalkOnOneCore(t *testing.T) {
	r, _, _, snap := standardSnapshot(t, "local")
	want := serialOrder(t, r, snap)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if got := plannedOrder(t, r, snap); !slices.Equal(got, want) {
		t.Fatalf("walk on one core visited %v, want %v", got, want)
	}
}

// serialOrder lists the snapshot's paths as snapshot.Walk, which loads
// every listing itself, visits them.
func serialOrder(t *testing.T, r testRepo, snap *snapshot.Snapshot) []string {
	t.Helper()
	var out []string
	if err := snapshot.Walk(context.Background(), r.reader, snap.Tree, func(p string, _ *snapshot.Node) error {
		out = append(out, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// plannedOrder lists the snapshot's paths as the restore's planning walk
// visits them.
func plannedOrder(t *testing.T, r testRepo, snap *snapshot.Snapshot) []string {
	t.Helper()
	var out []string
	err := restore.WalkTolerant(context.Background(), r.reader, snap.Tree, func(p string, err error) {
		t.Errorf("walk failed at %s: %v", p, err)
	}, func(p string, _ *snapshot.Node) error {
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
