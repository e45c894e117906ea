package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// kind is a configuration value's type.
type kind int

const (
	kString kind = iota
	kStrings
	kInt
	kBool
	kDuration
	kFloat
)

// keyDef is one configuration key. The same name is used in the config
// file, as EBBFLOW_<NAME> (dots and dashes become underscores) and, where
// Flag is set, as a command-line flag. docs/configuration.md lists them all
// (a test keeps it complete).
type keyDef struct {
	Key     string
	Kind    kind
	Default string
	Flag    string // flag name, "" = file/env only
	Roles   string // which commands use it: j(obmanager), t(askmanager), s(avepoint)
	Secret  bool
	Usage   string
}

var keys = []keyDef{
	{Key: "etcd.endpoints", Kind: kStrings, Default: "127.0.0.1:2379", Flag: "etcd-endpoints", Roles: "jt", Usage: "etcd endpoints, comma-separated host:port (https:// for TLS)"},
	{Key: "etcd.username", Kind: kString, Flag: "etcd-username", Roles: "jt", Usage: "etcd user for password authentication"},
	{Key: "etcd.password", Kind: kString, Roles: "jt", Secret: true, Usage: "etcd password (file or environment only; never logged)"},
	{Key: "etcd.password-file", Kind: kString, Flag: "etcd-password-file", Roles: "jt", Usage: "file holding the etcd password"},
	{Key: "etcd.tls.cert", Kind: kString, Flag: "etcd-cert", Roles: "jt", Usage: "client certificate (PEM) for etcd TLS"},
	{Key: "etcd.tls.key", Kind: kString, Flag: "etcd-key", Roles: "jt", Usage: "client key (PEM) for etcd TLS"},
	{Key: "etcd.tls.ca", Kind: kString, Flag: "etcd-ca", Roles: "jt", Usage: "CA bundle (PEM) to verify etcd servers"},
	{Key: "etcd.dial-timeout", Kind: kDuration, Default: "5s", Roles: "jt", Usage: "timeout of one connection attempt to etcd"},
	{Key: "etcd.startup-timeout", Kind: kDuration, Default: "60s", Flag: "etcd-startup-timeout", Roles: "jt", Usage: "how long to retry an unreachable etcd at start before giving up"},
	{Key: "cluster.id", Kind: kString, Default: "default", Flag: "cluster-id", Roles: "jt", Usage: "cluster id: all keys live under /ebbflow/<cluster.id>/, so one etcd can serve several clusters"},
	{Key: "checkpoint.dir", Kind: kString, Flag: "checkpoint-dir", Roles: "jt", Usage: "checkpoint storage: file:///path or s3://bucket/prefix (required)"},
	{Key: "checkpoint.interval", Kind: kDuration, Default: "10s", Flag: "checkpoint-interval", Roles: "j", Usage: "time between checkpoints (0 = only the final one)"},
	{Key: "checkpoint.timeout", Kind: kDuration, Default: "2m", Roles: "j", Usage: "a checkpoint not complete after this is abandoned"},
	{Key: "checkpoint.retained", Kind: kInt, Default: "3", Roles: "j", Usage: "completed checkpoints to keep"},
	{Key: "checkpoint.tolerable-failures", Kind: kInt, Default: "5", Roles: "j", Usage: "checkpoints in a row that may fail (e.g. S3 down) before the job restarts from the latest completed one"},
	{Key: "s3.endpoint", Kind: kString, Flag: "s3-endpoint", Roles: "jt", Usage: "S3 endpoint host:port (for s3:// checkpoint.dir)"},
	{Key: "s3.region", Kind: kString, Default: "us-east-1", Roles: "jt", Usage: "S3 region"},
	{Key: "s3.access-key", Kind: kString, Roles: "jt", Usage: "S3 access key"},
	{Key: "s3.secret-key", Kind: kString, Roles: "jt", Secret: true, Usage: "S3 secret key (file or environment only; never logged)"},
	{Key: "s3.secret-key-file", Kind: kString, Flag: "s3-secret-key-file", Roles: "jt", Usage: "file holding the S3 secret key"},
	{Key: "s3.tls", Kind: kBool, Default: "true", Flag: "s3-tls", Roles: "jt", Usage: "use HTTPS to reach S3"},
	{Key: "s3.ca-file", Kind: kString, Roles: "jt", Usage: "CA bundle (PEM) to verify the S3 endpoint"},
	{Key: "s3.create-bucket", Kind: kBool, Default: "false", Flag: "s3-create-bucket", Roles: "jt", Usage: "create the bucket if it does not exist"},
	{Key: "jobmanager.id", Kind: kString, Flag: "id", Roles: "j", Usage: "this JobManager's name (default: hostname-pid)"},
	{Key: "jobmanager.http", Kind: kString, Default: ":8081", Flag: "http", Roles: "j", Usage: "address of the REST API, /metrics, /livez and /readyz"},
	{Key: "jobmanager.http-advertise", Kind: kString, Flag: "http-advertise", Roles: "j", Usage: "host:port where the other JobManagers reach this one's REST API: a standby forwards REST requests to the leader (default: the http address, with this host's name when the host part is empty)"},
	{Key: "jobmanager.session-ttl", Kind: kDuration, Default: "5s", Roles: "j", Usage: "TTL of the leader's etcd session: a dead leader is replaced after this"},
	{Key: "jobmanager.parallelism", Kind: kInt, Default: "0", Flag: "parallelism", Roles: "j", Usage: "cap on the job's parallelism (0 = every slot, up to max parallelism)"},
	{Key: "jobmanager.min-parallelism", Kind: kInt, Default: "1", Flag: "min-parallelism", Roles: "j", Usage: "with fewer usable slots the job waits"},
	{Key: "jobmanager.stabilization", Kind: kDuration, Default: "2s", Roles: "j", Usage: "the slot count must be stable this long before a (re)deployment: TaskManagers arrive in bursts"},
	{Key: "jobmanager.cooldown", Kind: kDuration, Default: "10s", Roles: "j", Usage: "least time between two planned rescales (draining TaskManagers override it)"},
	{Key: "jobmanager.drain-timeout", Kind: kDuration, Default: "20s", Roles: "j", Usage: "a drain's savepoint not done by then falls back to the latest checkpoint; keep below taskmanager.drain-timeout"},
	{Key: "jobmanager.max-restarts", Kind: kInt, Default: "10", Roles: "j", Usage: "consecutive failed attempts before the job fails"},
	{Key: "jobmanager.from-savepoint", Kind: kString, Flag: "from-savepoint", Roles: "j", Usage: "savepoint folder (in checkpoint storage) to start from when the job has no checkpoint"},
	{Key: "jobmanager.allow-dropped-state", Kind: kBool, Default: "false", Flag: "allow-dropped-state", Roles: "j", Usage: "restore even if the snapshot holds state of operators the job no longer has"},
	{Key: "taskmanager.id", Kind: kString, Flag: "id", Roles: "t", Usage: "this TaskManager's id (default: hostname-pid)"},
	{Key: "taskmanager.slots", Kind: kInt, Default: "1", Flag: "slots", Roles: "t", Usage: "slots offered; each runs one subtask of every chain"},
	{Key: "taskmanager.bind", Kind: kString, Default: ":6121", Flag: "bind", Roles: "t", Usage: "control listen address"},
	{Key: "taskmanager.advertise", Kind: kString, Flag: "advertise", Roles: "t", Usage: "control address others dial (default: bind address, with this host's name when the host part is empty)"},
	{Key: "taskmanager.data-bind", Kind: kString, Default: ":6122", Flag: "data-bind", Roles: "t", Usage: "data plane listen address"},
	{Key: "taskmanager.data-advertise", Kind: kString, Flag: "data-advertise", Roles: "t", Usage: "data address others dial (default like advertise)"},
	{Key: "taskmanager.http", Kind: kString, Default: ":8082", Flag: "http", Roles: "t", Usage: "address of /metrics, /livez and /readyz"},
	{Key: "taskmanager.drain-timeout", Kind: kDuration, Default: "25s", Roles: "t", Usage: "on SIGTERM, how long to wait for the JobManager to move the work and release this TaskManager (keep it below the grace period, e.g. Kubernetes' 30s)"},
	{Key: "taskmanager.lease-ttl", Kind: kDuration, Default: "3s", Roles: "t", Usage: "TTL of the TaskManager's etcd lease: a vanished TaskManager is noticed after this"},
	{Key: "taskmanager.termination-watch", Kind: kString, Default: "none", Flag: "termination-watch", Roles: "t", Usage: "none, aws or gcp: watch the VM's instance metadata for a termination notice (AWS Auto Scaling target-lifecycle-state, spot interruption; GCP preemption, terminating host maintenance) and drain as on SIGTERM (docs/deploy-aws.md, docs/deploy-gcp.md)"},
	{Key: "taskmanager.metadata-endpoint", Kind: kString, Flag: "metadata-endpoint", Roles: "t", Usage: "instance metadata base URL for taskmanager.termination-watch (default: http://169.254.169.254 for aws, http://metadata.google.internal for gcp)"},
	{Key: "taskmanager.metadata-poll-interval", Kind: kDuration, Default: "5s", Roles: "t", Usage: "how often the aws watcher polls the instance metadata, and the first retry delay after a metadata error (gcp watches with hanging GETs)"},
	{Key: "log.level", Kind: kString, Default: "info", Flag: "log-level", Roles: "jt", Usage: "debug, info, warn or error"},
	{Key: "log.format", Kind: kString, Default: "json", Flag: "log-format", Roles: "jt", Usage: "json or console"},
}

