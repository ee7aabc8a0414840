package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
)

var t0 = time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)

// testWriterKey makes a real writer key (and the identity that goes with
// it) for a fresh in-memory repository.
func testWriterKey(t testing.TB) (writerKey, identity []byte) {
	t.Helper()
	id, rcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := chunkstore.Init(context.Background(), mem.New(), chunkstore.InitOptions{Recipients: []string{rcpt}, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	wk, err := chunkstore.MarshalWriterKey(sec)
	if err != nil {
		t.Fatal(err)
	}
	return wk, id
}

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// entry encodes a command for the log.
func entry(t testing.TB, typ CommandType, at time.Time, payload any) []byte {
	t.Helper()
	c, err := NewCommand(typ, "test", payload)
	if err != nil {
		t.Fatal(err)
	}
	c.Time = at
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fsmHarness applies commands to an FSM with increasing indexes.
type fsmHarness struct {
	t   testing.TB
	fsm *FSM
	idx uint64
	now time.Time
	log [][]byte
}

func newFSMHarness(t testing.TB) *fsmHarness {
	return &fsmHarness{t: t, fsm: NewFSM(), now: t0}
}

func (h *fsmHarness) raw(b []byte) *ApplyResult {
	h.idx++
	h.log = append(h.log, b)
	return h.fsm.ApplyBytes(h.idx, b)
}

func (h *fsmHarness) apply(typ CommandType, payload any) (any, error) {
	r := h.raw(entry(h.t, typ, h.now, payload))
	return r.Value, r.Err
}

func (h *fsmHarness) must(typ CommandType, payload any) any {
	h.t.Helper()
	v, err := h.apply(typ, payload)
	if err != nil {
		h.t.Fatalf("%s: %v", typ, err)
	}
	return v
}

func (h *fsmHarness) snapshot() []byte {
	h.t.Helper()
	b, err := h.fsm.SnapshotBytes()
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

// setup registers a repository, a policy "p" for agents with role=db, and
// agents a1 (role=db) and a2 (role=web).
func (h *fsmHarness) setup(wk []byte) {
	h.t.Helper()
	h.must(CmdAddRepository, AddRepository{Name: "r", URL: "s3:bucket/r", WriterKey: wk, Env: map[string]string{"AWS_REGION": "x"}})
	h.must(CmdPutPolicy, PutPolicy{Policy: Policy{Name: "p", Repository: "r", Schedule: "@every 1m", Paths: []string{"/data"}, Agents: map[string]string{"role": "db"}}})
	h.must(CmdEnrollAgent, EnrollAgent{Name: "a1", Labels: map[string]string{"role": "db"}, CredentialHash: hashOf("a1")})
	h.must(CmdEnrollAgent, EnrollAgent{Name: "a2", Labels: map[string]string{"role": "web"}, CredentialHash: hashOf("a2")})
}

func TestFSMRejectsUnsupportedCommandsWithoutChange(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.setup(wk)
	before := h.snapshot()
	newer := Command{Version: CommandVersion + 1, Type: CmdPutPolicy, Time: t0, Actor: "x",
		Payload: json.RawMessage(`{"policy":{"name":"q","repository":"r","schedule":"@every 1m"}}`)}
	newerBytes, _ := newer.Encode()
	unknown := Command{Version: CommandVersion, Type: "policy.teleport", Time: t0, Payload: json.RawMessage(`{}`)}
	unknownBytes, _ := unknown.Encode()
	noTime := Command{Version: CommandVersion, Type: CmdRevokeAgent, Payload: json.RawMessage(`{"name":"a1"}`)}
	noTimeBytes, _ := noTime.Encode()
	zeroVersion := Command{Type: CmdRevokeAgent, Time: t0, Payload: json.RawMessage(`{"name":"a1"}`)}
	zeroVersionBytes, _ := zeroVersion.Encode()
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"newer version", newerBytes, ErrUnsupportedCommand},
		{"unknown type", unknownBytes, ErrUnsupportedCommand},
		{"version zero", zeroVersionBytes, ErrUnsupportedCommand},
		{"not json", []byte("\x00\x01garbage"), ErrInvalidCommand},
		{"no time", noTimeBytes, ErrInvalidCommand},
		{"payload of the wrong shape", entry(t, CmdRevokeAgent, t0, []int{1, 2}), ErrInvalidCommand},
		{"policy without a repository", entry(t, CmdPutPolicy, t0, PutPolicy{Policy: Policy{Name: "q", Repository: "nope", Schedule: "@daily", Paths: []string{"/"}}}), ErrNotFound},
		// A bad schedule is the proposer's to reject (Node.PutPolicy
		// validates); Apply deliberately does not re-validate, see putPolicy.
		{"jobs with one unknown agent", entry(t, CmdCreateJobs, t0, CreateJobs{Jobs: []NewJob{
			{ID: "j1", Kind: KindBackup, Trigger: TriggerManual, Policy: "p", Agent: "a1"},
			{ID: "j2", Kind: KindBackup, Trigger: TriggerManual, Policy: "p", Agent: "ghost"}}}), ErrNotFound},
		{"remove a repository in use", entry(t, CmdRemoveRepository, t0, RemoveRepository{Name: "r"}), ErrConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var res *ApplyResult
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("Apply panicked: %v", r)
					}
				}()
				res = h.raw(tc.b)
			}()
			if !errors.Is(res.Err, tc.want) {
				t.Fatalf("err = %v, want %v", res.Err, tc.want)
			}
			if after := h.snapshot(); !bytes.Equal(before, after) {
				t.Fatalf("state changed by a rejected command")
			}
		})
	}
}

