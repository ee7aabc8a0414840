package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// The dev server's first backup runs at the next minute: the drill it
// suggests, run at once as printed, failed with 'the repository has no
// snapshots'. The hint says to wait for that backup.
func TestDevInfoDrillAfterFirstBackup(t *testing.T) {
	var out bytes.Buffer
	g := &globals{stdout: &out}
	printDevInfo(g, "http://127.0.0.1:8420", serverFlags{dataDir: "/d", devBackup: "/docs"},
		coordinator.DevInfo{AdminToken: "lbt_x", Repository: "/d/repo", IdentityFile: "/d/identity.txt", Policy: coordinator.DevPolicy})
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, "drill run") {
			if !strings.Contains(line, "first backup") {
				t.Fatalf("the drill hint does not say to wait for the first backup: %q", line)
			}
			return
		}
	}
	t.Fatalf("no drill hint in:\n%s", out.String())
}
