package sysinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMemInfo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	write(t, p, "MemTotal:       24683656 kB\nMemFree:        1000 kB\nMemAvailable:   24074480 kB\nBroken: x kB\n")
	for key, want := range map[string]int64{
		"MemTotal":     24683656 << 10,
		"MemAvailable": 24074480 << 10,
		"MemFree":      1000 << 10,
		"Broken":       0, // not a number
		"SwapTotal":    0, // absent
		"Mem":          0, // a prefix of a key is not the key
	} {
		if got := MemInfo(p, key); got != want {
			t.Errorf("MemInfo(%s) = %d, want %d", key, got, want)
		}
	}
	if got := MemInfo(filepath.Join(t.TempDir(), "missing"), "MemTotal"); got != 0 {
		t.Errorf("missing file: %d, want 0", got)
	}
	// The real file, where there is one, has a total.
	if _, err := os.Stat("/proc/meminfo"); err == nil && MemInfo("/proc/meminfo", "MemTotal") <= 0 {
		t.Error("/proc/meminfo has no MemTotal")
	}
}

func TestDirtyBackground(t *testing.T) {
	const avail = 20 << 30
	for _, tc := range []struct {
		name         string
		bytes, ratio string // "" = file absent
		want         int64
	}{
		{"ratio", "0\n", "10\n", avail / 100 * 10},
		{"bytes win over the ratio", "268435456\n", "10\n", 256 << 20},
		{"bytes only", "1048576", "", 1 << 20},
		{"neither readable", "", "", 0},
		{"garbage", "x", "-5", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.bytes != "" {
				write(t, filepath.Join(dir, "vm/dirty_background_bytes"), tc.bytes)
			}
			if tc.ratio != "" {
				write(t, filepath.Join(dir, "vm/dirty_background_ratio"), tc.ratio)
			}
			if got := DirtyBackground(dir, avail); got != tc.want {
				t.Errorf("DirtyBackground = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cgroup string
		files  map[string]string
		want   int64
	}{
		{"v2", "0::/kubepods/pod1/c1\n", map[string]string{"kubepods/pod1/c1/memory.max": "536870912\n"}, 512 << 20},
		{"v2 unlimited", "0::/user.slice\n", map[string]string{"user.slice/memory.max": "max\n"}, 0},
		{"v2 in a namespace", "0::/\n", map[string]string{"memory.max": "1073741824\n"}, 1 << 30},
		{"v1", "5:cpu,cpuacct:/\n4:memory:/process_api/x\n0::/\n", map[string]string{"memory/process_api/x/memory.limit_in_bytes": "268435456\n"}, 256 << 20},
		{"v1 unlimited", "4:memory:/a\n", map[string]string{"memory/a/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"v1 controller list", "4:foo,memory:/b\n", map[string]string{"memory/b/memory.limit_in_bytes": "1048576"}, 1 << 20},
		{"no limit file", "0::/gone\n", nil, 0},
		{"v2 parent limit binds", "0::/slice/pod/c\n", map[string]string{"slice/memory.max": "2147483648\n", "slice/pod/memory.max": "max\n", "slice/pod/c/memory.max": "4294967296\n"}, 2 << 30},
		{"v1 host path missing in the container", "4:memory:/docker/abc\n", map[string]string{"memory/memory.limit_in_bytes": "805306368\n"}, 768 << 20},
		{"garbage", "nonsense\n", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "cgroup"), tc.cgroup)
			root := filepath.Join(dir, "sys")
			for p, c := range tc.files {
				write(t, filepath.Join(root, p), c)
			}
			if got := CgroupMemoryLimit(filepath.Join(dir, "cgroup"), root); got != tc.want {
				t.Errorf("CgroupMemoryLimit = %d, want %d", got, tc.want)
			}
		})
	}
	if got := CgroupMemoryLimit(filepath.Join(t.TempDir(), "missing"), "/sys/fs/cgroup"); got != 0 {
		t.Errorf("no cgroup file: %d", got)
	}
}

func TestMountPoints(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mountinfo")
	write(t, p, "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"+
		"31 22 0:41 / /srv/with\\040space\\011tab rw - tmpfs tmpfs rw\n"+
		"32 22 0:42 / /srv/back\\134slash\\12x rw - tmpfs tmpfs rw\n"+
		"short line\n\n")
	got, err := MountPoints(p)
	if err != nil {
		t.Fatal(err)
	}
	// \12x is not a three-digit escape and stays as it is.
	if want := []string{"/", "/srv/with space\ttab", `/srv/back\slash\12x`}; !reflect.DeepEqual(got, want) {
		t.Errorf("MountPoints = %q, want %q", got, want)
	}
	if _, err := MountPoints(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a mount table that cannot be read gave no error")
	}
}

func TestProcessExists(t *testing.T) {
	if !ProcessExists(os.Getpid()) {
		t.Error("this process does not exist")
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if ProcessExists(gone.Process.Pid) {
		t.Errorf("process %d, reaped, still exists", gone.Process.Pid)
	}

	// Exited, not yet reaped: a zombie.
	z := exec.Command("true")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	defer z.Wait()
	stat := filepath.Join("/proc", strconv.Itoa(z.Process.Pid), "stat")
	for !zombie(stat) { // until it has exited (the test's timeout bounds this)
		time.Sleep(time.Millisecond)
	}
	if ProcessExists(z.Process.Pid) {
		t.Errorf("process %d, a zombie, counts as existing", z.Process.Pid)
	}

	dir := t.TempDir()
	for content, want := range map[string]bool{
		"42 (prune) S 1 42": false, "42 (prune) Z 1 42": true, "42 (a) Z) R 1": false,
		"42 (a) R) Z 1": true, "42 (x) X 1": true, "42 (x)": false, "garbage": false,
	} {
		p := filepath.Join(dir, "stat")
		write(t, p, content)
		if got := zombie(p); got != want {
			t.Errorf("zombie(%q) = %v, want %v", content, got, want)
		}
	}
	if zombie(filepath.Join(dir, "missing")) {
		t.Error("a stat file that cannot be read says zombie")
	}
}
