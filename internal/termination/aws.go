package termination

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// IMDSv2 paths and headers (EC2 instance metadata service).
const (
	awsTokenPath     = "/latest/api/token"
	awsLifecyclePath = "/latest/meta-data/autoscaling/target-lifecycle-state"
	awsSpotPath      = "/latest/meta-data/spot/instance-action"
	awsTTLHeader     = "X-aws-ec2-metadata-token-ttl-seconds"
	awsTokenHeader   = "X-aws-ec2-metadata-token"
)

// awsWatcher polls the instance metadata through IMDSv2: a session token
// from PUT /latest/api/token, sent with every GET, refreshed after three
// quarters of its TTL and whenever a GET is refused with 401.
//
// It reports:
//   - autoscaling/target-lifecycle-state Terminated: the Auto Scaling group
//     is terminating the instance (with a termination lifecycle hook the
//     instance waits in Terminating:Wait until the hook is completed);
//   - Warmed:Terminated, Warmed:Stopped, Warmed:Hibernated: the instance is
//     going into (or leaving) a warm pool stopped or terminated;
//     Warmed:Running after InService: a scale-in back into a running warm
//     pool, the instance leaves service;
//   - spot/instance-action present (200): a spot interruption notice
//     (terminate, stop or hibernate at the given time).
//
// InService, Standby, Detached and the other states are not terminations
// (the instance keeps running); they are logged when they change.
type awsWatcher struct {
	o Options

	mu        sync.Mutex
	token     string
	refreshAt time.Time

	// Touched only by Probe and then Watch, one after the other.
	inService   bool
	lastState   string
	noASGLogged bool
}

func newAWS(o Options) *awsWatcher { return &awsWatcher{o: o} }

func (a *awsWatcher) Endpoint() string { return a.o.Endpoint }

// fetchToken gets a new IMDSv2 session token. The token is never logged.
func (a *awsWatcher) fetchToken(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, a.o.Endpoint+awsTokenPath, nil)
	if err != nil {
		return err
	}
	ttl := int(a.o.TokenTTL / time.Second)
	req.Header.Set(awsTTLHeader, strconv.Itoa(ttl))
	resp, err := a.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", awsTokenPath, err)
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", awsTokenPath, err)
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{op: "PUT " + awsTokenPath, code: resp.StatusCode, body: snippet(body)}
	}
	tok := strings.TrimSpace(body)
	if tok == "" {
		return fmt.Errorf("PUT %s: empty token", awsTokenPath)
	}
	life := time.Duration(ttl) * time.Second
	if h := resp.Header.Get(awsTTLHeader); h != "" {
		if n, err := strconv.Atoi(h); err == nil && n > 0 && n < ttl {
			life = time.Duration(n) * time.Second
		}
	}
	a.mu.Lock()
	a.token, a.refreshAt = tok, a.o.Now().Add(life-life/4)
	a.mu.Unlock()
	return nil
}

// get GETs a metadata path with a valid token, fetching one first if there
// is none or it is due for refresh, and once more after a 401.
func (a *awsWatcher) get(ctx context.Context, path string) (int, string, error) {
	for attempt := 0; ; attempt++ {
		a.mu.Lock()
		tok, fresh := a.token, a.token != "" && a.o.Now().Before(a.refreshAt)
		a.mu.Unlock()
		if !fresh {
			if err := a.fetchToken(ctx); err != nil {
				return 0, "", err
			}
			a.mu.Lock()
			tok = a.token
			a.mu.Unlock()
		}
		code, body, err := a.do(ctx, path, tok)
		if err != nil {
			return 0, "", err
		}
		if code == http.StatusUnauthorized && attempt == 0 {
			a.o.Logger.Info("instance metadata refused the IMDSv2 token (401); fetching a new one", zap.String("path", path))
			a.mu.Lock()
			if a.token == tok {
				a.token = ""
			}
			a.mu.Unlock()
			continue
		}
		return code, body, nil
	}
}

func (a *awsWatcher) do(ctx context.Context, path, tok string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.o.Endpoint+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set(awsTokenHeader, tok)
	resp, err := a.o.Client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	return resp.StatusCode, body, nil
}

