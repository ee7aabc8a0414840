package s3

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// Config says where a repository lives in S3 and how to reach it.
type Config struct {
	Endpoint string // host[:port], no scheme
	Secure   bool   // https
	Bucket   string
	Prefix   string // optional key prefix inside the bucket, without leading or trailing "/"
	Region   string // empty: AWS_REGION, then AWS_DEFAULT_REGION, then asked from the server

	// AccessKey and SecretKey (and SessionToken) are static credentials.
	// When AccessKey is empty, credentials come from the usual chain:
	// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, then the
	// shared credentials file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE),
	// then the instance/container role (skipped when
	// AWS_EC2_METADATA_DISABLED=true).
	AccessKey, SecretKey, SessionToken string

	// BucketLookup is "auto" (or empty), "path" or "dns": how the bucket is
	// put into request URLs.
	BucketLookup string

	// Transport replaces the HTTP transport (tests inject faults with it).
	Transport http.RoundTripper

	// StallTimeout is how long a request may move no byte before it is
	// abandoned (and retried); 0 means DefaultStallTimeout.
	StallTimeout time.Duration

	// Logger gets the one warning about a server that does not confirm
	// upload checksums; nil means slog.Default().
	Logger *slog.Logger
}

// Store is a chunkstore.Store in an S3 bucket.
type Store struct {
	client   *minio.Client
	core     minio.Core
	bucket   string
	prefix   string // "" or "some/prefix/"
	endpoint string // scheme://host:port
	loc      string
	stall    time.Duration
	log      *slog.Logger
	// unconfirmed is set once the server answered an upload carrying
	// x-amz-checksum-sha256 without echoing it: it may not verify that
	// header, so every upload carries a Content-MD5 as well from then on.
	unconfirmed atomic.Bool
}

var _ chunkstore.Store = (*Store)(nil)

// maxPut is the largest object Put sends; larger ones would need a
// multipart upload, which lifeboat never needs (packs are a few MiB).
const maxPut int64 = 5 << 30

// Open connects to the bucket described by cfg. It checks that the bucket
// exists; if it does not, Open creates it when create is true and
// otherwise returns an error wrapping chunkstore.ErrBucketNotFound.
func Open(ctx context.Context, cfg Config, create bool) (*Store, error) {
	if cfg.Endpoint == "" || strings.Contains(cfg.Endpoint, "/") {
		return nil, chunkstore.Permanent(fmt.Errorf("open s3 store: invalid endpoint %q: want host[:port] without scheme or path", cfg.Endpoint))
	}
	if cfg.Bucket == "" {
		return nil, chunkstore.Permanent(errors.New("open s3 store: no bucket given"))
	}
	if err := CheckBucketName(cfg.Bucket); err != nil {
		// The client library would refuse every call with this error,
		// which is not a network error and must not be retried.
		return nil, chunkstore.Permanent(fmt.Errorf("open s3 store: %w", err))
	}
	lookup, err := parseLookup(cfg.BucketLookup)
	if err != nil {
		return nil, err
	}
	region := firstNonEmpty(cfg.Region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"))
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentialsFor(cfg),
		Secure:       cfg.Secure,
		Transport:    cfg.Transport,
		Region:       region,
		BucketLookup: lookup,
		// One try per call: chunkstore.WithRetry is the single retry
		// point, and it knows which errors are worth retrying.
		MaxRetries: 1,
		// Lets Put pass the SHA-256 of a content-addressed object as its
		// x-amz-checksum-sha256 (the client library insists on this flag
		// for explicit checksums; every Put sets one, so no trailer is sent).
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, chunkstore.Permanent(fmt.Errorf("open s3 store %s/%s: %w", cfg.Endpoint, cfg.Bucket, err))
	}
	scheme := "http"
	if cfg.Secure {
		scheme = "https"
	}
	s := &Store{
		client:   client,
		core:     minio.Core{Client: client},
		bucket:   cfg.Bucket,
		endpoint: scheme + "://" + cfg.Endpoint,
		stall:    cmp.Or(cfg.StallTimeout, DefaultStallTimeout),
		log:      cfg.Logger,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.loc = "s3:" + s.endpoint + "/" + cfg.Bucket
	if p := strings.Trim(cfg.Prefix, "/"); p != "" {
		s.prefix = p + "/"
		s.loc += "/" + p
	}

	wctx, w := s.watch(ctx)
	ok, err := client.BucketExists(wctx, s.bucket)
	w.done()
	if err != nil && s.prefix != "" && deniedForBucket(err) {
		// Credentials scoped to the prefix (s3:ListBucket with an
		// s3:prefix condition, s3:GetObject on PREFIX/*) are refused a
		// HEAD of the bucket, which names no prefix: a listing of the
		// prefix tells as well whether the bucket exists.
		ok, err = s.bucketExistsByListing(ctx)
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, s.requestErr(ctx, wctx, "open", "", err)
	}
	if ok {
		return s, nil
	}
	if !create {
		return nil, fmt.Errorf("open %s: bucket %q does not exist on %s: run `lifeboat init` to create the repository, or create the bucket yourself: %w",
			s.loc, s.bucket, s.endpoint, chunkstore.ErrBucketNotFound)
	}
	err = client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	if err != nil && s3Code(err) != "BucketAlreadyOwnedByYou" {
		return nil, s.mapErr("create bucket", "", err)
	}
	return s, nil
}

// deniedForBucket reports whether err refuses a bucket request for what
// the credentials may do, not for who they are.
func deniedForBucket(err error) bool {
	r, ok := errors.AsType[minio.ErrorResponse](err)
	if !ok || r.Code == "InvalidAccessKeyId" || r.Code == "SignatureDoesNotMatch" {
		return false
	}
	return r.Code == "AccessDenied" || r.StatusCode == http.StatusForbidden
}

// bucketExistsByListing lists at most one object under the prefix: false
// if the bucket does not exist, the listing's error if it is refused too.
func (s *Store) bucketExistsByListing(ctx context.Context) (bool, error) {
	wctx, w := s.watch(ctx)
	defer w.done()
	noOwner := false
	for obj := range s.client.ListObjectsIter(wctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, MaxKeys: 1, FetchOwner: &noOwner}) {
		if obj.Err != nil {
			if s3Code(obj.Err) == "NoSuchBucket" {
				return false, nil
			}
			return false, s.requestErr(ctx, wctx, "open", "", obj.Err)
		}
		break
	}
	if serr := s.stallErr(ctx, wctx, "open", ""); serr != nil {
		return false, serr
	}
	return true, ctx.Err()
}

