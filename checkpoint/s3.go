package checkpoint

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"golang.org/x/sync/errgroup"
)

// DefaultS3PartSize is the multipart part size when S3Config.PartSize is 0.
const DefaultS3PartSize = 16 << 20

// S3 part sizes allowed by the protocol.
const (
	minS3PartSize = 5 << 20
	maxS3PartSize = 5 << 30
)

// S3Config configures an S3 (or S3-compatible, e.g. MinIO) checkpoint
// storage. The secret key never leaves this struct: String and GoString
// redact it, and no error names it.
type S3Config struct {
	URL           string // checkpoint.dir: s3://bucket or s3://bucket/prefix
	Endpoint      string // s3.endpoint: host:port, without a scheme
	Region        string // s3.region: optional; looked up from the bucket when empty
	AccessKey     string // s3.access-key
	SecretKey     string // s3.secret-key
	SecretKeyFile string // s3.secret-key-file: read the secret from this file instead
	UseTLS        bool   // s3.tls: https instead of http
	CAFile        string // s3.ca-file: PEM bundle of extra CAs to trust (needs s3.tls)
	CreateBucket  bool   // s3.create-bucket: create the bucket if it is missing
	PartSize      uint64 // s3.part-size: multipart part size, default 16 MiB
}

const redacted = "[redacted]"

// String shows the configuration with the secret key redacted.
func (c S3Config) String() string {
	secret := ""
	if c.SecretKey != "" {
		secret = redacted
	}
	return fmt.Sprintf("S3Config{URL:%q Endpoint:%q Region:%q AccessKey:%q SecretKey:%q SecretKeyFile:%q UseTLS:%v CAFile:%q CreateBucket:%v PartSize:%d}",
		redactURL(c.URL), c.Endpoint, c.Region, c.AccessKey, secret, c.SecretKeyFile, c.UseTLS, c.CAFile, c.CreateBucket, c.PartSize)
}

// GoString is String, so that %#v does not print the secret either.
func (c S3Config) GoString() string { return c.String() }

// redactURL hides a password in a URL (s3://user:pass@bucket) so that a
// misplaced credential is not echoed back in a message.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if i := strings.Index(s, "@"); i >= 0 && strings.Contains(s, "://") {
			return s[:strings.Index(s, "://")+3] + redacted + s[i:]
		}
		return s
	}
	u.User = url.User(redacted)
	return u.String()
}

// parseS3URL splits s3://bucket/prefix into bucket and prefix (without
// leading or trailing slashes).
func parseS3URL(raw string) (bucket, prefix string, err error) {
	if raw == "" {
		return "", "", errors.New("checkpoint: checkpoint.dir is empty")
	}
	shown := redactURL(raw)
	u, perr := url.Parse(raw)
	if perr != nil || u.Scheme != "s3" {
		return "", "", fmt.Errorf("checkpoint: checkpoint.dir %q: want s3://bucket/prefix", shown)
	}
	if u.User != nil {
		return "", "", fmt.Errorf("checkpoint: checkpoint.dir %q: credentials do not belong in the URL; use s3.access-key and s3.secret-key-file", shown)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", "", fmt.Errorf("checkpoint: checkpoint.dir %q: want s3://bucket/prefix, without a query or fragment", shown)
	}
	bucket = u.Host
	if bucket == "" {
		return "", "", fmt.Errorf("checkpoint: checkpoint.dir %q: no bucket (want s3://bucket/prefix)", shown)
	}
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return "", "", fmt.Errorf("checkpoint: checkpoint.dir %q: bucket %q: %v", shown, bucket, err)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		for _, seg := range strings.Split(prefix, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return "", "", fmt.Errorf("checkpoint: checkpoint.dir %q: bad prefix %q", shown, prefix)
			}
		}
	}
	return bucket, prefix, nil
}

