// Package sysinfo reads the few facts about the machine that lifeboat
// sizes itself by (memory and the kernel's write-back thresholds) or
// must respect (mount points, running processes).
package sysinfo

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
)

// ProcessExists reports whether a process with the PID exists in this
// PID namespace (one of another user's answers EPERM: it exists). A
// zombie, one that exited and that its parent has yet to reap, does not
// count: it will do nothing more (a killed prune's session must not
// hold the next prune back until its parent waits for it).
func ProcessExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	return !zombie(fmt.Sprintf("/proc/%d/stat", pid))
}

// zombie reports whether the process whose stat file (/proc/PID/stat)
// is statFile has exited: its state, the field after the command name
// in parentheses, is Z or X. A file that cannot be read says nothing.
func zombie(statFile string) bool {
	b, err := os.ReadFile(statFile)
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')') // the name may hold ')'
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] == 'Z' || b[i+2] == 'X'
}

// MemInfo is the field key ("MemAvailable", "MemTotal") of a meminfo
// file such as /proc/meminfo, in bytes, or 0 when the file or the field
// cannot be read.
func MemInfo(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == key+":" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil || kb < 0 {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// CgroupMemoryLimit is the memory limit of the cgroup this process runs
// in, in bytes, or 0 if there is none or it cannot be read. cgroupFile
// is normally /proc/self/cgroup and root /sys/fs/cgroup; cgroup v2
// (memory.max) and v1 (memory/…/memory.limit_in_bytes) are understood.
// The lowest limit on the path from the process's cgroup up to the root
// counts (a parent's limit binds its children), and the root's own file
// covers a container whose /proc/self/cgroup names a path of the host's
// hierarchy that its /sys/fs/cgroup does not have. The page cache a
// process fills is charged to its cgroup, so a program sizing its cache
// by the machine's memory should also heed this.
func CgroupMemoryLimit(cgroupFile, root string) int64 {
	b, err := os.ReadFile(cgroupFile)
	if err != nil {
		return 0
	}
	var lowest int64
	for _, line := range strings.Split(string(b), "\n") {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir, file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			dir, file = root, "memory.max"
		case hasController(parts[1], "memory"):
			dir, file = root+"/memory", "memory.limit_in_bytes"
		default:
			continue
		}
		for p := path.Clean("/" + parts[2]); ; p = path.Dir(p) {
			// "max" and v1's 2^63-4096 read as none.
			if v := readInt(dir + strings.TrimSuffix(p, "/") + "/" + file); v > 0 && v < 1<<60 && (lowest == 0 || v < lowest) {
				lowest = v
			}
			if p == "/" {
				break
			}
		}
	}
	return lowest
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// DirtyBackground is the amount of dirty page cache at which the kernel
// starts writing back in the background: vm.dirty_background_bytes if it
// is set, else vm.dirty_background_ratio percent of avail (the kernel
// takes the percentage of its "dirtyable" memory, which MemAvailable
// approximates). procSys is normally /proc/sys. It returns 0 when
// neither setting can be read.
func DirtyBackground(procSys string, avail int64) int64 {
	if b := readInt(procSys + "/vm/dirty_background_bytes"); b > 0 {
		return b
	}
	if r := readInt(procSys + "/vm/dirty_background_ratio"); r > 0 && avail > 0 {
		return avail / 100 * r
	}
	return 0
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// MountPoints lists the mount points of a mountinfo file such as
// /proc/self/mountinfo (the mount namespace of the process), with the
// kernel's octal escapes undone.
func MountPoints(mountinfo string) ([]string, error) {
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return nil, err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mount-point options ...
		f := strings.Fields(line)
		if len(f) >= 5 {
			points = append(points, unescapeMount(f[4]))
		}
	}
	return points, nil
}

// unescapeMount undoes the octal escapes (\040 for a space, \011, \012,
// \134) of a path in a mountinfo file.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// FDPath is the /proc/self/fd entry of descriptor fd, followed by name
// (an entry of the directory fd is open on) when name is not empty:
// reaching an entry through it acts on what fd holds, whatever a path
// names by now.
func FDPath(fd int, name string) string {
	p := "/proc/self/fd/" + strconv.Itoa(fd)
	if name != "" {
		p += "/" + name
	}
	return p
}

// ExplainFDPath adds to err, from an operation through FDPath, that
// /proc is not mounted when that is why it failed (ENOENT); use says
// what went through it ("sets the modes of devices and FIFOs").
func ExplainFDPath(err error, use string) error {
	if errors.Is(err, syscall.ENOENT) {
		var st syscall.Stat_t
		if syscall.Stat("/proc/self/fd", &st) != nil {
			return fmt.Errorf("%w (%s through /proc/self/fd, which is not mounted here)", err, use)
		}
	}
	return err
}
