package checkpoint

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ebbflow/ebbflow/internal/testenv"
)

// envNames name the settings as environment variables, as the file sink
// does.
var envNames = S3Names{
	Prefix:        "sink: ",
	URL:           "s3 output",
	Endpoint:      "X_ENDPOINT",
	Region:        "X_REGION",
	AccessKey:     "X_ACCESS_KEY",
	SecretKey:     "X_SECRET_KEY",
	SecretKeyFile: "X_SECRET_KEY_FILE",
	TLS:           "X_TLS",
	CAFile:        "X_CA_FILE",
	CreateBucket:  "X_CREATE_BUCKET",
	Env:           true,
}

// TestS3DescribeErrors: each kind of failure is explained in the caller's
// names, naming the operation, the object, the endpoint and what to fix,
// and the original error stays reachable.
func TestS3DescribeErrors(t *testing.T) {
	const ep, bucket, op, what = "store.example:9000", "bkt", "get", "s3://bkt/p/x"
	deadline := &url.Error{Op: "Get", URL: "http://" + ep, Err: context.DeadlineExceeded}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, tc := range []struct {
		name string
		err  error
		want map[*S3Names][]string // per names: substrings of the message
	}{
		{"bad key", minio.ErrorResponse{Code: "InvalidAccessKeyId", StatusCode: 403}, map[*S3Names][]string{
			&checkpointS3Names: {"credentials refused by " + ep, "InvalidAccessKeyId", "s3.access-key", "s3.secret-key"},
			&envNames:          {"credentials refused by " + ep, "InvalidAccessKeyId", "X_ACCESS_KEY", "X_SECRET_KEY"},
		}},
		{"bad signature", minio.ErrorResponse{Code: "SignatureDoesNotMatch", StatusCode: 403}, map[*S3Names][]string{
			&checkpointS3Names: {"credentials refused by " + ep, "s3.secret-key"},
			&envNames:          {"credentials refused by " + ep, "X_SECRET_KEY"},
		}},
		{"denied", minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, map[*S3Names][]string{
			&checkpointS3Names: {"credentials refused by " + ep, "AccessDenied", `bucket "bkt"`, "s3.access-key"},
			&envNames:          {"credentials refused by " + ep, "AccessDenied", `bucket "bkt"`, "X_ACCESS_KEY"},
		}},
		{"no bucket", minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, map[*S3Names][]string{
			&checkpointS3Names: {`bucket "bkt" does not exist at ` + ep},
			&envNames:          {`bucket "bkt" does not exist at ` + ep},
		}},
		{"wants https", minio.ErrorResponse{Code: "BadRequest", StatusCode: http.StatusBadRequest, Message: "Client sent an HTTP request to an HTTPS server."}, map[*S3Names][]string{
			&checkpointS3Names: {"S3 endpoint " + ep + " wants https", "set s3.tls to true"},
			&envNames:          {"S3 endpoint " + ep + " wants https", "set X_TLS=true"},
		}},
		{"other code", minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}, map[*S3Names][]string{
			&checkpointS3Names: {"S3 endpoint " + ep + " answered NoSuchKey"},
			&envNames:          {"S3 endpoint " + ep + " answered NoSuchKey"},
		}},
		{"untrusted", &tls.CertificateVerificationError{Err: errors.New("unknown authority")}, map[*S3Names][]string{
			&checkpointS3Names: {"TLS certificate of S3 endpoint " + ep + " is not trusted", "s3.ca-file"},
			&envNames:          {"TLS certificate of S3 endpoint " + ep + " is not trusted", "X_CA_FILE"},
		}},
		{"plain server", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, map[*S3Names][]string{
			&checkpointS3Names: {"S3 endpoint " + ep + " does not speak TLS", "set s3.tls to false"},
			&envNames:          {"S3 endpoint " + ep + " does not speak TLS", "set X_TLS=false"},
		}},
		{"refused", refused, map[*S3Names][]string{
			&checkpointS3Names: {"S3 endpoint " + ep + " unreachable"},
			&envNames:          {"S3 endpoint " + ep + " unreachable"},
		}},
		{"timeout", deadline, map[*S3Names][]string{
			&checkpointS3Names: {"S3 endpoint " + ep + " did not answer in time"},
			&envNames:          {"S3 endpoint " + ep + " did not answer in time"},
		}},
		{"other", errors.New("boom"), map[*S3Names][]string{
			&checkpointS3Names: {"(S3 endpoint " + ep + "): boom"},
			&envNames:          {"(S3 endpoint " + ep + "): boom"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for n, wants := range tc.want {
				got := n.Describe(context.Background(), ep, bucket, op, what, tc.err)
				msg := got.Error()
				if !strings.HasPrefix(msg, n.Prefix+op+" "+what) {
					t.Errorf("%q does not start with %q", msg, n.Prefix+op+" "+what)
				}
				for _, w := range wants {
					if !strings.Contains(msg, w) {
						t.Errorf("%q lacks %q", msg, w)
					}
				}
				if !errors.Is(got, tc.err) {
					t.Errorf("%q does not wrap the original error", msg)
				}
				if n.Env && strings.Contains(msg, " s3.") {
					t.Errorf("%q names a configuration key, not a variable", msg)
				}
			}
		})
	}
}

