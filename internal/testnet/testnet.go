// Package testnet holds network helpers shared by the tests of several
// packages.
package testnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
// random port can take it, and that is ruled out too: the port stays
// reserved (see reserve) until t ends, and FreeAddr skips ports another
// test holds, in this process or in any other test binary that go test
// runs beside it (a three-process cluster test once lost its port to one).
func FreeAddr(t testing.TB) string {
	t.Helper()
	lo := ephemeralLow()
	for range 100 {
		port := pickPort(lo)
		release, ok := reserve(port)
		if !ok {
			continue // another test holds it
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			release()
			continue // in use: try another
		}
		addr := ln.Addr().String()
		ln.Close()
		t.Cleanup(release)
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

// pickPort chooses a port to try below lo; tests replace it.
var pickPort = func(lo int) int { return 10000 + rand.IntN(lo-10000) }

// reserve takes an exclusive advisory lock on a file named after port in
// a directory all test processes share, so that no other FreeAddr hands
// the port out while the lock is held. The lock belongs to the open file,
// so it is released by release or when the process dies (a test binary
// killed by its timeout leaves nothing held). ok is false only when
// another holder has the port. Where no lock can be taken at all (the
// directory belongs to another user, say), the port is handed out
// unreserved, as before reservations existed.
func reserve(port int) (release func(), ok bool) {
	unreserved := func() {}
	dir := filepath.Join(os.TempDir(), "lifeboat-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return unreserved, true
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return unreserved, true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false
		}
		return unreserved, true
	}
	return func() { f.Close() }, true
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
