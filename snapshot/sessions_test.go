package snapshot_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestUnlock: a prune session another host left (its process killed)
// holds repairs back until unlock removes it by ID; a live backup session
// of another host and a session whose process runs here are never
// removed; without IDs unlock removes what has ended (a session of this
// host whose process is gone) and leaves the live ones.
func TestUnlock(t *testing.T) {
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	host, _ := os.Hostname()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	start := func(info chunkstore.SessionInfo) string {
		t.Helper()
		s, err := repos.Writer.StartSession(ctx, info, chunkstore.DefaultSessionTiming)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.End(context.Background()) })
		return s.ID()
	}
	prune := start(chunkstore.SessionInfo{Host: "elsewhere", PID: 4242, Prune: true})
	backup := start(chunkstore.SessionInfo{Host: "elsewhere", PID: 4343})
	gone := start(chunkstore.SessionInfo{Host: host, PID: dead.Process.Pid})
	here := start(chunkstore.SessionInfo{Host: host, PID: os.Getpid()})
	state := func() map[string]string {
		t.Helper()
		list, err := snapshot.Sessions(ctx, reopen(t, repos, repos.Store), chunkstore.DefaultSessionTiming)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, s := range list {
			m[s.ID] = s.Kind + " " + s.State
		}
		return m
	}
	want := map[string]string{prune: "prune live", backup: "backup live", gone: "backup gone", here: "backup live"}
	if got := state(); !maps.Equal(got, want) {
		t.Fatalf("sessions: %v, want %v", got, want)
	}
	if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); !errors.Is(err, snapshot.ErrPruneBusy) || !strings.Contains(err.Error(), "'lifeboat unlock "+prune+"'") {
		t.Fatalf("repair index beside the left prune session: %v; want ErrPruneBusy naming 'lifeboat unlock %s'", err, prune)
	}

	res, err := snapshot.Unlock(ctx, reopen(t, repos, repos.Store), nil, chunkstore.DefaultSessionTiming)
	if err != nil {
		t.Fatal(err)
	}
	if ids := sessionIDs(res.Removed); !slices.Equal(ids, []string{gone}) {
		t.Errorf("unlock without IDs removed %v, want only %s (its process is gone)", ids, gone)
	}
	if ids := sessionIDs(res.Left); len(ids) != 3 || slices.Contains(ids, gone) {
		t.Errorf("unlock without IDs left %v, want the three live ones", ids)
	}
	delete(want, gone)

	for _, tc := range []struct {
		ids []string
		err string
	}{
		{[]string{prune, backup[:8]}, "may still be running and is not removed"},
		{[]string{prune, here}, "is running on this host"},
		{[]string{prune, "ffffffffff"}, "no such session"},
	} {
		if _, err := snapshot.Unlock(ctx, reopen(t, repos, repos.Store), tc.ids, chunkstore.DefaultSessionTiming); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("unlock %v: %v, want an error saying %q", tc.ids, err, tc.err)
		}
		if got := state(); !maps.Equal(got, want) {
			t.Fatalf("a refused unlock %v changed the sessions: %v, want %v", tc.ids, got, want)
		}
	}
	res, err = snapshot.Unlock(ctx, reopen(t, repos, repos.Store), []string{prune[:6]}, chunkstore.DefaultSessionTiming)
	if err != nil || !slices.Equal(sessionIDs(res.Removed), []string{prune}) {
		t.Fatalf("unlock %s: %+v, %v", prune[:6], res, err)
	}
	delete(want, prune)
	if got := state(); !maps.Equal(got, want) {
		t.Fatalf("sessions after unlock: %v, want %v", got, want)
	}
	if _, err := snapshot.RepairIndex(ctx, reopen(t, repos, repos.Store), snapshot.RepairOptions{}); err != nil {
		t.Fatalf("repair index after unlock: %v", err)
	}
}

func sessionIDs(list []snapshot.SessionStatus) []string {
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	return ids
}
