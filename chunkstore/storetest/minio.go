package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Environment variables that point the tests at a real S3 server.
// scripts/minio.sh run sets all of them.
const (
	EnvS3Endpoint  = "LIFEBOAT_TEST_S3_ENDPOINT"   // host:port, plain HTTP
	EnvS3AccessKey = "LIFEBOAT_TEST_S3_ACCESS_KEY" // access key of a user that may create buckets
	EnvS3SecretKey = "LIFEBOAT_TEST_S3_SECRET_KEY"
	EnvRequireS3   = "LIFEBOAT_TEST_REQUIRE_S3" // "1": a missing endpoint fails the test instead of skipping it
)

// S3Env describes the S3 server a test may use and a bucket made for it.
type S3Env struct {
	Endpoint  string // host:port, plain HTTP
	AccessKey string
	SecretKey string
	Bucket    string // freshly created, unique to this test, removed at cleanup
}

// MinIO returns the S3 server configured through the LIFEBOAT_TEST_S3_*
// variables and a new, empty bucket for this test, force-removed with its
// contents when the test ends. When no endpoint is configured the test is
// skipped, unless LIFEBOAT_TEST_REQUIRE_S3=1 (set by CI and by
// scripts/minio.sh run), in which case it fails.
func MinIO(t testing.TB) S3Env {
	t.Helper()
	env := S3Env{
		Endpoint:  os.Getenv(EnvS3Endpoint),
		AccessKey: os.Getenv(EnvS3AccessKey),
		SecretKey: os.Getenv(EnvS3SecretKey),
	}
	if env.Endpoint == "" {
		msg := "no S3 server: set " + EnvS3Endpoint + ", " + EnvS3AccessKey + " and " + EnvS3SecretKey +
			" or run the tests through scripts/minio.sh run -- go test ..."
		if os.Getenv(EnvRequireS3) == "1" {
			t.Fatal(msg + " (" + EnvRequireS3 + "=1 forbids skipping)")
		}
		t.Skip(msg)
	}
	env.Bucket = UniqueBucket(t)
	c := env.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.MakeBucket(ctx, env.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create test bucket %s on %s: %v", env.Bucket, env.Endpoint, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := c.RemoveBucketWithOptions(ctx, env.Bucket, minio.RemoveBucketOptions{ForceDelete: true})
		if err != nil {
			t.Logf("remove test bucket %s: %v", env.Bucket, err)
		}
	})
	return env
}

// Client returns a minio-go client for env's server, for tests that need
// to look at or tamper with the bucket behind a store's back.
func (env S3Env) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(env.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(env.AccessKey, env.SecretKey, ""),
		Region: "us-east-1",
	})
	if err != nil {
		t.Fatalf("minio client for %s: %v", env.Endpoint, err)
	}
	return c
}

// UniqueBucket returns a valid bucket name derived from the test's name
// and 8 random hex digits. It creates nothing.
func UniqueBucket(t testing.TB) string {
	var b strings.Builder
	b.WriteString("lb-")
	dash := false
	for _, r := range strings.ToLower(t.Name()) {
		if b.Len() >= 40 {
			break
		}
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		if ok {
			b.WriteRune(r)
		} else if !dash {
			b.WriteByte('-')
		}
		dash = !ok
	}
	if !dash {
		b.WriteByte('-')
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	b.WriteString(hex.EncodeToString(rnd[:]))
	return b.String()
}

// MinIORepoURL returns a repository location "s3:http://endpoint/bucket/repo"
// on a fresh bucket of the test S3 server (see MinIO), and sets
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the duration of the test
// so that location.Open finds the credentials. Because it uses t.Setenv it
// cannot be called from parallel tests.
func MinIORepoURL(t *testing.T) string {
	t.Helper()
	_, url := MinIORepo(t)
	return url
}

// MinIORepo is MinIORepoURL that also returns the server's S3Env (its
// bucket and credentials, for tests that derive narrower credentials).
func MinIORepo(t *testing.T) (S3Env, string) {
	t.Helper()
	env := MinIO(t)
	t.Setenv("AWS_ACCESS_KEY_ID", env.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", env.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return env, "s3:http://" + env.Endpoint + "/" + env.Bucket + "/repo"
}