// A done context stays visible to errors.Is, whatever minio-go made of it.
func TestS3DescribeDoneContext(t *testing.T) {
	const ep = "store.example:9000"
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		is   error
		want string
	}{
		{cancelled, refused, context.Canceled, "(S3 endpoint " + ep + ")"},
		{cancelled, minio.ErrorResponse{Code: "NoSuchBucket"}, context.Canceled, "(S3 endpoint " + ep + ")"},
		{expired, refused, context.DeadlineExceeded, "did not answer in time"},
		{expired, context.DeadlineExceeded, context.DeadlineExceeded, "did not answer in time"},
	} {
		got := checkpointS3Names.Describe(tc.ctx, ep, "bkt", "open", "s3://bkt", tc.err)
		if !errors.Is(got, tc.is) || !strings.Contains(got.Error(), tc.want) || strings.Contains(got.Error(), "unreachable") || strings.Contains(got.Error(), "does not exist at") {
			t.Errorf("Describe(%v, %v) = %q, want %v and %q", tc.ctx.Err(), tc.err, got, tc.is, tc.want)
		}
	}
}

// TestS3ValidateNames: the settings are named in the caller's terms, and
// DialS3 refuses a bad configuration before any network traffic.
func TestS3ValidateNames(t *testing.T) {
	dir := t.TempDir()
	const secret = "validate-names-secret"
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	// Nobody listens at 127.0.0.1:1: a request would fail as unreachable.
	good := S3Config{URL: "s3://bucket/prefix", Endpoint: "127.0.0.1:1", AccessKey: "ak", SecretKey: secret}
	for _, tc := range []struct {
		edit func(*S3Config)
		want []string
	}{
		{func(c *S3Config) { c.URL = "" }, []string{"s3 output", "empty"}},
		{func(c *S3Config) { c.URL = "s3://ak:" + secret + "@bucket/x" }, []string{"s3 output", "credentials do not belong", "X_ACCESS_KEY", "X_SECRET_KEY_FILE"}},
		{func(c *S3Config) { c.URL = "s3://bucket/a/../b" }, []string{"s3 output", "bad prefix"}},
		{func(c *S3Config) { c.Endpoint = "" }, []string{"X_ENDPOINT", "empty"}},
		{func(c *S3Config) { c.Endpoint = "http://127.0.0.1:1" }, []string{"X_ENDPOINT", "scheme", "X_TLS"}},
		{func(c *S3Config) { c.Region = "EU West" }, []string{"X_REGION"}},
		{func(c *S3Config) { c.AccessKey = "" }, []string{"X_ACCESS_KEY", "empty"}},
		{func(c *S3Config) { c.SecretKey = "" }, []string{"X_SECRET_KEY", "X_SECRET_KEY_FILE"}},
		{func(c *S3Config) { c.SecretKeyFile = notPEM }, []string{"X_SECRET_KEY", "X_SECRET_KEY_FILE", "only one"}},
		{func(c *S3Config) { c.SecretKey, c.SecretKeyFile = "", filepath.Join(dir, "missing") }, []string{"X_SECRET_KEY_FILE", "missing"}},
		{func(c *S3Config) { c.CAFile = notPEM }, []string{"X_CA_FILE", "set X_TLS=true"}},
		{func(c *S3Config) { c.UseTLS, c.CAFile = true, notPEM }, []string{"X_CA_FILE", "no PEM certificate"}},
	} {
		c := good
		tc.edit(&c)
		err := c.validate(envNames)
		if err == nil {
			t.Errorf("validate(%v) accepted it", c)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, envNames.Prefix) || strings.Contains(msg, "s3.") || strings.Contains(msg, "checkpoint") || strings.Contains(msg, secret) {
			t.Errorf("validate(%v) = %q: want the sink's prefix and names, and no secret", c, msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("validate(%v): %q lacks %q", c, msg, w)
			}
		}
		conn, derr := DialS3(context.Background(), c, S3DialOptions{Names: envNames})
		if derr == nil {
			conn.Close()
		}
		if derr == nil || derr.Error() != msg {
			t.Errorf("DialS3(%v) = %v, want %v", c, derr, err)
		}
	}
	// The zero names are checkpoint storage's.
	if _, err := DialS3(context.Background(), S3Config{}, S3DialOptions{}); err == nil || err.Error() != "checkpoint: checkpoint.dir is empty" {
		t.Errorf("DialS3 with zero names: %v", err)
	}
}