// CheckBucketName reports whether S3 (and so the client library) accepts
// name as a bucket name, with the rule in the error.
func CheckBucketName(name string) error {
	if err := s3utils.CheckValidBucketName(name); err != nil {
		return fmt.Errorf("invalid bucket name %q: %v (S3 bucket names are 3 to 63 lower-case letters, digits, dots and hyphens)", name, err)
	}
	return nil
}

func credentialsFor(cfg Config) *credentials.Credentials {
	if cfg.AccessKey != "" {
		return credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	}
	providers := []credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{}, // AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE
	}
	if !strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		providers = append(providers, &credentials.IAM{})
	}
	return credentials.NewChainCredentials(providers)
}

func parseLookup(s string) (minio.BucketLookupType, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return minio.BucketLookupAuto, nil
	case "path":
		return minio.BucketLookupPath, nil
	case "dns":
		return minio.BucketLookupDNS, nil
	}
	return 0, chunkstore.Permanent(fmt.Errorf("invalid S3 bucket lookup %q: want auto, path or dns", s))
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// Location implements chunkstore.Store: "s3:http(s)://endpoint/bucket[/prefix]".
func (s *Store) Location() string { return s.loc }

func (s *Store) key(name string) string { return s.prefix + name }

// Put implements chunkstore.Store. The object goes up in one PUT carrying
// a checksum the server verifies before storing anything: the SHA-256 its
// name carries, or a Content-MD5 (see the package documentation).
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	if err := check(ctx, name); err != nil {
		return err
	}
	if int64(len(data)) > maxPut {
		return chunkstore.Permanent(fmt.Errorf("put %s: %d bytes is more than a single PUT allows", s.describe(name), len(data)))
	}
	sum, addressed := contentAddressed(name)
	if !addressed {
		_, err := s.put(ctx, name, data, "", true)
		return err
	}
	// The name is the SHA-256 of the bytes: hand it to the server as the
	// object checksum, which it verifies, at no hashing cost here.
	want := base64.StdEncoding.EncodeToString(sum)
	withMD5 := s.unconfirmed.Load()
	info, err := s.put(ctx, name, data, want, withMD5)
	if err != nil || info.ChecksumSHA256 == want || withMD5 {
		return err
	}
	// A server that verifies the checksum says so by echoing it; this one
	// did not, and may have ignored the header (some S3-compatible
	// servers do). What it stored is known good if its ETag, the MD5 of
	// a single-PUT object on such servers, matches; otherwise the object
	// goes up again with a Content-MD5, which every server verifies. (Not
	// a retry, which is chunkstore.WithRetry's: the first PUT succeeded,
	// and this one is how its content is vouched for.)
	if !s.unconfirmed.Swap(true) {
		s.log.Warn("the S3 server did not confirm the SHA-256 checksum of an upload, so it may not verify it; every upload of this process now carries a Content-MD5 as well, which costs some CPU", "endpoint", s.endpoint, "bucket", s.bucket, "object", s.key(name))
	}
	if md5sum := md5.Sum(data); strings.EqualFold(info.ETag, hex.EncodeToString(md5sum[:])) {
		return nil
	}
	_, err = s.put(ctx, name, data, want, true)
	return err
}