// settings is the resolved configuration of one command.
type settings struct {
	v *viper.Viper
}

func keyDefOf(key string) (keyDef, bool) {
	for _, k := range keys {
		if k.Key == key {
			return k, true
		}
	}
	return keyDef{}, false
}

// addConfigFlags registers the --config flag and the flags of a role.
func addConfigFlags(fs *pflag.FlagSet, role byte) {
	fs.String("config", "", "configuration file (YAML, JSON or TOML); keys as in docs/configuration.md")
	for _, k := range keys {
		if k.Flag == "" || !strings.ContainsRune(k.Roles, rune(role)) {
			continue
		}
		switch k.Kind {
		case kStrings:
			var def []string
			if k.Default != "" {
				def = strings.Split(k.Default, ",")
			}
			fs.StringSlice(k.Flag, def, k.Usage)
		case kBool:
			fs.Bool(k.Flag, k.Default == "true", k.Usage)
		default:
			fs.String(k.Flag, k.Default, k.Usage)
		}
	}
}

// loadSettings merges defaults, the config file, EBBFLOW_* variables and
// flags (in rising priority) and checks every value's type, naming the key.
// A config file key that no command knows is an error.
func loadSettings(fs *pflag.FlagSet, role byte) (*settings, error) {
	var file *viper.Viper
	if path, _ := fs.GetString("config"); path != "" {
		file = viper.New()
		file.SetConfigFile(path)
		if err := file.ReadInConfig(); err != nil {
			return nil, usageError("--config %s: %v", path, err)
		}
		var unknown []string
		for _, k := range file.AllKeys() {
			if _, ok := keyDefOf(k); !ok {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return nil, usageError("config file %s: unknown key %s (see docs/configuration.md)", path, strings.Join(unknown, ", "))
		}
	}
	v := viper.New()
	v.SetEnvPrefix("EBBFLOW")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	for _, k := range keys {
		if !strings.ContainsRune(k.Roles, rune(role)) {
			continue
		}
		def := any(k.Default)
		if file != nil && file.IsSet(k.Key) {
			def = file.Get(k.Key)
		}
		v.SetDefault(k.Key, def)
		_ = v.BindEnv(k.Key)
		if k.Flag != "" {
			if f := fs.Lookup(k.Flag); f != nil {
				_ = v.BindPFlag(k.Key, f)
			}
		}
	}
	for _, k := range keys {
		if !strings.ContainsRune(k.Roles, rune(role)) {
			continue
		}
		if err := checkType(k, v.Get(k.Key)); err != nil {
			return nil, usageError("%v", err)
		}
	}
	return &settings{v: v}, nil
}

func describeSource(k keyDef) string {
	s := k.Key + " (EBBFLOW_" + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(k.Key))
	if k.Flag != "" {
		s += ", --" + k.Flag
	}
	return s + ")"
}

