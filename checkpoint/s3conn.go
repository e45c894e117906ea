package checkpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// This file is the one way ebbflow connects to S3, shared by the checkpoint
// storage (S3) and the file sink's s3:// outputs: parsing s3://bucket/prefix,
// validating the settings, building the client and its transport, checking
// the bucket, and turning minio-go's errors into messages that name the
// endpoint and the setting to fix.

// S3Config configures a connection to an S3 (or S3-compatible, e.g. MinIO)
// bucket: the checkpoint storage's, or a file sink's. The secret key never
// leaves this struct: String and GoString redact it, and no error names it.
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
	PartSize      uint64 // s3.part-size: multipart part size, default 16 MiB (checkpoint storage only)
}

// S3Names are the names that S3 messages give their component and the
// settings of an S3Config, so that each user of the connection is told what
// to fix in its own terms: configuration keys for checkpoint storage,
// environment variables for the file sink.
type S3Names struct {
	Prefix        string // starts every message, e.g. "checkpoint: "
	URL           string // the s3://bucket/prefix setting, e.g. "checkpoint.dir"
	Endpoint      string // e.g. "s3.endpoint"
	Region        string
	AccessKey     string
	SecretKey     string
	SecretKeyFile string
	TLS           string
	CAFile        string
	CreateBucket  string
	// Env: the names are environment variables, so a message says "set
	// NAME=true" rather than "set NAME to true".
	Env bool
}

// checkpointS3Names name the configuration keys of checkpoint storage.
var checkpointS3Names = S3Names{
	Prefix:        "checkpoint: ",
	URL:           "checkpoint.dir",
	Endpoint:      "s3.endpoint",
	Region:        "s3.region",
	AccessKey:     "s3.access-key",
	SecretKey:     "s3.secret-key",
	SecretKeyFile: "s3.secret-key-file",
	TLS:           "s3.tls",
	CAFile:        "s3.ca-file",
	CreateBucket:  "s3.create-bucket",
}

// set is the advice to set setting name to v.
func (n S3Names) set(name string, v bool) string {
	if n.Env {
		return fmt.Sprintf("set %s=%v", name, v)
	}
	return fmt.Sprintf("set %s to %v", name, v)
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

// s3URL is s3://bucket/prefix.
func s3URL(bucket, prefix string) string {
	if prefix == "" {
		return "s3://" + bucket
	}
	return "s3://" + bucket + "/" + prefix
}

// parseS3URL splits s3://bucket/prefix into bucket and prefix (without
// leading or trailing slashes).
func parseS3URL(raw string, n S3Names) (bucket, prefix string, err error) {
	if raw == "" {
		return "", "", fmt.Errorf("%s%s is empty", n.Prefix, n.URL)
	}
	shown := redactURL(raw)
	u, perr := url.Parse(raw)
	if perr != nil || u.Scheme != "s3" {
		return "", "", fmt.Errorf("%s%s %q: want s3://bucket/prefix", n.Prefix, n.URL, shown)
	}
	if u.User != nil {
		return "", "", fmt.Errorf("%s%s %q: credentials do not belong in the URL; use %s and %s", n.Prefix, n.URL, shown, n.AccessKey, n.SecretKeyFile)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", "", fmt.Errorf("%s%s %q: want s3://bucket/prefix, without a query or fragment", n.Prefix, n.URL, shown)
	}
	bucket = u.Host
	if bucket == "" {
		return "", "", fmt.Errorf("%s%s %q: no bucket (want s3://bucket/prefix)", n.Prefix, n.URL, shown)
	}
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return "", "", fmt.Errorf("%s%s %q: bucket %q: %v", n.Prefix, n.URL, shown, bucket, err)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		for _, seg := range strings.Split(prefix, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return "", "", fmt.Errorf("%s%s %q: bad prefix %q", n.Prefix, n.URL, shown, prefix)
			}
		}
	}
	return bucket, prefix, nil
}

