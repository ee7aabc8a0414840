// Package location turns a repository location string, as users type it
// in --repo or LIFEBOAT_REPOSITORY, into an open chunkstore.Store.
//
// Accepted forms:
//
//	/abs/path                          local directory
//	file:///abs/path                   local directory
//	s3:http://host[:port]/bucket[/prefix]
//	s3:https://host[:port]/bucket[/prefix]
//
// Relative local paths are rejected rather than resolved against the
// working directory: a repository location ends up in configs, policies and
// agents' job specs, where the working directory is not the user's, so the
// error suggests the absolute path instead. S3 credentials never appear in
// the location; they come from the AWS_* environment (see package s3).
package location

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/local"
	"github.com/lifeboat-backup/lifeboat/chunkstore/s3"
)

// EnvBucketLookup selects how S3 buckets are addressed: "auto" (default),
// "path" (http://host/bucket) or "dns" (http://bucket.host).
const EnvBucketLookup = "LIFEBOAT_S3_BUCKET_LOOKUP"

// Kind is the kind of storage a location points at.
type Kind string

// The kinds of storage.
const (
	Local Kind = "local"
	S3    Kind = "s3"
)

// Location is a parsed repository location.
type Location struct {
	Kind Kind
	Path string // Local: absolute, cleaned directory

	Endpoint string // S3: host[:port]
	Secure   bool   // S3: https
	Bucket   string // S3
	Prefix   string // S3: key prefix inside the bucket, "" for none
}

// String returns the canonical form of the location, which Parse reads
// back as the same location: an S3 prefix is escaped as a URL path, so
// that a '%', '?' or '#' in it (Parse took "%25", "%3F", "%23") is not
// read back as an escape, a query or a fragment.
func (l Location) String() string {
	switch l.Kind {
	case Local:
		return l.Path
	case S3:
		scheme := "http"
		if l.Secure {
			scheme = "https"
		}
		s := "s3:" + scheme + "://" + l.Endpoint + "/" + l.Bucket
		if l.Prefix != "" {
			s += (&url.URL{Path: "/" + l.Prefix}).EscapedPath()
		}
		return s
	}
	return "<invalid location>"
}

const forms = "/abs/path, file:///abs/path, s3:http://host[:port]/bucket[/prefix] or s3:https://host[:port]/bucket[/prefix]"

// Parse parses a repository location. It touches neither the filesystem
// nor the network.
func Parse(repo string) (Location, error) {
	fail := func(format string, args ...any) (Location, error) {
		return Location{}, chunkstore.Permanent(fmt.Errorf("repository location %q: "+format, append([]any{repo}, args...)...))
	}
	switch {
	case repo == "":
		return Location{}, chunkstore.Permanent(fmt.Errorf("no repository location given: want %s", forms))
	case strings.TrimSpace(repo) != repo:
		return fail("leading or trailing white space (a quoting mistake?): remove it")
	case strings.HasPrefix(repo, "~"):
		return fail("a path starting with ~ is not expanded here (the shell leaves it alone in quotes or after '='): write the absolute path, as in $HOME/...")
	case strings.HasPrefix(repo, "/"):
		return Location{Kind: Local, Path: filepath.Clean(repo)}, nil
	case strings.HasPrefix(repo, "file://"):
		p := strings.TrimPrefix(repo, "file://")
		if !strings.HasPrefix(p, "/") {
			return fail("a file URL needs an absolute path and no host, as in file:///abs/path")
		}
		return Location{Kind: Local, Path: filepath.Clean(p)}, nil
	case strings.HasPrefix(repo, "s3:"):
		return parseS3(repo, fail)
	}
	if scheme, _, ok := strings.Cut(repo, ":"); ok && !strings.ContainsAny(scheme, "/.") {
		return fail("unknown scheme %q: want %s", scheme, forms)
	}
	if abs, err := filepath.Abs(repo); err == nil {
		return fail("relative paths are not accepted, use an absolute one (%s?)", abs)
	}
	return fail("relative paths are not accepted, use an absolute one")
}

