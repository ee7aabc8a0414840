package drill

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/restore"
)

func reportResults() []Result {
	yes, no := true, false
	day := func(n int) time.Time { return base.Add(time.Duration(n) * 24 * time.Hour) }
	ok := func(id, policy string, d int, rto float64) Result {
		return Result{
			ID: id, Policy: policy, Trigger: "schedule", TriggeredBy: "coordinator", Runner: "runner-1", Passed: true,
			SnapshotID: "3f2a91c0aa", SnapshotTime: day(d).Add(-2 * time.Hour), StartedAt: day(d), FinishedAt: day(d).Add(time.Minute),
			RTOSeconds: rto, RPOSeconds: 7200, Files: 1234, Bytes: 5 << 30, TargetRTOSeconds: 3600, TargetRPOSeconds: 86400,
			RTOMet: &yes, RPOMet: &yes, Checks: []CheckResult{{Command: "pg_verifybackup .", Passed: true}}, Failures: []Failure{},
		}
	}
	bad := ok("d-3", "db", 3, 50)
	bad.Passed, bad.RTOMet = false, nil
	bad.Trigger, bad.TriggeredBy = "manual", "alice"
	bad.Failures = []Failure{{Reason: ReasonContent, Path: "srv/db/base/1", Message: "content differs in chunk 2 of 9"}}
	bad.Checks = []CheckResult{{Command: "pg_verifybackup .", ExitCode: -1, Skipped: true}}
	slow := ok("d-4", "db", 4, 7200)
	slow.Passed, slow.RTOMet = false, &no
	slow.Failures = []Failure{{Reason: ReasonRTO, Message: "took 2h, over the RTO target of 1h"}}
	return []Result{
		ok("d-1", "db", 1, 100), ok("d-2", "db", 2, 300), bad, slow, ok("d-5", "db", 5, 200),
		ok("w-1", "<script>alert(1)</script>", 2, 10),
		ok("old", "db", -30, 1), // before Since
	}
}

func TestReportMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := WriteReport(&b, "md", reportResults(), ReportOptions{Since: base, Now: base.Add(7 * 24 * time.Hour), Title: "Q2 evidence"}); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"# Q2 evidence", "covering drills since 2030-05-06 07:08 UTC",
		"## Policy: db", "## Policy: <script>alert(1)</script>",
		"| 5 | 3 | 2 | 60% | 3m20s | 5m | 1h | 24h |", // drills passed failed rate median max targets
		"| 2030-05-07 07:08 UTC | schedule by coordinator | runner-1 | 3f2a91c0 (2030-05-07 05:08 UTC) | 1,234 files, 5.0 GiB | 1m40s / 1h ✓ | 2h / 24h ✓ | pg_verifybackup .: exit 0 | PASS |",
		"| manual by alice |", "FAIL (content)", "FAIL (rto)", "2h / 1h ✗", "pg_verifybackup .: skipped",
		"content: srv/db/base/1: content differs in chunk 2 of 9",
		"### RTO trend", "`▁█▄` (passed drills, oldest first; min 1m40s, max 5m)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "old") && strings.Contains(md, "2030-04-06") {
		t.Errorf("markdown includes a drill before Since:\n%s", md)
	}
	if strings.Index(md, "Policy: <script>") > strings.Index(md, "Policy: db") {
		t.Error("policies are not sorted")
	}
}

func TestReportHTML(t *testing.T) {
	var b bytes.Buffer
	if err := WriteReport(&b, "html", reportResults(), ReportOptions{Since: base, Now: base}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, "<script>") {
		t.Fatalf("policy name not escaped:\n%s", page)
	}
	for _, want := range []string{
		"&lt;script&gt;alert(1)&lt;/script&gt;", "<polyline", `class="pass">PASS`, `class="fail">FAIL (content)`,
		"target 1h", "Restore drill evidence", "content differs in chunk 2 of 9",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("html lacks %q", want)
		}
	}
	if strings.Count(page, "http") != strings.Count(page, "http://www.w3.org/2000/svg") || strings.Contains(page, "src=") || strings.Contains(page, "href=") {
		t.Error("html references an external asset; the page must be self-contained")
	}
	// Well-formed enough to parse as XML once the doctype is dropped.
	d := xml.NewDecoder(strings.NewReader(strings.TrimPrefix(page, "<!DOCTYPE html>")))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("html does not parse: %v", err)
		}
	}
}

func TestReportJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteReport(&b, "json", reportResults(), ReportOptions{Since: base, Now: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		GeneratedAt time.Time `json:"generated_at"`
		Since       time.Time `json:"since"`
		Policies    []struct {
			Policy  string
			Drills  []Result
			Summary PolicySummary
		}
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !got.GeneratedAt.Equal(base.Add(time.Hour)) || !got.Since.Equal(base) || len(got.Policies) != 2 {
		t.Fatalf("report %+v", got)
	}
	db := got.Policies[1]
	if db.Policy != "db" || len(db.Drills) != 5 || db.Summary.Passed != 3 || db.Summary.PassRate != 0.6 ||
		db.Summary.MedianRTOSeconds != 200 || db.Summary.MaxRTOSeconds != 300 || db.Drills[2].Failures[0].Reason != ReasonContent {
		t.Errorf("db policy %+v", db)
	}
	if !strings.Contains(b.String(), `"failures": []`) {
		t.Error("passed drills must have failures: [] in JSON")
	}
	if err := WriteReport(&b, "pdf", nil, ReportOptions{}); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestSummaryAndDurations(t *testing.T) {
	yes := true
	r := Result{Passed: true, Files: 1234, Bytes: 1288490189, RTOSeconds: 12.3, TargetRTOSeconds: 3600, RPOSeconds: 3 * 3600, TargetRPOSeconds: 86400, RTOMet: &yes}
	if got, want := r.Summary(), "passed: 1,234 files, 1.2 GiB restored and verified in 12.3s (RTO target 1h), snapshot 3h old (RPO target 24h)"; got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	r = Result{Failures: []Failure{{Reason: ReasonContent, Path: "a/b", Message: "differs"}, {Reason: ReasonCheck, Message: "x"}, {Reason: ReasonContent, Message: "y"}}}
	if got, want := r.Summary(), "FAILED (content, check): content: a/b: differs (and 2 more)"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	for d, want := range map[time.Duration]string{
		time.Nanosecond: "1ns", 850 * time.Millisecond: "850ms", 12300 * time.Millisecond: "12.3s", 4*time.Minute + 10*time.Second: "4m10s",
		time.Hour: "1h", 26*time.Hour + 5*time.Minute: "26h5m", 74 * time.Hour: "3d2h", 30 * 24 * time.Hour: "30d",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestMetadataWarnings(t *testing.T) {
	r := reportResults()[0]
	r.noteMetadata(&restore.Result{MetadataErrors: 3, MetadataSamples: []restore.Failure{
		{Path: "srv/a", Err: errors.New("utimensat: operation not permitted")},
		{Path: "srv/b", Err: errors.New("fchown: invalid argument")},
	}})
	if !r.Passed || r.MetadataErrors != 3 || len(r.MetadataSamples) != 2 ||
		r.MetadataSamples[1] != (Failure{Reason: ReasonMetadata, Path: "srv/b", Message: "fchown: invalid argument"}) {
		t.Fatalf("after noteMetadata: passed %v, %d errors, warnings %+v", r.Passed, r.MetadataErrors, r.MetadataSamples)
	}
	if got, want := r.Summary(), "; warning: 3 entries restored without all of their metadata (srv/a: utimensat: operation not permitted)"; !strings.HasSuffix(got, want) {
		t.Errorf("summary %q, want it to end in %q", got, want)
	}
	var b bytes.Buffer
	if err := WriteReport(&b, "md", []Result{r}, ReportOptions{Since: base, Now: base.Add(7 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### Metadata warnings", "drill d-1: 3 entries", "  - srv/b: fchown: invalid argument"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := WriteReport(&b, "html", []Result{r}, ReportOptions{Since: base, Now: base.Add(7 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if want := `<p class="warn">warning: 3 entries restored without all of their metadata (srv/a: utimensat: operation not permitted)</p>`; !strings.Contains(b.String(), want) {
		t.Errorf("HTML lacks %q", want)
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"metadata_errors":3,"metadata_error_samples":[{"reason":"metadata","path":"srv/a"`)) {
		t.Errorf("JSON %s", js)
	}

	// One entry; and a restore without errors clears what was there.
	r.noteMetadata(&restore.Result{MetadataErrors: 1})
	if got := r.Summary(); !strings.HasSuffix(got, "; warning: 1 entry restored without all of its metadata") {
		t.Errorf("summary %q", got)
	}
	r.noteMetadata(&restore.Result{})
	b.Reset()
	if err := WriteReport(&b, "md", []Result{r}, ReportOptions{Since: base, Now: base.Add(7 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if s := r.Summary(); strings.Contains(s, "warning") || strings.Contains(b.String(), "Metadata warnings") || r.MetadataSamples != nil {
		t.Errorf("no metadata errors, yet summary %q, report:\n%s", s, b.String())
	}
	if js, _ := json.Marshal(r); bytes.Contains(js, []byte("metadata")) {
		t.Errorf("JSON without metadata errors mentions them: %s", js)
	}
}

// TestCopiesWarnings: a drill that read chunks from other copies warns
// in its summary; it names the packs and the repair when they are
// damaged, and says it was the storage, not damage, when none is.
func TestCopiesWarnings(t *testing.T) {
	r := reportResults()[0]
	r.BlobsFromCopies, r.DamagedPacks = 3, []string{"data/ab/abcd"}
	if s := r.Summary(); !strings.Contains(s, "; warning: 3 chunks restored from other copies, 1 pack damaged or missing (data/ab/abcd): run 'lifeboat check --read-data', then 'lifeboat repair packs'") {
		t.Errorf("damaged: summary %q", s)
	}
	r.DamagedPacks = nil
	if s := r.Summary(); !strings.Contains(s, "; warning: 3 chunks restored from other copies because their packs could not be read (not damage") || strings.Contains(s, "repair packs") {
		t.Errorf("outage: summary %q", s)
	}
	r.BlobsFromCopies = 0
	if s := r.Summary(); strings.Contains(s, "warning") {
		t.Errorf("no copies used: summary %q", s)
	}
}
