package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestDefaultHealthURLs(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if got, want := defaultHealthURLs(get), []string{"http://127.0.0.1:8081/readyz", "http://127.0.0.1:8082/readyz"}; !slices.Equal(got, want) {
		t.Fatalf("defaults: got %v, want %v", got, want)
	}
	env["EBBFLOW_JOBMANAGER_HTTP"] = "0.0.0.0:9081"
	env["EBBFLOW_TASKMANAGER_HTTP"] = "10.1.2.3:9082"
	if got, want := defaultHealthURLs(get), []string{"http://127.0.0.1:9081/readyz", "http://10.1.2.3:9082/readyz"}; !slices.Equal(got, want) {
		t.Fatalf("from the environment: got %v, want %v", got, want)
	}
	env["EBBFLOW_JOBMANAGER_HTTP"] = "[::]:7000"
	if got := defaultHealthURLs(get)[0]; got != "http://127.0.0.1:7000/readyz" {
		t.Fatalf("[::]:7000: got %s", got)
	}
}

// The health check passes if any URL answers 200 and otherwise fails with
// exit code 1, naming every URL it asked.
func TestHealthcheckCommand(t *testing.T) {
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer ready.Close()
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not registered", http.StatusServiceUnavailable)
	}))
	defer notReady.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL + "/readyz"
	closed.Close()

	cases := []struct {
		name  string
		urls  []string
		code  int
		wants []string
	}{
		{"one ready", []string{closedURL, ready.URL + "/readyz"}, 0, []string{"ready: " + ready.URL}},
		{"none ready", []string{closedURL, notReady.URL + "/readyz"}, 1, []string{closedURL, notReady.URL + "/readyz: 503", "not registered"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"healthcheck"}
			for _, u := range c.urls {
				args = append(args, "--url", u)
			}
			var out, errb strings.Builder
			code := Run(context.Background(), "ebbflow", nil, args, &out, &errb)
			if code != c.code {
				t.Fatalf("exit code %d, want %d; stdout %q, stderr %q", code, c.code, out.String(), errb.String())
			}
			for _, w := range c.wants {
				if !strings.Contains(out.String()+errb.String(), w) {
					t.Fatalf("output lacks %q: stdout %q, stderr %q", w, out.String(), errb.String())
				}
			}
		})
	}
}

func TestUnknownCommandPrintsUsage(t *testing.T) {
	var out, errb strings.Builder
	code := Run(context.Background(), "ebbflow", nil, []string{"taskmanagr"}, &out, &errb)
	if code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	for _, w := range []string{`unknown command "taskmanagr"`, "Available Commands:", "taskmanager", "jobmanager"} {
		if !strings.Contains(errb.String(), w) {
			t.Fatalf("stderr lacks %q:\n%s", w, errb.String())
		}
	}
}
