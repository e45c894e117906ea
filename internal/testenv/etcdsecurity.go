package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdOptions chooses how StartEtcdWith secures the server.
type EtcdOptions struct {
	// TLS serves clients over https:// with certificates from a throwaway
	// CA made in the test's temporary folder (Etcd.TLS names the files).
	TLS bool
	// ClientCertAuth (with TLS) makes etcd demand a client certificate
	// signed by that CA (--client-cert-auth).
	ClientCertAuth bool
	// Auth, when set, turns on etcd's password authentication after start.
	Auth *EtcdAuth
}

// EtcdAuth describes the user that EtcdOptions.Auth creates: a root user
// (random password, in Etcd.RootPassword) is made as etcd requires, then
// User with a role of the same name that may read and write the keys under
// Prefix and nothing else; then authentication is enabled.
type EtcdAuth struct {
	User     string
	Password string
	Prefix   string // e.g. "/ebbflow/" or "/ebbflow/<cluster.id>/"
}

// EtcdTLS is the TLS material of a server started with EtcdOptions.TLS.
type EtcdTLS struct {
	CA *CA // signed the server's and the client's certificates
	// ServerCert/ServerKey: the server's pair, for 127.0.0.1 and localhost.
	ServerCert, ServerKey string
	// ClientCert/ClientKey: a client pair (CN "ebbflow") the server trusts.
	ClientCert, ClientKey string
}

func newEtcdTLS(t testing.TB) *EtcdTLS {
	t.Helper()
	ca := NewCA(t, "ebbflow-test-etcd-ca")
	x := &EtcdTLS{CA: ca}
	x.ServerCert, x.ServerKey = ca.Issue(t, "etcd-server", true, "127.0.0.1", "localhost")
	x.ClientCert, x.ClientKey = ca.Issue(t, "ebbflow", false)
	return x
}

func (e *Etcd) securityArgs() []string {
	var a []string
	if e.TLS != nil {
		a = append(a, "--cert-file", e.TLS.ServerCert, "--key-file", e.TLS.ServerKey)
		if e.opts.ClientCertAuth {
			a = append(a, "--client-cert-auth", "--trusted-ca-file", e.TLS.CA.CertFile)
		}
	}
	if e.opts.Auth != nil {
		// Cheapest bcrypt: users are made per test; etcd's default of 10
		// would make each authentication slow on a small CI machine.
		a = append(a, "--bcrypt-cost", "4")
	}
	return a
}

// ClientTLS is the TLS configuration a trusted client uses (the CA, and the
// client certificate); nil for a plain-HTTP server.
func (e *Etcd) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	if e.TLS == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(e.TLS.CA.cert)
	pair, err := tls.LoadX509KeyPair(e.TLS.ClientCert, e.TLS.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

func (e *Etcd) healthClient(t testing.TB) *http.Client {
	t.Helper()
	if e.TLS == nil {
		return http.DefaultClient
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: e.ClientTLS(t)}}
}

// Client returns an etcd client for the server (TLS as a trusted client;
// user and password may be empty), closed when the test ends.
func (e *Etcd) Client(t testing.TB, user, password string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.URL}, DialTimeout: 10 * time.Second, TLS: e.ClientTLS(t), Logger: zap.NewNop(),
		Username: user, Password: password})
	if err != nil {
		t.Fatalf("etcd client for %s: %v", e.URL, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *Etcd) enableAuth(t testing.TB, a EtcdAuth) {
	t.Helper()
	if a.User == "" || a.User == "root" || a.Password == "" || a.Prefix == "" {
		t.Fatalf("testenv: EtcdAuth needs a User other than root, a Password and a Prefix, got user %q prefix %q", a.User, a.Prefix)
	}
	e.RootPassword = randomHex(t, 16)
	c := e.Client(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("testenv: etcd auth setup, %s: %v", what, err)
		}
	}
	_, err := c.UserAdd(ctx, "root", e.RootPassword)
	step("add user root", err)
	_, err = c.UserGrantRole(ctx, "root", "root")
	step("grant role root", err)
	_, err = c.RoleAdd(ctx, a.User)
	step("add role "+a.User, err)
	_, err = c.RoleGrantPermission(ctx, a.User, a.Prefix, clientv3.GetPrefixRangeEnd(a.Prefix), clientv3.PermissionType(clientv3.PermReadWrite))
	step("grant readwrite on "+a.Prefix, err)
	_, err = c.UserAdd(ctx, a.User, a.Password)
	step("add user "+a.User, err)
	_, err = c.UserGrantRole(ctx, a.User, a.User)
	step("grant role to "+a.User, err)
	_, err = c.AuthEnable(ctx)
	step("enable auth", err)
}

// AddUser creates (as root, on a server with auth enabled) a user with a
// role of the same name granted perm on the keys under prefix — for tests
// of users with too few rights.
func (e *Etcd) AddUser(t testing.TB, user, password, prefix string, perm clientv3.PermissionType) {
	t.Helper()
	c := e.Client(t, "root", e.RootPassword)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.RoleAdd(ctx, user); err != nil {
		t.Fatalf("testenv: add role %s: %v", user, err)
	}
	if _, err := c.RoleGrantPermission(ctx, user, prefix, clientv3.GetPrefixRangeEnd(prefix), perm); err != nil {
		t.Fatalf("testenv: grant %v on %s to %s: %v", perm, prefix, user, err)
	}
	if _, err := c.UserAdd(ctx, user, password); err != nil {
		t.Fatalf("testenv: add user %s: %v", user, err)
	}
	if _, err := c.UserGrantRole(ctx, user, user); err != nil {
		t.Fatalf("testenv: grant role %s: %v", user, err)
	}
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// CA is a throwaway certificate authority whose files live in a test's
// temporary folder.
type CA struct {
	CertFile string // the CA certificate, PEM
	dir      string
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA valid for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{dir: t.TempDir(), cert: cert, key: key}
	ca.CertFile = filepath.Join(ca.dir, name+".crt")
	writePEM(t, ca.CertFile, "CERTIFICATE", der, 0o644)
	return ca
}

// Issue signs a certificate with common name cn — for a server (with the
// hosts, IPs or DNS names, as SANs) or a client — and returns the PEM
// files of the certificate and its key.
func (ca *CA) Issue(t testing.TB, cn string, server bool, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, cn+".crt"), filepath.Join(ca.dir, cn+".key")
	writePEM(t, certFile, "CERTIFICATE", der, 0o644)
	writePEM(t, keyFile, "PRIVATE KEY", kb, 0o600)
	return certFile, keyFile
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}
