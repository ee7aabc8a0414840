// Package sysinfo reads the few facts about the machine that lifeboat
// sizes itself by: memory and the kernel's write-back thresholds.
package sysinfo

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

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
