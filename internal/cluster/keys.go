// Package cluster fixes the etcd key layout that JobManagers and
// TaskManagers share, and the values stored under it (see
// docs/format/etcd.md).
package cluster

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Prefix is the root of every key of cluster id.
func Prefix(id string) string { return "/ebbflow/" + id + "/" }

// TaskManagersPrefix holds one key per live TaskManager, under its lease.
func TaskManagersPrefix(id string) string { return Prefix(id) + "taskmanagers/" }

// TaskManagerKey is the key of TaskManager tm.
func TaskManagerKey(id, tm string) string { return TaskManagersPrefix(id) + tm }

// JobManagerKey holds, under the JobManager's session lease, where its REST
// API is reached: a standby forwards REST requests to the leader's.
func JobManagerKey(id, jm string) string { return Prefix(id) + "jobmanagers/" + jm }

// JobManagerInfo is the value under a JobManager's key.
type JobManagerInfo struct {
	ID   string `json:"id"`
	HTTP string `json:"http"` // host:port of the REST API
}

// RescalesKey holds the job's rescale history (a JSON list, newest last),
// written by the leader so that it survives a change of leader.
func RescalesKey(id string) string { return Prefix(id) + "rescales" }

// LeaderPrefix is the election prefix of the JobManagers.
func LeaderPrefix(id string) string { return Prefix(id) + "leader" }

// LatestCheckpointKey points at the latest committed checkpoint. Moving it
// (a compare-and-swap guarded by the leader key) is the commit point.
func LatestCheckpointKey(id string) string { return Prefix(id) + "checkpoints/latest" }

// JobKey holds the job's identity and status.
func JobKey(id string) string { return Prefix(id) + "job" }

// TaskManagerState is what a TaskManager says of itself.
type TaskManagerState string

const (
	TMRunning  TaskManagerState = "running"
	TMDraining TaskManagerState = "draining"
)

// TaskManagerInfo is the value under a TaskManager's key.
type TaskManagerInfo struct {
	ID          string           `json:"id"`
	Slots       int              `json:"slots"`
	ControlAddr string           `json:"controlAddr"`
	DataAddr    string           `json:"dataAddr"`
	MetricsAddr string           `json:"metricsAddr,omitempty"`
	State       TaskManagerState `json:"state"`
	StartedAt   time.Time        `json:"startedAt"`
}

// DecodeTaskManager parses a TaskManager key's value.
func DecodeTaskManager(key string, b []byte) (TaskManagerInfo, error) {
	var info TaskManagerInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("cluster: taskmanager key %s: %w", key, err)
	}
	if info.ID == "" {
		info.ID = key[strings.LastIndex(key, "/")+1:]
	}
	return info, nil
}

// JobStatus is the job's lifecycle state in etcd.
type JobStatus string

const (
	JobRunning  JobStatus = "running"
	JobFinished JobStatus = "finished"
	JobFailed   JobStatus = "failed"
)

// JobInfo is the value under JobKey.
type JobInfo struct {
	Job       string    `json:"job"`
	Args      []string  `json:"args"`
	Status    JobStatus `json:"status"`
	Attempt   int64     `json:"attempt"`
	Error     string    `json:"error,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// CheckpointPointer is the value under LatestCheckpointKey.
type CheckpointPointer struct {
	ID        int64     `json:"id"`
	Dir       string    `json:"dir"` // folder in checkpoint storage
	Savepoint bool      `json:"savepoint,omitempty"`
	At        time.Time `json:"at"`
}
