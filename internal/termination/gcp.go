package termination

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

const gcpPrefix = "/computeMetadata/v1/instance/"

// gcpKey is one watched metadata value and the ETag of its last answer.
type gcpKey struct {
	name   string
	etag   string
	value  string
	primed bool // value and etag are known, so the next GET may hang
	gone   bool // 404: not watched
}

// gcpWatcher watches the GCE metadata server with hanging GETs
// (?wait_for_change=true&last_etag=…&timeout_sec=…, header
// Metadata-Flavor: Google), which return as soon as the value changes:
//   - instance/preempted TRUE: Compute Engine is preempting this
//     preemptible or Spot VM (the guest gets the ACPI soft-off at the same
//     moment and about 30 s before the VM stops);
//   - instance/maintenance-event TERMINATE_ON_HOST_MAINTENANCE: host
//     maintenance will stop this VM (VMs with onHostMaintenance=TERMINATE,
//     e.g. with GPUs; about 60 s ahead). MIGRATE_ON_HOST_MAINTENANCE, a
//     live migration, keeps the VM running and is only logged.
type gcpWatcher struct {
	o         Options
	preempted *gcpKey
	maint     *gcpKey
}

func newGCP(o Options) *gcpWatcher {
	return &gcpWatcher{o: o, preempted: &gcpKey{name: "preempted"}, maint: &gcpKey{name: "maintenance-event"}}
}

func (g *gcpWatcher) Endpoint() string { return g.o.Endpoint }

func (g *gcpWatcher) get(ctx context.Context, k *gcpKey, wait bool) (code int, value, etag string, err error) {
	path := gcpPrefix + k.name
	u := g.o.Endpoint + path
	timeout := g.o.RequestTimeout
	if wait {
		q := url.Values{"wait_for_change": {"true"}, "timeout_sec": {strconv.Itoa(int(g.o.HangTimeout / time.Second))}}
		if k.etag != "" {
			q.Set("last_etag", k.etag)
		}
		u += "?" + q.Encode()
		timeout += g.o.HangTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := g.o.Client.Do(req)
	if err != nil {
		return 0, "", "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body)
	if err != nil {
		return 0, "", "", fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.Header.Get("Metadata-Flavor") != "Google" {
		return 0, "", "", permanent{fmt.Errorf("GET %s: HTTP %d without the header Metadata-Flavor: Google: not a GCE metadata server", path, resp.StatusCode)}
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, snippet(body), "", nil
	}
	return resp.StatusCode, strings.TrimSpace(body), resp.Header.Get("ETag"), nil
}

// evaluate turns a new value of k into a notice, or logs it.
func (g *gcpWatcher) evaluate(k *gcpKey, v string) *Notice {
	prev := k.value
	k.value = v
	switch k {
	case g.preempted:
		switch v {
		case "TRUE":
			return &Notice{Cloud: KindGCP, Reason: "gcp preempted"}
		case "FALSE":
		default:
			if v != prev {
				g.o.Logger.Warn("unexpected value of instance/preempted (want TRUE or FALSE)", zap.String("value", v))
			}
		}
	case g.maint:
		switch {
		case strings.HasPrefix(v, "TERMINATE_ON_HOST_MAINTENANCE"):
			return &Notice{Cloud: KindGCP, Reason: "gcp maintenance-event " + v + ": host maintenance will stop this VM"}
		case v != prev && v != "NONE":
			g.o.Logger.Info("gcp maintenance-event does not stop this VM; keep running", zap.String("value", v))
		}
	}
	return nil
}

func (g *gcpWatcher) Probe(ctx context.Context) (*Notice, error) {
	k := g.preempted
	var first string
	err := probeLoop(ctx, g.o, "GCE metadata server", func(ctx context.Context) error {
		code, v, etag, err := g.get(ctx, k, false)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			se := &statusError{op: "GET " + gcpPrefix + k.name, code: code, body: v}
			if code >= 400 && code < 500 {
				return permanent{se}
			}
			return se
		}
		k.etag, k.primed, first = etag, true, v
		return nil
	})
	if err != nil {
		return nil, err
	}
	n := g.evaluate(k, first)
	code, v, etag, err := g.get(ctx, g.maint, false)
	switch {
	case err != nil:
		g.o.Logger.Warn("gcp metadata: first read of instance/maintenance-event failed; the watch retries", zap.Error(err))
	case code == http.StatusOK:
		g.maint.etag, g.maint.primed = etag, true
		if m := g.evaluate(g.maint, v); n == nil {
			n = m
		}
	case code == http.StatusNotFound:
		g.maint.gone = true
		g.o.Logger.Info("gcp metadata has no instance/maintenance-event; watching preemption only")
	default:
		g.o.Logger.Warn("gcp metadata: instance/maintenance-event answered unexpectedly; the watch retries", zap.Int("status", code), zap.String("body", v))
	}
	return n, nil
}

func (g *gcpWatcher) Watch(ctx context.Context) (Notice, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	found := make(chan Notice, 2)
	var wg sync.WaitGroup
	for _, k := range []*gcpKey{g.preempted, g.maint} {
		if k.gone {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n := g.watchKey(ctx, k); n != nil {
				found <- *n
			}
		}()
	}
	select {
	case n := <-found:
		cancel()
		wg.Wait()
		return n, nil
	case <-ctx.Done():
		wg.Wait()
		return Notice{}, ctx.Err()
	}
}

// watchKey follows one key until it shows a notice (nil when ctx ends or
// the key does not exist).
func (g *gcpWatcher) watchKey(ctx context.Context, k *gcpKey) *Notice {
	b := backoff{first: g.o.PollInterval, max: g.o.MaxBackoff}
	for ctx.Err() == nil {
		hang := k.primed
		started := time.Now()
		code, v, etag, err := g.get(ctx, k, hang)
		if err == nil && code == http.StatusNotFound {
			g.o.Logger.Info("gcp metadata has no instance/" + k.name + "; not watching it")
			k.gone = true
			return nil
		}
		if err == nil && code != http.StatusOK {
			err = &statusError{op: "GET " + gcpPrefix + k.name, code: code, body: v}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d := b.next()
			g.o.Logger.Warn("gcp metadata request failed; retrying", zap.String("endpoint", g.o.Endpoint), zap.String("key", k.name), zap.Duration("backoff", d), zap.Error(err))
			if sleep(ctx, d) != nil {
				return nil
			}
			continue
		}
		b.reset()
		same := hang && etag != "" && etag == k.etag
		k.etag, k.primed = etag, true
		if n := g.evaluate(k, v); n != nil {
			return n
		}
		// A hanging GET that comes back at once with nothing new would
		// spin; the real server holds it for timeout_sec.
		if same && time.Since(started) < g.o.HangTimeout/2 {
			if sleep(ctx, g.o.PollInterval) != nil {
				return nil
			}
		}
	}
	return nil
}
