package testnet

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// A reserved port is not handed out again until it is released, whether
// the second try comes from this process or from another one.
func TestReserveExcludes(t *testing.T) {
	const port = 10001
	release, ok := reserve(port)
	if !ok {
		t.Skipf("port %d is held by a test running beside this one", port)
	}
	if r2, ok := reserve(port); ok {
		r2()
		release()
		t.Fatal("a held port was reserved a second time in the same process")
	}
	if reservedElsewhere(t, port) {
		t.Error("another process reserved a held port")
	}
	release()
	if !reservedElsewhere(t, port) {
		t.Error("another process cannot reserve a released port")
	}
	r3, ok := reserve(port)
	if !ok {
		t.Fatal("a released port cannot be reserved again")
	}
	r3()
}

// reservedElsewhere runs this test binary again as a child that tries to
// reserve port and reports whether it could.
func reservedElsewhere(t *testing.T, port int) bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReserveChild$")
	cmd.Env = append(os.Environ(), "TESTNET_RESERVE_PORT="+strconv.Itoa(port))
	out, err := cmd.CombinedOutput()
	switch {
	case strings.Contains(string(out), "reserved"):
		return true
	case strings.Contains(string(out), "held"):
		return false
	}
	t.Fatalf("child: %v\n%s", err, out)
	return false
}

// TestReserveChild is the child of reservedElsewhere; it does nothing in
// a normal run.
func TestReserveChild(t *testing.T) {
	p := os.Getenv("TESTNET_RESERVE_PORT")
	if p == "" {
		return
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	if release, ok := reserve(port); ok {
		release()
		fmt.Println("reserved")
		return
	}
	fmt.Println("held")
}

// FreeAddr passes over a port another holder has reserved.
func TestFreeAddrSkipsReserved(t *testing.T) {
	release, ok := reserve(10002)
	if !ok {
		t.Skip("port 10002 is held by a test running beside this one")
	}
	defer release()
	ports := []int{10002, 10003}
	defer func(old func(int) int) { pickPort = old }(pickPort)
	pickPort = func(int) int {
		p := ports[0]
		if len(ports) > 1 {
			ports = ports[1:]
		}
		return p
	}
	if got := FreeAddr(t); got != "127.0.0.1:10003" {
		t.Fatalf("FreeAddr gave %s; want 127.0.0.1:10003, the port after the reserved 10002", got)
	}
}

// Where no lock file can be made, ports are still handed out, unreserved.
func TestReserveWithoutLockDir(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", filepath.Join(notDir, "tmp")) // under a regular file: cannot be made
	release, ok := reserve(10004)
	if !ok || release == nil {
		t.Fatal("reserve refused a port because it could not make its lock file")
	}
	release()
	if addr := FreeAddr(t); addr == "" {
		t.Fatal("FreeAddr gave nothing without a lock directory")
	}
}
