package location_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    location.Location
		canon   string
		wantErr string // substring of the error; "" means success
	}{
		{in: "/srv/backup", want: location.Location{Kind: location.Local, Path: "/srv/backup"}, canon: "/srv/backup"},
		{in: "/srv//backup/../repo/", want: location.Location{Kind: location.Local, Path: "/srv/repo"}, canon: "/srv/repo"},
		{in: "file:///srv/backup", want: location.Location{Kind: location.Local, Path: "/srv/backup"}, canon: "/srv/backup"},
		{in: "s3:http://127.0.0.1:9000/bucket", want: location.Location{Kind: location.S3, Endpoint: "127.0.0.1:9000", Bucket: "bucket"},
			canon: "s3:http://127.0.0.1:9000/bucket"},
		{in: "s3:https://s3.example.com/bucket/some/prefix/", want: location.Location{Kind: location.S3, Endpoint: "s3.example.com", Secure: true, Bucket: "bucket", Prefix: "some/prefix"},
			canon: "s3:https://s3.example.com/bucket/some/prefix"},
		{in: "s3:http://minio:9000/bkt/", want: location.Location{Kind: location.S3, Endpoint: "minio:9000", Bucket: "bkt"}, canon: "s3:http://minio:9000/bkt"},
		{in: "s3:https://[::1]:9000/bkt/p", want: location.Location{Kind: location.S3, Endpoint: "[::1]:9000", Secure: true, Bucket: "bkt", Prefix: "p"},
			canon: "s3:https://[::1]:9000/bkt/p"},
		{in: "s3:http://minio:9000/bkt/x%25y", want: location.Location{Kind: location.S3, Endpoint: "minio:9000", Bucket: "bkt", Prefix: "x%y"},
			canon: "s3:http://minio:9000/bkt/x%25y"},
		{in: "s3:http://minio:9000/bkt/x%2541", want: location.Location{Kind: location.S3, Endpoint: "minio:9000", Bucket: "bkt", Prefix: "x%41"},
			canon: "s3:http://minio:9000/bkt/x%2541"},
		{in: "s3:http://minio:9000/bkt/a%3Fb/c%23d", want: location.Location{Kind: location.S3, Endpoint: "minio:9000", Bucket: "bkt", Prefix: "a?b/c#d"},
			canon: "s3:http://minio:9000/bkt/a%3Fb/c%23d"},
		{in: "s3:http://minio:9000/bkt/my%20backups/team+a", want: location.Location{Kind: location.S3, Endpoint: "minio:9000", Bucket: "bkt", Prefix: "my backups/team+a"},
			canon: "s3:http://minio:9000/bkt/my%20backups/team+a"},

		{in: "", wantErr: "no repository location"},
		{in: "backup", wantErr: "relative paths are not accepted"},
		{in: "./backup", wantErr: "relative paths are not accepted"},
		{in: "../backup", wantErr: "relative paths are not accepted"},
		{in: "file://host/srv", wantErr: "file:///abs/path"},
		{in: "file://srv", wantErr: "absolute path"},
		{in: "sftp:user@host:/srv", wantErr: `unknown scheme "sftp"`},
		{in: "rest:http://host/", wantErr: "s3:https://host[:port]/bucket"},
		{in: "s3://bucket/prefix", wantErr: "http:// or https://"},
		{in: "s3:host/bucket", wantErr: "http:// or https://"},
		{in: "s3:ftp://host/bucket", wantErr: "http:// or https://"},
		{in: "s3:http://host", wantErr: "no bucket"},
		{in: "s3:http://host/", wantErr: "no bucket"},
		{in: "s3:http:///bucket", wantErr: "no S3 endpoint host"},
		{in: "s3:http://key:secret@host/bucket", wantErr: "AWS_ACCESS_KEY_ID"},
		{in: "s3:http://host/bucket?region=x", wantErr: "no query"},
		{in: "s3:http://host/bucket/a/../b", wantErr: "invalid prefix"},
		{in: "s3:http://host/bucket/a//b", wantErr: "invalid prefix"},
		{in: "s3:http://host:99999/bucket", wantErr: `invalid port "99999"`},
		{in: "s3:http://host:0/bucket", wantErr: `invalid port "0"`},
		{in: "s3:http://host/lb", wantErr: `invalid bucket name "lb"`},
		{in: "s3:https://host/has..dots/prefix", wantErr: `invalid bucket name "has..dots"`},
		{in: "s3:http://host:/bucket", wantErr: `empty port after "host"`},
		{in: "s3:http://host/bucket/a%0Ab", wantErr: "control characters"},
		{in: "s3:http://host/bucket/a%00", wantErr: "control characters"},
		{in: "~/backups", wantErr: "~ is not expanded"},
		{in: " /srv/backup", wantErr: "white space"},
		{in: "/srv/backup ", wantErr: "white space"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := location.Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %+v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				if !chunkstore.IsPermanent(err) {
					t.Errorf("Parse error %v is not permanent", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.canon {
				t.Errorf("String() = %q, want %q", got.String(), tt.canon)
			}
			if again, err := location.Parse(got.String()); err != nil || again != got {
				t.Errorf("Parse(String()) = %+v, %v; want a round trip", again, err)
			}
		})
	}
}

