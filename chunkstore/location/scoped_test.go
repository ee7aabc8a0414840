package location_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// scopedCredentials sets AWS_* to temporary credentials that may list
// bucket only under prefix/ (s3:ListBucket with an s3:prefix condition,
// as least-privilege policies scope a team to its prefix) and get, put
// and delete only below it.
func scopedCredentials(t *testing.T, env storetest.S3Env, prefix string) {
	t.Helper()
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":["s3:ListBucket"],"Resource":["arn:aws:s3:::%[1]s"],"Condition":{"StringLike":{"s3:prefix":["%[2]s","%[2]s/*"]}}},
 {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject"],"Resource":["arn:aws:s3:::%[1]s/%[2]s/*"]}]}`, env.Bucket, prefix)
	sts, err := credentials.NewSTSAssumeRole("http://"+env.Endpoint, credentials.STSAssumeRoleOptions{
		AccessKey: env.AccessKey, SecretKey: env.SecretKey, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	v, err := sts.GetWithContext(nil)
	if err != nil {
		t.Fatalf("assume a role scoped to %s/%s: %v", env.Bucket, prefix, err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", v.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", v.SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", v.SessionToken)
}

// Credentials scoped to a prefix are refused a HEAD of the bucket, which
// names no prefix: opening the repository failed ('access denied ... allows
// "open"'), so neither init nor backup could run with the least-privilege
// credentials docs/operations.md describes. And init's search for a
// repository above the new one could not open the bucket's root; a config
// above that the credentials may read still counts.
func TestScopedCredentials(t *testing.T) {
	env, repo := storetest.MinIORepo(t)
	rc := chunkstore.DefaultRetryConfig()
	initAt(t, repo+"/team")

	scopedCredentials(t, env, "repo")
	st, err := location.Open(t.Context(), repo+"/own", false)
	if err != nil {
		t.Fatalf("open with credentials scoped to the prefix: %v", err)
	}
	if err := st.Put(t.Context(), "x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got, err := location.Enclosing(t.Context(), repo+"/own", rc); err != nil || got != "" {
		t.Errorf("Enclosing(%s) with scoped credentials = %q, %v; want none", repo+"/own", got, err)
	}
	if got, err := location.Enclosing(t.Context(), repo+"/team/sub", rc); err != nil || got != repo+"/team" {
		t.Errorf("Enclosing(%s) with scoped credentials = %q, %v; want %s", repo+"/team/sub", got, err, repo+"/team")
	}

	// Outside their prefix they are still refused, saying so.
	other := strings.TrimSuffix(repo, "/repo") + "/other"
	if _, err := location.Open(t.Context(), other, false); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("open %s outside the credentials' prefix: %v, want access denied", other, err)
	}
}
