package main

import (
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// A job's error and warnings are what its agent reported: an agent (a
// compromised node, or a file name with an escape in it) must not have
// 'lifeboat job list|show' send terminal escapes to the operator.
func TestJobResultEscapesControlCharacters(t *testing.T) {
	j := coordinator.Job{Result: &coordinator.Result{Error: "read /srv/a\x1b]0;pwned\x07: denied\r\nfake line\u009b2J"}}
	got := jobResult(j)
	if strings.ContainsAny(got, "\x1b\x07\r\n\u009b") {
		t.Fatalf("jobResult kept control characters: %q", got)
	}
	for _, want := range []string{`read /srv/a\x1b]0;pwned\a: denied\r\nfake line\u009b2J`} {
		if got != want {
			t.Fatalf("jobResult = %q, want %q", got, want)
		}
	}
	if s := terminalSafe("plain text, ünïcode"); s != "plain text, ünïcode" {
		t.Fatalf("plain text changed: %q", s)
	}
}
