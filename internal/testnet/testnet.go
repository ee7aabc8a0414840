// Package testnet holds network helpers shared by the tests of several
// packages.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreeAddr returns a loopback host:port that was free a moment ago: the
// listener that found it is closed again, so a server under test can bind
// it.
//
// The port is taken below the kernel's ephemeral range. A port from that
// range (what listening on port 0 gives) can be handed to any outgoing
// connection in the meantime — tests running beside this one open
// thousands — and the server's bind then fails with "address already in
// use" (seen in CI). Below the range only another test picking the same
// random port can take it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	lo := ephemeralLow()
	for range 100 {
		port := 10000 + rand.IntN(lo-10000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use: try another
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	// Nothing free below the range (or no range): let the kernel choose.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ephemeralLow is the first port of the kernel's ephemeral range, or
// 32768 (Linux's default) when it cannot be read or leaves no room below.
func ephemeralLow() int {
	const def = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return def
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return def
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= 11000 {
		return def
	}
	return lo
}