func TestOpenLocal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	_, err := location.Open(t.Context(), dir, false)
	if !errors.Is(err, chunkstore.ErrBucketNotFound) {
		t.Fatalf("Open(missing, create=false) = %v, want ErrBucketNotFound", err)
	}
	s, err := location.Open(t.Context(), "file://"+dir, true)
	if err != nil {
		t.Fatalf("Open(create): %v", err)
	}
	if s.Location() != dir {
		t.Errorf("Location() = %q, want %q", s.Location(), dir)
	}
	if err := s.Put(t.Context(), "config", []byte("x")); err != nil {
		t.Fatal(err)
	}
	s2, err := location.Open(t.Context(), dir, false)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if b, err := s2.Get(t.Context(), "config", 0, -1); err != nil || string(b) != "x" {
		t.Errorf("Get through reopened store = %q, %v", b, err)
	}
	if _, err := location.Open(t.Context(), "relative/repo", true); err == nil {
		t.Error("Open(relative path) succeeded")
	}
}

func TestOpenS3(t *testing.T) {
	repo := storetest.MinIORepoURL(t)
	s, err := location.Open(t.Context(), repo, false)
	if err != nil {
		t.Fatalf("Open(%s): %v", repo, err)
	}
	if s.Location() != repo {
		t.Errorf("Location() = %q, want %q", s.Location(), repo)
	}
	if err := s.Put(t.Context(), "config", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Get(t.Context(), "config", 0, -1); err != nil || string(b) != "x" {
		t.Errorf("Get = %q, %v", b, err)
	}

	for _, lookup := range []string{"path", "auto", ""} {
		t.Setenv(location.EnvBucketLookup, lookup)
		if _, err := location.Open(t.Context(), repo, false); err != nil {
			t.Errorf("Open with %s=%q: %v", location.EnvBucketLookup, lookup, err)
		}
	}
	t.Setenv(location.EnvBucketLookup, "bogus")
	if _, err := location.Open(t.Context(), repo, false); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("Open with %s=bogus = %v, want an error naming the value", location.EnvBucketLookup, err)
	}
	t.Setenv(location.EnvBucketLookup, "")

	l, _ := location.Parse(repo)
	l.Bucket = storetest.UniqueBucket(t)
	if _, err := location.Open(t.Context(), l.String(), false); !errors.Is(err, chunkstore.ErrBucketNotFound) {
		t.Errorf("Open(missing bucket, create=false) = %v, want ErrBucketNotFound", err)
	}
}

// initAt creates a lifeboat repository at repo.
func initAt(t *testing.T, repo string) {
	t.Helper()
	st, err := location.Open(t.Context(), repo, true)
	if err != nil {
		t.Fatal(err)
	}
	_, recipient, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chunkstore.Init(t.Context(), st, chunkstore.InitOptions{Recipients: []string{recipient}}); err != nil {
		t.Fatal(err)
	}
}

