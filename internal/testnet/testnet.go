// Package testnet holds network helpers shared by the tests of several
// packages.
package testnet

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback host:port that was free a moment ago: the
// listener that found it is closed again, so a server under test can bind
// it (another process may take it first; tests accept that small race).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
