package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"

	"golang.org/x/sys/unix"
)

// pretouch maps n bytes of anonymous memory, writes to every page and
// unmaps it again, so that the pages the kernel hands out next are pages
// that were just in use.
//
// Why: on a virtual machine whose balloon device has free page reporting
// (the bench's VMs do), memory that has been free for a few seconds is
// given back to the host, and the guest's next touch of each such page
// faults in the host. A restore that writes through the page cache fills
// 1.3 GiB of fresh pages. In alternated restores on such a VM, restic's
// used 4.3–4.8 s of system time after 20 s idle (in four of five) and
// 1.7–2.1 s right after memory had been touched and freed; lifeboat's,
// which then wrote most data with direct I/O, moved much less (2.03 s
// against 1.84 s on average; docs/benchmarks.md); it now writes through
// the page cache too (--direct-io is opt-in). A physical machine has
// no such cost. Touching memory first puts every step of both tools on
// that footing.
func pretouch(n int) error {
	if n <= 0 {
		return nil
	}
	mem, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	for i := 0; i < len(mem); i += os.Getpagesize() {
		mem[i] = 1
	}
	return unix.Munmap(mem)
}

// pretouchEnv, set in a child's environment, makes the child touch that
// many bytes and exit instead of running the bench (pretouchChild).
const pretouchEnv = "LBBENCH_PRETOUCH_BYTES"

// pretouchChild reports whether this process is pretouchInChild's child,
// and if so does its work.
func pretouchChild() (child bool, err error) {
	v := os.Getenv(pretouchEnv)
	if v == "" {
		return false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return true, fmt.Errorf("%s=%q: %w", pretouchEnv, v, err)
	}
	return true, pretouch(n)
}

// pretouchInChild runs pretouch(n) in a child process (this program with
// pretouchEnv set). Not in the driver itself: Linux reports a command's
// peak RSS from the high-water mark of the address space it was started
// from, and Go starts commands from a clone that shares the driver's, so
// 3 GiB touched here once would show as every later command's peak RSS.
func pretouchInChild(n int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), pretouchEnv+"="+strconv.Itoa(n))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// pretouchSize is want, at most a quarter of avail, the memory the kernel
// reports available (free memory plus what it could reclaim, so a small
// machine gives up little of its page cache), or want itself when avail
// is unknown (0).
func pretouchSize(want int, avail int64) int {
	if avail <= 0 {
		return want
	}
	return int(min(int64(want), avail/4))
}
