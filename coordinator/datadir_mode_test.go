package coordinator

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/testnet"
)

// TestServerMakesItsDataDirPrivate: a data dir made beforehand with mode
// 0755 (an install script, a service manager) would let local users read
// the Raft snapshots Raft writes with the umask's mode — the node secret,
// writer keys and storage environments. The server makes it 0700.
func TestServerMakesItsDataDirPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	raftAddr := testnet.FreeAddr(t)
	s, err := NewServer(ServerConfig{ID: "m1", DataDir: dir, RaftAddr: raftAddr, HTTPAddr: testnet.FreeAddr(t), Peers: []Peer{{ID: "m1", Addr: raftAddr}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %04o after the server opened it, want 0700", fi.Mode().Perm())
	}
}
