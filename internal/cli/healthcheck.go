package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// healthcheckCommand is the container health check: images without a shell
// or curl (distroless, scratch) run the binary itself. It asks /readyz of
// the roles that could run in the container and succeeds when one of them
// answers 200.
func healthcheckCommand(stdout io.Writer) *cobra.Command {
	var urls []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck [--url URL]...",
		Short: "Exit 0 if this container's JobManager or TaskManager answers /readyz (for Docker's HEALTHCHECK)",
		Long: `Exit 0 if one of the URLs answers 200, else 1, naming each URL and what it answered.

Without --url it asks /readyz on 127.0.0.1 at the ports of jobmanager.http and
taskmanager.http, read from EBBFLOW_JOBMANAGER_HTTP and EBBFLOW_TASKMANAGER_HTTP
(defaults :8081 and :8082): Docker runs the check with the container's
environment. A server whose HTTP address is set by flag or config file needs
--url.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(urls) == 0 {
				urls = defaultHealthURLs(os.Getenv)
			}
			var fails []string
			for _, u := range urls {
				err := probeReady(cmd.Context(), u, timeout)
				if err == nil {
					fmt.Fprintf(stdout, "ready: %s\n", u)
					return nil
				}
				fails = append(fails, err.Error())
			}
			return &exitError{code: 1, err: fmt.Errorf("not ready: %s", strings.Join(fails, "; "))}
		},
	}
	cmd.Flags().StringSliceVar(&urls, "url", nil, "URL to ask (repeatable; default: /readyz of jobmanager.http and taskmanager.http on 127.0.0.1)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "timeout of each request")
	return cmd
}

// defaultHealthURLs are the /readyz URLs of jobmanager.http and
// taskmanager.http as set in the environment (or their defaults).
func defaultHealthURLs(getenv func(string) string) []string {
	var out []string
	for _, key := range []string{"jobmanager.http", "taskmanager.http"} {
		addr := getenv("EBBFLOW_" + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(key)))
		if addr == "" {
			k, _ := keyDefOf(key)
			addr = k.Default
		}
		out = append(out, "http://"+localAddr(addr)+"/readyz")
	}
	return out
}

// localAddr turns a listen address into one to dial from the same host:
// an empty or unspecified host becomes 127.0.0.1.
func localAddr(addr string) string {
	host, port, err := net.SplitHostPort(strings.TrimSpace(addr))
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func probeReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%s: %v", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