// Validate checks the configuration without contacting the server. Errors
// name the configuration key at fault.
func (c S3Config) Validate() error {
	if err := c.validate(checkpointS3Names); err != nil {
		return err
	}
	if c.PartSize != 0 && (c.PartSize < minS3PartSize || c.PartSize > maxS3PartSize) {
		return fmt.Errorf("checkpoint: s3.part-size %d: want between 5 MiB and 5 GiB", c.PartSize)
	}
	return nil
}

// validate checks the connection settings (all but PartSize), naming them
// as n does.
func (c S3Config) validate(n S3Names) error {
	if _, _, err := parseS3URL(c.URL, n); err != nil {
		return err
	}
	if err := validateEndpoint(c.Endpoint, n); err != nil {
		return err
	}
	for _, r := range c.Region {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("%s%s %q: want a region name like us-east-1", n.Prefix, n.Region, c.Region)
		}
	}
	if c.AccessKey == "" {
		return fmt.Errorf("%s%s is empty", n.Prefix, n.AccessKey)
	}
	if strings.TrimSpace(c.AccessKey) != c.AccessKey {
		return fmt.Errorf("%s%s has leading or trailing blanks", n.Prefix, n.AccessKey)
	}
	if _, err := c.secret(n); err != nil {
		return err
	}
	if c.CAFile != "" {
		if !c.UseTLS {
			return fmt.Errorf("%s%s %q is set but %s is off; %s to use it", n.Prefix, n.CAFile, c.CAFile, n.TLS, n.set(n.TLS, true))
		}
		if _, err := loadCAFile(c.CAFile, n); err != nil {
			return err
		}
	}
	return nil
}

func validateEndpoint(ep string, n S3Names) error {
	if ep == "" {
		return fmt.Errorf("%s%s is empty (want host:port)", n.Prefix, n.Endpoint)
	}
	if strings.Contains(ep, "://") {
		return fmt.Errorf("%s%s %q: want host:port without a scheme (https is %s)", n.Prefix, n.Endpoint, redactURL(ep), n.TLS)
	}
	if strings.ContainsAny(ep, "/@?# ") {
		return fmt.Errorf("%s%s %q: want host:port", n.Prefix, n.Endpoint, ep)
	}
	host := ep
	if strings.Contains(ep, ":") {
		h, port, err := net.SplitHostPort(ep)
		if err != nil {
			return fmt.Errorf("%s%s %q: want host:port: %v", n.Prefix, n.Endpoint, ep, err)
		}
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return fmt.Errorf("%s%s %q: bad port %q", n.Prefix, n.Endpoint, ep, port)
		}
		host = h
	}
	if host == "" {
		return fmt.Errorf("%s%s %q: no host", n.Prefix, n.Endpoint, ep)
	}
	return nil
}

// secret returns the secret key, from SecretKey or SecretKeyFile. Its
// errors never contain the secret.
func (c S3Config) secret(n S3Names) (string, error) {
	switch {
	case c.SecretKey != "" && c.SecretKeyFile != "":
		return "", fmt.Errorf("%sboth %s and %s are set; set only one", n.Prefix, n.SecretKey, n.SecretKeyFile)
	case c.SecretKeyFile != "":
		b, err := os.ReadFile(c.SecretKeyFile)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is named below; the rest is the reason
			}
			return "", fmt.Errorf("%s%s %q: %v", n.Prefix, n.SecretKeyFile, c.SecretKeyFile, err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("%s%s %q is empty", n.Prefix, n.SecretKeyFile, c.SecretKeyFile)
		}
		return s, nil
	case c.SecretKey != "":
		return c.SecretKey, nil
	default:
		return "", fmt.Errorf("%s%s is empty (set %s or %s)", n.Prefix, n.SecretKey, n.SecretKey, n.SecretKeyFile)
	}
}

func loadCAFile(file string, n S3Names) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s%s %q: %v", n.Prefix, n.CAFile, file, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s%s %q holds no PEM certificate", n.Prefix, n.CAFile, file)
	}
	return pool, nil
}

