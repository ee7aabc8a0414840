// Package s3 stores a lifeboat repository in an S3 bucket (AWS, MinIO or
// any S3-compatible server) through minio-go. Object names map to keys
// "<prefix>/<name>"; the prefix lets several repositories share a bucket.
//
// # Writes and checksums
//
// S3 PUTs are atomic by nature: an object becomes visible whole or not at
// all, and since 2020 AWS (like MinIO) is strongly consistent, which gives
// the read-after-write the contract promises. Put always sends a single
// PUT (multipart is disabled: lifeboat's objects are packs of a few MiB,
// far below the 5 GiB single-PUT limit), so no half-finished multipart
// upload is ever left behind. Every PUT carries a checksum in a signed
// header that the server recomputes, rejecting the upload if a single bit
// changed on the way, so a corrupted upload never lands. Every lifeboat
// object but the config is named by the SHA-256 of its bytes, so for those
// Put sends the name itself as x-amz-checksum-sha256: the server verifies
// both the transfer and the name, and the client hashes nothing (an MD5 of
// every 16 MiB pack would cost about a second of CPU per GiB). Other names
// get a Content-MD5, which every S3-compatible server implements. A server
// that verified the SHA-256 echoes it (one that merely stored the header
// and echoed it back would pass unnoticed; none is known). One that
// echoes another SHA-256 stored other bytes: the upload fails, and is
// retried. One that echoes nothing may have ignored the header, so Put
// accepts that upload only if the ETag is the MD5 of the bytes (else it
// sends them again with a Content-MD5), warns once, and adds a
// Content-MD5 to every later upload of the Store. Since a
// checksum already protects the payload, the SHA-256 payload hash of SigV4
// is skipped (UNSIGNED-PAYLOAD) rather than computed a second time.
//
// # Reads
//
// Get issues one ranged GET ("bytes=first-last", or "bytes=first-" for
// "to the end") and reads into a buffer of exactly the expected size. It
// checks the Content-Range total against the requested range (S3 silently
// shortens a range that runs past the end), fails on a short body and on
// any byte beyond the range, so a truncated response is never passed off
// as complete. Zero-length ranges, which HTTP cannot express, are answered
// from a HEAD. List pages through ListObjectsV2 (1000 keys per page); an
// error on any page, or a context canceled mid-way (which minio-go would
// otherwise end silently), fails the whole listing.
//
// # Errors and retries
//
// minio-go's own retry loop is switched off (MaxRetries 1) so that
// chunkstore.WithRetry is the one place that retries, with one policy and
// one log line per retry. For it to decide, errors are classified here:
// NoSuchKey (or a 404 on an object) wraps chunkstore.ErrNotFound;
// NoSuchBucket wraps chunkstore.ErrBucketNotFound; AccessDenied,
// InvalidAccessKeyId, SignatureDoesNotMatch and other 401/403 answers
// become chunkstore.Permanent errors that say which credentials to check;
// any other 4xx is permanent too, except 408, 429 and the codes that mean
// the request was damaged or throttled in flight (BadDigest, SlowDown,
// RequestTimeout, IncompleteBody, ...). 5xx answers and network errors
// stay plain, i.e. transient, except 501 (not implemented) and 507 (the
// server's storage is full), which waiting does not fix; a refused
// connection or an unresolvable host says the endpoint is unreachable
// and names it.
//
// One blind spot: a HEAD answer has no body, so a Stat on a bucket that
// was deleted underneath the store comes back from servers other than
// MinIO (which sends x-minio-error-code) as NoSuchKey, i.e. ErrNotFound.
// Open checks the bucket, and Get and List report NoSuchBucket correctly.
//
// # Credentials
//
// Static keys from the Config win. Otherwise the standard AWS chain is
// used: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, the
// shared credentials file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE), then
// the instance or container role unless AWS_EC2_METADATA_DISABLED=true.
package s3
