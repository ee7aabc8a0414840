package coordinator

import (
	"net/http"
	"strings"
	"testing"
)

// A JSON body that names a key twice is ambiguous (encoding/json keeps
// the last value; a proxy or an audit tool may read the first): it is
// refused like YAML's duplicate keys, naming the key.
func TestDecodeJSONRejectsDuplicateKeys(t *testing.T) {
	for _, body := range []string{
		`{"name":"x","name":"y"}`,
		`[{"name":"a"},{"name":"b","paths":["/a"],"paths":["/b"]}]`,
		`{"name":"x","agents":{"role":"web","role":"db"}}`,
		`{"name":"x","drill":{"verify":[{"command":"true","command":"rm -rf /"}]}}`,
	} {
		var v any
		err := decodeJSON([]byte(body), &v)
		if err == nil || !strings.Contains(err.Error(), "duplicate key") {
			t.Errorf("%s: got %v, want a duplicate key error", body, err)
		}
	}
	for _, body := range []string{
		`{"name":"x","agents":{"name":"y"},"drill":{"runner":{"name":"z"}}}`,
		`[{"name":"a"},{"name":"a"}]`,
		`{"a":[{"k":1},{"k":2}],"b":{"k":{"k":3}}}`,
	} {
		var v any
		if err := decodeJSON([]byte(body), &v); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
}

func TestAPIPolicyDuplicateJSONKeyRefused(t *testing.T) {
	c := newAPICluster(t, 1)
	c.addRepo(c.admin)
	body := []byte(`{"name":"web","name":"db","repository":"r","schedule":"@every 1h","paths":["/srv"]}`)
	status, b := httpCall(t, http.MethodPost, c.url(0)+"/v1/policies", c.admin, body, "application/json")
	eb := errBody(t, status, b, http.StatusBadRequest)
	if !strings.Contains(eb.Error, `duplicate key "name"`) {
		t.Fatalf("error %q does not name the duplicate key", eb.Error)
	}
	c.nodes[0].View(func(s *State) {
		if len(s.Policies) != 0 {
			t.Fatalf("policies applied from an ambiguous body: %v", s.PolicyNames())
		}
	})
}
