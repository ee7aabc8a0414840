package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// base is "now" for the drills' fake clocks.
var base = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

// clock returns a fake clock that starts at start and advances 10ms on
// every reading, so durations are positive and RPO is exact.
func clock(start time.Time) func() time.Time {
	var mu sync.Mutex
	n := 0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		n++
		return start.Add(time.Duration(n-1) * 10 * time.Millisecond)
	}
}

// env is a repository with snapshots of a fixture tree.
type env struct {
	repos storetest.Repos
	src   string
	tree  fixture.Tree
}

func newEnv(t *testing.T, backend string, tree fixture.Tree) *env {
	t.Helper()
	e := &env{repos: storetest.NewRepos(t, backend), src: t.TempDir(), tree: tree}
	fixture.Create(t, e.src, tree)
	return e
}

// backup takes a snapshot of src at time at.
func (e *env) backup(t *testing.T, at time.Time, tags ...string) *snapshot.Snapshot {
	t.Helper()
	ctx := context.Background()
	res, err := snapshot.Backup(ctx, e.repos.Writer, snapshot.BackupOptions{
		Paths: []string{e.src}, Host: "fixture", Tags: tags, Now: func() time.Time { return at },
	})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if len(res.Warnings) > 0 {
		t.Fatalf("backup warnings: %v", res.Warnings)
	}
	s, err := snapshot.Load(ctx, e.repos.Reader, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rel is the snapshot-relative path of a fixture path.
func (e *env) rel(p string) string { return strings.TrimPrefix(filepath.Join(e.src, p), "/") }

func (e *env) opts(t *testing.T, id string) Options {
	return Options{ID: id, Scratch: t.TempDir(), Now: clock(base)}
}

func (e *env) run(t *testing.T, opts Options) *Result {
	t.Helper()
	res, err := Run(context.Background(), e.repos.Reader, opts)
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	if res == nil {
		t.Fatal("drill returned no result")
	}
	return res
}

func smallTree() fixture.Tree {
	return fixture.Tree{
		"hello.txt":         {Content: []byte("hello, drill\n")},
		"big.bin":           {Content: fixture.Random(7, 3<<20+99)},
		"sub":               {Dir: true, Mode: 0o750},
		"sub/conf":          {Content: []byte("x = 1\n"), Mode: 0o600},
		"sub/run.sh":        {Content: []byte("#!/bin/sh\n"), Mode: 0o755},
		"sub/link":          {Symlink: "../hello.txt"},
		"sub/dangling":      {Symlink: "/no/such/file"},
		"empty":             {Content: []byte{}},
		"deep/a/b/c/d.txt":  {Content: []byte("deep\n")},
		"deep/a/b/c/e.data": {Content: fixture.Random(8, 100_000)},
	}
}

// treeBytes is the content bytes of a fixture's regular files (each
// inode once).
func treeBytes(tr fixture.Tree) int64 {
	var n int64
	for _, p := range tr.Regular() {
		n += int64(len(tr[p].Content)) + tr[p].SparseSize
	}
	return n
}

func failureFor(r *Result, reason string) *Failure {
	for i := range r.Failures {
		if r.Failures[i].Reason == reason {
			return &r.Failures[i]
		}
	}
	return nil
}

func assertGone(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("scratch directory %s still exists (err %v)", dir, err)
	}
}

func TestDrillPasses(t *testing.T) {
	for _, backend := range []string{"local", "minio"} {
		t.Run(backend, func(t *testing.T) {
			tree := fixture.Standard()
			e := newEnv(t, backend, tree)
			snap := e.backup(t, base.Add(-3*time.Hour))
			envOut := filepath.Join(t.TempDir(), "env")
			opts := e.opts(t, "pass-1")
			opts.Policy = "web"
			opts.Env = []string{"EXTRA_VAR=extra"}
			opts.Targets = Targets{RTO: time.Hour, RPO: 24 * time.Hour}
			opts.Verify = []Command{
				{Command: fmt.Sprintf(`test "$(cat "$LIFEBOAT_DRILL_DIR%s/%s")" = "secret" && env > %q`, e.src, "modes/private", envOut)},
				{Command: "cmp -s " + filepath.Join(e.src, fixture.LargePath) + " ." + filepath.Join(e.src, fixture.LargePath), Timeout: time.Minute},
			}
			res := e.run(t, opts)
			if !res.Passed || len(res.Failures) != 0 {
				t.Fatalf("drill failed: %s\n%+v", res.Summary(), res.Failures)
			}
			wantFiles := int64(len(tree.Regular()) + 1) // plus the second name of the hard link
			if res.Files != wantFiles || res.SnapshotFiles != wantFiles {
				t.Errorf("files %d (snapshot %d), want %d", res.Files, res.SnapshotFiles, wantFiles)
			}
			if want := treeBytes(tree); res.Bytes != want || res.SnapshotBytes != want {
				t.Errorf("bytes %d (snapshot %d), want %d", res.Bytes, res.SnapshotBytes, want)
			}
			if res.SnapshotID != snap.ID.String() || !res.SnapshotTime.Equal(snap.Time) || res.Host != "fixture" || !slices.Equal(res.Paths, []string{e.src}) {
				t.Errorf("snapshot fields %q %v %q %v", res.SnapshotID, res.SnapshotTime, res.Host, res.Paths)
			}
			if res.RPOSeconds != (3 * time.Hour).Seconds() {
				t.Errorf("RPO %vs, want exactly 3h (fake clock)", res.RPOSeconds)
			}
			if res.RTOSeconds <= 0 || res.RestoreSeconds <= 0 || res.VerifySeconds <= 0 || res.ThroughputBytesPerSecond <= 0 {
				t.Errorf("timings RTO %v restore %v verify %v throughput %v: want > 0", res.RTOSeconds, res.RestoreSeconds, res.VerifySeconds, res.ThroughputBytesPerSecond)
			}
			if res.RTOMet == nil || !*res.RTOMet || res.RPOMet == nil || !*res.RPOMet || res.TargetRTOSeconds != 3600 || res.TargetRPOSeconds != 86400 {
				t.Errorf("targets: %+v", res)
			}
			if len(res.Checks) != 2 || !res.Checks[0].Passed || !res.Checks[1].Passed || res.Checks[0].ExitCode != 0 {
				t.Errorf("checks %+v", res.Checks)
			}
			if res.Policy != "web" || res.Runner == "" || !res.StartedAt.Equal(base) || !res.FinishedAt.After(res.StartedAt) {
				t.Errorf("identity fields: policy %q runner %q started %v finished %v", res.Policy, res.Runner, res.StartedAt, res.FinishedAt)
			}
			b, err := os.ReadFile(envOut)
			if err != nil {
				t.Fatalf("verify command did not run: %v", err)
			}
			dir := ScratchDir(opts.Scratch, "pass-1")
			for _, kv := range []string{
				"LIFEBOAT_DRILL_DIR=" + dir, "LIFEBOAT_DRILL_ID=pass-1", "LIFEBOAT_SNAPSHOT_ID=" + snap.ID.String(),
				"LIFEBOAT_SNAPSHOT_TIME=" + snap.Time.UTC().Format(time.RFC3339), "LIFEBOAT_SNAPSHOT_HOST=fixture",
				"LIFEBOAT_POLICY=web", "EXTRA_VAR=extra", "PWD=" + dir,
			} {
				if !slices.Contains(strings.Split(string(b), "\n"), kv) {
					t.Errorf("verify command environment lacks %s", kv)
				}
			}
			assertGone(t, dir)
			if !strings.HasPrefix(res.Summary(), "passed: 17 files, 84.0 MiB restored and verified in ") ||
				!strings.Contains(res.Summary(), "(RTO target 1h), snapshot 3h old (RPO target 24h)") {
				t.Errorf("summary %q", res.Summary())
			}
		})
	}
}

// dataBlob returns where the first chunk of a file's content is stored.
func dataBlob(t *testing.T, e *env, snap *snapshot.Snapshot, p string) chunkstore.Location {
	t.Helper()
	ctx := context.Background()
	repo := e.repos.Reader
	if err := repo.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	var loc chunkstore.Location
	found := false
	err := snapshot.Walk(ctx, repo, snap.Tree, func(q string, n *snapshot.Node) error {
		if q == e.rel(p) && len(n.Content) > 0 {
			l, ok := repo.Index().Lookup(n.Content[0])
			if !ok {
				return fmt.Errorf("%s: chunk not indexed", q)
			}
			loc, found = l, true
		}
		return nil
	})
	if err != nil || !found {
		t.Fatalf("find %s in snapshot: %v (found %v)", p, err, found)
	}
	return loc
}

func TestDrillFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		prep   func(t *testing.T, e *env, snap *snapshot.Snapshot, o *Options)
		reason string
		check  func(t *testing.T, e *env, snap *snapshot.Snapshot, o Options, r *Result)
	}{
		{"flipped byte in a data pack", func(t *testing.T, e *env, snap *snapshot.Snapshot, o *Options) {
			storetest.FlipBlob(t, e.repos.Store.Location(), dataBlob(t, e, snap, "deep/a/b/c/e.data"), 0x40)
			o.Verify = []Command{{Command: "true"}}
		}, ReasonCorrupt, func(t *testing.T, e *env, snap *snapshot.Snapshot, o Options, r *Result) {
			loc := dataBlob(t, e, snap, "deep/a/b/c/e.data")
			f := failureFor(r, ReasonCorrupt)
			if f.Path != e.rel("deep/a/b/c/e.data") || !strings.Contains(f.Message, loc.Pack.ID.String()) {
				t.Errorf("failure %+v: want the path and pack %s", f, loc.Pack.ID)
			}
			if len(r.Checks) != 1 || !r.Checks[0].Skipped || r.Checks[0].Passed {
				t.Errorf("checks %+v: want one, skipped", r.Checks)
			}
			if r.RTOMet != nil {
				t.Errorf("RTOMet set for a drill that never verified a tree")
			}
		}},
		{"deleted pack", func(t *testing.T, e *env, snap *snapshot.Snapshot, o *Options) {
			loc := dataBlob(t, e, snap, "big.bin")
			if err := e.repos.Store.Delete(context.Background(), chunkstore.PackName(loc.Pack.ID)); err != nil {
				t.Fatal(err)
			}
			o.Verify = []Command{{Command: "true"}}
		}, ReasonMissing, func(t *testing.T, e *env, snap *snapshot.Snapshot, o Options, r *Result) {
			loc := dataBlob(t, e, snap, "big.bin")
			if len(r.Checks) != 1 || !r.Checks[0].Skipped {
				t.Errorf("checks %+v: want one, skipped", r.Checks)
			}
			var paths []string
			for _, f := range r.Failures {
				if f.Reason != ReasonMissing {
					t.Errorf("failure %+v: want reason %q", f, ReasonMissing)
				}
				paths = append(paths, f.Path)
				if !strings.Contains(f.Message, loc.Pack.ID.String()) {
					t.Errorf("failure %+v does not name pack %s", f, loc.Pack.ID)
				}
			}
			if !slices.Contains(paths, e.rel("big.bin")) {
				t.Errorf("failures %v do not name big.bin", paths)
			}
		}},
		{"verify command exits 3", func(t *testing.T, e *env, snap *snapshot.Snapshot, o *Options) {
			o.Verify = []Command{{Command: "echo checking; echo 'table users is empty' >&2; exit 3"}, {Command: "exit 0"}}
		}, ReasonCheck, func(t *testing.T, e *env, snap *snapshot.Snapshot, o Options, r *Result) {
			c := r.Checks[0]
			if c.ExitCode != 3 || c.Passed || c.Output != "checking\ntable users is empty\n" || c.TimedOut {
				t.Errorf("check %+v", c)
			}
			if !r.Checks[1].Passed {
				t.Errorf("second check %+v", r.Checks[1])
			}
			f := failureFor(r, ReasonCheck)
			if !strings.Contains(f.Message, "exited with code 3") || !strings.Contains(f.Message, "table users is empty") {
				t.Errorf("failure %q", f.Message)
			}
			if r.Files == 0 {
				t.Error("restore and verification did not run")
			}
		}},
		{"verify command times out", func(t *testing.T, e *env, snap *snapshot.Snapshot, o *Options) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			// A background child in the group holds stdout open: only a
			// group kill ends the command quickly.
			o.Verify = []Command{{Command: fmt.Sprintf("sh -c 'echo $$ > %s; exec sleep 60' & sleep 60", pidFile), Timeout: 300 * time.Millisecond}}
			o.Env = append(o.Env, "PIDFILE="+pidFile)
		}, ReasonCheck, func(t *testing.T, e *env, snap *snapshot.Snapshot, o Options, r *Result) {
			c := r.Checks[0]
			if !c.TimedOut || c.Passed || c.Seconds > 4 {
				t.Errorf("check %+v: want timed out within seconds", c)
			}
			if f := failureFor(r, ReasonCheck); !strings.Contains(f.Message, "timed out after 300ms") {
				t.Errorf("failure %q", f.Message)
			}
			pidFile := strings.TrimPrefix(o.Env[len(o.Env)-1], "PIDFILE=")
			b, err := os.ReadFile(pidFile)
			if err != nil {
				t.Fatal(err)
			}
			var pid int
			fmt.Sscan(string(b), &pid)
			if alive(pid) {
				t.Errorf("background process %d of the timed-out command is still running", pid)
			}
		}},
		{"RTO target 1ns", func(t *testing.T, e *env, snap *snapshot.Snapshot, o *Options) {
			o.Targets.RTO = time.Nanosecond
		}, ReasonRTO, func(t *testing.T, e *env, snap *snapshot.Snapshot, o Options, r *Result) {
			if r.RTOMet == nil || *r.RTOMet {
				t.Errorf("RTOMet %v", r.RTOMet)
			}
			if f := failureFor(r, ReasonRTO); !strings.Contains(f.Message, "over the RTO target of 1ns") {
				t.Errorf("failure %q", f.Message)
			}
		}},
		{"RPO target missed by the latest snapshot", func(t *testing.T, e *env, snap *snapshot.Snapshot, o *Options) {
			o.Targets.RPO = 24 * time.Hour
			o.Now = clock(base.Add(72 * time.Hour))
		}, ReasonRPO, func(t *testing.T, e *env, snap *snapshot.Snapshot, o Options, r *Result) {
			if r.RPOMet == nil || *r.RPOMet || r.RPOSeconds != (74*time.Hour).Seconds() {
				t.Errorf("RPOMet %v, RPO %vs", r.RPOMet, r.RPOSeconds)
			}
			if f := failureFor(r, ReasonRPO); !strings.Contains(f.Message, "3d2h old, over the RPO target of 24h") {
				t.Errorf("failure %q", f.Message)
			}
		}},
		{"scratch limit too small", func(t *testing.T, e *env, snap *snapshot.Snapshot, o *Options) {
			o.ScratchLimit = 1 << 20
			o.Verify = []Command{{Command: "true"}}
		}, ReasonScratch, func(t *testing.T, e *env, snap *snapshot.Snapshot, o Options, r *Result) {
			if f := failureFor(r, ReasonScratch); !strings.Contains(f.Message, "but the scratch limit is 1.0 MiB") {
				t.Errorf("failure %q", f.Message)
			}
			if r.Files != 0 || r.RestoreSeconds != 0 || len(r.Checks) != 0 {
				t.Errorf("something ran: %+v", r)
			}
			if ents, _ := os.ReadDir(o.Scratch); len(ents) != 0 {
				t.Errorf("scratch holds %v", ents)
			}
		}},
		{"keep on failure", func(t *testing.T, e *env, snap *snapshot.Snapshot, o *Options) {
			o.KeepOnFailure = true
			o.Verify = []Command{{Command: "exit 1"}}
		}, ReasonCheck, func(t *testing.T, e *env, snap *snapshot.Snapshot, o Options, r *Result) {
			dir := ScratchDir(o.Scratch, o.ID)
			if r.KeptAt != dir {
				t.Fatalf("KeptAt %q, want %q", r.KeptAt, dir)
			}
			fixture.Compare(t, e.tree, filepath.Join(dir, e.src))
			removeTree(dir)
		}},
		{"no snapshot matches", func(t *testing.T, e *env, snap *snapshot.Snapshot, o *Options) {
			o.Filter = snapshot.Filter{Hosts: []string{"elsewhere"}}
		}, ReasonSnapshot, func(t *testing.T, e *env, snap *snapshot.Snapshot, o Options, r *Result) {
			if f := failureFor(r, ReasonSnapshot); !strings.Contains(f.Message, "host elsewhere") || r.SnapshotID != "" {
				t.Errorf("failure %q, snapshot %q", f.Message, r.SnapshotID)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "local", smallTree())
			snap := e.backup(t, base.Add(-2*time.Hour))
			o := e.opts(t, "fail-1")
			tc.prep(t, e, snap, &o)
			r := e.run(t, o)
			if r.Passed {
				t.Fatalf("drill passed: %s", r.Summary())
			}
			if f := failureFor(r, tc.reason); f == nil {
				t.Fatalf("no %q failure in %+v", tc.reason, r.Failures)
			}
			for _, f := range r.Failures {
				if f.Message == "" {
					t.Errorf("failure without a message: %+v", f)
				}
			}
			if !strings.HasPrefix(r.Summary(), "FAILED ("+tc.reason) {
				t.Errorf("summary %q", r.Summary())
			}
			tc.check(t, e, snap, o, r)
			if !o.KeepOnFailure {
				assertGone(t, ScratchDir(o.Scratch, o.ID))
			}
		})
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestRPOOnlyForLatest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "local", smallTree())
	old := e.backup(t, base.Add(-10*24*time.Hour))
	e.backup(t, base.Add(-5*24*time.Hour))
	for _, ref := range []string{old.ID.String()[:12], "random-within:30d"} {
		o := e.opts(t, "rpo-"+ref[:6])
		o.Snapshot = ref
		o.Targets.RPO = 24 * time.Hour
		r := e.run(t, o)
		if !r.Passed || r.RPOMet == nil || *r.RPOMet {
			t.Errorf("snapshot %s: passed %v, RPOMet %v: an explicitly chosen old snapshot is no RPO failure, but is recorded as missing the target", ref, r.Passed, r.RPOMet)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "local", fixture.Tree{"a": {Content: []byte("a")}})
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Scratch: "/tmp"}, "no ID"},
		{Options{ID: "../x", Scratch: "/tmp"}, "use only letters"},
		{Options{ID: "x", Scratch: "rel"}, "absolute"},
		{Options{ID: "x", Scratch: "/tmp", SamplePercent: 150}, "outside 0–100"},
		{Options{ID: "x", Scratch: "/tmp", Snapshot: "random-within:soon"}, "random-within:DURATION"},
		{Options{ID: "x", Scratch: "/tmp", Verify: []Command{{Command: " "}}}, "verify command 1 is empty"},
	} {
		r, err := Run(context.Background(), e.repos.Reader, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) || r != nil {
			t.Errorf("%+v: err %v, result %v; want an error mentioning %q", tc.opts, err, r, tc.want)
		}
	}
	_, err := Run(context.Background(), e.repos.Writer, Options{ID: "x", Scratch: t.TempDir()})
	if !errors.Is(err, chunkstore.ErrNoIdentity) || !strings.Contains(err.Error(), "identity") {
		t.Errorf("writer key: err %v, want ErrNoIdentity", err)
	}
}

func TestCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "local", smallTree())
	e.backup(t, base)
	o := e.opts(t, "cancel")
	o.Verify = []Command{{Command: "sleep 30"}}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(500 * time.Millisecond); cancel() }()
	start := time.Now()
	r, err := Run(ctx, e.repos.Reader, o)
	if !errors.Is(err, context.Canceled) || r == nil || r.Passed {
		t.Fatalf("err %v, result %+v: want context.Canceled and a failed result", err, r)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("cancel took %v", time.Since(start))
	}
	assertGone(t, ScratchDir(o.Scratch, o.ID))
}

// TestDrillMissingPackMinIO: on S3, a pack deleted behind the
// repository's back fails the drill with a "missing" failure naming it.
func TestDrillMissingPackMinIO(t *testing.T) {
	// Not parallel: MinIO repositories set AWS_* variables with t.Setenv.
	e := newEnv(t, "minio", smallTree())
	snap := e.backup(t, base.Add(-time.Hour))
	loc := dataBlob(t, e, snap, "big.bin")
	if err := e.repos.Store.Delete(context.Background(), chunkstore.PackName(loc.Pack.ID)); err != nil {
		t.Fatal(err)
	}
	o := e.opts(t, "minio-missing")
	r := e.run(t, o)
	f := failureFor(r, ReasonMissing)
	if r.Passed || f == nil || !strings.Contains(f.Message, loc.Pack.ID.String()) || !slices.Equal(r.Reasons(), []string{ReasonMissing}) {
		t.Fatalf("drill %s: want only missing failures, one naming pack %s", r.Summary(), loc.Pack.ID)
	}
	assertGone(t, ScratchDir(o.Scratch, o.ID))
}

