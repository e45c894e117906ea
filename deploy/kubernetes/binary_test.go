package kubernetes_test

// The facts the manifests are held against come from the ebbflow code
// itself, not from a copy: the configuration keys (internal/cli's table),
// argument parsing and configuration loading (cli.Resolve, the code the
// commands run), the bundled jobs (as cmd/ebbflow registers them), and the
// HTTP handlers the two roles serve (built for real and asked).

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/checkpoint"
	"github.com/ebbflow/ebbflow/examples/passthrough"
	"github.com/ebbflow/ebbflow/examples/statebench"
	"github.com/ebbflow/ebbflow/examples/wordcount"
	"github.com/ebbflow/ebbflow/internal/cli"
	"github.com/ebbflow/ebbflow/jobcluster"
	"github.com/ebbflow/ebbflow/taskmanager"
)

// bundledJobs are the packages whose jobs cmd/ebbflow registers;
// TestBundledJobsMatchTheBinary keeps the list equal to cmd/ebbflow/main.go.
var bundledJobs = map[string]func(*ebbflow.App){
	"github.com/ebbflow/ebbflow/examples/wordcount":   wordcount.Register,
	"github.com/ebbflow/ebbflow/examples/passthrough": passthrough.Register,
	"github.com/ebbflow/ebbflow/examples/statebench":  statebench.Register,
}

// binary is what the ebbflow binary accepts and serves.
type binary struct {
	app     *ebbflow.App
	keys    map[string]cli.KeyInfo // by environment variable
	keyByID map[string]cli.KeyInfo // by key
	etcd    *clientv3.Client       // never connected: handlers are built, not run
	tm      http.Handler
	jm      map[string]http.Handler // by job + args
	tmp     func() string
}

func newBinary(t *testing.T) *binary {
	t.Helper()
	app := ebbflow.NewApp("ebbflow")
	paths := make([]string, 0, len(bundledJobs))
	for p := range bundledJobs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		bundledJobs[p](app)
	}
	b := &binary{app: app, keys: map[string]cli.KeyInfo{}, keyByID: map[string]cli.KeyInfo{}, jm: map[string]http.Handler{}, tmp: t.TempDir}
	for _, k := range cli.Keys() {
		b.keys[k.Env] = k
		b.keyByID[k.Key] = k
	}
	// A client of an address nothing listens on: with no dial timeout it
	// does not connect until used, and the handlers do not use it.
	cl, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	b.etcd = cl
	tm, err := taskmanager.New(taskmanager.Config{ID: "manifest-check", Cluster: "manifest-check", Slots: 1,
		ControlBind: "127.0.0.1:0", DataBind: "127.0.0.1:0", LeaseTTL: 3 * time.Second, Etcd: cl, Jobs: app, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	b.tm = tm.Handler()
	return b
}

// jobManagerHandler builds a real JobManager for the job and serves its
// handler (nothing runs: no election, no etcd traffic).
func (b *binary) jobManagerHandler(job string, args []string) (http.Handler, error) {
	id := job + " " + strings.Join(args, " ")
	if h, ok := b.jm[id]; ok {
		return h, nil
	}
	g, err := b.app.Build(job, args)
	if err != nil {
		return nil, err
	}
	st, err := checkpoint.Open("file://" + b.tmp())
	if err != nil {
		return nil, err
	}
	jm, err := jobcluster.New(jobcluster.Config{Cluster: "manifest-check", ID: "manifest-check", Job: job, Args: args, Graph: g, Etcd: b.etcd, Storage: st, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	b.jm[id] = jm.Handler()
	return b.jm[id], nil
}

// serves reports whether h answers GET path with anything but "no such
// path" (404/405): /readyz of a JobManager that never started is 503, and
// served.
func serves(h http.Handler, path string) bool {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed
}

// metricTypes scrapes h's /metrics: metric family name → type (counter,
// gauge, histogram, ...).
func metricTypes(h http.Handler) (map[string]string, error) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %d", rec.Code)
	}
	out := map[string]string{}
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	return out, nil
}

// port returns the port of a host:port listen address.
func port(addr string) (int32, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return 0, fmt.Errorf("%q has no port", addr)
	}
	n, err := strconv.Atoi(addr[i+1:])
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q: bad port", addr)
	}
	return int32(n), nil
}

// TestBundledJobsMatchTheBinary keeps bundledJobs equal to the jobs the
// shipped binary registers, so the manifests' job names and job flags are
// checked against the real binary's.
func TestBundledJobsMatchTheBinary(t *testing.T) {
	const path = "../../cmd/ebbflow/main.go"
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]string{} // local name → path
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		name := p[strings.LastIndex(p, "/")+1:]
		if im.Name != nil {
			name = im.Name.Name
		}
		imports[name] = p
	}
	registered := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Register" {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && imports[id.Name] != "" && imports[id.Name] != "github.com/ebbflow/ebbflow" {
			registered[imports[id.Name]] = true
		}
		return true
	})
	if len(registered) == 0 {
		t.Fatalf("%s registers no job package (pkg.Register(app)); has the way jobs are bundled changed?", path)
	}
	for p := range registered {
		if bundledJobs[p] == nil {
			t.Errorf("%s registers the jobs of %s; add it to bundledJobs", path, p)
		}
	}
	for p := range bundledJobs {
		if !registered[p] {
			t.Errorf("bundledJobs has %s, which %s does not register", p, path)
		}
	}
}