func TestFSMRepositoryRefusesIdentity(t *testing.T) {
	wk, id := testWriterKey(t)
	// The header of a passphrase-protected identity file (age -p); the
	// body does not matter to the check.
	protected := []byte("age-encryption.org/v1\n-> scrypt c2FsdHNhbHRzYWx0c2FsdA 18\nYWJj\n--- YWJj\n")
	armored := []byte("-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24ub3JnL3Yx\n-----END AGE ENCRYPTED FILE-----\n")
	pq, _, err := chunkstore.NewIdentity(true)
	if err != nil {
		t.Fatal(err)
	}
	h := newFSMHarness(t)
	for name, key := range map[string][]byte{"x25519": id, "post-quantum": pq, "passphrase-protected": protected, "armored": armored} {
		_, err := h.apply(CmdAddRepository, AddRepository{Name: "r", URL: "s3:b", WriterKey: key})
		if !errors.Is(err, ErrInvalidCommand) || !strings.Contains(err.Error(), "age identity") {
			t.Errorf("%s identity: err = %v, want a refusal naming the identity", name, err)
		}
		if err := CheckWriterKey(key); err == nil {
			t.Errorf("%s identity: CheckWriterKey accepted it", name)
		}
	}
	if _, err := h.apply(CmdAddRepository, AddRepository{Name: "r", URL: "s3:b", WriterKey: []byte("hello")}); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("garbage key: err = %v", err)
	}
	if len(h.fsm.State().Repositories) != 0 {
		t.Fatal("a refused key was stored")
	}
	// A writer key that does not match its checksum is refused before
	// it is proposed; logged by a release that did not check, every
	// node applies it alike.
	damaged := bytes.Replace(wk, []byte(`"config_hash"`), []byte(`"generation": 7, "config_hash"`), 1)
	if err := CheckWriterKey(damaged); !errors.Is(err, chunkstore.ErrWriterKeyChecksum) {
		t.Fatalf("CheckWriterKey of a damaged writer key: %v, want ErrWriterKeyChecksum", err)
	}
	h.must(CmdAddRepository, AddRepository{Name: "d", URL: "s3:d", WriterKey: damaged})
	h.must(CmdAddRepository, AddRepository{Name: "r", URL: "s3:b", WriterKey: wk})
	if _, err := h.apply(CmdAddRepository, AddRepository{Name: "r", URL: "s3:c", WriterKey: wk}); !errors.Is(err, ErrConflict) {
		t.Errorf("second add: err = %v, want ErrConflict", err)
	}
	pub := h.fsm.State().Repositories["r"].Public()
	if pub.WriterKey != nil {
		t.Error("Public keeps the writer key")
	}
}

func createJob(h *fsmHarness, id, agent string, sched time.Time) {
	h.t.Helper()
	h.must(CmdCreateJobs, CreateJobs{Jobs: []NewJob{{ID: id, Kind: KindBackup, Trigger: TriggerSchedule, Policy: "p", Agent: agent, ScheduledAt: sched}}})
}

