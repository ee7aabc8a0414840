package agent

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestAgentAppliesRetention: after each backup the agent forgets the
// policy's snapshots its retention does not keep — only those of its own
// host, paths and tags — and the coordinator drops them from the catalog.
func TestAgentAppliesRetention(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	tc.policy(coordinator.Policy{Name: "web", Agents: map[string]string{"role": "web"}, Paths: []string{src},
		Tags: []string{"nightly"}, Retention: coordinator.Retention{KeepLast: 2}})
	token := tc.joinToken(nil, time.Time{})
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: token, DataDir: t.TempDir(), Name: "web-1",
		Labels: map[string]string{"role": "web"}, Host: "web-1.example"})
	tc.waitEnrolled("web-1")

	// A snapshot of the same paths from another host is not the policy's
	// to forget.
	repo := tc.openRepo()
	other, err := snapshot.Backup(t.Context(), repo, snapshot.BackupOptions{Paths: []string{src}, Host: "elsewhere", Tags: []string{"nightly"}})
	if err != nil {
		t.Fatal(err)
	}

	var jobs []coordinator.Job
	for range 4 {
		j := tc.waitJob(tc.run("web"), "finish", final)
		if j.State != coordinator.JobSucceeded {
			t.Fatalf("job %s: %s (%+v)", j.ID, j.State, j.Result)
		}
		jobs = append(jobs, j)
	}
	snap := func(i int) string { return jobs[i].Result.SnapshotID }
	if len(jobs[0].Result.Forgotten)+len(jobs[1].Result.Forgotten) != 0 {
		t.Errorf("forgot before there were more than 2 snapshots: %v %v", jobs[0].Result.Forgotten, jobs[1].Result.Forgotten)
	}
	if !slices.Equal(jobs[2].Result.Forgotten, []string{snap(0)}) || !slices.Equal(jobs[3].Result.Forgotten, []string{snap(1)}) {
		t.Fatalf("forgotten by jobs 3 and 4: %v, %v; want the oldest each time (%s, %s)", jobs[2].Result.Forgotten, jobs[3].Result.Forgotten, snap(0), snap(1))
	}
	var ids []string
	for _, s := range tc.snapshots() {
		ids = append(ids, s.ID.String())
	}
	slices.Sort(ids)
	want := []string{other.ID.String(), snap(2), snap(3)}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("snapshots in the repository: %v, want the other host's and the two newest", ids)
	}
	tc.node.View(func(s *coordinator.State) {
		for i, j := range jobs {
			if _, ok := s.Catalog[j.Result.SnapshotID]; ok != (i >= 2) {
				t.Errorf("catalog has snapshot of job %d: %v", i+1, ok)
			}
		}
	})
	// The repository still checks clean: forget removed manifests only.
	r := tc.openRepo()
	if err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	if probs, err := snapshot.Check(t.Context(), r); err != nil || len(probs) > 0 {
		t.Fatalf("check: %v %v", probs, err)
	}
}

// TestRetentionWithoutDeletes: storage credentials that may not delete
// leave every snapshot in place; the agent reports a warning naming the
// snapshot and the fix, and the backup it follows is not failed.
func TestRetentionWithoutDeletes(t *testing.T) {
	faulty := storetest.NewFaulty(mem.New())
	repos := storetest.InitRepos(t, faulty)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	var made []*snapshot.Result
	for range 3 {
		res, err := snapshot.Backup(t.Context(), repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, res)
	}
	a := &Agent{cfg: Config{Host: "h"}, clock: coordinator.SystemClock, log: testLogger(t)}
	faulty.FailNext(storetest.OpDelete, 1, chunkstore.Permanent(errors.New("AccessDenied: delete not allowed")))
	p := coordinator.Policy{Name: "p", Paths: []string{src}, Retention: coordinator.Retention{KeepLast: 1}}
	forgotten, warn := a.applyRetention(t.Context(), repos.Writer, p, made[2].ID, a.clock.Now())
	if len(forgotten) != 0 || !strings.Contains(warn, "AccessDenied") || !strings.Contains(warn, "allow deletes") {
		t.Fatalf("retention with deletes refused: forgotten %v, warning %q", forgotten, warn)
	}
	if ids, err := repos.Writer.ListMeta(t.Context(), chunkstore.KindSnapshot); err != nil || len(ids) != 3 {
		t.Fatalf("snapshots after a refused delete: %d %v, want all 3", len(ids), err)
	}
	// Allowed, the same call forgets the two older ones.
	forgotten, warn = a.applyRetention(t.Context(), repos.Writer, p, made[2].ID, a.clock.Now())
	if len(forgotten) != 2 || warn != "" {
		t.Fatalf("retention: forgotten %v, warning %q; want the two older snapshots", forgotten, warn)
	}
}

