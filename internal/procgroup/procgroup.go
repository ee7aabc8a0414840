// Package procgroup recognises a process group that an earlier lifeboat
// process started and then died without ending (kill -9, the OOM killer,
// a power cut of the process, not of the machine), so that the next
// lifeboat can end it. An agent's pre-hook that was dumping a database,
// or a stream command, would otherwise run on beside the retry that runs
// it again.
//
// tied.Start has the kernel signal the command lifeboat started when
// lifeboat dies, but only that process: the shell of "sh -c" dies, and
// what it started (the dump in "pg_dump ... | gzip", a command sent to
// the background) lives on in the group. A Group, saved while the
// command runs, names that group well enough to tell it from whatever
// reuses its number later.
package procgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Group is a process group led by a command lifeboat started.
type Group struct {
	// ID is the group's ID: the PID of the command that leads it.
	ID int `json:"pgid"`
	// Start is when the leader started, in clock ticks after boot
	// (/proc/PID/stat): a process that got the same PID later started
	// later.
	Start uint64 `json:"start"`
	// Boot is the kernel's boot ID: after a reboot nothing of the group
	// runs, and its numbers mean nothing.
	Boot string `json:"boot"`
}

// procDir is /proc; tests do not change it, but it names what is read.
const procDir = "/proc"

// Of returns the group that process pid leads (it must have been started
// with Setpgid).
func Of(pid int) (Group, error) {
	boot, err := bootID()
	if err != nil {
		return Group{}, err
	}
	st, err := readStat(pid)
	if err != nil {
		return Group{}, err
	}
	if st.pgrp != pid {
		return Group{}, fmt.Errorf("process %d is not a process group leader (its group is %d)", pid, st.pgrp)
	}
	return Group{ID: pid, Start: st.start, Boot: boot}, nil
}

// End ends what is left of g: it sends SIGTERM (and SIGCONT, for a
// stopped process) to the group, and SIGKILL if any of it still runs
// after grace. It reports how many of its processes were running, 0 if
// nothing of g is left: the machine rebooted since, or its leader's PID
// now belongs to a process that started at another time (the group
// ended and the number was reused). Zombies count as ended.
func (g Group) End(grace time.Duration) (running int, err error) {
	if g.ID <= 1 {
		return 0, fmt.Errorf("process group %d: not a group lifeboat started", g.ID)
	}
	boot, err := bootID()
	if err != nil {
		return 0, err
	}
	if boot != g.Boot {
		return 0, nil
	}
	st, err := readStat(g.ID)
	switch {
	case err == nil && st.start != g.Start:
		// The number is another process's. While a process of g is
		// left, the kernel gives its group's number to no new process,
		// so none is.
		return 0, nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return 0, err
	}
	members, err := Members(g.ID)
	if err != nil || len(members) == 0 {
		return 0, err
	}
	running = len(members)
	if err := signal(g.ID, syscall.SIGTERM); err != nil {
		return running, err
	}
	signal(g.ID, syscall.SIGCONT)
	if gone(g.ID, grace) {
		return running, nil
	}
	if err := signal(g.ID, syscall.SIGKILL); err != nil {
		return running, err
	}
	if !gone(g.ID, 5*time.Second) {
		left, _ := Members(g.ID)
		return running, fmt.Errorf("process group %d: processes %v still run after SIGKILL", g.ID, left)
	}
	return running, nil
}

// signal sends sig to group id; a group that ended meanwhile is no error.
func signal(id int, sig syscall.Signal) error {
	if err := syscall.Kill(-id, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", id, err)
	}
	return nil
}

// gone waits up to d for group id to have no running process.
func gone(id int, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if m, err := Members(id); err == nil && len(m) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// Members returns the PIDs of the running (not zombie) processes in group
// id, read from /proc.
func Members(id int) ([]int, error) {
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue // it ended meanwhile
		}
		if st.pgrp == id && st.state != 'Z' {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// stat is what is used of /proc/PID/stat.
type stat struct {
	state byte
	pgrp  int
	start uint64
}

// readStat parses /proc/PID/stat. The command name (field 2) is in
// parentheses and may hold spaces and parentheses itself, so the fields
// are counted from the last ')'.
func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procDir, pid))
	if err != nil {
		return stat{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("process status %q: no command name", b)
	}
	// After the name: state (3), ppid (4), pgrp (5), ... starttime (22).
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, fmt.Errorf("process status %q: too few fields", b)
	}
	pgrp, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return stat{}, fmt.Errorf("process status: group %q: %w", f[2], err)
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("process status: start time %q: %w", f[19], err)
	}
	return stat{state: f[0][0], pgrp: pgrp, start: start}, nil
}

func bootID() (string, error) {
	b, err := os.ReadFile(procDir + "/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read the kernel's boot ID: %w", err)
	}
	return string(bytes.TrimSpace(b)), nil
}
