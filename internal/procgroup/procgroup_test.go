package procgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startGroup starts a shell leading a group of its own, which sends a
// sleep to the background and waits; it returns the shell and the
// sleep's PID. The test reaps the shell; the sleep, once orphaned, is
// init's to reap.
func startGroup(t *testing.T, script string) (*exec.Cmd, int) {
	t.Helper()
	pidFile := filepath.Join(t.TempDir(), "bg")
	cmd := exec.Command("/bin/sh", "-c", "sleep 300 & echo $! > "+pidFile+"; "+script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(pidFile)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			bg, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return cmd, bg
		}
		if time.Now().After(deadline) {
			t.Fatal("the group's background process did not start")
		}
	}
}

func running(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z'
}

// TestEndLeftGroup: the group of a command whose leader is gone (the
// shell, killed as tied.Start has the kernel do) but whose background
// process runs is ended, as is one whose leader still runs and ignores
// SIGTERM (SIGKILL after the grace period).
func TestEndLeftGroup(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		killLeader   bool
	}{
		{"leader gone", "wait", true},
		{"leader ignores SIGTERM", "trap '' TERM; while :; do sleep 0.05; done", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, bg := startGroup(t, tc.script)
			g, err := Of(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if m, err := Members(g.ID); err != nil || !slices.Contains(m, bg) || !slices.Contains(m, g.ID) {
				t.Fatalf("members %v, %v: want the shell %d and the sleep %d", m, err, g.ID, bg)
			}
			if tc.killLeader {
				cmd.Process.Signal(syscall.SIGKILL)
				for deadline := time.Now().Add(5 * time.Second); running(g.ID); time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the shell outlived SIGKILL")
					}
				}
			}
			n, err := g.End(300 * time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			// The shell (unless killed) and the sleep; the loop's
			// short sleeps may add one.
			want := 2
			if tc.killLeader {
				want = 1
			}
			if n < want || n > want+1 {
				t.Errorf("End found %d running processes, want %d", n, want)
			}
			if running(bg) {
				t.Fatalf("the group's background process %d still runs", bg)
			}
			if m, _ := Members(g.ID); len(m) > 0 {
				t.Fatalf("processes %v of the group still run", m)
			}
		})
	}
}

// TestEndLeavesOthers: a Group whose leader's PID now belongs to a
// process that started at another time, or that was saved before a
// reboot, ends nothing.
func TestEndLeavesOthers(t *testing.T) {
	cmd, bg := startGroup(t, "wait")
	g, err := Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	reused, rebooted := g, g
	reused.Start++
	rebooted.Boot = "another boot"
	for _, x := range []Group{reused, rebooted} {
		n, err := x.End(time.Second)
		if err != nil || n != 0 {
			t.Fatalf("End(%+v) = %d, %v; want 0, nil", x, n, err)
		}
	}
	if !running(g.ID) || !running(bg) {
		t.Fatal("End ended a group that was not the one saved")
	}
	if _, err := (Group{ID: 1, Boot: g.Boot}).End(time.Second); err == nil {
		t.Fatal("End accepted group 1")
	}
}

func TestOfNotLeader(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "sleep 300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if _, err := Of(cmd.Process.Pid); err == nil || !strings.Contains(err.Error(), "not a process group leader") {
		t.Fatalf("Of of a process in the test's group: %v", err)
	}
}

func TestParseStat(t *testing.T) {
	// A command name with a space and a parenthesis, as a process may
	// name itself.
	line := "4242 (a) b (c) S 1 4240 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 0 0\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.state != 'S' || st.pgrp != 4240 || st.start != 98765 {
		t.Fatalf("parsed %+v", st)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S 1 x 3 0 -1 0 0 0 0 0 0 0 0 0 0 0 0 0 5 0"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}