func checkType(k keyDef, val any) error {
	if val == nil {
		return nil
	}
	str := fmt.Sprint(val)
	if s, ok := val.([]any); ok && k.Kind != kStrings {
		return fmt.Errorf("config key %s: want a single value, got a list %v", describeSource(k), s)
	}
	var err error
	switch k.Kind {
	case kInt:
		_, err = strconv.Atoi(str)
	case kBool:
		_, err = strconv.ParseBool(str)
	case kDuration:
		if str != "" && str != "0" {
			_, err = time.ParseDuration(str)
		}
	case kFloat:
		_, err = strconv.ParseFloat(str, 64)
	}
	if err != nil {
		shown := str
		if k.Secret {
			shown = "(secret)"
		}
		return fmt.Errorf("config key %s: invalid value %q: %v", describeSource(k), shown, err)
	}
	return nil
}

func (s *settings) str(key string) string { return strings.TrimSpace(s.v.GetString(key)) }
func (s *settings) num(key string) int    { return s.v.GetInt(key) }
func (s *settings) flag(key string) bool  { return s.v.GetBool(key) }
func (s *settings) dur(key string) time.Duration {
	d, _ := time.ParseDuration(s.v.GetString(key))
	if s.v.GetString(key) == "0" {
		return 0
	}
	return d
}
func (s *settings) list(key string) []string {
	var out []string
	for _, e := range s.v.GetStringSlice(key) {
		for _, p := range strings.Split(e, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// secret reads a secret from its key or from the file named by fileKey.
func (s *settings) secret(key, fileKey string) (string, error) {
	if p := s.str(fileKey); p != "" {
		b, err := os.ReadFile(filepath.Clean(p))
		if err != nil {
			return "", usageError("config key %s: read %s: %v", fileKey, p, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return s.str(key), nil
}

// defaultID is hostname-pid.
func defaultID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "ebbflow"
	}
	return h + "-" + strconv.Itoa(os.Getpid())
}
