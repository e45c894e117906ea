package ebbflow

import (
	"context"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/ebbflow/ebbflow/internal/cli"
	"github.com/ebbflow/ebbflow/internal/graph"
)

// App is a program that bundles one or more jobs and serves ebbflow's
// command line (local, jobmanager, taskmanager, ...).
type App struct {
	name string
	jobs map[string]*jobDef
}

type jobDef struct {
	name, desc string
	newArgs    func() any
	build      func(j *Job, args any) error
}

// NewApp creates an application called name.
func NewApp(name string) *App { return &App{name: name, jobs: map[string]*jobDef{}} }

// Register adds a job. Its arguments are the exported fields of A that
// carry a `flag:"name"` tag (with optional `usage:"..."` and `default:"..."`
// tags); supported field types are string, bool, int, int64, float64,
// time.Duration and []string. If *A has a `Validate() error` method it runs
// before the job starts. build fills in the job graph.
func Register[A any](app *App, name, description string, build func(job *Job, args *A) error) {
	if _, dup := app.jobs[name]; dup {
		panic(fmt.Sprintf("ebbflow: job %q registered twice", name))
	}
	app.jobs[name] = &jobDef{
		name: name, desc: description,
		newArgs: func() any { return new(A) },
		build:   func(j *Job, a any) error { return build(j, a.(*A)) },
	}
}

// Main runs the command line and exits.
func (a *App) Main() {
	os.Exit(cli.Main(a.name, a, os.Args[1:]))
}

// Run runs the command line with args and returns the exit code (for tests
// and for programs that embed ebbflow's CLI).
func (a *App) Run(args []string) int { return cli.Main(a.name, a, args) }

// RunContext is Run with a context (cancelling it interrupts the command as
// SIGINT would) and explicit output streams.
func (a *App) RunContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Run(ctx, a.name, a, args, stdout, stderr)
}

// Names lists the registered jobs.
func (a *App) Names() []string {
	n := make([]string, 0, len(a.jobs))
	for k := range a.jobs {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Describe returns a job's description.
func (a *App) Describe(name string) string {
	if d, ok := a.jobs[name]; ok {
		return d.desc
	}
	return ""
}

// FlagSet returns the flags of a job, bound to a fresh argument value.
func (a *App) FlagSet(name string) (*pflag.FlagSet, any, error) {
	d, ok := a.jobs[name]
	if !ok {
		return nil, nil, fmt.Errorf("unknown job %q; known jobs: %s", name, strings.Join(a.Names(), ", "))
	}
	args := d.newArgs()
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	if err := bindFlags(fs, args); err != nil {
		return nil, nil, fmt.Errorf("job %q: %w", name, err)
	}
	return fs, args, nil
}

// Build parses a job's arguments and builds its graph.
func (a *App) Build(name string, argv []string) (*graph.Graph, error) {
	fs, args, err := a.FlagSet(name)
	if err != nil {
		return nil, err
	}
	fs.SetOutput(discard{})
	if err := fs.Parse(argv); err != nil {
		return nil, fmt.Errorf("job %s: %w", name, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("job %s: unexpected argument %q", name, fs.Arg(0))
	}
	if v, ok := args.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("job %s: %w", name, err)
		}
	}
	j := newJob(name)
	if err := a.jobs[name].build(j, args); err != nil {
		return nil, fmt.Errorf("job %s: %w", name, err)
	}
	if j.err != nil {
		return nil, fmt.Errorf("job %s: %w", name, j.err)
	}
	if err := j.g.Validate(); err != nil {
		return nil, err
	}
	return j.g, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

var durationType = reflect.TypeOf(time.Duration(0))

func bindFlags(fs *pflag.FlagSet, args any) error {
	v := reflect.ValueOf(args).Elem()
	if v.Kind() != reflect.Struct {
		return fmt.Errorf("arguments type %T is not a struct", args)
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("flag")
		if name == "" || !f.IsExported() {
			continue
		}
		usage, def := f.Tag.Get("usage"), f.Tag.Get("default")
		p := v.Field(i).Addr().Interface()
		bad := func(err error) error {
			return fmt.Errorf("flag --%s: default %q: %w", name, def, err)
		}
		switch ptr := p.(type) {
		case *string:
			fs.StringVar(ptr, name, def, usage)
		case *bool:
			b := false
			if def != "" {
				var err error
				if b, err = strconv.ParseBool(def); err != nil {
					return bad(err)
				}
			}
			fs.BoolVar(ptr, name, b, usage)
		case *int:
			n := 0
			if def != "" {
				var err error
				if n, err = strconv.Atoi(def); err != nil {
					return bad(err)
				}
			}
			fs.IntVar(ptr, name, n, usage)
		case *int64:
			var n int64
			if def != "" {
				var err error
				if n, err = strconv.ParseInt(def, 10, 64); err != nil {
					return bad(err)
				}
			}
			fs.Int64Var(ptr, name, n, usage)
		case *float64:
			var n float64
			if def != "" {
				var err error
				if n, err = strconv.ParseFloat(def, 64); err != nil {
					return bad(err)
				}
			}
			fs.Float64Var(ptr, name, n, usage)
		case *time.Duration:
			var d time.Duration
			if def != "" {
				var err error
				if d, err = time.ParseDuration(def); err != nil {
					return bad(err)
				}
			}
			fs.DurationVar(ptr, name, d, usage)
		case *[]string:
			var l []string
			if def != "" {
				l = strings.Split(def, ",")
			}
			fs.StringSliceVar(ptr, name, l, usage)
		default:
			return fmt.Errorf("flag --%s: unsupported field type %s", name, f.Type)
		}
	}
	return nil
}