func TestFSMLeaseFencing(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.setup(wk)
	h.now = t0.Add(time.Minute)
	createJob(h, "j1", "a1", t0.Add(time.Minute))

	j := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", TTL: 30 * time.Second}).(*Job)
	if j.ID != "j1" || j.Lease.Token != 1 || j.State != JobRunning || j.Attempt != 1 {
		t.Fatalf("lease: %+v", j)
	}
	first := j.Lease.Token

	// Renew with the wrong token, or by another agent: refused.
	if _, err := h.apply(CmdRenewLease, RenewLease{JobID: "j1", Agent: "a1", Token: first + 7, TTL: time.Minute}); !errors.Is(err, ErrStaleLease) {
		t.Fatalf("renew with a wrong token: %v", err)
	}
	if _, err := h.apply(CmdRenewLease, RenewLease{JobID: "j1", Agent: "a2", Token: first, TTL: time.Minute}); !errors.Is(err, ErrStaleLease) {
		t.Fatalf("renew by another agent: %v", err)
	}
	// A good renew extends the deadline and records progress.
	h.now = h.now.Add(20 * time.Second)
	dl := h.must(CmdRenewLease, RenewLease{JobID: "j1", Agent: "a1", Token: first, TTL: 30 * time.Second, Progress: &Progress{Files: 3, Bytes: 300}}).(time.Time)
	if !dl.Equal(h.now.Add(30 * time.Second)) {
		t.Fatalf("deadline %v", dl)
	}
	// Expiring before the deadline is refused.
	if _, err := h.apply(CmdExpireLease, ExpireLease{JobID: "j1", Token: first}); !errors.Is(err, ErrConflict) {
		t.Fatalf("early expire: %v", err)
	}
	// The agent pauses past its deadline; the leader expires the lease.
	h.now = dl.Add(time.Second)
	if _, err := h.apply(CmdCompleteJob, CompleteJob{JobID: "j1", Agent: "a1", Token: first, Success: true, Snapshot: &SnapshotInfo{ID: "s1"}}); !errors.Is(err, ErrStaleLease) {
		t.Fatalf("complete after the deadline: %v", err)
	}
	exp := h.must(CmdExpireLease, ExpireLease{JobID: "j1", Token: first, Backoff: time.Minute}).(*Job)
	if exp.State != JobPending || exp.Lease != nil || !exp.NotBefore.Equal(h.now.Add(time.Minute)) {
		t.Fatalf("after expiry: %+v", exp)
	}
	// Backoff: no lease before NotBefore.
	if v := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", TTL: time.Minute}); v.(*Job) != nil {
		t.Fatalf("leased during backoff: %+v", v)
	}
	h.now = exp.NotBefore
	j2 := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", TTL: time.Minute}).(*Job)
	if j2.Lease.Token <= first || j2.Attempt != 2 {
		t.Fatalf("second lease: %+v", j2)
	}
	// The stale holder (first token) wakes up: everything it says is refused.
	for _, c := range []struct {
		typ CommandType
		p   any
	}{
		{CmdRenewLease, RenewLease{JobID: "j1", Agent: "a1", Token: first, TTL: time.Minute}},
		{CmdCompleteJob, CompleteJob{JobID: "j1", Agent: "a1", Token: first, Success: true, Snapshot: &SnapshotInfo{ID: "stale"}}},
		{CmdExpireLease, ExpireLease{JobID: "j1", Token: first}},
	} {
		if _, err := h.apply(c.typ, c.p); !errors.Is(err, ErrStaleLease) {
			t.Fatalf("%s with the stale token: %v", c.typ, err)
		}
	}
	// The current holder completes; the snapshot enters the catalog once.
	done := h.must(CmdCompleteJob, CompleteJob{JobID: "j1", Agent: "a1", Token: j2.Lease.Token, Success: true,
		Snapshot: &SnapshotInfo{ID: "s1", Host: "h1", Time: h.now, Size: 42}}).(*Job)
	if done.State != JobSucceeded || done.Result.SnapshotID != "s1" {
		t.Fatalf("completed: %+v", done)
	}
	st := h.fsm.State()
	if e := st.Catalog["s1"]; e == nil || e.Repository != "r" || e.JobID != "j1" || e.Size != 42 {
		t.Fatalf("catalog: %+v", st.Catalog)
	}
	if _, ok := st.Catalog["stale"]; ok {
		t.Fatal("the stale holder's snapshot is in the catalog")
	}
	if len(st.Agents["a1"].Running) != 0 {
		t.Fatalf("agent still runs %v", st.Agents["a1"].Running)
	}
	// Repeating the same report (a lost reply) is accepted and changes nothing.
	before := h.snapshot()
	if _, err := h.apply(CmdCompleteJob, CompleteJob{JobID: "j1", Agent: "a1", Token: j2.Lease.Token, Success: true, Snapshot: &SnapshotInfo{ID: "s1"}}); err != nil {
		t.Fatalf("repeated complete: %v", err)
	}
	if after := h.snapshot(); !bytes.Equal(stripIndex(before), stripIndex(after)) {
		t.Fatal("repeated complete changed the state")
	}
}