// checkEcho fails an upload whose answer echoes a SHA-256 other than the
// one sent: the server computed the checksum of other bytes than the
// name says, and stored them without enforcing it. The error is
// transient: bytes damaged on the way are sent again, over what was
// stored. The object is not deleted: the same name may have held the
// right bytes before (an upload repeated), and an object whose bytes do
// not match its name is found by 'check' and removed by prune if no
// upload replaces it.
func (s *Store) checkEcho(name, want string, info minio.UploadInfo) error {
	if want == "" || info.ChecksumSHA256 == "" || info.ChecksumSHA256 == want {
		return nil // none sent, none echoed, or the one sent
	}
	return fmt.Errorf("put %s: %w: the server stored bytes whose SHA-256 is %s, not the %s the name and the upload carried", s.describe(name), chunkstore.ErrCorrupt, info.ChecksumSHA256, want)
}

// put sends one PUT of data to name, with sha256 (base64, if not empty)
// as its x-amz-checksum-sha256 and, if withMD5, a Content-MD5, and fails
// it if the answer echoes another SHA-256 (checkEcho).
func (s *Store) put(ctx context.Context, name string, data []byte, sha256 string, withMD5 bool) (minio.UploadInfo, error) {
	opts := minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		DisableMultipart: true,
		PartSize:         uint64(maxPut),
		// The payload is protected by a checksum in a signed header, so
		// skip hashing it a second time with SHA-256 for the signature.
		DisableContentSha256: true,
		SendContentMd5:       withMD5,
	}
	if sha256 != "" {
		opts.UserMetadata = map[string]string{"x-amz-checksum-sha256": sha256}
	}
	wctx, w := s.watch(ctx)
	defer w.done()
	opts.Progress = w // re-armed as the body goes out
	info, err := s.client.PutObject(wctx, s.bucket, s.key(name), bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		return info, s.requestErr(ctx, wctx, "put", name, err)
	}
	return info, s.checkEcho(name, sha256, info)
}

// contentAddressed reports whether the last element of name is 64 hex
// digits — the SHA-256 of the object's bytes, as for every lifeboat
// object but the config — and returns those bytes.
func contentAddressed(name string) ([]byte, bool) {
	base := name[strings.LastIndexByte(name, '/')+1:]
	if len(base) != 64 {
		return nil, false
	}
	sum, err := hex.DecodeString(base)
	if err != nil || strings.ToLower(base) != base {
		return nil, false
	}
	return sum, true
}

// Get implements chunkstore.Reader with a ranged GET, and checks that
// exactly the requested number of bytes came back.
func (s *Store) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	return s.GetBuffer(ctx, name, offset, length, nil)
}

// GetBuffer implements chunkstore.BufferGetter: Get, reading into buf
// when it is large enough.
func (s *Store) GetBuffer(ctx context.Context, name string, offset, length int64, buf []byte) ([]byte, error) {
	if err := check(ctx, name); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, chunkstore.Permanent(fmt.Errorf("get %s: negative offset %d", s.describe(name), offset))
	}
	if length == 0 {
		// An empty range cannot be asked for in HTTP; check it against the size.
		oi, err := s.Stat(ctx, name)
		if err != nil {
			return nil, err
		}
		if offset > oi.Size {
			return nil, s.rangeErr(name, offset, length, oi.Size)
		}
		return []byte{}, nil
	}
	rs, err := s.openStream(ctx, name, offset, length)
	if err != nil {
		return nil, err
	}
	buf = chunkstore.SizedBuffer(buf, rs.want)
	if _, err := io.ReadFull(rs, buf); err != nil {
		rs.abort()
		return nil, err
	}
	if err := rs.Close(); err != nil {
		return nil, err
	}
	return buf, nil
}