// Validate checks the configuration without contacting the server. Errors
// name the configuration key at fault.
func (c S3Config) Validate() error {
	if _, _, err := parseS3URL(c.URL); err != nil {
		return err
	}
	if err := validateEndpoint(c.Endpoint); err != nil {
		return err
	}
	for _, r := range c.Region {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("checkpoint: s3.region %q: want a region name like us-east-1", c.Region)
		}
	}
	if c.AccessKey == "" {
		return errors.New("checkpoint: s3.access-key is empty")
	}
	if strings.TrimSpace(c.AccessKey) != c.AccessKey {
		return errors.New("checkpoint: s3.access-key has leading or trailing blanks")
	}
	if _, err := c.secret(); err != nil {
		return err
	}
	if c.CAFile != "" {
		if !c.UseTLS {
			return fmt.Errorf("checkpoint: s3.ca-file %q is set but s3.tls is off; set s3.tls to true to use it", c.CAFile)
		}
		if _, err := loadCAFile(c.CAFile); err != nil {
			return err
		}
	}
	if c.PartSize != 0 && (c.PartSize < minS3PartSize || c.PartSize > maxS3PartSize) {
		return fmt.Errorf("checkpoint: s3.part-size %d: want between 5 MiB and 5 GiB", c.PartSize)
	}
	return nil
}

func validateEndpoint(ep string) error {
	if ep == "" {
		return errors.New("checkpoint: s3.endpoint is empty (want host:port)")
	}
	if strings.Contains(ep, "://") {
		return fmt.Errorf("checkpoint: s3.endpoint %q: want host:port without a scheme (https is s3.tls)", redactURL(ep))
	}
	if strings.ContainsAny(ep, "/@?# ") {
		return fmt.Errorf("checkpoint: s3.endpoint %q: want host:port", ep)
	}
	host := ep
	if strings.Contains(ep, ":") {
		h, port, err := net.SplitHostPort(ep)
		if err != nil {
			return fmt.Errorf("checkpoint: s3.endpoint %q: want host:port: %v", ep, err)
		}
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return fmt.Errorf("checkpoint: s3.endpoint %q: bad port %q", ep, port)
		}
		host = h
	}
	if host == "" {
		return fmt.Errorf("checkpoint: s3.endpoint %q: no host", ep)
	}
	return nil
}

// secret returns the secret key, from s3.secret-key or s3.secret-key-file.
// Its errors never contain the secret.
func (c S3Config) secret() (string, error) {
	switch {
	case c.SecretKey != "" && c.SecretKeyFile != "":
		return "", errors.New("checkpoint: both s3.secret-key and s3.secret-key-file are set; set only one")
	case c.SecretKeyFile != "":
		b, err := os.ReadFile(c.SecretKeyFile)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is named below; the rest is the reason
			}
			return "", fmt.Errorf("checkpoint: s3.secret-key-file %q: %v", c.SecretKeyFile, err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("checkpoint: s3.secret-key-file %q is empty", c.SecretKeyFile)
		}
		return s, nil
	case c.SecretKey != "":
		return c.SecretKey, nil
	default:
		return "", errors.New("checkpoint: s3.secret-key is empty (set s3.secret-key or s3.secret-key-file)")
	}
}

func loadCAFile(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("checkpoint: s3.ca-file %q: %v", file, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("checkpoint: s3.ca-file %q holds no PEM certificate", file)
	}
	return pool, nil
}

// S3 is a Storage in an S3 bucket under a prefix. Put is atomic by S3
// semantics (a multipart upload becomes visible only when completed), and
// PutIfAbsent is a conditional write (If-None-Match: *).
type S3 struct {
	client   *minio.Client
	tr       *http.Transport
	bucket   string
	prefix   string // without slashes at either end; "" is the bucket root
	endpoint string
	partSize uint64
	// rangeSize is the size of one ranged read of a download.
	rangeSize int64
}

// OpenS3 is NewS3 as a Storage. Callers that are done with it should close
// it through io.Closer.
func OpenS3(ctx context.Context, cfg S3Config) (Storage, error) {
	s, err := NewS3(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// NewS3 connects to the endpoint and checks that the bucket exists,
// creating it if cfg.CreateBucket is set.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	bucket, prefix, _ := parseS3URL(cfg.URL)
	secret, err := cfg.secret()
	if err != nil {
		return nil, err
	}
	tr, err := minio.DefaultTransport(cfg.UseTLS)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: S3 transport: %w", err)
	}
	if cfg.CAFile != "" {
		pool, err := loadCAFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, secret, ""),
		Secure:    cfg.UseTLS,
		Transport: tr,
		Region:    cfg.Region,
	})
	if err != nil {
		// minio.New only parses the endpoint; its errors hold no secret.
		return nil, fmt.Errorf("checkpoint: s3.endpoint %q: %w", cfg.Endpoint, err)
	}
	client.SetAppInfo("ebbflow", "1")
	s := &S3{client: client, tr: tr, bucket: bucket, prefix: prefix, endpoint: cfg.Endpoint, partSize: cfg.PartSize}
	if s.partSize == 0 {
		s.partSize = DefaultS3PartSize
	}
	s.rangeSize = s3RangeSize
	if err := s.checkBucket(ctx, cfg); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// checkBucket checks that the bucket exists, creating it if allowed. The
