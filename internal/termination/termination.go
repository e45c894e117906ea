// Package termination watches a cloud VM's instance metadata for the notice
// that the VM is about to go away, so that the TaskManager on it can drain
// (the same drain as on SIGTERM) before it does:
//
//   - AWS (IMDSv2): an Auto Scaling group terminating the instance — the
//     item autoscaling/target-lifecycle-state becomes Terminated, or a
//     Warmed:* state on a scale-in back into a warm pool — and EC2 spot
//     interruption notices (spot/instance-action).
//   - GCP: preemption of a preemptible or Spot VM (instance/preempted
//     becomes TRUE) and host maintenance that will stop the VM
//     (instance/maintenance-event becomes TERMINATE_ON_HOST_MAINTENANCE).
//
// It is internal because it is a detail of the taskmanager command, not an
// API: the command owns the drain, this package only says when and why.
// The tests run against local HTTP servers that imitate the two metadata
// services (EC2 and GCE cannot be reached from a test); their strictness —
// IMDSv2 tokens, PUT-only token requests, the Metadata-Flavor header, hanging
// GETs with ETags — follows the providers' documentation.
package termination

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Kinds of watcher, the values of taskmanager.termination-watch.
const (
	KindNone = "none"
	KindAWS  = "aws"
	KindGCP  = "gcp"
)

// Default metadata endpoints.
const (
	DefaultAWSEndpoint = "http://169.254.169.254"
	DefaultGCPEndpoint = "http://metadata.google.internal"
)

// DefaultPollInterval is how often the AWS watcher polls; AWS recommends
// checking for spot interruption notices every 5 seconds.
const DefaultPollInterval = 5 * time.Second

// Notice is a termination notice.
type Notice struct {
	Cloud  string // KindAWS or KindGCP
	Reason string // for the log, e.g. "aws spot interruption notice: terminate at 2026-01-02T03:04:05Z"
}

// Watcher watches one cloud's instance metadata.
type Watcher interface {
	// Probe checks, at start, that the metadata service answers; it retries
	// an unreachable one for Options.ProbeTimeout and then fails with an
	// error naming the endpoint. A notice already posted is returned.
	Probe(ctx context.Context) (*Notice, error)
	// Watch blocks until a termination notice is seen and returns it, or
	// until ctx ends (then it returns ctx.Err()). Metadata errors are
	// logged and retried with backoff; they never end the watch.
	Watch(ctx context.Context) (Notice, error)
	// Endpoint is the metadata base URL in use.
	Endpoint() string
}

// Options configure a watcher. Zero values take the defaults.
type Options struct {
	// Endpoint is the metadata service's base URL (scheme and host, no
	// path): DefaultAWSEndpoint / DefaultGCPEndpoint, or an imitation.
	Endpoint string
	// PollInterval is the AWS watcher's time between polls and, for both,
	// the first retry delay after a metadata error (default 5s).
	PollInterval time.Duration
	// MaxBackoff caps the retry delay after repeated errors (default 15s).
	MaxBackoff time.Duration
	// RequestTimeout bounds one metadata request (default 2s); a GCP
	// hanging GET gets HangTimeout on top.
	RequestTimeout time.Duration
	// ProbeTimeout is how long Probe retries an unreachable service
	// (default 10s).
	ProbeTimeout time.Duration
	// HangTimeout is the GCP hanging GET's timeout_sec (default 60s, whole
	// seconds, at least 1s).
	HangTimeout time.Duration
	// TokenTTL is the lifetime asked for an IMDSv2 token (default 6h, whole
	// seconds, 1s..6h); it is refreshed after three quarters of it.
	TokenTTL time.Duration
	// Client sends the requests (default: no proxy, RequestTimeout dial).
	Client *http.Client
	// Logger gets metadata errors and state changes (default: none).
	Logger *zap.Logger
	// Now is the clock used for token expiry (default time.Now).
	Now func() time.Time
}

// New returns the watcher of kind (KindAWS or KindGCP).
func New(kind string, o Options) (Watcher, error) {
	switch kind {
	case KindAWS, KindGCP:
	default:
		return nil, fmt.Errorf("unknown termination watch %q (want %s, %s or %s)", kind, KindNone, KindAWS, KindGCP)
	}
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint(kind)
	}
	ep, err := parseEndpoint(o.Endpoint)
	if err != nil {
		return nil, err
	}
	o.Endpoint = ep
	if o.PollInterval < 0 || o.MaxBackoff < 0 || o.RequestTimeout < 0 || o.ProbeTimeout < 0 || o.HangTimeout < 0 || o.TokenTTL < 0 {
		return nil, errors.New("termination watch: negative interval or timeout")
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 15 * time.Second
	}
	o.MaxBackoff = max(o.MaxBackoff, o.PollInterval)
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 2 * time.Second
	}
	if o.ProbeTimeout == 0 {
		o.ProbeTimeout = 10 * time.Second
	}
	if o.HangTimeout == 0 {
		o.HangTimeout = 60 * time.Second
	}
	o.HangTimeout = max(o.HangTimeout.Truncate(time.Second), time.Second)
	if o.TokenTTL == 0 {
		o.TokenTTL = 6 * time.Hour
	}
	if o.TokenTTL < time.Second || o.TokenTTL > 6*time.Hour {
		return nil, fmt.Errorf("termination watch: IMDSv2 token TTL %v is outside 1s..6h", o.TokenTTL)
	}
	if o.Client == nil {
		// Never through a proxy: the metadata service is link-local.
		o.Client = &http.Client{Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: o.RequestTimeout}).DialContext,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 0, // per request, through the context
		}}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if kind == KindAWS {
		return newAWS(o), nil
	}
	return newGCP(o), nil
}

// DefaultEndpoint is the metadata endpoint of kind.
func DefaultEndpoint(kind string) string {
	switch kind {
	case KindAWS:
		return DefaultAWSEndpoint
	case KindGCP:
		return DefaultGCPEndpoint
	}
	return ""
}

func parseEndpoint(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("metadata endpoint %q: %v", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("metadata endpoint %q: want http://host[:port] (scheme and host only)", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// statusError is a metadata answer with an unexpected HTTP status.
type statusError struct {
	op   string
	code int
	body string
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("%s: HTTP %d", e.op, e.code)
	if e.body != "" {
		s += ": " + e.body
	}
	return s
}

// readBody reads a short answer; metadata values are small.
func readBody(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	return string(b), err
}

// snippet shortens an error body for a message.
func snippet(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// backoff is the retry delay after failures: PollInterval, doubling up to
// MaxBackoff.
type backoff struct {
	first, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.first
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// permanent marks a probe failure that retrying cannot fix (for example a
// metadata service that is switched off).
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// probeLoop runs try until it succeeds, fails permanently, or the probe
// timeout passes.
func probeLoop(ctx context.Context, o Options, what string, try func(context.Context) error) error {
	deadline := time.Now().Add(o.ProbeTimeout)
	b := backoff{first: min(200*time.Millisecond, o.PollInterval), max: 2 * time.Second}
	for {
		err := try(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var p permanent
		if errors.As(err, &p) {
			return fmt.Errorf("%s at %s: %v", what, o.Endpoint, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s at %s does not answer (%v; tried for %v)", what, o.Endpoint, err, o.ProbeTimeout)
		}
		d := b.next()
		o.Logger.Debug("metadata service not answering yet; retrying", zap.String("endpoint", o.Endpoint), zap.Duration("backoff", d), zap.Error(err))
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}
