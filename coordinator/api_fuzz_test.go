package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Fuzz targets for every request body the API decodes. Each feeds bytes
// to the real handler of a single-node cluster: no input may panic or get
// a 5xx, and every refused input (4xx) gets a JSON error and leaves the
// state exactly as it was.

// fuzzAPI starts a single node whose leader loop does not tick (so the
// state changes only through the requests) and returns its API and the
// admin token.
func fuzzAPI(f *testing.F) (*API, *Node, string) {
	f.Helper()
	net := newMemNetwork()
	peers := []Peer{{ID: "f0", Addr: "fuzz-0"}}
	rc := RaftConfig{ID: "f0", Addr: "fuzz-0", DataDir: f.TempDir(), Peers: peers,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		CommitTimeout: time.Millisecond, ApplyTimeout: 2 * time.Second, transport: net.transport("fuzz-0"), noSync: true}
	n, err := NewNode(Config{Raft: rc, TickInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	a := NewAPI(APIConfig{Node: n, SelfURL: "http://fuzz.invalid"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for a.InitialAdminToken() == "" {
		if ctx.Err() != nil {
			f.Fatal("fuzz node did not initialize its cluster")
		}
		_ = a.maintainOnce(ctx)
		time.Sleep(5 * time.Millisecond)
	}
	// A repository, an agent and a job, so that bodies can name them.
	wk, _ := testWriterKey(f)
	if err := n.AddRepository(ctx, "test", AddRepository{Name: "r", URL: "/srv/r", WriterKey: wk}); err != nil {
		f.Fatal(err)
	}
	if _, err := n.PutPolicy(ctx, "test", Policy{Name: "p", Repository: "r", Schedule: "@daily", Paths: []string{"/x"}}); err != nil {
		f.Fatal(err)
	}
	if _, err := n.Propose(ctx, CmdEnrollAgent, "test", EnrollAgent{Name: "a1", CredentialHash: hashSecret("s")}); err != nil {
		f.Fatal(err)
	}
	if _, err := n.Propose(ctx, CmdCreateJobs, "test", CreateJobs{Jobs: []NewJob{{ID: "j1", Kind: KindBackup, Trigger: TriggerManual, Policy: "p", Agent: "a1", ScheduledAt: time.Now()}}}); err != nil {
		f.Fatal(err)
	}
	return a, n, a.InitialAdminToken()
}

func fuzzEndpoint(f *testing.F, method, path, contentType string, seeds ...string) {
	a, n, token := fuzzAPI(f)
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := stateBytes(t, n)
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s with %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var eb ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == "" {
				t.Fatalf("%d without a JSON error: %s", rec.Code, rec.Body)
			}
			if !bytes.Equal(before, stateBytes(t, n)) {
				t.Fatalf("refused body %q (%d %s) changed the state", body, rec.Code, eb.Error)
			}
		}
	})
}

func FuzzAPIPolicyYAML(f *testing.F) {
	fuzzEndpoint(f, http.MethodPut, "/v1/policies?filename=p.yaml", "application/yaml",
		testPolicyYAML, "name: q\nrepository: r\nschedule: '@every 1h'\npaths: [/a]\n", "name: [", "---\n---\n", "name: x\nretention: {keep_last: -1}\n",
		"name: q\nrepository: r\nschedule: CRON_TZ=Mars/Olympus 0 * * * *\npaths: [/a]\n", "&a [*a, *a]")
}

func FuzzAPIPolicyJSON(f *testing.F) {
	fuzzEndpoint(f, http.MethodPost, "/v1/policies", "application/json",
		`{"name":"q","repository":"r","schedule":"@hourly","paths":["/a"],"targets":{"rpo":"2h"}}`,
		`[{"name":"q","repository":"r","schedule":"@hourly","paths":["/a"]},{"name":"q"}]`,
		`{"name":"q","targets":{"rpo":5}}`, `[]`, `{"name":"q","jitter":"-1s"}`, `null`, `{}`)
}

func FuzzAPIRepoAdd(f *testing.F) {
	fuzzEndpoint(f, http.MethodPost, "/v1/repos", "application/json",
		`{"name":"x","url":"/srv/x","writer_key":"k"}`, `{"name":"x","url":"s3:https://h/bkt","writer_key":"AGE-SECRET-KEY-1XYZ"}`,
		`{"name":"../x","url":"/x"}`, `{"name":"x","url":"/x","writer_key":"","env":{"AWS_X":"1"},"replace":true}`, `{"name":1}`)
}

func FuzzAPIEnroll(f *testing.F) {
	fuzzEndpoint(f, http.MethodPost, "/v1/agents", "application/json",
		`{"name":"a2","labels":{"role":"web"}}`, `{"name":"a 2"}`, `{"name":"a3","max_concurrent":-1}`, `{"name":"a1","version":"1"}`)
}

func FuzzAPITokenCreate(f *testing.F) {
	fuzzEndpoint(f, http.MethodPost, "/v1/tokens", "application/json",
		`{"role":"read-only","name":"g","ttl":"1h"}`, `{"role":"root"}`, `{"role":"admin","ttl":"-1h"}`, `{"role":"agent","ttl":"99999999999d"}`)
}

func FuzzAPIJoinTokenCreate(f *testing.F) {
	fuzzEndpoint(f, http.MethodPost, "/v1/join-tokens", "application/json",
		`{"labels":{"a":"b"},"ttl":"1h","max_uses":3}`, `{"max_uses":-1}`, `{"ttl":"x"}`)
}

func FuzzAPIHeartbeat(f *testing.F) {
	fuzzEndpoint(f, http.MethodPost, "/v1/jobs/j1/heartbeat", "application/json",
		`{"agent":"a1","token":1,"ttl":"1m","progress":{"files":1}}`, `{"agent":"a1","token":18446744073709551615}`, `{"agent":""}`)
}

func FuzzAPIComplete(f *testing.F) {
	fuzzEndpoint(f, http.MethodPost, "/v1/jobs/j1/complete", "application/json",
		`{"agent":"a1","token":1,"success":true,"snapshot":{"id":"s","host":"h","time":"2030-01-01T00:00:00Z","size":1}}`,
		`{"agent":"a1","token":0,"success":false,"error":"x"}`, `{"agent":"a1","snapshot":{"time":"yesterday"}}`)
}

func FuzzAPILease(f *testing.F) {
	fuzzEndpoint(f, http.MethodPost, "/v1/agents/a1/lease", "application/json",
		`{"ttl":"1m"}`, `{"job_id":"j1","ttl":"1s"}`, `{"job_id":"nope"}`, `{"ttl":"-5s"}`, ``)
}

func FuzzAPICancel(f *testing.F) {
	fuzzEndpoint(f, http.MethodPost, "/v1/jobs/j1/cancel", "application/json", `{"reason":"x"}`, `{"reason":1}`, ``, `{}`)
}

// Membership bodies are fuzzed through their decoding and checks only: a
// valid join or remove would really change the single node's membership.
func FuzzAPIMembershipBodies(f *testing.F) {
	for _, s := range []string{`{"id":"n2","addr":"10.0.0.2:8421"}`, `{"id":""}`, `{"id":"a b","addr":"x"}`, `{"id":"n2","addr":"x","extra":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var j JoinRequest
		if err := decodeJSON(body, &j); err != nil {
			if s, _ := errorStatus(err); s != http.StatusBadRequest {
				t.Fatalf("join body %q: status %d", body, s)
			}
		}
		var r RemoveRequest
		if err := decodeJSON(body, &r); err != nil {
			if s, _ := errorStatus(err); s != http.StatusBadRequest {
				t.Fatalf("remove body %q: status %d", body, s)
			}
		}
		var n NodeInfo
		_ = decodeJSON(body, &n)
	})
}