// first request to a bucket of unknown region is a GetBucketLocation that
// minio-go sends without retries, so transient failures (a server still
// starting, a refused connection) are retried here for a few seconds.
func (s *S3) checkBucket(ctx context.Context, cfg S3Config) error {
	var ok bool
	var err error
	delay := 100 * time.Millisecond
	for deadline := time.Now().Add(openRetryFor); ; {
		ok, err = s.client.BucketExists(ctx, s.bucket)
		if err == nil || !transient(err) || ctx.Err() != nil || time.Now().Add(delay).After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
	if err != nil {
		return s.wrap(ctx, "open", s.URL(), err)
	}
	if ok {
		return nil
	}
	if !cfg.CreateBucket {
		return fmt.Errorf("checkpoint: %s: bucket %q does not exist at %s; create it, or set s3.create-bucket to true to let ebbflow create it", s.URL(), s.bucket, s.endpoint)
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: cfg.Region})
	if err != nil {
		switch minio.ToErrorResponse(err).Code {
		case "BucketAlreadyOwnedByYou", "BucketAlreadyExists":
			// Created concurrently by another process: fine if it is ours,
			// and if it is not, the first write fails clearly.
			return nil
		}
		return s.wrap(ctx, fmt.Sprintf("create bucket %q for", s.bucket), s.URL(), err)
	}
	return nil
}

// openRetryFor bounds NewS3's retries of transient failures.
const openRetryFor = 5 * time.Second