// TestS3Dial connects with the caller's names: a missing bucket is created
// when allowed, and otherwise refused naming the caller's setting.
func TestS3Dial(t *testing.T) {
	m := testenv.StartMinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := S3Config{URL: "s3://dialled/a/b/", Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey}
	_, err := DialS3(ctx, cfg, S3DialOptions{Names: envNames})
	if err == nil || !strings.Contains(err.Error(), `bucket "dialled" does not exist at `+m.Endpoint) || !strings.Contains(err.Error(), "set X_CREATE_BUCKET=true") {
		t.Fatalf("missing bucket: %v", err)
	}
	cfg.CreateBucket = true
	c, err := DialS3(ctx, cfg, S3DialOptions{Names: envNames, AppName: "ebbflow-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.URL() != "s3://dialled/a/b" || c.Bucket != "dialled" || c.Prefix != "a/b" || c.Endpoint != m.Endpoint || c.Names != envNames {
		t.Fatalf("conn = %s %q %q %q %v", c.URL(), c.Bucket, c.Prefix, c.Endpoint, c.Names)
	}
	if ok, err := c.Client.BucketExists(ctx, "dialled"); err != nil || !ok {
		t.Fatalf("bucket not created: %v, %v", ok, err)
	}
	// A second dial finds the bucket.
	c2, err := DialS3(ctx, cfg, S3DialOptions{Names: envNames})
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	// A wrong secret is refused in the caller's names.
	cfg.SecretKey = "wrong-" + m.SecretKey
	_, err = DialS3(ctx, cfg, S3DialOptions{Names: envNames})
	if err == nil || !strings.Contains(err.Error(), "credentials refused by "+m.Endpoint) || !strings.Contains(err.Error(), "X_SECRET_KEY") || strings.Contains(err.Error(), cfg.SecretKey) {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestS3Transient(t *testing.T) {
	netErr := &url.Error{Op: "Put", URL: "http://127.0.0.1:1/b/k", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", netErr, true},
		{"wrapped", fmt.Errorf("filesink: put: %w", netErr), true},
		{"deadline", &url.Error{Op: "Put", URL: "u", Err: context.DeadlineExceeded}, true},
		{"cancelled", &url.Error{Op: "Put", URL: "u", Err: context.Canceled}, false},
		{"503", minio.ErrorResponse{Code: "ServiceUnavailable", StatusCode: 503}, true},
		{"500", minio.ErrorResponse{Code: "InternalError", StatusCode: 500}, true},
		{"slow down", minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, true},
		{"starting", minio.ErrorResponse{Code: "XMinioServerNotInitialized", StatusCode: 503}, true},
		{"conditional conflict", minio.ErrorResponse{Code: "ConditionalRequestConflict", StatusCode: 409}, true},
		{"not implemented", minio.ErrorResponse{Code: "NotImplemented", StatusCode: 501}, false},
		{"access denied", minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, false},
		{"invalid part", minio.ErrorResponse{Code: "InvalidPart", StatusCode: 400}, false},
		{"precondition", minio.ErrorResponse{Code: "PreconditionFailed", StatusCode: 412}, false},
		{"plain", errors.New("boom"), false},
	} {
		if got := S3Transient(tc.err); got != tc.want {
			t.Errorf("%s: S3Transient = %v, want %v", tc.name, got, tc.want)
		}
	}
}
