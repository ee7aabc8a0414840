package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// pretouch touches every page of what it maps: a child that touched n
// bytes peaked at n or more.
func TestPretouch(t *testing.T) {
	const n = 64 << 20
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), pretouchEnv+"="+strconv.Itoa(n))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10; peak < n {
		t.Fatalf("a child that touched %d MiB peaked at %d MiB", n>>20, peak>>20)
	}
	if err := pretouch(0); err != nil {
		t.Fatalf("pretouch(0): %v", err)
	}
}

// The size is capped at a quarter of the available memory (read with
// sysinfo.MemInfo, tested there).
func TestPretouchSize(t *testing.T) {
	for _, tc := range []struct {
		want  int
		avail int64
		got   int
	}{
		{3 << 28, 4 << 28, 1 << 28}, // a quarter of what is available
		{1 << 20, 4 << 28, 1 << 20}, // less than that: as asked
		{3 << 28, 0, 3 << 28},       // unknown: as asked
	} {
		if got := pretouchSize(tc.want, tc.avail); got != tc.got {
			t.Errorf("pretouchSize(%d, %d) = %d, want %d", tc.want, tc.avail, got, tc.got)
		}
	}
}

// TestMain lets the test binary stand in for lbbench as pretouchInChild's
// child.
func TestMain(m *testing.M) {
	if child, err := pretouchChild(); child {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Touching memory in a child leaves the driver's high-water mark, and so
// the peak RSS reported for the next command it starts, where it was;
// touching it in the driver would not (the reason for the child).
func TestPretouchInChildKeepsPeakRSS(t *testing.T) {
	const n = 256 << 20
	peak := func() int64 {
		cmd := exec.Command("true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		return int64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) << 10
	}
	if err := pretouchInChild(n); err != nil {
		t.Fatal(err)
	}
	if got := peak(); got >= n/2 {
		t.Fatalf("after touching %d MiB in a child, a command's peak RSS reads %d MiB", n>>20, got>>20)
	}
	// The effect the child avoids: logged, not asserted, as it is the
	// kernel's accounting (seen on Linux 6.18: a 256 MiB peak for 'true').
	if err := pretouch(n); err != nil {
		t.Fatal(err)
	}
	if got := peak(); got < n/2 {
		t.Logf("touching %d MiB in this process did not raise a command's peak RSS (%d MiB) on this kernel", n>>20, got>>20)
	}
}

// pretouchChild acts only with pretouchEnv set, and names the variable
// when its value is not a number.
func TestPretouchChild(t *testing.T) {
	t.Setenv(pretouchEnv, "")
	if child, err := pretouchChild(); child || err != nil {
		t.Fatalf("without %s: child %v, err %v", pretouchEnv, child, err)
	}
	t.Setenv(pretouchEnv, strconv.Itoa(1<<20))
	if child, err := pretouchChild(); !child || err != nil {
		t.Fatalf("with %s=1 MiB: child %v, err %v", pretouchEnv, child, err)
	}
	t.Setenv(pretouchEnv, "3GiB")
	if child, err := pretouchChild(); !child || err == nil || !strings.Contains(err.Error(), pretouchEnv) {
		t.Fatalf("with %s=3GiB: child %v, err %v; want an error naming the variable", pretouchEnv, child, err)
	}
}
