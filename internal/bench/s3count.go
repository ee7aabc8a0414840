package bench

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Request classes the report groups S3 requests into.
const (
	ClassGET    = "GET"
	ClassPUT    = "PUT"
	ClassHEAD   = "HEAD"
	ClassLIST   = "LIST"
	ClassDELETE = "DELETE"
	ClassPOST   = "POST"
	ClassOTHER  = "OTHER"
)

// Classes lists the request classes in report order.
var Classes = []string{ClassGET, ClassPUT, ClassHEAD, ClassLIST, ClassDELETE, ClassPOST, ClassOTHER}

// Counts is a snapshot of the S3 server's request counters.
type Counts struct {
	Requests map[string]int64 // by class
	APIs     map[string]int64 // by S3 API name, as MinIO names them (GetObject, PutObjectPart, ...)
	Errors   int64            // responses with status >= 400 (404 on HEAD/GET included)
	BytesUp  int64            // received by the server, client to S3
	BytesDn  int64            // sent by the server, S3 to client
}

// Total is the number of requests of all classes.
func (c Counts) Total() int64 {
	var n int64
	for _, v := range c.Requests {
		n += v
	}
	return n
}

// Sub returns c - o.
func (c Counts) Sub(o Counts) Counts {
	out := Counts{Requests: map[string]int64{}, APIs: map[string]int64{}, Errors: c.Errors - o.Errors, BytesUp: c.BytesUp - o.BytesUp, BytesDn: c.BytesDn - o.BytesDn}
	for k, v := range c.Requests {
		if d := v - o.Requests[k]; d != 0 {
			out.Requests[k] = d
		}
	}
	for k, v := range c.APIs {
		if d := v - o.APIs[k]; d != 0 {
			out.APIs[k] = d
		}
	}
	return out
}

// Breakdown renders the non-zero classes, e.g. "GET 12, PUT 80, LIST 3".
func (c Counts) Breakdown() string { return joinCounts(Classes, c.Requests) }

// APIBreakdown renders the non-zero per-API counts, largest first.
func (c Counts) APIBreakdown() string {
	names := make([]string, 0, len(c.APIs))
	for k := range c.APIs {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if c.APIs[names[i]] != c.APIs[names[j]] {
			return c.APIs[names[i]] > c.APIs[names[j]]
		}
		return names[i] < names[j]
	})
	return joinCounts(names, c.APIs)
}

