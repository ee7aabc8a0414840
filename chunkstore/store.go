package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) by every Store when the named object
// does not exist. It is the only error that means "absent": any other error
// from Get, Stat or List means "unknown" and must never be read as "empty".
var ErrNotFound = errors.New("object not found")

// ErrOutOfRange is returned (wrapped, and marked Permanent) by every
// Store for a ranged read past the end of an object. Reads of packs ask
// for ranges the index lists, so it means a truncated object: it wraps
// ErrCorrupt.
var ErrOutOfRange = fmt.Errorf("%w: range outside the object (truncated?)", ErrCorrupt)

// ErrBucketNotFound is returned when the bucket (or root directory) of a
// store does not exist and the store was not asked to create it.
var ErrBucketNotFound = errors.New("bucket not found")

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Name string // full object name, relative to the store's root ("data/ab/ab12...")
	Size int64  // size in bytes
	// ModTime is when the object was stored, by the store's clock (S3's
	// Last-Modified, a file's mtime). Garbage collection compares the
	// times of objects with each other, never with a client's clock, and
	// takes them from List only: S3 lists them to the millisecond but
	// answers a Stat (HEAD) to the second.
	ModTime time.Time
}

// Reader is the read half of the object-storage seam. Read-only code
// (restore, check) asks for a Reader only.
//
// Contract, shared by every implementation and enforced by the conformance
// suite in chunkstore/storetest:
//   - Object names are slash-separated, relative, never start with "/" and
//     never contain "." or ".." elements.
//   - Get returns exactly the bytes in [offset, offset+length) of the object,
//     or the bytes from offset to the end when length < 0. A range that ends
//     past the end of the object is an error (never a short read passed off
//     as complete). A missing object gives an error wrapping ErrNotFound.
//   - Stat returns the object's size and modification time, or an error
//     wrapping ErrNotFound. List reports the same fields.
//   - List calls fn for every object whose name starts with prefix, in no
//     particular order. If listing fails part-way it returns an error: a
//     failed listing is never reported as a short or empty one. An error
//     returned by fn stops the listing and is returned unchanged.
//   - Reads see every Put that completed before they started
//     (read-after-write), including in List.
type Reader interface {
	Get(ctx context.Context, name string, offset, length int64) ([]byte, error)
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}

// Store is the full object-storage seam used by writers.
//
//   - Put is atomic: a concurrent or later reader sees either no object or
//     the whole of data, never a prefix. The store verifies a checksum of
//     data on upload (Content-MD5 / x-amz-checksum for S3, fsync+rename for
//     local files), so a corrupted upload fails instead of landing.
//     lifeboat never overwrites an object with different content; Put of an
//     existing name with the same bytes must succeed.
//   - Delete of a missing object is not an error.
type Store interface {
	Reader
	Put(ctx context.Context, name string, data []byte) error
	Delete(ctx context.Context, name string) error
	// Location describes the store for messages ("s3:http://host/bucket/prefix").
	Location() string
}

// TempSweeper is a Store that keeps the partial writes of a writer killed
// mid-write (the local store's temporary files). SweepTemp removes those
// last touched before before (with dryRun, only counts them): the caller
// picks a time no live write can be that old.
type TempSweeper interface {
	SweepTemp(ctx context.Context, before time.Time, dryRun bool) (files int, bytes int64, err error)
}

// SweepTemp runs s's SweepTemp, looking through decorators (retry, rate
// limit) that have an Unwrap method. A store that keeps no partial
// writes (S3 drops an upload cut off) gives 0.
func SweepTemp(ctx context.Context, s Store, before time.Time, dryRun bool) (files int, bytes int64, err error) {
	for s != nil {
		if ts, ok := s.(TempSweeper); ok {
			return ts.SweepTemp(ctx, before, dryRun)
		}
		u, ok := s.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	return 0, 0, nil
}

// PermanentError marks an error that retrying cannot fix (a denied
// request, a missing bucket, a malformed name). Implementations wrap such
// errors with Permanent so the retry decorator gives up at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that IsPermanent reports true. A nil err stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err should not be retried: not-found errors,
// cancellation and errors wrapped with Permanent. A deadline exceeded is
// not: a network timeout (connecting, awaiting an answer) is worth
// another try, and the retry layer stops anyway once the caller's own
// context is done.
func IsPermanent(err error) bool {
	var p *PermanentError
	switch {
	case err == nil:
		return false
	case errors.As(err, &p),
		errors.Is(err, ErrNotFound),
		errors.Is(err, ErrBucketNotFound),
		errors.Is(err, context.Canceled):
		return true
	}
	return false
}

// CheckName validates an object name against the contract above.
func CheckName(name string) error {
	if name == "" || name[0] == '/' || name[len(name)-1] == '/' {
		return Permanent(fmt.Errorf("invalid object name %q", name))
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '/' {
			elem := name[start:i]
			if elem == "" || elem == "." || elem == ".." {
				return Permanent(fmt.Errorf("invalid object name %q", name))
			}
			start = i + 1
		}
	}
	return nil
}

// BufferGetter is implemented by stores whose Get can read into a
// caller's buffer. Restore reads hundreds of MiB of pack ranges; reusing
// a few buffers instead of allocating each range keeps it from paying for
// fresh memory (page faults, zeroing, collections) on every one.
type BufferGetter interface {
	// GetBuffer is Get, except that the bytes are read into buf when it
	// has the capacity (the result then aliases buf).
	GetBuffer(ctx context.Context, name string, offset, length int64, buf []byte) ([]byte, error)
}

// GetInto is r.Get(ctx, name, offset, length), read into buf when r
// supports it (see BufferGetter). The result may alias buf.
func GetInto(ctx context.Context, r Reader, name string, offset, length int64, buf []byte) ([]byte, error) {
	if bg, ok := r.(BufferGetter); ok {
		return bg.GetBuffer(ctx, name, offset, length, buf)
	}
	return r.Get(ctx, name, offset, length)
}

// SizedBuffer returns buf resliced to n bytes when it has the capacity,
// or a new buffer of n bytes: what a GetBuffer reads into.
func SizedBuffer(buf []byte, n int64) []byte {
	if int64(cap(buf)) >= n {
		return buf[:n]
	}
	return make([]byte, n)
}

// RangeOpener is implemented by stores that can stream a range of an
// object. Restore reads each pack range blob by blob as it arrives, so a
// blob is decrypted while its bytes are still in the CPU's cache and a
// worker's buffer holds one blob rather than the whole range.
type RangeOpener interface {
	// OpenRange returns a stream of exactly the bytes [offset,
	// offset+length) of the object; length must be positive. Errors are
	// those of Get, from OpenRange or from Read: a range past the end of
	// the object is refused, and a stream that ends early fails with
	// io.ErrUnexpectedEOF. The caller closes the stream.
	OpenRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error)
}

// OpenRange opens a stream of a range of name from r (see RangeOpener).
// If r cannot stream, the error wraps errors.ErrUnsupported: use Get.
func OpenRange(ctx context.Context, r Reader, name string, offset, length int64) (io.ReadCloser, error) {
	if ro, ok := r.(RangeOpener); ok {
		return ro.OpenRange(ctx, name, offset, length)
	}
	return nil, fmt.Errorf("open a stream of %s: %w", name, errors.ErrUnsupported)
}
