package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// s3Code returns the S3 error code carried by err, or "".
func s3Code(err error) string {
	if r, ok := errors.AsType[minio.ErrorResponse](err); ok {
		return r.Code
	}
	return ""
}

// describe names an object (or the bucket, for name "") for messages.
func (s *Store) describe(name string) string {
	if name == "" {
		return s.loc
	}
	return s.loc + "/" + name
}

// Codes of 4xx answers that are worth retrying: the request or the body
// got damaged or slowed down on the way, not refused for what it is.
var transientCodes = map[string]bool{
	"RequestTimeout":              true,
	"SlowDown":                    true,
	"BadDigest":                   true, // body corrupted in flight: Content-MD5 mismatch
	"XAmzContentSHA256Mismatch":   true,
	"XAmzContentChecksumMismatch": true, // body corrupted in flight: x-amz-checksum-sha256 mismatch
	"IncompleteBody":              true,
	"InternalError":               true,
	"ServiceUnavailable":          true,
}

// Codes that mean the credentials, or what they allow, are wrong.
var credentialCodes = map[string]bool{
	"AccessDenied":                      true,
	"InvalidAccessKeyId":                true,
	"SignatureDoesNotMatch":             true,
	"InvalidToken":                      true,
	"ExpiredToken":                      true, // exported temporary credentials are not renewed
	"InvalidSecurity":                   true,
	"AllAccessDisabled":                 true,
	"AccountProblem":                    true,
	"AuthorizationHeaderMalformed":      true,
	"AuthorizationQueryParametersError": true,
}

// mapErr turns an error from minio-go into one the rest of lifeboat
// understands: chunkstore.ErrNotFound, chunkstore.ErrBucketNotFound,
// chunkstore.Permanent for refusals retrying cannot fix, and plain
// (transient) errors for 5xx answers and network failures. Every message
// names the object (or bucket) and, where it helps, what to check.
func (s *Store) mapErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	what := s.describe(name)
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s %s: %w", op, what, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The caller's deadline, or the transport's for connecting or
		// for an answer: transient (the retry layer stops at the
		// caller's).
		return fmt.Errorf("%s %s: S3 endpoint %s did not answer in time: %w", op, what, s.endpoint, err)
	}
	r, isResp := errors.AsType[minio.ErrorResponse](err)
	if !isResp {
		return s.networkErr(op, what, err)
	}
	switch {
	case r.Code == "NoSuchBucket":
		return fmt.Errorf("%s %s: bucket %q does not exist on %s (run `lifeboat init` or create the bucket): %w",
			op, what, s.bucket, s.endpoint, errors.Join(chunkstore.ErrBucketNotFound, err))
	case r.Code == "NoSuchKey" || r.Code == "NotFound" || r.StatusCode == http.StatusNotFound && name != "":
		return fmt.Errorf("%s %s: %w", op, what, chunkstore.ErrNotFound)
	case r.Code == "PermanentRedirect" || r.Code == "AuthorizationHeaderMalformed" || r.StatusCode >= 300 && r.StatusCode < 400:
		// Sent to the wrong region (with AWS_REGION set, the client
		// library does not follow the bucket): no retry reaches it.
		hint := "the bucket may be in another region: set AWS_REGION to its region"
		if r.Region != "" {
			hint = fmt.Sprintf("bucket %q is in region %s: set AWS_REGION=%s", s.bucket, r.Region, r.Region)
		}
		return chunkstore.Permanent(fmt.Errorf("%s %s: %w: %s", op, what, err, hint))
	case r.StatusCode == http.StatusNotImplemented:
		return chunkstore.Permanent(fmt.Errorf("%s %s: %w: the server does not implement this request; lifeboat needs an S3-compatible server that verifies x-amz-checksum-sha256 or Content-MD5 on uploads", op, what, err))
	case r.Code == "XMinioStorageFull" || r.StatusCode == http.StatusInsufficientStorage:
		// Not freed by waiting the few seconds the retries take.
		return chunkstore.Permanent(fmt.Errorf("%s %s: %w: the server's storage is full: free space on it, or run 'lifeboat prune'", op, what, err))
	case r.Code == "RequestTimeTooSkewed":
		return chunkstore.Permanent(fmt.Errorf("%s %s: %w: this machine's clock differs from the server's by more than S3 allows (15 minutes): set the clock right (NTP) and try again", op, what, err))
	case (credentialCodes[r.Code] || r.StatusCode == http.StatusForbidden || r.StatusCode == http.StatusUnauthorized) && s.anonymous():
		return chunkstore.Permanent(fmt.Errorf("%s %s: access denied (%w): no S3 credentials were found, so the request went unsigned: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE to a profile in the shared credentials file",
			op, what, err))
	case r.Code == "InvalidAccessKeyId":
		return chunkstore.Permanent(fmt.Errorf("%s %s: access denied (%w): the server knows no access key %q: set AWS_ACCESS_KEY_ID (or the shared credentials file's profile) to one it knows",
			op, what, err, s.accessKey()))
	case r.Code == "SignatureDoesNotMatch":
		return chunkstore.Permanent(fmt.Errorf("%s %s: access denied (%w): the secret key is not the one of access key %q: check AWS_SECRET_ACCESS_KEY (or the shared credentials file's profile)",
			op, what, err, s.accessKey()))
	case credentialCodes[r.Code] || r.StatusCode == http.StatusForbidden || r.StatusCode == http.StatusUnauthorized:
		return chunkstore.Permanent(fmt.Errorf("%s %s: access denied (%w): check the S3 credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or the shared credentials file) and that their policy allows %q on bucket %q",
			op, what, err, op, s.bucket))
	case transientCodes[r.Code],
		r.StatusCode == http.StatusRequestTimeout,
		r.StatusCode == http.StatusTooManyRequests,
		r.StatusCode >= 500:
		return fmt.Errorf("%s %s: %w", op, what, err)
	case r.StatusCode == http.StatusBadRequest && name == "" && strings.HasPrefix(s.endpoint, "http://"):
		// A bucket request refused as malformed: the usual cause is an
		// https endpoint spoken to in plain HTTP (a HEAD answer has no
		// body to say more).
		return chunkstore.Permanent(fmt.Errorf("%s %s: %w: if %s serves HTTPS, use an s3:https:// location; if the bucket is in another region, set AWS_REGION",
			op, what, err, s.endpoint))
	case r.StatusCode >= 400:
		return chunkstore.Permanent(fmt.Errorf("%s %s: %w", op, what, err))
	}
	return fmt.Errorf("%s %s: %w", op, what, err)
}