// stripIndex drops the "index" field so snapshots taken at different log
// positions compare on content.
func stripIndex(b []byte) []byte {
	var sf struct {
		Format int            `json:"format"`
		State  map[string]any `json:"state"`
	}
	if err := json.Unmarshal(b, &sf); err != nil {
		panic(err)
	}
	delete(sf.State, "index")
	out, _ := json.Marshal(sf)
	return out
}

func TestFSMRetriesThenFails(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.setup(wk)
	h.must(CmdPutPolicy, PutPolicy{Policy: Policy{Name: "p", Repository: "r", Schedule: "@every 1m", Paths: []string{"/"}, MaxAttempts: 2}})
	createJob(h, "j", "a1", t0.Add(time.Minute))
	for attempt := 1; attempt <= 2; attempt++ {
		j := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", JobID: "j", TTL: time.Minute}).(*Job)
		h.now = h.now.Add(10 * time.Second)
		out := h.must(CmdCompleteJob, CompleteJob{JobID: "j", Agent: "a1", Token: j.Lease.Token, Error: "disk on fire", Backoff: time.Second}).(*Job)
		want := JobPending
		if attempt == 2 {
			want = JobFailed
		}
		if out.State != want || !strings.Contains(out.Result.Error, "disk on fire") {
			t.Fatalf("attempt %d: %+v %+v", attempt, out, out.Result)
		}
		h.now = h.now.Add(time.Second)
	}
	if _, err := h.apply(CmdLeaseJob, LeaseJob{Agent: "a1", JobID: "j", TTL: time.Minute}); !errors.Is(err, ErrConflict) {
		t.Fatalf("lease of a failed job: %v", err)
	}
}

func TestFSMConcurrencyLimitsAndCancel(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.setup(wk)
	h.must(CmdPutPolicy, PutPolicy{Policy: Policy{Name: "p", Repository: "r", Schedule: "@every 1m", Paths: []string{"/"}, MaxConcurrent: 1}})
	h.must(CmdEnrollAgent, EnrollAgent{Name: "a3", Labels: map[string]string{"role": "db"}, CredentialHash: hashOf("a3"), MaxConcurrent: 2})
	createJob(h, "j1", "a1", t0.Add(time.Minute))
	createJob(h, "j2", "a1", t0.Add(2*time.Minute))
	createJob(h, "j3", "a3", t0.Add(time.Minute))
	j1 := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", TTL: time.Minute}).(*Job)
	if j1.ID != "j1" {
		t.Fatalf("leased %s first, want the oldest", j1.ID)
	}
	// a1 runs one job, its limit; policy p runs one, its limit.
	if v := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", TTL: time.Minute}); v.(*Job) != nil {
		t.Fatal("agent limit ignored")
	}
	if _, err := h.apply(CmdLeaseJob, LeaseJob{Agent: "a3", JobID: "j3", TTL: time.Minute}); !errors.Is(err, ErrConflict) {
		t.Fatalf("policy limit: %v", err)
	}
	// Cancelling j1 frees both; its holder's renew is refused.
	h.must(CmdCancelJob, CancelJob{JobID: "j1", Reason: "operator"})
	if _, err := h.apply(CmdRenewLease, RenewLease{JobID: "j1", Agent: "a1", Token: j1.Lease.Token, TTL: time.Minute}); !errors.Is(err, ErrStaleLease) {
		t.Fatalf("renew of a cancelled job: %v", err)
	}
	if _, err := h.apply(CmdCancelJob, CancelJob{JobID: "j1"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second cancel: %v", err)
	}
	if v := h.must(CmdLeaseJob, LeaseJob{Agent: "a3", TTL: time.Minute}).(*Job); v == nil || v.ID != "j3" {
		t.Fatalf("a3 lease after cancel: %+v", v)
	}
	// Revoked agents get nothing and report nothing.
	h.must(CmdRevokeAgent, RevokeAgent{Name: "a3"})
	if _, err := h.apply(CmdCompleteJob, CompleteJob{JobID: "j3", Agent: "a3", Token: h.fsm.State().Jobs["j3"].Lease.Token, Success: true, Snapshot: &SnapshotInfo{ID: "x"}}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("complete by a revoked agent: %v", err)
	}
	if _, err := h.apply(CmdLeaseJob, LeaseJob{Agent: "a3", TTL: time.Minute}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("lease by a revoked agent: %v", err)
	}
}