// open sends the GET for [offset, offset+length) of name (to the end
// when length < 0, length != 0) and checks that the answer is the range
// asked for. It returns the response body and how many bytes it holds.
func (s *Store) open(ctx context.Context, name string, offset, length int64) (io.ReadCloser, int64, error) {
	var opts minio.GetObjectOptions
	ranged := false
	switch {
	case length > 0:
		ranged = true
		opts.SetRange(offset, offset+length-1)
	case offset > 0:
		ranged = true
		opts.SetRange(offset, 0)
	}
	body, info, hdr, err := s.core.GetObject(ctx, s.bucket, s.key(name), opts)
	if err != nil {
		if s3Code(err) == "InvalidRange" {
			oi, statErr := s.Stat(ctx, name)
			if statErr != nil {
				return nil, 0, statErr
			}
			if length < 0 && offset == oi.Size {
				return io.NopCloser(strings.NewReader("")), 0, nil
			}
			return nil, 0, s.rangeErr(name, offset, length, oi.Size)
		}
		return nil, 0, s.mapErr("get", name, err)
	}

	want, err := s.checkRange(name, offset, length, ranged, info.Size, hdr.Get("Content-Range"))
	if err != nil {
		body.Close()
		return nil, 0, err
	}
	return body, want, nil
}

// checkRange checks a GET's answer against the range asked for and
// returns how many bytes its body holds. size is the response's length
// (the object's, when not ranged).
func (s *Store) checkRange(name string, offset, length int64, ranged bool, size int64, contentRange string) (int64, error) {
	want := length
	total := size // without a range, the response is the whole object
	if !ranged && total < 0 {
		return 0, fmt.Errorf("get %s: server sent no Content-Length", s.describe(name))
	}
	if ranged {
		total = -1
		first, t, ok := parseContentRange(contentRange)
		if !ok {
			return 0, fmt.Errorf("get %s: server answered a range request without Content-Range (%q)", s.describe(name), contentRange)
		}
		if first != offset && t > offset {
			// A proxy or server that moves ranges would hand over the
			// wrong bytes as if they were the right ones.
			return 0, fmt.Errorf("get %s: asked for the bytes from offset %d, the server answered with those from %d (Content-Range %q)", s.describe(name), offset, first, contentRange)
		}
		total = t
		if offset+max(length, 0) > total {
			return 0, s.rangeErr(name, offset, length, total)
		}
	}
	if want < 0 {
		want = total - offset
	}
	return want, nil
}

// OpenRange implements chunkstore.RangeOpener.
func (s *Store) OpenRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := check(ctx, name); err != nil {
		return nil, err
	}
	if offset < 0 || length <= 0 {
		return nil, chunkstore.Permanent(fmt.Errorf("get %s: invalid range [%d, +%d)", s.describe(name), offset, length))
	}
	return s.openStream(ctx, name, offset, length)
}

// openStream opens [offset, offset+length) of name (see open) as a
// rangeStream with a stall watch of its own.
func (s *Store) openStream(ctx context.Context, name string, offset, length int64) (*rangeStream, error) {
	wctx, w := s.watch(ctx)
	body, want, err := s.open(wctx, name, offset, length)
	if err != nil {
		w.done()
		if serr := s.stallErr(ctx, wctx, "get", name); serr != nil {
			return nil, serr
		}
		return nil, err // open mapped it
	}
	w.pause() // until the caller reads
	return &rangeStream{s: s, name: name, offset: offset, body: body, want: want, left: want, ctx: ctx, wctx: wctx, watch: w}, nil
}

// rangeStream is the body of a GET, read to exactly its length: Get
// reads it whole, OpenRange hands it out.
type rangeStream struct {
	s      *Store
	name   string
	offset int64 // of the next byte
	body   io.ReadCloser
	want   int64 // bytes asked for
	left   int64
	// The request's context (wctx, of watch) and the caller's.
	ctx, wctx context.Context
	watch     *stallWatch
}

