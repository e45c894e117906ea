package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ebbflow/ebbflow/internal/cluster"
)

// connectEtcd builds the etcd client (TLS, auth) and waits until etcd
// answers, retrying with backoff and a log line naming the endpoints, up to
// etcd.startup-timeout. Errors that retrying cannot cure — refused
// credentials, a user without the rights ebbflow needs, a certificate one
// side does not trust — end it at once with a message naming the endpoint,
// the cause and the key to fix; an unreachable etcd is retried.
func connectEtcd(ctx context.Context, s *settings, log *zap.Logger) (*clientv3.Client, error) {
	eps := s.list("etcd.endpoints")
	if len(eps) == 0 {
		return nil, usageError("config key etcd.endpoints (EBBFLOW_ETCD_ENDPOINTS, --etcd-endpoints) is empty")
	}
	user := s.str("etcd.username")
	pw, err := s.secret("etcd.password", "etcd.password-file")
	if err != nil {
		return nil, err
	}
	switch {
	case user != "" && pw == "":
		return nil, usageError("config key etcd.username is set (%q) but etcd.password (EBBFLOW_ETCD_PASSWORD) and etcd.password-file (--etcd-password-file) are empty", user)
	case user == "" && pw != "":
		return nil, usageError("an etcd password is set but config key etcd.username (EBBFLOW_ETCD_USERNAME, --etcd-username) is empty")
	}
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: s.dur("etcd.dial-timeout"), Logger: zap.NewNop(), Username: user, Password: pw}
	tc, err := etcdTLSConfig(s)
	if err != nil {
		return nil, err
	}
	cfg.TLS = tc
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	target := etcdTarget{eps: strings.Join(eps, ","), user: user, prefix: cluster.Prefix(s.str("cluster.id")), cluster: s.str("cluster.id")}
	startup := s.dur("etcd.startup-timeout")
	deadline := time.Now().Add(startup)
	backoff := 200 * time.Millisecond
	for {
		// A certificate problem makes the gRPC client wait out its dial
		// timeout and say only "context deadline exceeded": a TLS handshake
		// of our own first names the cause at once.
		probes := make([]probe, len(eps))
		probeEndpoints(ctx, probes, eps, tc, cfg.DialTimeout, true)
		pr := summarize(probes)
		if pr.perm != nil {
			return nil, pr.perm
		}
		for _, n := range pr.notes {
			log.Warn("etcd endpoint unusable", zap.String("problem", n))
		}
		cli, err := tryEtcd(ctx, cfg, target.prefix)
		if err == nil {
			log.Info("connected to etcd", zap.Strings("endpoints", eps))
			return cli, nil
		}
		if perm := target.permanent(err); perm != nil {
			return nil, perm
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Plain endpoints are looked at only now that they failed: does one
		// speak TLS, or refuse connections?
		probeEndpoints(ctx, probes, eps, tc, cfg.DialTimeout, false)
		if pr = summarize(probes); pr.perm != nil {
			return nil, pr.perm
		}
		if more := append(pr.notes, pr.transient...); len(more) > 0 {
			err = fmt.Errorf("%w (%s)", err, strings.Join(more, "; "))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("etcd at %s unreachable for %v (etcd.startup-timeout): %w", target.eps, startup, err)
		}
		log.Warn("etcd unreachable; retrying", zap.Strings("endpoints", eps), zap.Duration("backoff", backoff), zap.Error(err))
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func etcdTLSConfig(s *settings) (*tls.Config, error) {
	cert, key, ca := s.str("etcd.tls.cert"), s.str("etcd.tls.key"), s.str("etcd.tls.ca")
	if cert == "" && key == "" && ca == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if (cert == "") != (key == "") {
		return nil, usageError("config keys etcd.tls.cert and etcd.tls.key must be set together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, usageError("config keys etcd.tls.cert/etcd.tls.key: %v", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	if ca != "" {
		b, err := os.ReadFile(ca)
		if err != nil {
			return nil, usageError("config key etcd.tls.ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, usageError("config key etcd.tls.ca: %s holds no PEM certificate", ca)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// tryEtcd makes a client and checks, with one request, that etcd answers
// and that this user may read and write the cluster's keys: a transaction
// whose condition never holds (no key has a negative create revision)
// reads prefix and would write it, and etcd checks the rights of both
// branches before it evaluates the condition. Nothing is written.
func tryEtcd(ctx context.Context, cfg clientv3.Config, prefix string) (*clientv3.Client, error) {
	cli, err := clientv3.New(cfg) // with a password this authenticates, waiting up to DialTimeout
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	_, err = cli.Txn(actx).If(clientv3.Compare(clientv3.CreateRevision(prefix), "<", 0)).Then(clientv3.OpPut(prefix, "")).Commit()
	if err != nil {
		cli.Close()
		return nil, err
	}
	return cli, nil
}

// etcdTarget describes the connection for error messages.
type etcdTarget struct {
	eps, user, prefix, cluster string
}

// permanent turns an error etcd answered that retrying cannot cure into a
// message naming the endpoint and what to fix; nil for anything else.
func (t etcdTarget) permanent(err error) error {
	switch e := rpctypes.Error(err); {
	case errors.Is(e, rpctypes.ErrAuthFailed):
		return fmt.Errorf("etcd at %s: authentication failed for user %q: wrong user name or password (config keys etcd.username, etcd.password / etcd.password-file)", t.eps, t.user)
	case errors.Is(e, rpctypes.ErrUserEmpty):
		return fmt.Errorf("etcd at %s requires authentication: set config keys etcd.username and etcd.password (EBBFLOW_ETCD_PASSWORD) or etcd.password-file", t.eps)
	case errors.Is(e, rpctypes.ErrPermissionDenied):
		who := fmt.Sprintf("user %q", t.user)
		if t.user == "" {
			who = "the user named by this client certificate's common name"
		}
		return fmt.Errorf("etcd at %s: permission denied: %s may not read and write %s (cluster.id %q): its role needs readwrite on the key prefix %s", t.eps, who, t.prefix, t.cluster, t.prefix)
	case errors.Is(e, rpctypes.ErrUserNotFound):
		return fmt.Errorf("etcd at %s: %v (with client certificates and auth on, etcd takes the user name from the certificate's common name)", t.eps, e)
	}
	return nil
}

// probe is what a look at one endpoint found: a problem no retry can cure,
// or why it cannot be reached (a retry's matter); both empty when fine or
// not looked at.
type probe struct{ problem, connErr string }

// probeEndpoints looks at the endpoints that use TLS (https://, or
// host:port with etcd.tls.* set; a TLS handshake) or, with useTLS false,
// at the plain ones (do they speak TLS after all?), and records what it
// found in probes.
func probeEndpoints(ctx context.Context, probes []probe, eps []string, tc *tls.Config, timeout time.Duration, useTLS bool) {
	var wg sync.WaitGroup
	for i, ep := range eps {
		scheme, host := splitEndpoint(ep)
		if scheme == "unix" || scheme == "unixs" || useTLS != (scheme == "https" || (scheme == "" && tc != nil)) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if useTLS {
				probes[i].problem, probes[i].connErr = probeTLS(ctx, ep, host, tc, timeout)
			} else {
				probes[i].problem, probes[i].connErr = probePlain(ctx, ep, host, timeout)
			}
		}()
	}
	wg.Wait()
}

// probeSummary is what the probes of all endpoints mean.
type probeSummary struct {
	perm      error    // every endpoint has a problem no retry can cure
	notes     []string // such problems of some endpoints, while others may work
	transient []string // connection errors (refused, timeout) a retry may cure
}

func summarize(probes []probe) probeSummary {
	var r probeSummary
	for _, p := range probes {
		if p.problem != "" {
			r.notes = append(r.notes, p.problem)
		}
		if p.connErr != "" {
			r.transient = append(r.transient, p.connErr)
		}
	}
	if len(r.notes) == len(probes) {
		r.perm, r.notes = errors.New(strings.Join(r.notes, "; ")), nil
	}
	return r
}

func splitEndpoint(ep string) (scheme, host string) {
	host = ep
	if i := strings.Index(ep, "://"); i >= 0 {
		scheme, host = strings.ToLower(ep[:i]), ep[i+3:]
	}
	if i := strings.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	return scheme, host
}

// probeTLS returns what is wrong with the TLS of endpoint ep ("" when the
// handshake works), or, as connErr, why it cannot be reached (a retry's matter).
func probeTLS(ctx context.Context, ep, host string, tc *tls.Config, timeout time.Duration) (problem, connErr string) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if tc != nil {
		c = tc.Clone()
	}
	c.NextProtos = []string{"h2"}
	if c.ServerName == "" {
		if h, _, err := net.SplitHostPort(host); err == nil {
			c.ServerName = h
		}
	}
	cert := len(c.Certificates) > 0
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: c}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", host)
	if err == nil {
		defer conn.Close()
		// In TLS 1.3 the server judges the client's certificate after the
		// client's side of the handshake is done: its verdict is the first
		// thing to read (an alert, or HTTP/2 settings when it is accepted).
		_ = conn.SetReadDeadline(time.Now().Add(min(timeout, time.Second)))
		_, err = conn.Read(make([]byte, 1))
		if err == nil || isTimeout(err) {
			return "", ""
		}
	}
	var verr *tls.CertificateVerificationError
	var rec tls.RecordHeaderError
	var op *net.OpError
	switch {
	case errors.As(err, &verr):
		var ua x509.UnknownAuthorityError
		var he x509.HostnameError
		var ie x509.CertificateInvalidError
		switch {
		case errors.As(err, &ua):
			return fmt.Sprintf("etcd at %s: its TLS certificate is signed by an authority this client does not trust (%v): set config key etcd.tls.ca to the CA that signed etcd's certificate", ep, verr.Err), ""
		case errors.As(err, &he):
			return fmt.Sprintf("etcd at %s: its TLS certificate does not name this host (%v): use an endpoint name the certificate holds (etcd.endpoints)", ep, verr.Err), ""
		case errors.As(err, &ie):
			return fmt.Sprintf("etcd at %s: its TLS certificate is not valid (%v)", ep, verr.Err), ""
		}
		return fmt.Sprintf("etcd at %s: its TLS certificate was not accepted (%v): check config key etcd.tls.ca", ep, verr.Err), ""
	case errors.As(err, &rec):
		return fmt.Sprintf("etcd at %s does not speak TLS (%v): write the endpoint as http://%s, or enable TLS on etcd", ep, err, host), ""
	case errors.As(err, &op) && op.Op == "remote error":
		// The server refused the handshake; a certificate alert means it
		// wants a client certificate it trusts.
		if !strings.Contains(op.Err.Error(), "certificate") {
			return fmt.Sprintf("etcd at %s refused the TLS handshake (%v)", ep, op.Err), ""
		}
		if !cert {
			return fmt.Sprintf("etcd at %s requires a client certificate (%v): set config keys etcd.tls.cert and etcd.tls.key", ep, op.Err), ""
		}
		return fmt.Sprintf("etcd at %s rejected this client certificate (%v): etcd.tls.cert must be signed by a CA in etcd's --trusted-ca-file", ep, op.Err), ""
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		// A plain etcd hangs up on a TLS hello without a word.
		if speaksPlainHTTP(ctx, host, timeout) {
			return fmt.Sprintf("etcd at %s does not speak TLS (it answers plain HTTP): write the endpoint as http://%s, or enable TLS on etcd", ep, host), ""
		}
	}
	return "", dialProblem(err)
}

// speaksPlainHTTP tells whether host answers an HTTP request without TLS.
func speaksPlainHTTP(ctx context.Context, host string, timeout time.Duration) bool {
	hc := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// probePlain tells whether a plain endpoint really speaks TLS.
func probePlain(ctx context.Context, ep, host string, timeout time.Duration) (problem, connErr string) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // only asks whether the server speaks TLS; nothing is sent
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", host)
	if err == nil {
		conn.Close()
	}
	var op *net.OpError
	if err == nil || (errors.As(err, &op) && op.Op == "remote error") {
		return fmt.Sprintf("etcd at %s speaks TLS: write the endpoint as https://%s and set config key etcd.tls.ca (and etcd.tls.cert/etcd.tls.key if etcd wants client certificates)", ep, host), ""
	}
	return "", dialProblem(err)
}

// dialProblem describes a failed TCP connection ("" for other errors).
func dialProblem(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "connect: timeout"
	}
	return ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