// check reads both items once. Both are read even if one fails, so a
// metadata error on one does not hide a notice on the other.
func (a *awsWatcher) check(ctx context.Context) (*Notice, error) {
	var errs []error
	code, body, err := a.get(ctx, awsLifecyclePath)
	switch {
	case err != nil:
		errs = append(errs, err)
	case code == http.StatusOK:
		if n := a.lifecycle(strings.TrimSpace(body)); n != nil {
			return n, nil
		}
	case code == http.StatusNotFound:
		if !a.noASGLogged {
			a.noASGLogged = true
			a.o.Logger.Info("instance metadata has no autoscaling/target-lifecycle-state: this instance is not in an Auto Scaling group; watching spot interruption notices")
		}
	default:
		errs = append(errs, &statusError{op: "GET " + awsLifecyclePath, code: code, body: snippet(body)})
	}
	code, body, err = a.get(ctx, awsSpotPath)
	switch {
	case err != nil:
		errs = append(errs, err)
	case code == http.StatusOK:
		return spotNotice(body), nil
	case code == http.StatusNotFound:
	default:
		errs = append(errs, &statusError{op: "GET " + awsSpotPath, code: code, body: snippet(body)})
	}
	return nil, errors.Join(errs...)
}

func (a *awsWatcher) lifecycle(state string) *Notice {
	prev := a.lastState
	a.lastState = state
	stop := func(why string) *Notice {
		return &Notice{Cloud: KindAWS, Reason: "aws autoscaling target-lifecycle-state " + state + why}
	}
	switch state {
	case "InService":
		a.inService = true
		return nil
	case "Terminated":
		return stop("")
	case "Warmed:Terminated", "Warmed:Stopped", "Warmed:Hibernated":
		return stop(" (the instance goes into a warm pool stopped or is terminated)")
	case "Warmed:Running":
		if a.inService {
			return stop(" (scale-in into the warm pool)")
		}
	}
	if state != prev {
		a.o.Logger.Info("autoscaling target-lifecycle-state is not a termination; keep running", zap.String("state", state))
	}
	return nil
}

func spotNotice(body string) *Notice {
	var ia struct {
		Action string `json:"action"`
		Time   string `json:"time"`
	}
	if err := json.Unmarshal([]byte(body), &ia); err != nil || ia.Action == "" {
		// Any answer there means an interruption: drain even if it does
		// not parse.
		return &Notice{Cloud: KindAWS, Reason: "aws spot interruption notice: " + snippet(body)}
	}
	return &Notice{Cloud: KindAWS, Reason: fmt.Sprintf("aws spot interruption notice: %s at %s", ia.Action, ia.Time)}
}

func (a *awsWatcher) Probe(ctx context.Context) (*Notice, error) {
	err := probeLoop(ctx, a.o, "EC2 instance metadata service (IMDSv2)", func(ctx context.Context) error {
		err := a.fetchToken(ctx)
		var se *statusError
		if errors.As(err, &se) && se.code >= 400 && se.code < 500 {
			// It answers and refuses: IMDS switched off (403), or not an
			// IMDSv2 service. Retrying will not help.
			return permanent{err}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	n, err := a.check(ctx)
	if err != nil {
		a.o.Logger.Warn("instance metadata: first check failed; the watch retries", zap.String("endpoint", a.o.Endpoint), zap.Error(err))
	}
	return n, nil
}

func (a *awsWatcher) Watch(ctx context.Context) (Notice, error) {
	b := backoff{first: a.o.PollInterval, max: a.o.MaxBackoff}
	var wait time.Duration
	for {
		if err := sleep(ctx, wait); err != nil {
			return Notice{}, err
		}
		n, err := a.check(ctx)
		if n != nil {
			return *n, nil
		}
		if ctx.Err() != nil {
			return Notice{}, ctx.Err()
		}
		if err != nil {
			wait = b.next()
			a.o.Logger.Warn("instance metadata check failed; retrying", zap.String("endpoint", a.o.Endpoint), zap.Duration("backoff", wait), zap.Error(err))
			continue
		}
		b.reset()
		wait = a.o.PollInterval
	}
}