func TestFSMCreateJobsIsIdempotent(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.setup(wk)
	inst := t0.Add(time.Minute)
	plan := CreateJobs{Jobs: []NewJob{{ID: JobID("p", inst, "a1"), Kind: KindBackup, Trigger: TriggerSchedule, Policy: "p", Agent: "a1", ScheduledAt: inst}},
		Fired: map[string]time.Time{"p": inst}}
	r1 := h.must(CmdCreateJobs, plan).(CreateJobsResult)
	before := h.snapshot()
	r2 := h.must(CmdCreateJobs, plan).(CreateJobsResult)
	if len(r1.Created) != 1 || len(r2.Created) != 0 || len(r2.Existed) != 1 {
		t.Fatalf("results %+v %+v", r1, r2)
	}
	if !bytes.Equal(stripIndex(before), stripIndex(h.snapshot())) {
		t.Fatal("re-proposed plan changed the state")
	}
	// An instant at or before the watermark never fires again, even if its
	// job is gone; the watermark never moves back.
	st := h.fsm.State()
	delete(st.Jobs, plan.Jobs[0].ID)
	b, _ := json.Marshal(snapshotFile{Format: snapshotFormat, State: st})
	if err := h.fsm.RestoreBytes(b); err != nil {
		t.Fatal(err)
	}
	old := plan
	old.Fired = map[string]time.Time{"p": t0}
	r3 := h.must(CmdCreateJobs, old).(CreateJobsResult)
	if len(r3.Created) != 0 || !h.fsm.State().LastFired["p"].Equal(inst) {
		t.Fatalf("watermark guard: %+v, last fired %v", r3, h.fsm.State().LastFired["p"])
	}
}

func TestFSMPruneAndPendingIndex(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.setup(wk)
	inst := t0.Add(time.Minute)
	h.now = inst
	plan := CreateJobs{Jobs: []NewJob{{ID: JobID("p", inst, "a1"), Kind: KindBackup, Trigger: TriggerSchedule, Policy: "p", Agent: "a1", ScheduledAt: inst, NotBefore: inst.Add(time.Second)}},
		Fired: map[string]time.Time{"p": inst}}
	h.must(CmdCreateJobs, plan)
	st := h.fsm.State()
	if got := st.PendingFor("a1"); len(got) != 1 || st.HasWork("a1", inst) || !st.HasWork("a1", inst.Add(time.Second)) || st.HasWork("a2", inst.Add(time.Hour)) {
		t.Fatalf("pending %v, HasWork wrong", got)
	}
	h.now = inst.Add(time.Second)
	j := h.must(CmdLeaseJob, LeaseJob{Agent: "a1", TTL: time.Minute}).(*Job)
	h.must(CmdCompleteJob, CompleteJob{JobID: j.ID, Agent: "a1", Token: j.Lease.Token, Success: true, Snapshot: &SnapshotInfo{ID: "s"}})
	if len(h.fsm.State().PendingFor("a1")) != 0 {
		t.Fatal("a finished job is still pending")
	}
	if n := h.must(CmdPruneJobs, PruneJobs{FinishedBefore: h.now}).(int); n != 0 {
		t.Fatalf("pruned %d jobs that finished at the cutoff", n)
	}
	if n := h.must(CmdPruneJobs, PruneJobs{FinishedBefore: h.now.Add(time.Nanosecond)}).(int); n != 1 {
		t.Fatalf("pruned %d jobs, want 1", n)
	}
	// The pruned instant never fires again, even if a plan proposes it.
	if r := h.must(CmdCreateJobs, plan).(CreateJobsResult); len(r.Created) != 0 {
		t.Fatalf("a pruned instant fired again: %+v", r)
	}
	if _, ok := h.fsm.State().Catalog["s"]; !ok {
		t.Fatal("pruning jobs dropped their snapshot from the catalog")
	}
}

func TestFSMAuditRingIsBounded(t *testing.T) {
	h := newFSMHarness(t)
	n := AuditLimit + 25
	for i := range n {
		h.must(CmdCreateToken, CreateToken{ID: fmt.Sprintf("t%05d", i), Hash: hashOf(fmt.Sprint(i)), Role: RoleReadOnly})
	}
	st := h.fsm.State()
	if len(st.Audit) != AuditLimit || st.Audit[0].Seq != 26 || st.Audit[AuditLimit-1].Seq != uint64(n) {
		t.Fatalf("audit: %d entries, first %d, last %d", len(st.Audit), st.Audit[0].Seq, st.Audit[len(st.Audit)-1].Seq)
	}
	if e := st.Audit[AuditLimit-1]; e.Action != string(CmdCreateToken) || e.Target != fmt.Sprintf("token/t%05d", n-1) || e.Actor != "test" {
		t.Fatalf("last audit entry %+v", e)
	}
}