// TestDrillRestoresAroundDamagedCopy: a chunk the repository stores
// twice, whose first copy is damaged, comes back from the other one;
// the drill passes (the data is intact) but names the damaged pack in
// its result and its summary line.
func TestDrillRestoresAroundDamagedCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "local", smallTree())
	second := storetest.UnsharedWriter(t, e.repos.Store, e.repos.Writer)
	e.backup(t, base.Add(-2*time.Hour))
	res, err := snapshot.Backup(ctx, second, snapshot.BackupOptions{Paths: []string{e.src}, Host: "fixture", Now: func() time.Time { return base.Add(-time.Hour) }})
	if err != nil || len(res.Warnings) > 0 {
		t.Fatalf("second backup: %v %v", err, res.Warnings)
	}
	snap, err := snapshot.Load(ctx, e.repos.Reader, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.repos.Reader.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	loc := dataBlob(t, e, snap, "deep/a/b/c/e.data")
	if n := len(e.repos.Reader.Index().Copies(map[chunkstore.ID]bool{loc.Blob.ID: true}, nil)[loc.Blob.ID]); n != 2 {
		t.Fatalf("the chunk is stored %d times, want 2", n)
	}
	pack := storetest.FlipBlob(t, e.repos.Store.Location(), loc, 0x40)

	r := e.run(t, e.opts(t, "copies"))
	if !r.Passed || r.Files != int64(len(e.tree.Regular())) {
		t.Fatalf("drill: passed %v, %d files; want passed with every file: %s", r.Passed, r.Files, r.Summary())
	}
	if len(r.DamagedPacks) != 1 || r.DamagedPacks[0] != pack || r.BlobsFromCopies < 1 {
		t.Errorf("damaged packs %v, %d chunks from copies; want [%s] and 1 or more", r.DamagedPacks, r.BlobsFromCopies, pack)
	}
	if s := r.Summary(); !strings.HasPrefix(s, "passed: ") || !strings.Contains(s, "restored from other copies") || !strings.Contains(s, pack) {
		t.Errorf("summary %q: want a pass warning about %s", s, pack)
	}
}