func (r *rangeStream) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	r.watch.progress()
	n, err := r.body.Read(p)
	r.watch.pause()
	r.offset += int64(n)
	r.left -= int64(n)
	switch {
	case r.left == 0:
		return n, nil
	case errors.Is(err, io.EOF):
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		if serr := r.s.stallErr(r.ctx, r.wctx, "get", r.name); serr != nil {
			return n, fmt.Errorf("%w (at offset %d, %d bytes short)", serr, r.offset, r.left)
		}
		err = r.s.mapErr("get", r.name, fmt.Errorf("read at offset %d, %d bytes short: %w", r.offset, r.left, err))
	}
	return n, err
}

// abort closes a stream given up part-way.
func (r *rangeStream) abort() {
	r.body.Close()
	r.watch.done()
}

// Close closes the body. A body read to its end is read once more first,
// so the HTTP client sees its end and keeps the connection for reuse, and
// a server that sends more than was asked for is caught.
func (r *rangeStream) Close() error {
	defer r.watch.done()
	if r.left == 0 {
		var extra [1]byte
		r.watch.progress()
		n, _ := r.body.Read(extra[:])
		r.watch.pause()
		if n > 0 {
			r.body.Close()
			return fmt.Errorf("get %s: server sent more than the %d bytes requested at offset %d", r.s.describe(r.name), r.want, r.offset-r.want)
		}
	}
	return r.body.Close()
}

// parseContentRange parses "bytes first-last/total".
func parseContentRange(v string) (first, total int64, ok bool) {
	v, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(v, "/")
	if !found {
		return 0, 0, false
	}
	f, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	first, err1 := strconv.ParseInt(f, 10, 64)
	total, err2 := strconv.ParseInt(tot, 10, 64)
	return first, total, err1 == nil && err2 == nil
}

func (s *Store) rangeErr(name string, offset, length, size int64) error {
	return chunkstore.Permanent(fmt.Errorf("get %s: range [%d, +%d) outside object of %d bytes: %w", s.describe(name), offset, length, size, chunkstore.ErrOutOfRange))
}

// Stat implements chunkstore.Reader.
func (s *Store) Stat(ctx context.Context, name string) (chunkstore.ObjectInfo, error) {
	if err := check(ctx, name); err != nil {
		return chunkstore.ObjectInfo{}, err
	}
	wctx, w := s.watch(ctx)
	info, err := s.client.StatObject(wctx, s.bucket, s.key(name), minio.StatObjectOptions{})
	w.done()
	if err != nil {
		return chunkstore.ObjectInfo{}, s.requestErr(ctx, wctx, "stat", name, err)
	}
	return chunkstore.ObjectInfo{Name: name, Size: info.Size, ModTime: info.LastModified}, nil
}

// List implements chunkstore.Reader. minio-go pages through the listing
// (1000 keys per request); any failure, including a canceled context,
// ends it with an error.
func (s *Store) List(ctx context.Context, prefix string, fn func(chunkstore.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	noOwner := false
	wctx, w := s.watch(ctx)
	defer w.done()
	for obj := range s.client.ListObjectsIter(wctx, s.bucket, minio.ListObjectsOptions{
		Prefix:     s.key(prefix),
		Recursive:  true,
		FetchOwner: &noOwner,
	}) {
		w.pause() // fn has the turn
		if obj.Err != nil {
			return s.requestErr(ctx, wctx, "list", prefix+"*", obj.Err)
		}
		name := strings.TrimPrefix(obj.Key, s.prefix)
		if name == "" || strings.HasSuffix(name, "/") {
			w.progress()
			continue // "directory" marker left by other tools
		}
		if err := fn(chunkstore.ObjectInfo{Name: name, Size: obj.Size, ModTime: obj.LastModified}); err != nil {
			return err
		}
		w.progress()
	}
	// minio-go ends the iteration silently when ctx is canceled.
	if serr := s.stallErr(ctx, wctx, "list", prefix+"*"); serr != nil {
		return serr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", s.describe(prefix+"*"), err)
	}
	return nil
}

// Delete implements chunkstore.Store. S3 answers a DELETE of a missing key
// with success, which is what the contract asks.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := check(ctx, name); err != nil {
		return err
	}
	wctx, w := s.watch(ctx)
	err := s.client.RemoveObject(wctx, s.bucket, s.key(name), minio.RemoveObjectOptions{})
	w.done()
	if err != nil && s3Code(err) == "NoSuchKey" {
		return nil
	}
	return s.requestErr(ctx, wctx, "delete", name, err)
}

func check(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return chunkstore.CheckName(name)
}