// joinCounts renders "name n" for each of names with a non-zero count in
// m, in that order, or "none".
func joinCounts(names []string, m map[string]int64) string {
	var parts []string
	for _, k := range names {
		if v := m[k]; v != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// classifyAPI maps a MinIO S3 API name to a request class, by the HTTP
// method that API uses.
func classifyAPI(name string) string {
	switch name {
	case "DeleteMultipleObjects", "NewMultipartUpload", "CompleteMultipartUpload", "PostPolicyBucket", "SelectObjectContent", "RestoreObject":
		return ClassPOST
	case "PutBucket": // MakeBucket
		return ClassPUT
	}
	switch {
	case strings.HasPrefix(name, "List"):
		return ClassLIST
	case strings.HasPrefix(name, "Get"):
		return ClassGET
	case strings.HasPrefix(name, "Head"):
		return ClassHEAD
	case strings.HasPrefix(name, "Put"), strings.HasPrefix(name, "Copy"):
		return ClassPUT
	case strings.HasPrefix(name, "Delete"), name == "AbortMultipartUpload":
		return ClassDELETE
	}
	return ClassOTHER
}

// S3Counter reads MinIO's own request counters (its Prometheus metrics,
// v3 API group), so the tools talk to MinIO directly and nothing sits in
// their data path. The counters are node-wide: a snapshot taken before
// and after a command counts that command's requests as long as nothing
// else uses the server meanwhile, which the driver guarantees.
type S3Counter struct {
	endpoint string // host:port, plain HTTP
	token    string // bearer token for the metrics endpoint
	client   *http.Client
}

// NewS3Counter reads the counters of the MinIO server at endpoint
// (host:port, plain HTTP), authenticating as the root user.
func NewS3Counter(endpoint, accessKey, secretKey string) *S3Counter {
	return &S3Counter{
		endpoint: endpoint,
		token:    metricsToken(accessKey, secretKey, time.Now().Add(7*24*time.Hour)),
		client:   &http.Client{Timeout: 30 * time.Second},
	}
}

// metricsToken is the bearer token MinIO accepts on its metrics
// endpoints (what `mc admin prometheus generate` prints): a JWT signed
// with HS512 under the secret key, naming the access key as subject.
func metricsToken(accessKey, secretKey string, exp time.Time) string {
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "HS512", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{"exp": exp.Unix(), "sub": accessKey, "iss": "prometheus"})
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha512.New, []byte(secretKey))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// Snapshot returns the server's counters. It first waits (up to 5 s) for
// requests still in flight to finish, so a command's last response is
// counted even when the server updates its counters just after sending it.
func (s *S3Counter) Snapshot(ctx context.Context) (Counts, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, inflight, err := s.scrape(ctx)
		if err != nil || inflight == 0 || time.Now().After(deadline) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *S3Counter) scrape(ctx context.Context) (Counts, int64, error) {
	url := "http://" + s.endpoint + "/minio/metrics/v3/api/requests"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Counts{}, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.client.Do(req)
	if err != nil {
		return Counts{}, 0, fmt.Errorf("read S3 request counters: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return Counts{}, 0, fmt.Errorf("read S3 request counters from %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads MinIO's v3 API request metrics in the Prometheus
// text format: counts per API name, errors, traffic and in-flight
// requests.
func parseMetrics(r io.Reader) (Counts, int64, error) {
	c := Counts{Requests: map[string]int64{}, APIs: map[string]int64{}}
	var inflight int64
	seen := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		metric, labels, value, ok := splitSample(line)
		if !ok {
			continue
		}
		if labels["type"] != "" && labels["type"] != "s3" {
			continue
		}
		n := int64(value)
		switch metric {
		case "minio_api_requests_total":
			seen = true
			c.APIs[labels["name"]] += n
			c.Requests[classifyAPI(labels["name"])] += n
		case "minio_api_requests_errors_total":
			c.Errors += n
		case "minio_api_requests_traffic_sent_bytes":
			c.BytesDn += n
		case "minio_api_requests_traffic_received_bytes":
			c.BytesUp += n
		case "minio_api_requests_inflight_total":
			inflight += n
		}
	}
	if err := sc.Err(); err != nil {
		return c, 0, fmt.Errorf("read S3 request counters: %w", err)
	}
	if !seen {
		// A server that has served no request yet has no samples; one
		// that is not MinIO (or a version with other names) has none
		// either, and then every count would silently read 0.
		if c.BytesUp == 0 && c.BytesDn == 0 {
			return c, inflight, nil
		}
		return c, 0, fmt.Errorf("read S3 request counters: no minio_api_requests_total samples (not a MinIO server with v3 metrics?)")
	}
	return c, inflight, nil
}

// splitSample parses `name{k="v",...} value [timestamp]`.
func splitSample(line string) (string, map[string]string, float64, bool) {
	labels := map[string]string{}
	name, rest := line, ""
	if i := strings.IndexByte(line, '{'); i >= 0 {
		j := strings.LastIndexByte(line, '}')
		if j < i {
			return "", nil, 0, false
		}
		name, rest = line[:i], line[j+1:]
		for _, kv := range splitLabels(line[i+1 : j]) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			labels[strings.TrimSpace(k)] = v
		}
	} else if i := strings.IndexByte(line, ' '); i >= 0 {
		name, rest = line[:i], line[i:]
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return "", nil, 0, false
	}
	return name, labels, v, true
}

// splitLabels splits a label list at the commas outside quoted values.
func splitLabels(s string) []string {
	var out []string
	inQuote, esc, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case esc:
			esc = false
		case s[i] == '\\':
			esc = true
		case s[i] == '"':
			inQuote = !inQuote
		case s[i] == ',' && !inQuote:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