// TestNoRetentionAfterPartial: a backup that could not read everything
// commits a partial snapshot, and the agent then forgets nothing (the
// snapshots retention would drop may be the complete ones); the job says
// so.
func TestNoRetentionAfterPartial(t *testing.T) {
	tc := newTestCoordinator(t)
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	// /proc/self/mem stats fine but cannot be read, even by root.
	paths := []string{src, "/proc/self/mem"}
	tc.policy(coordinator.Policy{Name: "db", Paths: paths, Retention: coordinator.Retention{KeepLast: 1}})
	startAgent(t, Config{Servers: []string{tc.srv.URL}, JoinToken: tc.joinToken(nil, time.Time{}), DataDir: t.TempDir(), Name: "db-1", Host: "db-1.example"})
	tc.waitEnrolled("db-1")

	// Three earlier snapshots of the same group, which keep_last: 1 would
	// otherwise forget.
	repo := tc.openRepo()
	var before []string
	for range 3 {
		s, err := snapshot.Backup(t.Context(), repo, snapshot.BackupOptions{Paths: paths, Host: "db-1.example"})
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, s.ID.String())
	}
	j := tc.waitJob(tc.run("db"), "finish", final)
	if j.State != coordinator.JobSucceeded || j.Result == nil || !j.Result.Partial {
		t.Fatalf("job: %s %+v, want a succeeded partial backup", j.State, j.Result)
	}
	if len(j.Result.Forgotten) != 0 {
		t.Errorf("forgot %v after a partial snapshot", j.Result.Forgotten)
	}
	if all := strings.Join(j.Result.Warnings, "\n"); !strings.Contains(all, "retention not applied after a partial snapshot") {
		t.Errorf("warnings do not say retention was skipped:\n%s", all)
	}
	var ids []string
	for _, s := range tc.snapshots() {
		ids = append(ids, s.ID.String())
	}
	for _, id := range append(before, j.Result.SnapshotID) {
		if !slices.Contains(ids, id) {
			t.Errorf("snapshot %s is gone after a partial backup; repository has %v", id, ids)
		}
	}
}

// TestRetentionKeepsHeld: a snapshot tagged with one of the policy's
// keep_tags (after 'lifeboat tag --add hold') is not forgotten by the
// agent's retention; the others beyond keep_last are.
func TestRetentionKeepsHeld(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	fixture.Create(t, src, smallTree())
	var made []*snapshot.Result
	for range 3 {
		res, err := snapshot.Backup(t.Context(), repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h"})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, res)
	}
	oldest, err := snapshot.Load(t.Context(), repos.Writer, made[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	held, err := snapshot.Retag(t.Context(), repos.Writer, oldest, []string{"hold"})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{Host: "h"}, clock: coordinator.SystemClock, log: testLogger(t)}
	p := coordinator.Policy{Name: "p", Paths: []string{src}, Retention: coordinator.Retention{KeepLast: 1, KeepTags: []string{"hold"}}}
	forgotten, warn := a.applyRetention(t.Context(), repos.Writer, p, made[2].ID, a.clock.Now())
	if len(forgotten) != 1 || forgotten[0] != made[1].ID.String() || warn != "" {
		t.Fatalf("retention: forgotten %v, warning %q; want only the middle snapshot", forgotten, warn)
	}
	if _, err := snapshot.Load(t.Context(), repos.Writer, held.ID); err != nil {
		t.Fatalf("the held snapshot was forgotten: %v", err)
	}
}

// TestRetentionLeavesOtherTags: a policy's retention forgets only
// snapshots with exactly its tags. A manual backup of the same host and
// paths with a tag of its own — beside the policy's tag, or under a
// policy without tags — and another policy's snapshots with more tags
// are left alone, however many of the policy's own there are.
func TestRetentionLeavesOtherTags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		policyTags []string
		others     [][]string // tags of snapshots that are not the policy's
	}{
		{"tagged policy", []string{"nightly"}, [][]string{{"nightly", "before-upgrade"}, {"archive", "nightly"}}},
		{"untagged policy", nil, [][]string{{"before-upgrade"}, {"nightly"}}},
		{"two tags", []string{"b", "a"}, [][]string{{"a"}, {"a", "b", "c"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repos := storetest.InitRepos(t, mem.New())
			src := t.TempDir()
			fixture.Create(t, src, smallTree())
			backup := func(tags []string) string {
				t.Helper()
				res, err := snapshot.Backup(t.Context(), repos.Writer, snapshot.BackupOptions{Paths: []string{src}, Host: "h", Tags: tags})
				if err != nil {
					t.Fatal(err)
				}
				return res.ID.String()
			}
			var others []string
			for _, tags := range tc.others {
				others = append(others, backup(tags))
			}
			// The policy's own, tags in another order than the policy
			// lists them.
			own := []string{backup(tc.policyTags)}
			reversed := slices.Clone(tc.policyTags)
			slices.Reverse(reversed)
			own = append(own, backup(reversed))
			madeID := backup(tc.policyTags)
			made, err := chunkstore.ParseID(madeID)
			if err != nil {
				t.Fatal(err)
			}
			a := &Agent{cfg: Config{Host: "h"}, clock: coordinator.SystemClock, log: testLogger(t)}
			p := coordinator.Policy{Name: "p", Paths: []string{src}, Tags: tc.policyTags, Retention: coordinator.Retention{KeepLast: 1}}
			forgotten, warn := a.applyRetention(t.Context(), repos.Writer, p, made, a.clock.Now())
			if warn != "" {
				t.Fatalf("warning: %s", warn)
			}
			slices.Sort(forgotten)
			slices.Sort(own)
			if !slices.Equal(forgotten, own) {
				t.Fatalf("forgotten %v, want exactly the policy's older snapshots %v (others %v)", forgotten, own, others)
			}
		})
	}
}
