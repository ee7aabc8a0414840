package testnet

import (
	"net"
	"strconv"
	"testing"
)

// FreeAddr's ports lie below the ephemeral range, where outgoing
// connections cannot take them, and can be bound.
func TestFreeAddrBelowEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	for range 20 {
		addr := FreeAddr(t)
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port < 10000 || port >= lo {
			t.Fatalf("FreeAddr gave port %d, want 10000 <= port < %d", port, lo)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("cannot bind the address FreeAddr gave: %v", err)
		}
		ln.Close()
	}
}