func TestEnclosingLocal(t *testing.T) {
	dir := t.TempDir()
	outer := filepath.Join(dir, "outer")
	rc := chunkstore.DefaultRetryConfig()
	if got, err := location.Enclosing(t.Context(), filepath.Join(outer, "a"), rc); err != nil || got != "" {
		t.Fatalf("Enclosing before any repository = %q, %v", got, err)
	}
	initAt(t, outer)
	for _, inner := range []string{filepath.Join(outer, "a"), filepath.Join(outer, "data", "x", "y"), "file://" + filepath.Join(outer, "b")} {
		if got, err := location.Enclosing(t.Context(), inner, rc); err != nil || got != outer {
			t.Errorf("Enclosing(%s) = %q, %v; want %s", inner, got, err, outer)
		}
	}
	// The repository itself, a sibling and a parent are not inside it.
	for _, other := range []string{outer, filepath.Join(dir, "outer2"), dir} {
		if got, err := location.Enclosing(t.Context(), other, rc); err != nil || got != "" {
			t.Errorf("Enclosing(%s) = %q, %v; want none", other, got, err)
		}
	}
	// A file named config that is not a repository's config does not count.
	junk := filepath.Join(dir, "junk")
	if err := os.MkdirAll(junk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(junk, chunkstore.ConfigName), []byte("[core]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := location.Enclosing(t.Context(), filepath.Join(junk, "repo"), rc); err != nil || got != "" {
		t.Errorf("Enclosing below a foreign config file = %q, %v; want none", got, err)
	}
}

func TestEnclosingS3(t *testing.T) {
	repo := storetest.MinIORepoURL(t) // s3:http://host/bucket/repo
	rc := chunkstore.DefaultRetryConfig()
	bucketRoot := strings.TrimSuffix(repo, "/repo")

	// A bucket that does not exist yet holds nothing.
	l, _ := location.Parse(repo)
	l.Bucket = storetest.UniqueBucket(t)
	if got, err := location.Enclosing(t.Context(), l.String(), rc); err != nil || got != "" {
		t.Errorf("Enclosing in a missing bucket = %q, %v; want none", got, err)
	}

	initAt(t, repo)
	for _, inner := range []string{repo + "/a", repo + "/data/x/y"} {
		if got, err := location.Enclosing(t.Context(), inner, rc); err != nil || got != repo {
			t.Errorf("Enclosing(%s) = %q, %v; want %s", inner, got, err, repo)
		}
	}
	for _, other := range []string{repo, repo + "2/a", bucketRoot, bucketRoot + "/other"} {
		if got, err := location.Enclosing(t.Context(), other, rc); err != nil || got != "" {
			t.Errorf("Enclosing(%s) = %q, %v; want none", other, got, err)
		}
	}

	// A repository at the bucket's root encloses every prefix.
	root := storetest.MinIORepoURL(t)
	root = strings.TrimSuffix(root, "/repo")
	initAt(t, root)
	if got, err := location.Enclosing(t.Context(), root+"/p/q", rc); err != nil || got != root {
		t.Errorf("Enclosing below a bucket-root repository = %q, %v; want %s", got, err, root)
	}
}

func TestHasControl(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", false},
		{"/srv/data", false},
		{"daily weekly", false}, // a space is printable
		{"~!@#$%^&*()_+{}|:<>?", false},
		{"é/ü/日本", false},
		{"\u0080\u009f", false}, // C1 controls are not ASCII: allowed
		{"a\x00b", true},
		{"\x01", true},
		{"a\tb", true},
		{"daily\nweekly", true},
		{"a\rb", true},
		{"\x1f", true},
		{"\x7f", true},
		{"ok\x7f", true},
	} {
		if got := location.HasControl(tc.in); got != tc.want {
			t.Errorf("HasControl(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestNestedLocal(t *testing.T) {
	dir := t.TempDir()
	rc := chunkstore.DefaultRetryConfig()
	outer := filepath.Join(dir, "bucket")
	// Foreign files and a file named config that is not a repository's
	// do not count.
	if err := os.MkdirAll(filepath.Join(outer, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outer, "etc", chunkstore.ConfigName), []byte("[core]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, loc := range []string{outer, filepath.Join(dir, "missing")} {
		if got, err := location.Nested(t.Context(), loc, rc, 100); err != nil || got != "" {
			t.Errorf("Nested(%s) with no repository = %q, %v; want none", loc, got, err)
		}
	}
	inner := filepath.Join(outer, "team", "prod")
	initAt(t, inner)
	for _, loc := range []string{outer, filepath.Join(outer, "team"), dir, "file://" + outer} {
		if got, err := location.Nested(t.Context(), loc, rc, 100); err != nil || got != inner {
			t.Errorf("Nested(%s) = %q, %v; want %s", loc, got, err, inner)
		}
	}
	// The repository itself is left to Init, which names it already initialized.
	if got, err := location.Nested(t.Context(), inner, rc, 100); err != nil || got != "" {
		t.Errorf("Nested(the repository itself) = %q, %v; want none", got, err)
	}
	// Past the limit, the search gives up rather than read without end.
	if _, err := location.Nested(t.Context(), outer, rc, 2); !errors.Is(err, location.ErrNestedLimit) {
		t.Errorf("Nested past its limit: %v; want ErrNestedLimit", err)
	}
}

func TestNestedS3(t *testing.T) {
	repo := storetest.MinIORepoURL(t) // s3:http://host/bucket/repo
	rc := chunkstore.DefaultRetryConfig()
	bucketRoot := strings.TrimSuffix(repo, "/repo")

	l, _ := location.Parse(repo)
	l.Bucket = storetest.UniqueBucket(t)
	if got, err := location.Nested(t.Context(), l.String(), rc, 100); err != nil || got != "" {
		t.Errorf("Nested in a missing bucket = %q, %v; want none", got, err)
	}
	inner := repo + "/team/prod"
	initAt(t, inner)
	// A foreign object named config beside it does not count.
	st, err := location.Open(t.Context(), repo+"/etc", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(t.Context(), chunkstore.ConfigName, []byte("[core]\n")); err != nil {
		t.Fatal(err)
	}
	for _, loc := range []string{bucketRoot, repo, repo + "/team"} {
		if got, err := location.Nested(t.Context(), loc, rc, 100); err != nil || got != inner {
			t.Errorf("Nested(%s) = %q, %v; want %s", loc, got, err, inner)
		}
	}
	for _, loc := range []string{inner, repo + "/etc", repo + "/te", repo + "/team/prod2"} {
		if got, err := location.Nested(t.Context(), loc, rc, 100); err != nil || got != "" {
			t.Errorf("Nested(%s) = %q, %v; want none", loc, got, err)
		}
	}
	if _, err := location.Nested(t.Context(), bucketRoot, rc, 1); !errors.Is(err, location.ErrNestedLimit) {
		t.Errorf("Nested past its limit: %v; want ErrNestedLimit", err)
	}
}