// genLog drives an FSM with seeded random commands — valid and invalid,
// over every command type — and returns the log it applied.
func genLog(t testing.TB, seed uint64, n int) (log [][]byte, counts map[string]int) {
	wk, _ := testWriterKey(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	h := newFSMHarness(t)
	counts = map[string]int{}
	h.must(CmdAddRepository, AddRepository{Name: "r", URL: "s3:b/r", WriterKey: wk})
	h.must(CmdAddRepository, AddRepository{Name: "r2", URL: "/srv/r2", WriterKey: wk})
	for i := range 4 {
		h.must(CmdPutPolicy, PutPolicy{Policy: Policy{Name: fmt.Sprintf("p%d", i), Repository: "r", Schedule: "@every 1m",
			Paths: []string{"/"}, Agents: map[string]string{"zone": fmt.Sprint(i % 2)}, MaxConcurrent: i % 3, MaxAttempts: 1 + i%3}})
	}
	agents := []string{}
	for i := range 8 {
		name := fmt.Sprintf("a%d", i)
		agents = append(agents, name)
		h.must(CmdEnrollAgent, EnrollAgent{Name: name, Labels: map[string]string{"zone": fmt.Sprint(i % 2)}, CredentialHash: hashOf(name), MaxConcurrent: 1 + i%2})
	}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	jobsOf := func(state JobState) []*Job {
		var out []*Job
		st := h.fsm.State()
		for _, id := range sortedKeys(st.Jobs) {
			if j := st.Jobs[id]; j.State == state {
				out = append(out, j)
			}
		}
		return out
	}
	for len(h.log) < n {
		h.now = h.now.Add(time.Duration(rng.IntN(6_000)) * time.Millisecond)
		var err error
		var kind string
		switch op := rng.IntN(100); {
		case op < 20:
			kind = "create"
			pol := fmt.Sprintf("p%d", rng.IntN(4))
			inst := h.now.Truncate(time.Minute)
			cj := CreateJobs{Fired: map[string]time.Time{pol: inst}}
			for _, a := range agents[:1+rng.IntN(len(agents))] {
				cj.Jobs = append(cj.Jobs, NewJob{ID: JobID(pol, inst, a), Kind: KindBackup, Trigger: TriggerSchedule, Policy: pol, Agent: a, ScheduledAt: inst, NotBefore: inst.Add(time.Duration(rng.IntN(30)) * time.Second)})
			}
			_, err = h.apply(CmdCreateJobs, cj)
		case op < 40:
			kind = "lease"
			_, err = h.apply(CmdLeaseJob, LeaseJob{Agent: pick(agents), TTL: time.Duration(10+rng.IntN(60)) * time.Second})
		case op < 55:
			kind = "renew"
			if js := jobsOf(JobRunning); len(js) > 0 {
				j := js[rng.IntN(len(js))]
				tok := j.Lease.Token
				if rng.IntN(4) == 0 {
					tok += 1000
				}
				_, err = h.apply(CmdRenewLease, RenewLease{JobID: j.ID, Agent: j.Lease.Holder, Token: tok, TTL: 30 * time.Second, Progress: &Progress{Files: rng.Int64N(100), Bytes: rng.Int64N(1 << 30)}})
			}
		case op < 70:
			kind = "complete"
			if js := jobsOf(JobRunning); len(js) > 0 {
				j := js[rng.IntN(len(js))]
				ok := rng.IntN(3) > 0
				_, err = h.apply(CmdCompleteJob, CompleteJob{JobID: j.ID, Agent: j.Lease.Holder, Token: j.Lease.Token, Success: ok, Error: "boom",
					Snapshot: &SnapshotInfo{ID: fmt.Sprintf("snap-%d", h.idx), Host: j.Agent, Time: h.now, Size: rng.Int64N(1e9)}, Backoff: time.Duration(rng.IntN(60)) * time.Second})
			}
		case op < 78:
			kind = "expire"
			if js := jobsOf(JobRunning); len(js) > 0 {
				j := js[rng.IntN(len(js))]
				_, err = h.apply(CmdExpireLease, ExpireLease{JobID: j.ID, Token: j.Lease.Token, Backoff: 5 * time.Second})
			}
		case op < 82:
			kind = "cancel"
			if js := jobsOf(JobPending); len(js) > 0 {
				_, err = h.apply(CmdCancelJob, CancelJob{JobID: js[rng.IntN(len(js))].ID})
			}
		case op < 86:
			kind = "seen"
			_, err = h.apply(CmdAgentSeen, AgentSeen{Name: pick(agents), Version: fmt.Sprintf("v%d", rng.IntN(3))})
		case op < 88:
			kind = "prune"
			_, err = h.apply(CmdPruneJobs, PruneJobs{FinishedBefore: h.now.Add(-time.Duration(rng.IntN(600)) * time.Second)})
		case op < 91:
			kind = "policy"
			i := rng.IntN(5)
			pol := Policy{Name: fmt.Sprintf("p%d", i%4), Repository: pick([]string{"r", "r2", "gone"}),
				Schedule: pick([]string{"@every 1m", "*/5 * * * *", "@hourly"}), Paths: []string{"/"}, Agents: map[string]string{"zone": fmt.Sprint(i % 2)}}
			if i == 4 { // a policy file: p0 and p3 together
				p3 := pol
				p3.Name, p3.Repository, p3.Agents = "p3", "r", map[string]string{"zone": "1"}
				_, err = h.apply(CmdPutPolicies, PutPolicies{Policies: []Policy{p3, pol}})
			} else {
				_, err = h.apply(CmdPutPolicy, PutPolicy{Policy: pol})
			}
		case op < 94:
			kind = "token"
			k := rng.IntN(6)
			id := fmt.Sprintf("tok%d", k)
			// tok0-tok2 are admin tokens, revoked under the last-admin
			// rule by even-numbered ones.
			role, checked := RoleOperator, time.Time{}
			if k < 3 {
				role = RoleAdmin
			}
			if k%2 == 0 {
				checked = h.now
			}
			if rng.IntN(2) == 0 {
				_, err = h.apply(CmdCreateToken, CreateToken{ID: id, Hash: hashOf(id), Role: role, Expires: h.now.Add(time.Hour)})
			} else {
				_, err = h.apply(CmdRevokeToken, RevokeToken{ID: id, CheckedAt: checked})
			}
		case op < 96:
			kind = "join"
			id := fmt.Sprintf("jt%d", rng.IntN(3))
			if rng.IntN(2) == 0 {
				_, err = h.apply(CmdCreateJoinToken, CreateJoinToken{ID: id, Hash: hashOf(id), MaxUses: 2, Labels: map[string]string{"zone": "1"}})
			} else {
				_, err = h.apply(CmdEnrollAgent, EnrollAgent{Name: fmt.Sprintf("new%d", rng.IntN(4)), CredentialHash: hashOf("n"), JoinToken: id})
			}
		case op < 98:
			kind = "forget"
			st := h.fsm.State()
			if ids := sortedKeys(st.Catalog); len(ids) > 0 {
				_, err = h.apply(CmdForgetSnapshot, ForgetSnapshot{ID: ids[rng.IntN(len(ids))]})
			}
		default:
			kind = "unsupported"
			c := Command{Version: CommandVersion + rng.IntN(2), Type: []CommandType{"job.teleport", CmdCancelJob}[rng.IntN(2)], Time: h.now, Payload: json.RawMessage(`{"job_id":"x"}`)}
			b, _ := c.Encode()
			err = h.raw(b).Err
		}
		if kind == "" {
			continue
		}
		if err != nil {
			counts["rejected"]++
		} else {
			counts[kind]++
		}
	}
	return h.log, counts
}

func TestFSMDeterministicReplay(t *testing.T) {
	const n = 800
	log, counts := genLog(t, 42, n)
	for _, k := range []string{"create", "lease", "renew", "complete", "expire", "cancel", "prune", "rejected"} {
		if counts[k] < 5 {
			t.Fatalf("the generated log exercises too few %q commands: %v", k, counts)
		}
	}
	t.Logf("log of %d commands: %v", len(log), counts)

	replay := func(entries [][]byte, f *FSM, from uint64) []string {
		var errs []string
		for i, b := range entries {
			r := f.ApplyBytes(from+uint64(i), b)
			errs = append(errs, fmt.Sprint(r.Err))
		}
		return errs
	}
	var want []byte
	var wantErrs []string
	for i := range 3 {
		f := NewFSM()
		errs := replay(log, f, 1)
		got, err := f.SnapshotBytes()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			want, wantErrs = got, errs
			continue
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("replay %d: snapshot differs (%d vs %d bytes)", i, len(got), len(want))
		}
		if strings.Join(errs, "\n") != strings.Join(wantErrs, "\n") {
			t.Fatalf("replay %d: different results", i)
		}
	}
	// Snapshot halfway, restore into a fresh FSM, apply the rest: the same
	// bytes again; and a restored snapshot re-encodes identically.
	half := NewFSM()
	replay(log[:n/2], half, 1)
	mid, err := half.SnapshotBytes()
	if err != nil {
		t.Fatal(err)
	}
	restored := NewFSM()
	if err := restored.RestoreBytes(mid); err != nil {
		t.Fatal(err)
	}
	if again, _ := restored.SnapshotBytes(); !bytes.Equal(again, mid) {
		t.Fatal("restore then snapshot changed the bytes")
	}
	replay(log[n/2:], restored, uint64(n/2)+1)
	if got, _ := restored.SnapshotBytes(); !bytes.Equal(got, want) {
		t.Fatal("snapshot/restore halfway then replay differs from a full replay")
	}
	// The derived pending index matches the jobs on every path.
	for _, f := range []*FSM{restored, half} {
		f.View(func(s *State) {
			got := s.pending
			s.buildPending()
			if fmt.Sprint(got) != fmt.Sprint(s.pending) {
				t.Fatalf("pending index drifted from the jobs:\n%v\n%v", got, s.pending)
			}
		})
	}
	// Clone is deep and encodes the same.
	c := restored.State()
	if b, _ := json.Marshal(snapshotFile{Format: formatOf(c), State: c}); !bytes.Equal(b, want) {
		t.Fatal("Clone encodes differently")
	}
	for _, j := range c.Jobs {
		j.State = "mangled"
	}
	if got, _ := restored.SnapshotBytes(); !bytes.Equal(got, want) {
		t.Fatal("changing a clone changed the FSM")
	}
}

