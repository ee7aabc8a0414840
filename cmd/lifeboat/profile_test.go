package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfileFiles: LIFEBOAT_CPUPROFILE, LIFEBOAT_TRACE and
// LIFEBOAT_MEMPROFILE each get a file of the command's run; one that
// cannot be written is named on stderr and does not fail the command.
func TestProfileFiles(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	vars := []string{"LIFEBOAT_CPUPROFILE", "LIFEBOAT_TRACE", "LIFEBOAT_MEMPROFILE"}
	var env []string
	for _, v := range vars {
		env = append(env, v+"="+filepath.Join(c.dir, v))
	}
	c.with(env...).ok("version")
	for _, v := range vars {
		if fi, err := os.Stat(filepath.Join(c.dir, v)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v, want a file with something in it", v, err)
		}
	}
	env = env[:0]
	for _, v := range vars {
		env = append(env, v+"="+filepath.Join(c.dir, "no-such-dir", v))
	}
	res := c.with(env...).run("version")
	for _, v := range vars {
		if !strings.Contains(res.stderr, "lifeboat: "+v+": ") {
			t.Errorf("stderr does not name %s:\n%s", v, res.stderr)
		}
	}
	if res.code != 0 {
		t.Errorf("exit %d with unwritable profile files, want 0", res.code)
	}
}
