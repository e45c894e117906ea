// Package control is the protocol between the JobManager and TaskManagers:
// length-prefixed JSON messages over one TCP connection that the leader
// JobManager opens to each TaskManager. Every message from the JobManager
// carries the leader's epoch (the revision of its etcd leader key); a
// TaskManager refuses an epoch older than the newest it has seen.
package control

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ebbflow/ebbflow/checkpoint"
)

// Message kinds.
const (
	KindHello          = "hello"           // JM → TM: epoch handshake
	KindHelloOK        = "hello-ok"        // TM → JM
	KindRefused        = "refused"         // TM → JM: stale epoch
	KindDeploy         = "deploy"          // JM → TM
	KindTrigger        = "trigger"         // JM → TM
	KindNotify         = "notify"          // JM → TM
	KindFinish         = "finish"          // JM → TM
	KindCancel         = "cancel"          // JM → TM
	KindRelease        = "release"         // JM → TM: you may exit (drained)
	KindTaskRunning    = "task-running"    // TM → JM
	KindAck            = "ack"             // TM → JM
	KindDecline        = "decline"         // TM → JM
	KindSourceFinished = "source-finished" // TM → JM
	KindTaskFinished   = "task-finished"   // TM → JM
	KindTaskFailed     = "task-failed"     // TM → JM
	KindFirstRecord    = "first-record"    // TM → JM
	KindStats          = "stats"           // TM → JM
	KindCancelled      = "cancelled"       // TM → JM: all tasks of an attempt stopped
)

// OutputSpec is one network output edge of a task.
type OutputSpec struct {
	Edge    int      `json:"edge"`
	Addrs   []string `json:"addrs"`
	Targets []int    `json:"targets"`
}

// InputSpec is one network input edge of a task.
type InputSpec struct {
	Edge      int `json:"edge"`
	Producers int `json:"producers"`
}

// TaskSpec is one task of a deployment.
type TaskSpec struct {
	Chain   int          `json:"chain"`
	Subtask int          `json:"subtask"`
	Inputs  []InputSpec  `json:"inputs,omitempty"`
	Outputs []OutputSpec `json:"outputs,omitempty"`
}

// Deploy starts the tasks of one attempt on a TaskManager.
type Deploy struct {
	Job            string     `json:"job"`
	Args           []string   `json:"args"`
	Attempt        int64      `json:"attempt"`
	Parallelism    int        `json:"parallelism"`
	MaxParallelism int        `json:"maxParallelism"`
	CheckpointURL  string     `json:"checkpointUrl"`
	RestoreDir     string     `json:"restoreDir,omitempty"` // folder of the snapshot to restore
	RestoreID      int64      `json:"restoreId,omitempty"`
	Tasks          []TaskSpec `json:"tasks"`
}

// Stats are a TaskManager's counters for one attempt.
type Stats struct {
	SourceRecords int64 `json:"sourceRecords"`
	SinkRecords   int64 `json:"sinkRecords"`
}

// Message is the envelope of every control message.
type Message struct {
	Kind    string             `json:"kind"`
	Epoch   int64              `json:"epoch,omitempty"`
	TM      string             `json:"tm,omitempty"`
	Attempt int64              `json:"attempt,omitempty"`
	ID      int64              `json:"id,omitempty"`
	Flags   byte               `json:"flags,omitempty"`
	Task    *checkpoint.TaskID `json:"task,omitempty"`
	Deploy  *Deploy            `json:"deploy,omitempty"`
	Ack     *checkpoint.Ack    `json:"ackData,omitempty"`
	Error   string             `json:"error,omitempty"`
	Fatal   bool               `json:"fatal,omitempty"` // a restart cannot fix this failure
	At      time.Time          `json:"at,omitzero"`
	Stats   *Stats             `json:"stats,omitempty"`
}

// MaxMessage bounds one message.
const MaxMessage = 64 << 20

// Conn is a message connection; Send is safe for concurrent use.
type Conn struct {
	c  net.Conn
	r  *bufio.Reader
	mu sync.Mutex
}

// NewConn wraps a TCP connection.
func NewConn(c net.Conn) *Conn { return &Conn{c: c, r: bufio.NewReader(c)} }

// Send writes one message.
func (c *Conn) Send(m *Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("control: encode %s: %w", m.Kind, err)
	}
	buf := make([]byte, 4, 4+len(b))
	binary.LittleEndian.PutUint32(buf, uint32(len(b)))
	buf = append(buf, b...)
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write(buf); err != nil {
		return fmt.Errorf("control: send %s to %s: %w", m.Kind, c.c.RemoteAddr(), err)
	}
	return nil
}

// Recv reads one message.
func (c *Conn) Recv() (*Message, error) {
	var lb [4]byte
	if _, err := io.ReadFull(c.r, lb[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(lb[:])
	if n > MaxMessage {
		return nil, fmt.Errorf("control: message of %d bytes from %s", n, c.c.RemoteAddr())
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return nil, err
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("control: decode message from %s: %w", c.c.RemoteAddr(), err)
	}
	return &m, nil
}

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() string { return c.c.RemoteAddr().String() }