// TestFSMSnapshotFormatForHolds: a state with a policy that holds
// tagged snapshots is written as format 2, which a version-6 node (it
// reads format 1) refuses rather than restoring the policy without its
// keep_tags; any other state stays format 1. Rules() passes the tags on.
func TestFSMSnapshotFormatForHolds(t *testing.T) {
	wk, _ := testWriterKey(t)
	h := newFSMHarness(t)
	h.setup(wk)
	format := func() int {
		b, err := h.fsm.SnapshotBytes()
		if err != nil {
			t.Fatal(err)
		}
		var sf struct {
			Format int `json:"format"`
		}
		if err := json.Unmarshal(b, &sf); err != nil {
			t.Fatal(err)
		}
		return sf.Format
	}
	if f := format(); f != 1 {
		t.Fatalf("a state without holds is format %d", f)
	}
	r := Retention{KeepDaily: 7, KeepTags: []string{"hold"}}
	h.must(CmdPutPolicy, PutPolicy{Policy: Policy{Name: "held", Repository: "r", Schedule: "@daily", Paths: []string{"/"}, Retention: r}})
	if f := format(); f != 2 {
		t.Fatalf("a state with keep_tags is format %d, want 2", f)
	}
	b, _ := h.fsm.SnapshotBytes()
	restored := NewFSM()
	if err := restored.RestoreBytes(b); err != nil {
		t.Fatal(err)
	}
	restored.View(func(s *State) {
		if got := s.Policies["held"].Policy.Retention.Rules().KeepTags; !slices.Equal(got, []string{"hold"}) {
			t.Fatalf("restored keep_tags %v", got)
		}
	})
}

func TestFSMRestoreRejectsNewerFormat(t *testing.T) {
	f := NewFSM()
	if err := f.RestoreBytes([]byte(`{"format":99,"state":{}}`)); err == nil || !strings.Contains(err.Error(), "upgrade") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzFSMApply(f *testing.F) {
	f.Add(entry(f, CmdCancelJob, t0, CancelJob{JobID: "x"}))
	f.Add([]byte(`{"version":1,"type":"job.lease","time":"2030-01-01T00:00:00Z","payload":{"agent":"a1","ttl":-1}}`))
	f.Add([]byte(`{"version":1,"type":"jobs.create","time":"2030-01-01T00:00:00Z","payload":{"jobs":[{"id":"a"},{"id":"a"}]}}`))
	wk, _ := testWriterKey(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h := newFSMHarness(t)
		h.setup(wk)
		before := h.snapshot()
		r := h.raw(b)
		if r.Err != nil && !bytes.Equal(before, h.snapshot()) {
			t.Fatalf("rejected command (%v) changed the state", r.Err)
		}
	})
}
