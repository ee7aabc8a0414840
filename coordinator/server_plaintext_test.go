package coordinator

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/testnet"
)

// warnRecorder keeps the warnings logged through it.
type warnRecorder struct {
	mu    sync.Mutex
	warns []string // message, then "key=value" of each attribute
}

func (r *warnRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (r *warnRecorder) WithAttrs([]slog.Attr) slog.Handler           { return r }
func (r *warnRecorder) WithGroup(string) slog.Handler                { return r }
func (r *warnRecorder) Handle(_ context.Context, rec slog.Record) error {
	s := rec.Message
	rec.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	r.mu.Lock()
	r.warns = append(r.warns, s)
	r.mu.Unlock()
	return nil
}

func (r *warnRecorder) plaintext() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, w := range r.warns {
		if strings.Contains(w, "without TLS") {
			out = append(out, w)
		}
	}
	return out
}

// TestServerPlaintextWarning: a server whose API listens on every
// interface without TLS starts (it is not refused) and warns once, naming
// the address and the flags that enable TLS; on loopback, or with TLS, it
// does not warn.
func TestServerPlaintextWarning(t *testing.T) {
	cert, key, ca := writeTestPKI(t, t.TempDir())
	for _, tc := range []struct {
		name, http string
		tls        bool
		warn       bool
	}{
		{"every interface", "0.0.0.0:0", false, true},
		{"loopback", "127.0.0.1:0", false, false},
		{"every interface with TLS", "0.0.0.0:0", true, false},
	} {
		rec := &warnRecorder{}
		raft := testnet.FreeAddr(t)
		cfg := ServerConfig{ID: "n1", DataDir: t.TempDir(), RaftAddr: raft, HTTPAddr: tc.http, Peers: []Peer{{ID: "n1", Addr: raft}},
			Logger: slog.New(rec)}
		if tc.tls {
			cfg.TLSCert, cfg.TLSKey, cfg.TLSCA = cert, key, ca
		}
		s, err := NewServer(cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		addr := s.ln.Addr().String()
		s.Close()
		got := rec.plaintext()
		if !tc.warn {
			if len(got) != 0 {
				t.Errorf("%s: warned %q", tc.name, got)
			}
			continue
		}
		if len(got) != 1 {
			t.Fatalf("%s: %d plaintext warnings, want 1: %q", tc.name, len(got), got)
		}
		for _, want := range []string{"http_addr=" + addr, "raft_addr=" + raft, "--tls-cert, --tls-key and --tls-ca"} {
			if !strings.Contains(got[0], want) {
				t.Errorf("%s: the warning does not say %q: %s", tc.name, want, got[0])
			}
		}
	}
	for addr, want := range map[string]bool{"127.0.0.1:8420": true, "[::1]:8420": true, "localhost:8420": true,
		"0.0.0.0:8420": false, "[::]:8420": false, ":8420": false, "10.0.0.1:8420": false, "node1.example:8420": false} {
		if got := loopbackAddr(addr); got != want {
			t.Errorf("loopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}
