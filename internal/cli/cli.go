// Package cli is ebbflow's command line: cobra commands for the process
// roles (local, jobmanager, taskmanager) over the jobs an application
// registered. Flags and configuration live here and in cmd/; everything
// below takes plain Config structs.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ebbflow/ebbflow/internal/graph"
)

// Jobs is the registry of an application's jobs.
type Jobs interface {
	graph.Registry
	Names() []string
	Describe(name string) string
	FlagSet(name string) (*pflag.FlagSet, any, error)
}

// exitError carries an exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// usageError marks bad command-line input (exit code 2).
func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// Main runs the command line and returns the process exit code.
func Main(app string, jobs Jobs, args []string) int {
	return Run(context.Background(), app, jobs, args, os.Stdout, os.Stderr)
}

// newRoot builds the command tree (Run executes it; Resolve only parses).
func newRoot(app string, jobs Jobs, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           app,
		Short:         "ebbflow: a stateful stream processor whose job clusters scale themselves",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(localCommand(jobs, stdout, stderr), jobsCommand(jobs, stdout),
		jobmanagerCommand(jobs, stdout, stderr), taskmanagerCommand(jobs, stderr), savepointCommand(stdout), rescalesCommand(stdout), healthcheckCommand(stdout))
	return root
}

// Run runs the command line with its own context and output streams.
func Run(ctx context.Context, app string, jobs Jobs, args []string, stdout, stderr io.Writer) int {
	root := newRoot(app, jobs, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "error: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprint(stderr, root.UsageString())
		return 2
	}
	if strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") ||
		strings.Contains(err.Error(), "invalid argument") || strings.HasPrefix(err.Error(), "unknown shorthand") {
		fmt.Fprintf(stderr, "run '%s --help' for usage\n", app)
		return 2
	}
	return 1
}

func jobsCommand(jobs Jobs, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "jobs",
		Short: "List the jobs bundled in this binary and their flags",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, n := range jobs.Names() {
				fmt.Fprintf(stdout, "%s\t%s\n", n, jobs.Describe(n))
				if fs, _, err := jobs.FlagSet(n); err == nil {
					fmt.Fprint(stdout, indent(fs.FlagUsages()))
				}
			}
			return nil
		},
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if l != "" {
			b.WriteString("    " + l + "\n")
		}
	}
	return b.String()
}

// misplacedFlagHint explains an unknown job flag that is really a flag of
// the command (cluster flags go before the job name).
func misplacedFlagHint(err error, command string) string {
	msg := err.Error()
	i := strings.Index(msg, "unknown flag: --")
	if i < 0 {
		return ""
	}
	return fmt.Sprintf(" (flags of '%s' go before the job name; job flags after it)", command)
}

// splitJob takes JOB [job flags] from positional arguments (cluster flags
// are parsed by cobra before the job name; interspersed parsing is off).
func splitJob(jobs Jobs, args []string) (string, []string, error) {
	if len(args) == 0 {
		return "", nil, usageError("missing job name; known jobs: %s", strings.Join(jobs.Names(), ", "))
	}
	name := args[0]
	if _, _, err := jobs.FlagSet(name); err != nil {
		return "", nil, usageError("%v", err)
	}
	return name, args[1:], nil
}