// transient reports whether an error may go away by itself: no answer from
// the server, or a 5xx / "not ready yet" answer.
func transient(err error) bool {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.Code != "" {
		return resp.StatusCode >= 500 || resp.Code == "XMinioServerNotInitialized" || resp.Code == "SlowDown" || resp.Code == "RequestTimeout"
	}
	var cve *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	if errors.As(err, &cve) || errors.As(err, &rhe) || strings.Contains(err.Error(), "HTTP response to HTTPS client") {
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// Close releases the idle connections of the storage's HTTP transport.
func (s *S3) Close() error {
	s.tr.CloseIdleConnections()
	return nil
}

// URL is s3://bucket/prefix (never with credentials).
func (s *S3) URL() string {
	if s.prefix == "" {
		return "s3://" + s.bucket
	}
	return "s3://" + s.bucket + "/" + s.prefix
}

// String is URL.
func (s *S3) String() string { return s.URL() }

func (s *S3) describe(name string) string { return s.URL() + "/" + strings.TrimPrefix(name, "/") }

// key maps an object name to its S3 key, with the same rules as Local:
// slash-separated, a leading slash ignored, no "..".
func (s *S3) key(name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" || strings.Contains(name, "..") || strings.Contains(name, "\\") {
		return "", fmt.Errorf("checkpoint: bad object name %q", name)
	}
	if s.prefix == "" {
		return clean[1:], nil
	}
	return s.prefix + clean, nil
}

// keyPrefix maps a List/DeletePrefix prefix to an S3 key prefix. Unlike a
// name, a prefix may be empty or end in "/".
func (s *S3) keyPrefix(prefix string) (string, error) {
	if strings.Contains(prefix, "..") || strings.Contains(prefix, "\\") {
		return "", fmt.Errorf("checkpoint: bad object prefix %q", prefix)
	}
	p := strings.TrimLeft(prefix, "/")
	if s.prefix == "" {
		return p, nil
	}
	return s.prefix + "/" + p, nil
}

// wrap translates a minio-go error at the boundary: S3 error codes become
// the package's sentinels or a plain explanation, network errors name the
// endpoint, and a cancelled context stays visible to errors.Is.
func (s *S3) wrap(ctx context.Context, op, what string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w (%v)", ctxErr, err)
		}
		return fmt.Errorf("checkpoint: %s %s (S3 endpoint %s): %w", op, what, s.endpoint, err)
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.Code != "" {
		switch resp.Code {
		case "NoSuchKey":
			return fmt.Errorf("checkpoint: %s: %w", what, ErrNotFound)
		case "PreconditionFailed":
			return fmt.Errorf("checkpoint: %s: %w", what, ErrExists)
		case "InvalidAccessKeyId", "SignatureDoesNotMatch":
			return fmt.Errorf("checkpoint: %s %s: credentials refused by %s (%s; check s3.access-key and s3.secret-key): %w", op, what, s.endpoint, resp.Code, err)
		case "AccessDenied":
			return fmt.Errorf("checkpoint: %s %s: credentials refused by %s (AccessDenied: wrong s3.access-key / s3.secret-key, or they lack permission on bucket %q): %w", op, what, s.endpoint, s.bucket, err)
		case "NoSuchBucket":
			return fmt.Errorf("checkpoint: %s %s: bucket %q does not exist at %s: %w", op, what, s.bucket, s.endpoint, err)
		}
		if resp.StatusCode == http.StatusBadRequest && strings.Contains(resp.Message, "HTTPS server") {
			return fmt.Errorf("checkpoint: %s %s: S3 endpoint %s wants https; set s3.tls to true: %w", op, what, s.endpoint, err)
		}
		return fmt.Errorf("checkpoint: %s %s: S3 endpoint %s answered %s: %w", op, what, s.endpoint, resp.Code, err)
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return fmt.Errorf("checkpoint: %s %s: the TLS certificate of S3 endpoint %s is not trusted (s3.ca-file names a CA bundle to trust): %w", op, what, s.endpoint, err)
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) || strings.Contains(err.Error(), "HTTP response to HTTPS client") {
		return fmt.Errorf("checkpoint: %s %s: S3 endpoint %s does not speak TLS; set s3.tls to false: %w", op, what, s.endpoint, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return fmt.Errorf("checkpoint: %s %s: S3 endpoint %s unreachable: %w", op, what, s.endpoint, err)
	}
	return fmt.Errorf("checkpoint: %s %s (S3 endpoint %s): %w", op, what, s.endpoint, err)
}

// s3PartUploads is how many parts of one object go up at once (minio-go's
// default too).
const s3PartUploads = 4

// s3MaxParts is the most parts S3 takes in one multipart upload.
const s3MaxParts = 10000

// abortTimeout bounds the clean-up of a failed multipart upload, which runs
// even when the caller's context is done.
const abortTimeout = 10 * time.Second

// Put implements Storage. Objects larger than the part size go up as a
// multipart upload, which S3 makes visible only when it completes.
func (s *S3) Put(ctx context.Context, name string, data []byte) error {
	return s.put(ctx, name, data, false)
}

// PutIfAbsent implements Storage with a conditional write (If-None-Match:
// *): the server refuses it with 412 if the object exists, atomically with
// respect to other writers. For a multipart upload the condition is on the
// CompleteMultipartUpload, which is where the object comes to exist.
func (s *S3) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	return s.put(ctx, name, data, true)
}

func (s *S3) put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", SendContentMd5: false}
	if ifAbsent {
		opts.SetMatchETagExcept("*")
	}
	for attempt := 0; ; attempt++ {
		if uint64(len(data)) <= s.partSize {
			// One PUT. DisableMultipart because minio-go, given no part
			// size, would switch to its own multipart path above 16 MiB.
			single := opts
			single.DisableMultipart = true
			_, err = s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), single)
		} else {
			err = s.putMultipart(ctx, key, data, opts)
		}
		if err == nil {
			return nil
		}
		// S3 answers 409 ConditionalRequestConflict while a concurrent
		// conditional write of the same key is in flight: try again,
		// which then fails with 412 if that write won.
		if !ifAbsent || minio.ToErrorResponse(err).Code != "ConditionalRequestConflict" || attempt >= 5 || ctx.Err() != nil {
			return s.wrap(ctx, "put", s.describe(name), err)
		}
		select {
		case <-ctx.Done():
			return s.wrap(ctx, "put", s.describe(name), ctx.Err())
		case <-time.After(time.Duration(50<<attempt) * time.Millisecond):
		}
	}
}

