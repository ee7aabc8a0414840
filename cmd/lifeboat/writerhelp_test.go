package main

import (
	"strings"
	"testing"
)

// The root help's credentials summary said a writer key could only back
// up and list snapshots, while forget, tag, stats and repair index say in
// their own help (and the docs) that it is enough for them. Each command
// the summary names runs with the writer key alone.
func TestRootHelpWriterKey(t *testing.T) {
	c, r, _, _ := backedUpSmallTree(t)
	var line string
	for l := range strings.Lines(c.ok("--help").stdout) {
		if strings.Contains(l, "writer key (--key)") {
			line = l
		}
	}
	for _, want := range []string{"tag", "forget", "stats", "repair"} {
		if !strings.Contains(line, want) {
			t.Errorf("root help's writer key line does not name %s: %q", want, line)
		}
	}
	c.ok(r.writer("snapshots")...)
	c.ok(r.writer("stats")...)
	c.ok(r.writer("tag", "--add", "x", "latest")...)
	c.ok(r.writer("repair", "index")...)
	c.ok(r.writer("forget", "--keep-last", "1")...)
}