// anonymous reports whether the store's requests go unsigned: no
// credentials were configured, and the chain found none either.
func (s *Store) anonymous() bool {
	v, err := s.client.GetCreds()
	return err == nil && (v.SignerType.IsAnonymous() || v.AccessKeyID == "")
}

// accessKey returns the access key ID the store signs with, or "".
func (s *Store) accessKey() string {
	v, _ := s.client.GetCreds()
	return v.AccessKeyID
}

func (s *Store) networkErr(op, what string, err error) error {
	if perm := s.tlsErr(op, what, err); perm != nil {
		return perm
	}
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s %s: S3 endpoint %s unreachable (connection refused): is the server running and the address right? %w", op, what, s.endpoint, err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("%s %s: S3 endpoint %s unreachable (cannot resolve %q): %w", op, what, s.endpoint, dnsErr.Name, err)
	case strings.Contains(err.Error(), "Connection closed by foreign host"):
		// minio-go's words for a connection closed before any answer
		// (an io.EOF it drops): a plain message, which
		// chunkstore.IsConnectionError took for an answer. A server or
		// middlebox that closes every request then cost each object a
		// round of retries, the store never found unreachable. As a
		// *net.OpError it counts as a failure to talk to the store.
		return fmt.Errorf("%s %s: S3 endpoint %s closed the connection without answering: %w", op, what, s.endpoint, &net.OpError{Op: "read", Net: "tcp", Err: err})
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return fmt.Errorf("%s %s: S3 endpoint %s: network error: %w", op, what, s.endpoint, err)
	}
	return fmt.Errorf("%s %s: %w", op, what, err)
}

// tlsErr recognises the failures of an https endpoint that no retry can
// fix, because they come from the configuration on one side or the
// other: the server does not speak TLS, or its certificate is not
// trusted, not for this host name, or expired. It returns nil for
// anything else.
func (s *Store) tlsErr(op, what string, err error) error {
	var (
		record     tls.RecordHeaderError
		verify     *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalidCrt x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, http.ErrSchemeMismatch):
		return chunkstore.Permanent(fmt.Errorf("%s %s: S3 endpoint %s answered in plain HTTP, not HTTPS: use an s3:http:// location, or enable TLS on the server: %w",
			op, what, s.endpoint, err))
	case errors.As(err, &record):
		return chunkstore.Permanent(fmt.Errorf("%s %s: S3 endpoint %s does not speak TLS: check the port, or use an s3:http:// location: %w",
			op, what, s.endpoint, err))
	case errors.As(err, &hostname):
		return chunkstore.Permanent(fmt.Errorf("%s %s: TLS certificate of S3 endpoint %s is not valid for that host name: use a name the certificate lists: %w",
			op, what, s.endpoint, err))
	case errors.As(err, &invalidCrt):
		return chunkstore.Permanent(fmt.Errorf("%s %s: TLS certificate of S3 endpoint %s is not usable (expired, not yet valid, or not a server certificate): renew it on the server, or check this machine's clock: %w",
			op, what, s.endpoint, err))
	case errors.As(err, &unknownCA), errors.As(err, &verify):
		return chunkstore.Permanent(fmt.Errorf("%s %s: TLS certificate of S3 endpoint %s is not trusted: if the server uses a private CA, point SSL_CERT_FILE at its certificate (PEM): %w",
			op, what, s.endpoint, err))
	}
	return nil
}
