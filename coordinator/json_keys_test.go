package coordinator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// encoding/json matches keys case-insensitively and keeps the last of a
// key named twice; decodeJSON refuses both, at any depth, naming the key,
// its documented spelling and where it is.
func TestDecodeJSONKeySpelling(t *testing.T) {
	for _, tc := range []struct {
		body string
		into func() any
		want []string // in the error
	}{
		{`{"NAME":"x"}`, func() any { return &Policy{} }, []string{`key "NAME"`, `write it "name"`, "top level"}},
		{`{"name":"a","Name":"b"}`, func() any { return &Policy{} }, []string{`key "Name"`, `write it "name"`}},
		{`{"Name":"a","name":"b"}`, func() any { return &Policy{} }, []string{`key "Name"`, `write it "name"`}},
		{`{"name":"x","retention":{"Keep_Last":3}}`, func() any { return &Policy{} }, []string{`key "Keep_Last"`, `write it "keep_last"`, "at retention"}},
		{`{"name":"x","retention":{"keep_last":3,"keep_last":4}}`, func() any { return &Policy{} }, []string{`duplicate key "keep_last"`, "at retention"}},
		{`[{"name":"a"},{"name":"b","drill":{"verify":[{"command":"true"},{"COMMAND":"rm -rf /"}]}}]`, func() any { return &[]Policy{} },
			[]string{`key "COMMAND"`, `write it "command"`, "at [1].drill.verify[1]"}},
		{`[{"name":"a"},{"name":"b","paths":["/a"],"paths":["/b"]}]`, func() any { return &[]Policy{} }, []string{`duplicate key "paths"`, "at [1]"}},
		{`{"role":"admin","Role":"read-only"}`, func() any { return &TokenCreateRequest{} }, []string{`key "Role"`, `write it "role"`}},
		// Past 16 keys an object's keys are kept in a map.
		{`{"name":"x","agents":{` + manyKeys(20) + `,"k18":"again"}}`, func() any { return &Policy{} }, []string{`duplicate key "k18"`, "at agents"}},
		// The Kelvin sign folds to k: encoding/json takes it for keep_last.
		{`{"name":"x","retention":{"\u212aeep_last":3}}`, func() any { return &Policy{} }, []string{`write it "keep_last"`}},
	} {
		err := decodeJSON([]byte(tc.body), tc.into())
		if err == nil {
			t.Errorf("%s: accepted", tc.body)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tc.body, err, w)
			}
		}
	}
	// A map's keys are data, not fields: any spelling, each once.
	for _, body := range []string{
		`{"name":"x","agents":{"Role":"web","role":"db"},"drill":{"runner":{"ROLE":"x","role":"y"}}}`,
		`[{"name":"a","retention":{"keep_last":1,"keep_tags":["x"]}},{"name":"b","drill":{"verify":[{"command":"true","timeout":"1m"}]}}]`,
	} {
		into := any(&Policy{})
		if body[0] == '[' {
			into = &[]Policy{}
		}
		if err := decodeJSON([]byte(body), into); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
}

func TestAPICaseVariantKeyRefused(t *testing.T) {
	c := newAPICluster(t, 1)
	c.addRepo(c.admin)
	status, b := httpCall(t, http.MethodPost, c.url(0)+"/v1/tokens", c.admin, []byte(`{"Role":"admin","name":"sneaky"}`), "application/json")
	eb := errBody(t, status, b, http.StatusBadRequest)
	if !strings.Contains(eb.Error, `key "Role"`) || !strings.Contains(eb.Error, `"role"`) {
		t.Fatalf("error %q does not name the key and its spelling", eb.Error)
	}
	body := []byte(`{"name":"web","repository":"r","schedule":"@every 1h","agents":{"role":"web"},"paths":["/srv"],"retention":{"keep_last":3,"KEEP_LAST":1}}`)
	status, b = httpCall(t, http.MethodPost, c.url(0)+"/v1/policies", c.admin, body, "application/json")
	eb = errBody(t, status, b, http.StatusBadRequest)
	if !strings.Contains(eb.Error, `key "KEEP_LAST"`) || !strings.Contains(eb.Error, "retention") {
		t.Fatalf("error %q does not name the key and where it is", eb.Error)
	}
	c.nodes[0].View(func(s *State) {
		for _, tk := range s.Tokens {
			if tk.Name == "sneaky" {
				t.Error("a token was created from a body with a case-variant key")
			}
		}
		if len(s.Policies) != 0 {
			t.Errorf("policies applied from a body with a case-variant key: %v", s.PolicyNames())
		}
	})
}

// manyKeys is n distinct keys of a JSON object, without the braces.
func manyKeys(n int) string {
	var ks []string
	for i := range n {
		ks = append(ks, fmt.Sprintf(`"k%d":"v"`, i))
	}
	return strings.Join(ks, ",")
}

// checkKeys skips a list that cannot hold an object (a verify report's
// shards, its forgotten snapshots) whole, for speed (see
// BenchmarkCheckKeysScalarList); a key after such a list is still
// checked.
func TestCheckKeysSkipsScalarLists(t *testing.T) {
	bad := `{"agent":"a","verify":{"shards":[1,2,3],"snapshots":["x","y"],"Packs":[]}}`
	if err := decodeJSON([]byte(bad), &CompleteRequest{}); err == nil || !strings.Contains(err.Error(), `key "Packs"`) {
		t.Errorf("%s: %v, want the key after the lists refused", bad, err)
	}
	good := `{"agent":"a","verify":{"shards":[1,2,3],"snapshots":["x","y"],"packs":[]}}`
	if err := decodeJSON([]byte(good), &CompleteRequest{}); err != nil {
		t.Errorf("%s: %v", good, err)
	}
}

// BenchmarkCheckKeysScalarList checks the keys of a job completion whose
// verify report lists 2 Mi shard numbers (16 MiB is the body limit): a
// list of scalars is skipped whole, so this costs a fraction of decoding
// the body (BenchmarkDecodeScalarList); token by token it cost 2.5 times
// as much.
func BenchmarkCheckKeysScalarList(b *testing.B) {
	body := scalarListBody(b)
	for b.Loop() {
		if err := checkKeys(body, reflect.TypeFor[*CompleteRequest]()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeScalarList decodes the body BenchmarkCheckKeysScalarList
// checks, for comparison.
func BenchmarkDecodeScalarList(b *testing.B) {
	body := scalarListBody(b)
	for b.Loop() {
		if err := json.Unmarshal(body, &CompleteRequest{}); err != nil {
			b.Fatal(err)
		}
	}
}

func scalarListBody(b *testing.B) []byte {
	body, err := json.Marshal(CompleteRequest{Agent: "a", Success: true, Verify: &VerifyReport{Shards: make([]int, 2<<20)}})
	if err != nil {
		b.Fatal(err)
	}
	return body
}
