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

// server and agent log JSON unless --log-format text is given, as their
// help says; the flag's help said (default "text") for them too.
func TestLogFormatDefaultHelp(t *testing.T) {
	c := newCLI(t)
	for _, cmd := range []string{"server", "agent", "backup"} {
		out := c.ok(cmd, "--help").stdout
		if strings.Contains(out, `(default "text")`) || !strings.Contains(out, "json for server and agent") {
			t.Errorf("lifeboat %s --help: --log-format's default is not told as it is:\n%s", cmd, out)
		}
	}
	c.fails(2, []string{"--log-format", "xml", "version"}, `invalid --log-format "xml"`)
}