// putMultipart uploads data in parts, s3PartUploads at a time, and
// completes the upload with opts' headers (If-None-Match included: minio-go's
// own multipart PutObject drops them on the completion, and its parallel
// uploader leaks goroutines when a part fails). A failed upload is aborted.
func (s *S3) putMultipart(ctx context.Context, key string, data []byte, opts minio.PutObjectOptions) (err error) {
	core := minio.Core{Client: s.client}
	partSize := int(s.partSize)
	if n := (len(data) + partSize - 1) / partSize; n > s3MaxParts {
		partSize = ((len(data)+s3MaxParts-1)/s3MaxParts + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
	}
	nparts := (len(data) + partSize - 1) / partSize
	uploadID, err := core.NewMultipartUpload(ctx, s.bucket, key, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
			defer cancel()
			_ = core.AbortMultipartUpload(actx, s.bucket, key, uploadID)
		}
	}()
	parts := make([]minio.CompletePart, nparts)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s3PartUploads)
	for i := 0; i < nparts && gctx.Err() == nil; i++ {
		chunk := data[i*partSize : min((i+1)*partSize, len(data))]
		g.Go(func() error {
			p, err := core.PutObjectPart(gctx, s.bucket, key, uploadID, i+1, bytes.NewReader(chunk), int64(len(chunk)), minio.PutObjectPartOptions{})
			if err != nil {
				return err
			}
			parts[i] = minio.CompletePart{PartNumber: i + 1, ETag: p.ETag}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err = core.CompleteMultipartUpload(ctx, s.bucket, key, uploadID, parts, opts)
	return err
}

// Get implements Storage. The first request reads up to s3RangeSize bytes
// and learns the object's size; the rest is read in ranges of that size,
// s3RangeReads at a time, straight into one buffer. Every range is pinned to
// the first response's ETag, so an object replaced in between is an error,
// not a mix of two versions.
func (s *S3) Get(ctx context.Context, name string) ([]byte, error) {
	return s.get(ctx, name, 0, -1)
}

// GetRange implements Storage, with the same parallel ranged reads as Get.
func (s *S3) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("checkpoint: %s: %w: range [%d,+%d) is negative", s.describe(name), ErrCorrupt, off, n)
	}
	if n == 0 {
		// No bytes to read, but the object must exist and reach off.
		key, err := s.key(name)
		if err != nil {
			return nil, err
		}
		info, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
		if err != nil {
			return nil, s.wrap(ctx, "stat", s.describe(name), err)
		}
		if off > info.Size {
			return nil, fmt.Errorf("checkpoint: %s: %w: offset %d beyond the object's end at %d", s.describe(name), ErrCorrupt, off, info.Size)
		}
		return []byte{}, nil
	}
	return s.get(ctx, name, off, n)
}

