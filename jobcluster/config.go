// Package jobcluster is the JobManager process role: it wins leadership
// through an etcd election, follows the TaskManagers registered in etcd,
// deploys the job's tasks onto their slots, coordinates checkpoints and
// commits each one by moving the etcd pointer with a transaction guarded by
// its leader key, restarts the job from the latest checkpoint after a
// failure, and ends when a bounded job's output is committed.
package jobcluster

import (
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ebbflow/ebbflow/checkpoint"
	"github.com/ebbflow/ebbflow/internal/graph"
)

// Config configures a JobManager.
type Config struct {
	Cluster string
	ID      string // this JobManager's name, for the election value and logs
	Job     string
	Args    []string
	Graph   *graph.Graph
	Etcd    *clientv3.Client
	Storage checkpoint.Storage

	CheckpointInterval time.Duration // 0 = only the final checkpoint
	CheckpointTimeout  time.Duration
	Retain             int // completed checkpoints kept
	// Parallelism caps the job's parallelism (0 = all slots, up to max parallelism).
	Parallelism int
	// MinParallelism: with fewer usable slots the job waits.
	MinParallelism int
	// Cooldown is the least time between two planned rescales.
	Cooldown time.Duration
	// DrainTimeout bounds a graceful scale-in's savepoint; past it the job
	// restores from the latest checkpoint instead.
	DrainTimeout time.Duration
	// WaitForSlots is how many slots to wait for before the first
	// deployment (0 = deploy once the slot count has been stable for
	// SlotsStable).
	WaitForSlots   int
	SlotsStable    time.Duration
	SessionTTL     time.Duration
	RestartDelay   time.Duration
	MaxRestarts    int    // consecutive failed attempts before the job fails
	FromSavepoint  string // folder of a savepoint to start from when the job has no checkpoint
	AllowDropState bool
	DeployTimeout  time.Duration
	// TolerableCheckpointFailures is how many checkpoints in a row may fail
	// (declined, expired, commit failed) before the attempt is restarted
	// from the latest completed checkpoint.
	TolerableCheckpointFailures int
	Logger                      *zap.Logger
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if c.Cluster == "" {
		return errors.New("jobmanager: cluster.id is empty")
	}
	if c.Graph == nil || c.Etcd == nil || c.Storage == nil {
		return errors.New("jobmanager: graph, etcd client and checkpoint storage are required")
	}
	if c.CheckpointInterval < 0 {
		return fmt.Errorf("jobmanager: checkpoint interval %v is negative", c.CheckpointInterval)
	}
	if c.CheckpointTimeout <= 0 {
		c.CheckpointTimeout = 2 * time.Minute
	}
	if c.Retain <= 0 {
		c.Retain = 3
	}
	if c.SlotsStable <= 0 {
		c.SlotsStable = time.Second
	}
	if c.MinParallelism <= 0 {
		c.MinParallelism = 1
	}
	if c.Cooldown < 0 || c.DrainTimeout < 0 {
		return errors.New("jobmanager: cooldown and drain timeout must not be negative")
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 20 * time.Second
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 5 * time.Second
	}
	if c.RestartDelay <= 0 {
		c.RestartDelay = 500 * time.Millisecond
	}
	if c.MaxRestarts <= 0 {
		c.MaxRestarts = 10
	}
	if c.TolerableCheckpointFailures <= 0 {
		c.TolerableCheckpointFailures = 5
	}
	if c.DeployTimeout <= 0 {
		c.DeployTimeout = time.Minute
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.ID == "" {
		c.ID = "jobmanager"
	}
	return nil
}
