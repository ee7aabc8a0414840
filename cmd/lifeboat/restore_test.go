package main

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/lifeboat-backup/lifeboat/restore"
)

func TestWarnMetadata(t *testing.T) {
	var none strings.Builder
	warnMetadata(&none, &restore.Result{})
	if none.Len() != 0 {
		t.Errorf("no metadata errors, yet: %q", none.String())
	}

	res := &restore.Result{MetadataErrors: 12, MetadataSamples: []restore.Failure{
		{Path: "srv/a", Err: syscall.EPERM},
		{Path: "srv/b", Err: errors.New("chmod: bad mode")},
	}}
	var w strings.Builder
	warnMetadata(&w, res)
	lines := strings.Split(strings.TrimSpace(w.String()), "\n")
	want := []string{
		"lifeboat: warning: restored /srv/a, but not all of its metadata (owner, mode, times): operation not permitted",
		"lifeboat: warning: restored /srv/b, but not all of its metadata (owner, mode, times): chmod: bad mode",
		"lifeboat: warning: 10 more entries were restored without all of their metadata; --verbose lists every one",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", w.String(), strings.Join(want, "\n"))
	}

	var one strings.Builder
	warnMetadata(&one, &restore.Result{MetadataErrors: 2, MetadataSamples: res.MetadataSamples[:1]})
	if !strings.Contains(one.String(), "1 more entry was restored") {
		t.Errorf("one more: %q", one.String())
	}

	if got := pathErrors(nil); got == nil || len(got) != 0 {
		t.Errorf("pathErrors(nil) = %#v, want an empty, non-nil list", got)
	}
	if got := pathErrors(res.MetadataSamples); len(got) != 2 || got[0].Path != "/srv/a" || got[1].Error != "chmod: bad mode" {
		t.Errorf("pathErrors = %+v", got)
	}
}
