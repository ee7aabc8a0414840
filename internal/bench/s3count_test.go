package bench

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/minio/minio-go/v7"
)

// A sample of MinIO's /minio/metrics/v3/api/requests output, trimmed.
const metricsSample = `# HELP minio_api_requests_total Total number of requests
# TYPE minio_api_requests_total counter
minio_api_requests_total{name="GetObject",server="127.0.0.1:9000",type="s3"} 120
minio_api_requests_total{name="PutObject",server="127.0.0.1:9000",type="s3"} 30
minio_api_requests_total{name="PutObjectPart",server="127.0.0.1:9000",type="s3"} 4
minio_api_requests_total{name="HeadObject",server="127.0.0.1:9000",type="s3"} 7
minio_api_requests_total{name="ListObjectsV2",server="127.0.0.1:9000",type="s3"} 3
minio_api_requests_total{name="GetBucketLocation",server="127.0.0.1:9000",type="s3"} 2
minio_api_requests_total{name="DeleteMultipleObjects",server="127.0.0.1:9000",type="s3"} 1
minio_api_requests_total{name="DeleteObject",server="127.0.0.1:9000",type="s3"} 5
minio_api_requests_total{name="PutBucket",server="127.0.0.1:9000",type="s3"} 1
minio_api_requests_total{name="SomethingNew",server="127.0.0.1:9000",type="s3"} 1
# TYPE minio_api_requests_errors_total counter
minio_api_requests_errors_total{name="HeadObject",server="127.0.0.1:9000",type="s3"} 6
minio_api_requests_errors_total{name="GetObject",server="127.0.0.1:9000",type="s3"} 1
minio_api_requests_inflight_total{name="GetObject",server="127.0.0.1:9000",type="s3"} 2
minio_api_requests_traffic_sent_bytes{server="127.0.0.1:9000",type="s3"} 1.048576e+06
minio_api_requests_traffic_received_bytes{server="127.0.0.1:9000",type="s3"} 4096
minio_api_requests_ttfb_seconds_distribution{le="0.05",name="GetObject",server="127.0.0.1:9000",type="s3"} 100
`

func TestParseMetrics(t *testing.T) {
	c, inflight, err := parseMetrics(strings.NewReader(metricsSample))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{ClassGET: 122, ClassPUT: 35, ClassHEAD: 7, ClassLIST: 3, ClassPOST: 1, ClassDELETE: 5, ClassOTHER: 1}
	for k, v := range want {
		if c.Requests[k] != v {
			t.Errorf("class %s = %d, want %d", k, c.Requests[k], v)
		}
	}
	if c.Total() != 174 {
		t.Errorf("total = %d, want 174", c.Total())
	}
	if c.APIs["PutObjectPart"] != 4 || c.APIs["GetBucketLocation"] != 2 {
		t.Errorf("per-API counts wrong: %v", c.APIs)
	}
	if c.Errors != 7 || c.BytesDn != 1<<20 || c.BytesUp != 4096 || inflight != 2 {
		t.Errorf("errors %d, bytes down %d, up %d, in flight %d; want 7, %d, 4096, 2", c.Errors, c.BytesDn, c.BytesUp, inflight, 1<<20)
	}

	later := strings.ReplaceAll(metricsSample, `name="GetObject",server="127.0.0.1:9000",type="s3"} 120`, `name="GetObject",server="127.0.0.1:9000",type="s3"} 125`)
	c2, _, err := parseMetrics(strings.NewReader(later))
	if err != nil {
		t.Fatal(err)
	}
	d := c2.Sub(c)
	if d.Total() != 5 || d.Breakdown() != "GET 5" || d.APIBreakdown() != "GetObject 5" {
		t.Errorf("difference = %d (%s; %s), want 5 GetObject", d.Total(), d.Breakdown(), d.APIBreakdown())
	}
}

func TestParseMetricsRejectsForeignOutput(t *testing.T) {
	// Metrics from something that is not MinIO's API group must not read as zero requests.
	_, _, err := parseMetrics(strings.NewReader("go_goroutines 12\nminio_api_requests_traffic_sent_bytes{type=\"s3\"} 10\n"))
	if err == nil {
		t.Fatal("no error for output without request counters")
	}
}

func TestSplitSampleQuotedComma(t *testing.T) {
	name, labels, v, ok := splitSample(`m{a="x,y",b="q\"z"} 3 1700000000`)
	if !ok || name != "m" || labels["a"] != "x,y" || labels["b"] != `q"z` || v != 3 {
		t.Fatalf("got %q %v %v %v", name, labels, v, ok)
	}
}

// TestS3CounterCountsRequests makes known requests against the real
// MinIO and checks the counters moved by at least that much (other test
// packages may use the same server at the same time).
func TestS3CounterCountsRequests(t *testing.T) {
	env := storetest.MinIO(t)
	mc := env.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	counter := NewS3Counter(env.Endpoint, env.AccessKey, env.SecretKey)
	before, err := counter.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("lifeboat"), 4096) // 32 KiB
	for _, name := range []string{"a", "b"} {
		if _, err := mc.PutObject(ctx, env.Bucket, name, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		o, err := mc.GetObject(ctx, env.Bucket, "a", minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, o); err != nil {
			t.Fatal(err)
		}
		o.Close()
	}
	if _, err := mc.StatObject(ctx, env.Bucket, "missing", minio.StatObjectOptions{}); err == nil {
		t.Fatal("stat of a missing object succeeded")
	}
	for o := range mc.ListObjects(ctx, env.Bucket, minio.ListObjectsOptions{}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
	}
	after, err := counter.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	t.Logf("counted: %s; %d errors; %d bytes up, %d down", d.APIBreakdown(), d.Errors, d.BytesUp, d.BytesDn)
	for api, n := range map[string]int64{"PutObject": 2, "GetObject": 3, "HeadObject": 1, "ListObjectsV2": 1} {
		if d.APIs[api] < n {
			t.Errorf("%s counted %d times, want at least %d", api, d.APIs[api], n)
		}
	}
	if d.Requests[ClassGET] < 3 || d.Requests[ClassPUT] < 2 || d.Requests[ClassHEAD] < 1 || d.Requests[ClassLIST] < 1 {
		t.Errorf("classes: %s", d.Breakdown())
	}
	if d.Errors < 1 {
		t.Errorf("the 404 on HEAD was not counted as an error")
	}
	if d.BytesUp < 2*int64(len(body)) || d.BytesDn < 3*int64(len(body)) {
		t.Errorf("traffic up %d, down %d; want at least %d and %d", d.BytesUp, d.BytesDn, 2*len(body), 3*len(body))
	}
}

func TestS3CounterWrongSecret(t *testing.T) {
	env := storetest.MinIO(t)
	_, err := NewS3Counter(env.Endpoint, env.AccessKey, "not-the-secret").Snapshot(context.Background())
	if err == nil || !strings.Contains(err.Error(), "403") && !strings.Contains(err.Error(), "401") {
		t.Fatalf("snapshot with a wrong secret: %v", err)
	}
}
