package agent

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An agent reaches coordinators whose certificates a private CA signed
// (their --tls-ca) once CAFile names that CA: 'lifeboat agent --cacert' or
// LIFEBOAT_CACERT, as for the CLI. Without it, the agent had no way to
// trust them and retried 'certificate signed by unknown authority' for
// ever.
func TestCoordinatorCAFile(t *testing.T) {
	tc := newTestCoordinator(t)
	ts := httptest.NewTLSServer(tc.api)
	t.Cleanup(ts.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	enroll := func(name, caFile string) error {
		a, err := New(Config{Servers: []string{ts.URL}, JoinToken: tc.joinToken(nil, time.Now().Add(time.Hour)),
			DataDir: t.TempDir(), Name: name, CAFile: caFile, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		return a.enroll(ctx)
	}
	if err := enroll("untrusting", ""); err == nil {
		t.Fatal("an agent without the CA enrolled over TLS")
	}
	if err := enroll("trusting", ca); err != nil {
		t.Fatalf("enroll with CAFile %s: %v", ca, err)
	}
	tc.waitEnrolled("trusting")

	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Servers: []string{ts.URL}, DataDir: t.TempDir(), Name: "x", CAFile: notPEM})
	if err == nil || !strings.Contains(err.Error(), notPEM) {
		t.Fatalf("a CA file without a certificate: got %v, want an error naming %s", err, notPEM)
	}
}
