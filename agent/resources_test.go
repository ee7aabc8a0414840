package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"golang.org/x/sys/unix"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "20MiB/s": 20 << 20, "20M": 20 << 20, "1.5GiB/s": 3 << 29,
		"500kB/s": 500e3, "8KiB": 8 << 10, " 2 MB/s ": 2e6, "100B/s": 100,
	} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "fast", "20XB/s", "MiB/s"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
	if s := FormatRate(20 << 20); s != "20MiB/s" {
		t.Errorf("FormatRate = %q", s)
	}
}

func TestPolicyResourceSettings(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hooks.yaml")
	if err := os.WriteFile(p, []byte(`
db:
  upload_limit: 5MiB/s
  parallelism: 2
"*":
  post: {command: "true"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := LoadHooks(p)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Servers: []string{"127.0.0.1:1"}, DataDir: t.TempDir(), Name: "n", Host: "n",
		Hooks: h, UploadLimit: 20 << 20, Parallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	if a.parallelism("db") != 2 || a.parallelism("web") != 4 {
		t.Fatalf("parallelism db=%d web=%d", a.parallelism("db"), a.parallelism("web"))
	}
	base := mem.New()
	// db: the policy's limiter over the agent's, shared by its jobs.
	st := a.limitStore("db", base)
	if st2 := a.limitStore("db", base); st2.(interface{ Unwrap() chunkstore.Store }).Unwrap() == nil ||
		a.policyLimits["db"] == nil || a.policyLimits["db"].Limit() != 5<<20 {
		t.Fatalf("policy limiter %v", a.policyLimits)
	}
	inner := st.(interface{ Unwrap() chunkstore.Store }).Unwrap()
	if _, ok := inner.(interface{ Unwrap() chunkstore.Store }); !ok {
		t.Fatal("db's store is not paced by the agent's limit too")
	}
	// web: the agent's limiter only.
	wst := a.limitStore("web", base)
	if wst.(interface{ Unwrap() chunkstore.Store }).Unwrap() != base || a.policyLimits["web"] != nil {
		t.Fatal("web: want the agent's limiter only")
	}

	if err := os.WriteFile(p, []byte("db: {parallelism: -1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadHooks(p); err == nil || !strings.Contains(err.Error(), "parallelism") {
		t.Fatalf("negative parallelism: %v", err)
	}
	if err := os.WriteFile(p, []byte("db: {upload_limit: lots}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadHooks(p); err == nil {
		t.Fatal("bad upload_limit accepted")
	}
}

// TestLowerPriority runs LowerPriority in a child copy of the test binary
// (it would slow every other test in this process) and checks there that
// every thread ended with nice ≥ 10 and the best-effort-low IO class.
func TestLowerPriority(t *testing.T) {
	if os.Getenv("LIFEBOAT_TEST_NICE_CHILD") == "1" {
		LowerPriority(testLogger(t))
		tids, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range tids {
			tid, _ := strconv.Atoi(e.Name())
			// getpriority returns 20 - nice for a thread id.
			prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
			if err != nil {
				t.Fatal(err)
			}
			if nice := 20 - prio; nice < 10 {
				t.Errorf("thread %d has nice %d, want >= 10", tid, nice)
			}
			io, _, errno := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(tid), 0)
			if errno != 0 {
				t.Fatalf("ioprio_get: %v", errno)
			}
			if io != ioprioBestEffortLow {
				t.Errorf("thread %d has io priority %#x, want %#x", tid, io, uintptr(ioprioBestEffortLow))
			}
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLowerPriority$", "-test.v")
	cmd.Env = append(os.Environ(), "LIFEBOAT_TEST_NICE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestLowerPriority") {
		t.Fatalf("child did not run the check:\n%s", out)
	}
}