// A snapshot stamped by a node whose clock runs ahead is always "latest":
// it would meet any RPO target (negative age) and hide that the policy's
// backups stopped. With an RPO target such a drill fails, reason rpo.
func TestRPOFutureSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "local", smallTree())
	e.backup(t, base.Add(-30*24*time.Hour)) // the real last backup: stale
	future := e.backup(t, base.Add(30*24*time.Hour))
	o := e.opts(t, "rpo-future")
	o.Targets.RPO = 24 * time.Hour
	r := e.run(t, o)
	if r.SnapshotID != future.ID.String() {
		t.Fatalf("drilled %s, want the future-dated latest %s", r.SnapshotID, future.ID)
	}
	if r.Passed || r.RPOMet == nil || *r.RPOMet || failureFor(r, ReasonRPO) == nil {
		t.Fatalf("passed %v, RPOMet %v, failures %v: a snapshot dated 30 days in the future must not meet the RPO target", r.Passed, r.RPOMet, r.Failures)
	}
	if f := failureFor(r, ReasonRPO); !strings.Contains(f.Message, "in the future") {
		t.Errorf("rpo failure %q does not say the snapshot is dated in the future", f.Message)
	}
	// A little skew (seconds) is no failure.
	e2 := newEnv(t, "local", smallTree())
	e2.backup(t, base.Add(30*time.Second))
	o2 := e2.opts(t, "rpo-skew")
	o2.Targets.RPO = 24 * time.Hour
	if r := e2.run(t, o2); !r.Passed {
		t.Errorf("a snapshot 30s ahead failed the drill: %v", r.Failures)
	}
}

// TestDrillLatestWithUnreadableManifest: the newest snapshot's manifest
// is damaged. The drill of "latest" restores the newest readable one (the
// RTO is still measured) but fails, naming the unreadable one: it may be
// newer, and passing would vouch for a snapshot that is not the policy's
// latest.
func TestDrillLatestWithUnreadableManifest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "local", smallTree())
	older := e.backup(t, base.Add(-time.Hour))
	newest := e.backup(t, base)
	fixture.FlipMiddle(t, filepath.Join(e.repos.Store.Location(), "snapshots", newest.ID.String()))
	r := e.run(t, e.opts(t, "unreadable-latest"))
	if r.SnapshotID != older.ID.String() || r.Files == 0 {
		t.Fatalf("drilled %s (%d files), want the newest readable %s restored", r.SnapshotID, r.Files, older.ID.Short())
	}
	f := failureFor(r, ReasonSnapshot)
	if r.Passed || f == nil || !strings.Contains(f.Message, newest.ID.Short()) || !strings.Contains(f.Message, "may be newer") {
		t.Fatalf("passed %v, failures %+v: want a failure naming the unreadable %s", r.Passed, r.Failures, newest.ID.Short())
	}
}
