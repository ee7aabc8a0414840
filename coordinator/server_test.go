package coordinator

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/testnet"
)

// writeTestPKI writes a CA and one certificate for 127.0.0.1 signed by it.
func writeTestPKI(t *testing.T, dir string) (cert, key, ca string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lifeboat test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	nodeKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &nodeKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(nodeKey)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("node.pem", "CERTIFICATE", der), write("node-key.pem", "EC PRIVATE KEY", keyDER), write("ca.pem", "CERTIFICATE", caDER)
}

// TestServerTLSCluster runs three servers over real TCP with HTTPS for the
// API and mutual TLS for Raft: a write on a follower is forwarded to the
// leader over HTTPS and replicated over TLS.
func TestServerTLSCluster(t *testing.T) {
	cert, key, ca := writeTestPKI(t, t.TempDir())
	var peers []Peer
	var raftAddrs, httpAddrs []string
	for i := range 3 {
		raftAddrs = append(raftAddrs, testnet.FreeAddr(t))
		httpAddrs = append(httpAddrs, testnet.FreeAddr(t))
		peers = append(peers, Peer{ID: fmt.Sprintf("t%d", i), Addr: raftAddrs[i]})
	}
	srvs := make([]*Server, 3)
	for i := range srvs {
		s, err := NewServer(ServerConfig{ID: peers[i].ID, DataDir: t.TempDir(), RaftAddr: raftAddrs[i], HTTPAddr: httpAddrs[i], Peers: peers,
			TLSCert: cert, TLSKey: key, TLSCA: ca, Tune: func(c *Config) {
				c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout, c.Raft.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
			}})
		if err != nil {
			t.Fatal(err)
		}
		srvs[i] = s
		s.Start()
		t.Cleanup(func() { s.Close() })
	}
	if !strings.HasPrefix(srvs[0].URL(), "https://127.0.0.1:") {
		t.Fatalf("advertised URL %s", srvs[0].URL())
	}
	token := ""
	deadline := time.Now().Add(20 * time.Second)
	for token == "" && time.Now().Before(deadline) {
		for _, s := range srvs {
			if tk := s.AdminToken(); tk != "" {
				token = tk
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if token == "" {
		t.Fatal("no admin token within 20s")
	}
	follower := -1
	for follower < 0 && time.Now().Before(deadline) {
		for i, s := range srvs {
			if id, _ := s.Node.Leader(); id != "" && !s.Node.IsLeader() {
				var known bool
				s.Node.View(func(st *State) { known = st.NodeHTTP(id) != "" })
				if known {
					follower = i
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if follower < 0 {
		t.Fatal("no follower that knows the leader's API address")
	}
	// Plain HTTP is refused; HTTPS with the CA works, and a write on a
	// follower is forwarded.
	if _, err := NewClient(ClientConfig{Addrs: []string{srvs[follower].URL()}, Token: token, CAFile: filepath.Join(t.TempDir(), "none.pem")}); err == nil {
		t.Error("a missing CA file was accepted")
	}
	cl, err := NewClient(ClientConfig{Addrs: []string{srvs[follower].URL()}, Token: token, CAFile: ca, RetryFor: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var res TokenCreateResult
	if err := cl.Post(context.Background(), "/v1/tokens", TokenCreateRequest{Role: RoleReadOnly, Name: "over tls"}, &res); err != nil {
		t.Fatalf("write through a follower over TLS: %v", err)
	}
	for time.Now().Before(deadline) {
		n := 0
		for _, s := range srvs {
			s.Node.View(func(st *State) {
				if st.Tokens[res.ID] != nil {
					n++
				}
			})
		}
		if n == 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every member's health, asked over HTTPS with the node credential.
	var cs ClusterStatus
	for time.Now().Before(deadline) {
		if err := cl.Get(context.Background(), "/v1/cluster", &cs); err != nil {
			t.Fatal(err)
		}
		ok := 0
		for _, m := range cs.Members {
			if m.Health == "ok" {
				ok++
			}
		}
		if ok == 3 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("cluster over TLS: %+v", cs)
}