// S3DialOptions tune DialS3 to its caller.
type S3DialOptions struct {
	// Names name the settings in errors; the zero value names checkpoint
	// storage's configuration keys.
	Names S3Names
	// AppName identifies the caller in the User-Agent; "" is "ebbflow".
	AppName string
}

// S3Conn is a connection to a bucket, made by DialS3.
type S3Conn struct {
	Client    *minio.Client
	Transport *http.Transport // Client's; Close releases its idle connections
	Bucket    string
	Prefix    string // without slashes at either end; "" is the bucket root
	Endpoint  string // host:port
	Names     S3Names
}

// DialS3 validates cfg's connection settings (all but PartSize), connects
// to the endpoint and checks that the bucket exists, creating it if
// cfg.CreateBucket is set. Errors name the settings as opts.Names does,
// name the endpoint, and never contain the secret.
func DialS3(ctx context.Context, cfg S3Config, opts S3DialOptions) (*S3Conn, error) {
	n := opts.Names
	if n == (S3Names{}) {
		n = checkpointS3Names
	}
	if err := cfg.validate(n); err != nil {
		return nil, err
	}
	bucket, prefix, _ := parseS3URL(cfg.URL, n)
	secret, err := cfg.secret(n)
	if err != nil {
		return nil, err
	}
	tr, err := minio.DefaultTransport(cfg.UseTLS)
	if err != nil {
		return nil, fmt.Errorf("%sS3 transport: %w", n.Prefix, err)
	}
	if cfg.CAFile != "" {
		pool, err := loadCAFile(cfg.CAFile, n)
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
		return nil, fmt.Errorf("%s%s %q: %w", n.Prefix, n.Endpoint, cfg.Endpoint, err)
	}
	app := opts.AppName
	if app == "" {
		app = "ebbflow"
	}
	client.SetAppInfo(app, "1")
	c := &S3Conn{Client: client, Transport: tr, Bucket: bucket, Prefix: prefix, Endpoint: cfg.Endpoint, Names: n}
	if err := c.checkBucket(ctx, cfg.CreateBucket, cfg.Region); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// URL is s3://bucket/prefix (never with credentials).
func (c *S3Conn) URL() string { return s3URL(c.Bucket, c.Prefix) }

// Close releases the idle connections of the transport.
func (c *S3Conn) Close() { c.Transport.CloseIdleConnections() }

// Describe is c.Names.Describe for c's endpoint and bucket.
func (c *S3Conn) Describe(ctx context.Context, op, what string, err error) error {
	return c.Names.Describe(ctx, c.Endpoint, c.Bucket, op, what, err)
}

// checkBucket checks that the bucket exists, creating it if allowed. The
// first request to a bucket of unknown region is a GetBucketLocation that
// minio-go sends without retries, so transient failures (a server still
// starting, a refused connection) are retried here for a few seconds.
func (c *S3Conn) checkBucket(ctx context.Context, create bool, region string) error {
	var ok bool
	var err error
	delay := 100 * time.Millisecond
	for deadline := time.Now().Add(openRetryFor); ; {
		ok, err = c.Client.BucketExists(ctx, c.Bucket)
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
		return c.Describe(ctx, "open", c.URL(), err)
	}
	if ok {
		return nil
	}
	n := c.Names
	if !create {
		return fmt.Errorf("%s%s: bucket %q does not exist at %s; create it, or %s to let ebbflow create it", n.Prefix, c.URL(), c.Bucket, c.Endpoint, n.set(n.CreateBucket, true))
	}
	err = c.Client.MakeBucket(ctx, c.Bucket, minio.MakeBucketOptions{Region: region})
	if err != nil {
		switch minio.ToErrorResponse(err).Code {
		case "BucketAlreadyOwnedByYou", "BucketAlreadyExists":
			// Created concurrently by another process: fine if it is ours,
			// and if it is not, the first write fails clearly.
			return nil
		}
		return c.Describe(ctx, fmt.Sprintf("create bucket %q for", c.Bucket), c.URL(), err)
	}
	return nil
}

// openRetryFor bounds DialS3's retries of transient failures.
const openRetryFor = 5 * time.Second

// S3Transient reports whether an error of an S3 request (or one that wraps
// it) may go away by itself: no answer from the server, or a 5xx / "not
// ready yet" / "slow down" answer.
func S3Transient(err error) bool { return transient(err) }

// transient reports whether an error may go away by itself: no answer from
// the server, or a 5xx / "not ready yet" answer.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false // given up on by the caller, not by the store
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.Code != "" {
		switch resp.Code {
		case "XMinioServerNotInitialized", "SlowDown", "RequestTimeout", "ConditionalRequestConflict":
			return true
		case "NotImplemented":
			return false // a store without the feature: trying again does not help
		}
		return resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented
	}
	var cve *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	if errors.As(err, &cve) || errors.As(err, &rhe) || strings.Contains(err.Error(), "HTTP response to HTTPS client") {
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// Describe translates a minio-go error of request op (e.g. "get") on what
// (e.g. s3://bucket/prefix/name) to the S3 endpoint, at the boundary: an S3
// error code, a TLS mismatch or a network failure becomes a message that
// names the endpoint and the setting to fix, as n names them. A done ctx
// (or a deadline inside err) stays visible to errors.Is. The result never
// holds the secret key: minio-go never sends it, so its errors cannot
// either. Codes that a caller handles itself (NoSuchKey,
// PreconditionFailed) come out as "answered <code>".
func (n S3Names) Describe(ctx context.Context, endpoint, bucket, op, what string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s%s %s (S3 endpoint %s): %w", n.Prefix, op, what, endpoint, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s%s %s: S3 endpoint %s did not answer in time: %w", n.Prefix, op, what, endpoint, err)
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.Code != "" {
		switch resp.Code {
		case "InvalidAccessKeyId", "SignatureDoesNotMatch":
			return fmt.Errorf("%s%s %s: credentials refused by %s (%s; check %s and %s): %w", n.Prefix, op, what, endpoint, resp.Code, n.AccessKey, n.SecretKey, err)
		case "AccessDenied":
			return fmt.Errorf("%s%s %s: credentials refused by %s (AccessDenied: wrong %s / %s, or they lack permission on bucket %q): %w", n.Prefix, op, what, endpoint, n.AccessKey, n.SecretKey, bucket, err)
		case "NoSuchBucket":
			return fmt.Errorf("%s%s %s: bucket %q does not exist at %s: %w", n.Prefix, op, what, bucket, endpoint, err)
		}
		if resp.StatusCode == http.StatusBadRequest && strings.Contains(resp.Message, "HTTPS server") {
			return fmt.Errorf("%s%s %s: S3 endpoint %s wants https; %s: %w", n.Prefix, op, what, endpoint, n.set(n.TLS, true), err)
		}
		return fmt.Errorf("%s%s %s: S3 endpoint %s answered %s: %w", n.Prefix, op, what, endpoint, resp.Code, err)
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return fmt.Errorf("%s%s %s: the TLS certificate of S3 endpoint %s is not trusted (%s names a CA bundle to trust): %w", n.Prefix, op, what, endpoint, n.CAFile, err)
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) || strings.Contains(err.Error(), "HTTP response to HTTPS client") {
		return fmt.Errorf("%s%s %s: S3 endpoint %s does not speak TLS; %s: %w", n.Prefix, op, what, endpoint, n.set(n.TLS, false), err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return fmt.Errorf("%s%s %s: S3 endpoint %s unreachable: %w", n.Prefix, op, what, endpoint, err)
	}
	return fmt.Errorf("%s%s %s (S3 endpoint %s): %w", n.Prefix, op, what, endpoint, err)
}