func parseS3(repo string, fail func(string, ...any) (Location, error)) (Location, error) {
	rest := strings.TrimPrefix(repo, "s3:")
	if !strings.HasPrefix(rest, "http://") && !strings.HasPrefix(rest, "https://") {
		return fail("an S3 location names its endpoint with http:// or https://, as in s3:https://host/bucket/prefix")
	}
	u, err := url.Parse(rest)
	if err != nil {
		return fail("%v", err)
	}
	switch {
	case u.User != nil:
		return fail("credentials do not belong in the location: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(rest, "?") || strings.HasSuffix(rest, "#"):
		return fail("an S3 location has no query or fragment")
	case u.Host == "":
		return fail("no S3 endpoint host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fail("invalid port %q: want 1 to 65535", p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return fail("empty port after %q: give one, or leave out the ':'", u.Hostname())
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if bucket == "" {
		return fail("no bucket: want s3:%s://%s/bucket[/prefix]", u.Scheme, u.Host)
	}
	if err := s3.CheckBucketName(bucket); err != nil {
		return fail("%v", err)
	}
	prefix = strings.Trim(prefix, "/")
	if HasControl(prefix) {
		return fail("the prefix %q holds control characters", prefix)
	}
	if prefix != "" {
		if err := chunkstore.CheckName(prefix); err != nil {
			return fail("invalid prefix %q: empty, \".\" and \"..\" elements are not allowed", prefix)
		}
	}
	return Location{Kind: S3, Endpoint: u.Host, Secure: u.Scheme == "https", Bucket: bucket, Prefix: prefix}, nil
}

// Open parses repo and opens the store there, creating the directory or
// bucket when create is true (lifeboat init) and otherwise failing with an
// error wrapping chunkstore.ErrBucketNotFound if it is missing. The store
// is wrapped with chunkstore.WithRetry(chunkstore.DefaultRetryConfig()),
// and opening itself is retried the same way.
func Open(ctx context.Context, repo string, create bool) (chunkstore.Store, error) {
	return OpenWithRetry(ctx, repo, create, chunkstore.DefaultRetryConfig())
}

// OpenWithRetry is Open with a caller-chosen retry configuration (a
// component's logger, a test's fake sleep).
func OpenWithRetry(ctx context.Context, repo string, create bool, rc chunkstore.RetryConfig) (chunkstore.Store, error) {
	l, err := Parse(repo)
	if err != nil {
		return nil, err
	}
	var st chunkstore.Store
	err = rc.Do(ctx, "open", l.String(), func(ctx context.Context) error {
		var err error
		st, err = open(ctx, l, create, rc.Logger)
		return err
	})
	if err != nil {
		return nil, err
	}
	return chunkstore.WithRetry(st, rc), nil
}

func open(ctx context.Context, l Location, create bool, log *slog.Logger) (chunkstore.Store, error) {
	switch l.Kind {
	case Local:
		return local.Open(l.Path, create)
	case S3:
		return s3.Open(ctx, s3.Config{
			Endpoint:     l.Endpoint,
			Secure:       l.Secure,
			Bucket:       l.Bucket,
			Prefix:       l.Prefix,
			BucketLookup: os.Getenv(EnvBucketLookup),
			Logger:       log,
		}, create)
	}
	return nil, chunkstore.Permanent(fmt.Errorf("open %s: unknown kind %q", l, l.Kind))
}

// Enclosing returns the location of a lifeboat repository that holds repo
// inside it (a local directory above it, an S3 prefix above it in the same
// bucket, the bucket's root included), or "" when there is none. A
// repository created there would have its objects taken for the outer
// one's: the outer repository's check would report them, and its prune or
// repair could delete them.
//
// Only a config object that parses counts. A bucket that does not exist
// yet holds none, and a config that cannot be read (credentials scoped to
// the repository's own prefix) is taken as absent, so the check never
// stops an init that could not have collided. A store that cannot be
// opened at all is an error, as it would be for the init.
func Enclosing(ctx context.Context, repo string, rc chunkstore.RetryConfig) (string, error) {
	l, err := Parse(repo)
	if err != nil {
		return "", err
	}
	switch l.Kind {
	case Local:
		for d := filepath.Dir(l.Path); ; d = filepath.Dir(d) {
			if isConfig(os.ReadFile(filepath.Join(d, chunkstore.ConfigName))) {
				return d, nil
			}
			if d == filepath.Dir(d) {
				return "", nil
			}
		}
	case S3:
		if l.Prefix == "" {
			return "", nil
		}
		root := l
		root.Prefix = ""
		st, err := OpenWithRetry(ctx, root.String(), false, rc)
		if errors.Is(err, chunkstore.ErrBucketNotFound) {
			return "", nil
		}
		if err != nil {
			// Credentials scoped to the prefix may not open the
			// bucket's root (a HEAD of the bucket names no prefix):
			// then each prefix above is opened on its own, and a
			// config that they may not read is taken as absent.
			if _, perr := OpenWithRetry(ctx, repo, false, rc); errors.Is(perr, chunkstore.ErrBucketNotFound) {
				return "", nil
			} else if perr != nil {
				return "", err
			}
			st = nil
		}
		parts := strings.Split(l.Prefix, "/")
		for i := len(parts) - 1; i >= 0; i-- {
			outer := root
			outer.Prefix = strings.Join(parts[:i], "/")
			if st != nil {
				name := chunkstore.ConfigName
				if outer.Prefix != "" {
					name = outer.Prefix + "/" + name
				}
				if isConfig(st.Get(ctx, name, 0, -1)) {
					return outer.String(), nil
				}
				continue
			}
			if outer.Prefix == "" {
				continue
			}
			if ost, err := OpenWithRetry(ctx, outer.String(), false, rc); err == nil && isConfig(ost.Get(ctx, chunkstore.ConfigName, 0, -1)) {
				return outer.String(), nil
			}
		}
	}
	return "", nil
}

// ErrNestedLimit is Nested's error when the location holds more objects
// than it was allowed to look through.
var ErrNestedLimit = errors.New("too many objects to look through")

// errStop ends a listing or walk early.
var errStop = errors.New("stop")

// Nested returns the location of a lifeboat repository somewhere below
// repo (a directory or S3 prefix under it), or "" when there is none. A
// repository created at repo would hold the nested one's objects among
// its own: its check reports them as strays, and where they fall in its
// own namespaces (a nested repository at data/ or gc/) its prune could
// delete them. A repository at repo itself is not reported: Init refuses
// it with its own message.
//
// Like Enclosing, only a config object that parses counts, and a location
// or bucket that does not exist holds nothing. The search is bounded: it
// looks through at most limit objects (files and directories for a local
// location, keys listed for S3, where that is limit/1000 list requests)
// and fails with ErrNestedLimit past them, because it can then rule out
// nothing. Objects that are not a repository's are not refused: lifeboat
// never lists or deletes outside its own names (see docs/operations.md).
func Nested(ctx context.Context, repo string, rc chunkstore.RetryConfig, limit int) (string, error) {
	l, err := Parse(repo)
	if err != nil {
		return "", err
	}
	seen := 0
	tooMany := fmt.Errorf("%s holds more than %d objects: %w", l, limit, ErrNestedLimit)
	switch l.Kind {
	case Local:
		found := ""
		err := filepath.WalkDir(l.Path, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				// An unreadable directory is passed over, as
				// Enclosing passes over an unreadable config: the
				// root itself then fails where init opens it.
				if d != nil && d.IsDir() && p != l.Path {
					return filepath.SkipDir
				}
				return nil
			}
			if p == l.Path {
				return nil
			}
			if seen++; seen > limit {
				return tooMany
			}
			if d.Type().IsRegular() && d.Name() == chunkstore.ConfigName && filepath.Dir(p) != l.Path &&
				isConfig(os.ReadFile(p)) {
				found = filepath.Dir(p)
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return "", err
		}
		return found, nil
	case S3:
		st, err := OpenWithRetry(ctx, l.String(), false, rc)
		if errors.Is(err, chunkstore.ErrBucketNotFound) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		var found string
		err = st.List(ctx, "", func(oi chunkstore.ObjectInfo) error {
			if seen++; seen > limit {
				return tooMany
			}
			dir, base := path.Split(oi.Name)
			if base != chunkstore.ConfigName || dir == "" || !isConfig(st.Get(ctx, oi.Name, 0, -1)) {
				return nil
			}
			inner := l
			inner.Prefix = strings.TrimPrefix(path.Join(l.Prefix, dir), "/")
			found = inner.String()
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			return "", err
		}
		return found, nil
	}
	return "", nil
}

// HasControl reports whether s holds an ASCII control character (U+0000
// to U+001F, such as a NUL or a newline, or U+007F DEL), which no
// repository prefix, and no path or tag a policy names, should hold.
func HasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// isConfig reports whether b, read with err, is a lifeboat repository's
// config: only one that parses marks a repository.
func isConfig(b []byte, err error) bool {
	if err != nil {
		return false
	}
	_, err = chunkstore.ParseConfig(b)
	return err == nil
}