// get reads n bytes at off, or with n < 0 the whole object.
func (s *S3) get(ctx context.Context, name string, off, n int64) ([]byte, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, err
	}
	core := minio.Core{Client: s.client}
	firstLen := s.rangeSize
	if n >= 0 {
		firstLen = min(firstLen, n)
	}
	first := minio.GetObjectOptions{}
	if err := first.SetRange(off, off+firstLen-1); err != nil {
		return nil, err
	}
	body, info, hdr, err := core.GetObject(ctx, s.bucket, key, first)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "InvalidRange" {
			if n < 0 {
				// An empty object has no byte 0: S3 answers 416.
				return s.getWhole(ctx, core, key, name)
			}
			return nil, fmt.Errorf("checkpoint: %s: %w: range [%d,%d) beyond the object's end", s.describe(name), ErrCorrupt, off, off+n)
		}
		return nil, s.wrap(ctx, "get", s.describe(name), err)
	}
	total, ok := contentRangeTotal(hdr.Get("Content-Range"))
	if !ok {
		// No Content-Range: the server sent the whole object.
		defer body.Close()
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, s.wrap(ctx, "get", s.describe(name), err)
		}
		if n >= 0 {
			if off+n > int64(len(b)) {
				return nil, fmt.Errorf("checkpoint: %s: %w: range [%d,%d) beyond the object's end at %d", s.describe(name), ErrCorrupt, off, off+n, len(b))
			}
			b = b[off : off+n]
		}
		return b, nil
	}
	end := total // end of what to read
	if n >= 0 {
		if off+n > total {
			body.Close()
			return nil, fmt.Errorf("checkpoint: %s: %w: range [%d,%d) beyond the object's end at %d", s.describe(name), ErrCorrupt, off, off+n, total)
		}
		end = off + n
	}
	buf := make([]byte, end-off)
	firstEnd := min(off+firstLen, end)
	_, err = io.ReadFull(body, buf[:firstEnd-off])
	body.Close()
	if err != nil {
		return nil, s.wrap(ctx, "get", s.describe(name), err)
	}
	if firstEnd == end {
		return buf, nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s3RangeReads)
	for at := firstEnd; at < end; at += s.rangeSize {
		to := min(at+s.rangeSize, end)
		g.Go(func() error {
			opts := minio.GetObjectOptions{}
			if err := opts.SetMatchETag(info.ETag); err != nil {
				return err
			}
			if err := opts.SetRange(at, to-1); err != nil {
				return err
			}
			body, _, _, err := core.GetObject(gctx, s.bucket, key, opts)
			if err != nil {
				return err
			}
			defer body.Close()
			_, err = io.ReadFull(body, buf[at-off:to-off])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		if minio.ToErrorResponse(err).Code == "PreconditionFailed" {
			return nil, fmt.Errorf("checkpoint: get %s: the object changed while it was read (S3 endpoint %s)", s.describe(name), s.endpoint)
		}
		return nil, s.wrap(ctx, "get", s.describe(name), err)
	}
	return buf, nil
}

func (s *S3) getWhole(ctx context.Context, core minio.Core, key, name string) ([]byte, error) {
	body, _, _, err := core.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap(ctx, "get", s.describe(name), err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, s.wrap(ctx, "get", s.describe(name), err)
	}
	return b, nil
}

// contentRangeTotal parses the complete length of "bytes a-b/total".
func contentRangeTotal(h string) (int64, bool) {
	i := strings.LastIndexByte(h, '/')
	if !strings.HasPrefix(h, "bytes ") || i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(h[i+1:], 10, 64)
	return n, err == nil && n >= 0
}

// s3RangeSize and s3RangeReads shape a download: ranges of 16 MiB, four at a
// time (docs/benchmarks.md has the measurements behind them).
const (
	s3RangeSize  = 16 << 20
	s3RangeReads = 4
)

// List implements Storage: the names (relative to the storage's prefix) of
// every object whose name starts with prefix, sorted.
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	kp, err := s.keyPrefix(prefix)
	if err != nil {
		return nil, err
	}
	strip := ""
	if s.prefix != "" {
		strip = s.prefix + "/"
	}
	var out []string
	for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: kp, Recursive: true}) {
		if obj.Err != nil {
			return nil, s.wrap(ctx, "list", s.describe(prefix), obj.Err)
		}
		if name, ok := strings.CutPrefix(obj.Key, strip); ok && name != "" && !strings.HasSuffix(name, "/") {
			out = append(out, name) // (a key ending in "/" is a folder marker made by another tool)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, s.wrap(ctx, "list", s.describe(prefix), err)
	}
	sort.Strings(out)
	return out, nil
}

// Delete implements Storage.
func (s *S3) Delete(ctx context.Context, name string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil
		}
		return s.wrap(ctx, "delete", s.describe(name), err)
	}
	return nil
}

// DeletePrefix implements Storage: every object whose name starts with
// prefix is removed, with multi-object deletes of up to 1000 keys.
func (s *S3) DeletePrefix(ctx context.Context, prefix string) error {
	kp, err := s.keyPrefix(prefix)
	if err != nil {
		return err
	}
	what := s.describe(prefix) + "*"
	var listErr error
	objects := func(yield func(minio.ObjectInfo) bool) {
		for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: kp, Recursive: true}) {
			if obj.Err != nil {
				listErr = obj.Err
				return
			}
			if !yield(obj) {
				return
			}
		}
	}
	results, err := s.client.RemoveObjectsWithIter(ctx, s.bucket, objects, minio.RemoveObjectsOptions{})
	if err != nil {
		return s.wrap(ctx, "delete", what, err)
	}
	for res := range results {
		if res.Err != nil && minio.ToErrorResponse(res.Err).Code != "NoSuchKey" {
			return s.wrap(ctx, "delete", what, fmt.Errorf("%s: %w", res.ObjectName, res.Err))
		}
	}
	if listErr != nil {
		return s.wrap(ctx, "delete", what, listErr)
	}
	if err := ctx.Err(); err != nil {
		return s.wrap(ctx, "delete", what, err)
	}
	return nil
}
