package cli

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// This file lets tooling outside the package check deployment files
// (deploy/kubernetes) against the real command line: which configuration
// keys exist, and what a server command would run with for a given argument
// list and environment — without running it.

// KeyInfo describes one configuration key (a row of the table in
// docs/configuration.md).
type KeyInfo struct {
	Key     string   // e.g. taskmanager.drain-timeout
	Env     string   // e.g. EBBFLOW_TASKMANAGER_DRAIN_TIMEOUT
	Flag    string   // flag name without dashes, "" = file/environment only
	Default string   // as written in the table
	Roles   []string // commands that use it: "jobmanager", "taskmanager"
	Secret  bool     // never logged; not to be given as a flag
}

// Keys lists every configuration key in table order.
func Keys() []KeyInfo {
	out := make([]KeyInfo, 0, len(keys))
	for _, k := range keys {
		out = append(out, KeyInfo{Key: k.Key, Env: envName(k.Key), Flag: k.Flag, Default: k.Default, Roles: roleNames(k.Roles), Secret: k.Secret})
	}
	return out
}

// envName is the EBBFLOW_* variable of a key.
func envName(key string) string {
	return "EBBFLOW_" + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(key))
}

func roleNames(roles string) []string {
	var out []string
	for _, r := range roles {
		switch r {
		case 'j':
			out = append(out, "jobmanager")
		case 't':
			out = append(out, "taskmanager")
		}
	}
	return out
}

// Resolved is the configuration a server command would run with, as it
// was when Resolve ran (later changes of the environment do not show).
type Resolved struct {
	Command string   // "jobmanager" or "taskmanager"
	Job     string   // jobmanager: the job's name
	JobArgs []string // jobmanager: the job's flags
	strs    map[string]string
	durs    map[string]time.Duration
	ints    map[string]int
}

func newResolved(cmd string, s *settings, role byte) *Resolved {
	r := &Resolved{Command: cmd, strs: map[string]string{}, durs: map[string]time.Duration{}, ints: map[string]int{}}
	for _, k := range keys {
		if !strings.ContainsRune(k.Roles, rune(role)) {
			continue
		}
		switch {
		case k.Secret:
			if s.str(k.Key) != "" {
				r.strs[k.Key] = "(secret)"
			}
		case k.Kind == kStrings:
			r.strs[k.Key] = strings.Join(s.list(k.Key), ",")
		default:
			r.strs[k.Key] = s.str(k.Key)
		}
		switch k.Kind {
		case kDuration:
			r.durs[k.Key] = s.dur(k.Key)
		case kInt:
			r.ints[k.Key] = s.num(k.Key)
		}
	}
	return r
}

// String is a key's resolved value (lists joined by commas; "" for a key
// the command does not use). A secret key's value is never returned: it
// reads "(secret)" when set.
func (r *Resolved) String(key string) string { return r.strs[key] }

// Duration is a duration key's resolved value.
func (r *Resolved) Duration(key string) time.Duration { return r.durs[key] }

// Int is an integer key's resolved value.
func (r *Resolved) Int(key string) int { return r.ints[key] }

// Resolve parses args (e.g. "taskmanager", "--slots", "2") exactly as the
// command line would — subcommand, flags, --config file, EBBFLOW_*
// variables of this process, defaults, and for jobmanager the job's name
// and flags — and returns the resulting configuration, or the error the
// command would stop with before doing anything. It neither connects to
// etcd or S3 nor reads secret files. Only the server roles (jobmanager,
// taskmanager) are accepted.
func Resolve(app string, jobs Jobs, args []string) (*Resolved, error) {
	root := newRoot(app, jobs, io.Discard, io.Discard)
	cmd, rest, err := root.Find(args)
	if err != nil {
		return nil, err
	}
	var role byte
	switch cmd.Name() {
	case "jobmanager":
		role = 'j'
	case "taskmanager":
		role = 't'
	default:
		return nil, fmt.Errorf("%q is not a server command (jobmanager, taskmanager)", strings.Join(args, " "))
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.Name(), err)
	}
	pos := cmd.Flags().Args()
	if err := cmd.ValidateArgs(pos); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.Name(), err)
	}
	s, err := loadSettings(cmd.Flags(), role)
	if err != nil {
		return nil, err
	}
	r := newResolved(cmd.Name(), s, role)
	if role == 'j' {
		name, jobArgs, err := splitJob(jobs, pos)
		if err != nil {
			return nil, err
		}
		fs, _, err := jobs.FlagSet(name)
		if err != nil {
			return nil, err
		}
		fs.SetOutput(io.Discard)
		if err := fs.Parse(jobArgs); err != nil {
			return nil, fmt.Errorf("job %s: %w%s", name, err, misplacedFlagHint(err, "jobmanager"))
		}
		if fs.NArg() > 0 {
			return nil, fmt.Errorf("job %s: unexpected argument %q", name, fs.Arg(0))
		}
		r.Job, r.JobArgs = name, jobArgs
	}
	return r, nil
}
