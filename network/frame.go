// Package network is ebbflow's data plane: record buffers and stream events
// (barriers, watermarks, end of stream) travel between tasks over TCP, one
// connection per channel (producer subtask → consumer subtask of one edge),
// with credit-based flow control: a producer sends a data buffer only when
// the consumer has granted a credit for it, and the consumer grants one more
// each time it has processed a buffer. Memory per channel is therefore
// bounded by credits × buffer size, and a slow consumer slows its producers.
//
// Wire format (see docs/format/network.md): after a hello frame, every frame
// is a 4-byte little-endian length n, then n bytes: a type byte and the body.
package network

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Frame types.
const (
	FrameData      byte = 1 // body: framed records
	FrameBarrier   byte = 2 // body: u64 checkpoint id, u8 flags
	FrameEOS       byte = 3 // body: empty
	FrameWatermark byte = 4 // body: i64 event time (reserved for event time)
	FrameCredit    byte = 5 // consumer → producer; body: u32 credits
)

// Barrier flags.
const (
	// BarrierSavepoint marks a barrier of a savepoint.
	BarrierSavepoint byte = 1
	// BarrierStop marks a stop-with-savepoint barrier: sources emit nothing
	// after it.
	BarrierStop byte = 2
)

// headerLen is the length prefix plus the type byte.
const headerLen = 5

// MaxFrame bounds a frame so a corrupt length cannot allocate gigabytes.
const MaxFrame = 64 << 20

// ErrProtocol marks a peer that broke the wire format.
var ErrProtocol = errors.New("network: protocol error")

// Hello is the first frame on a data connection, from producer to consumer.
type Hello struct {
	Magic    string `json:"magic"`
	Job      string `json:"job"`
	Attempt  int64  `json:"attempt"`
	Chain    int    `json:"chain"` // consumer chain
	Edge     int    `json:"edge"`
	From     int    `json:"from"`
	To       int    `json:"to"`
	Channels int    `json:"channels"` // number of producer subtasks of the edge
}

const helloMagic = "ebbflow-data/1"

// GateKey identifies the input gate a connection is for: the consumer
// task, identified by job, attempt, chain and subtask.
type GateKey struct {
	Job     string
	Attempt int64
	Chain   int
	To      int
}

func (h Hello) key() GateKey {
	return GateKey{Job: h.Job, Attempt: h.Attempt, Chain: h.Chain, To: h.To}
}

func writeHello(w io.Writer, h Hello) error {
	h.Magic = helloMagic
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	buf := make([]byte, 4, 4+len(b))
	binary.LittleEndian.PutUint32(buf, uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

func readHello(r io.Reader) (Hello, error) {
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return Hello{}, err
	}
	n := binary.LittleEndian.Uint32(lb[:])
	if n > 4096 {
		return Hello{}, fmt.Errorf("%w: hello of %d bytes", ErrProtocol, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return Hello{}, err
	}
	var h Hello
	if err := json.Unmarshal(b, &h); err != nil {
		return Hello{}, fmt.Errorf("%w: hello: %v", ErrProtocol, err)
	}
	if h.Magic != helloMagic {
		return Hello{}, fmt.Errorf("%w: hello magic %q, want %q", ErrProtocol, h.Magic, helloMagic)
	}
	return h, nil
}

// readFrame reads one frame into buf (reusing its capacity) and returns the
// type and body.
func readFrame(r io.Reader, buf []byte) (typ byte, body []byte, out []byte, err error) {
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return 0, nil, buf, err
	}
	n := int(binary.LittleEndian.Uint32(lb[:]))
	if n < 1 || n > MaxFrame {
		return 0, nil, buf, fmt.Errorf("%w: frame length %d", ErrProtocol, n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, buf, err
	}
	return buf[0], buf[1:], buf, nil
}

// eventFrame builds a complete small frame.
func eventFrame(typ byte, body []byte) []byte {
	b := make([]byte, headerLen, headerLen+len(body))
	binary.LittleEndian.PutUint32(b, uint32(1+len(body)))
	b[4] = typ
	return append(b, body...)
}

// BarrierFrame encodes a barrier for checkpoint id.
func barrierBody(id int64, flags byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(id))
	return append(b, flags)
}

// Records iterates the records framed in a data body: each is a 4-byte
// little-endian length and that many bytes.
func Records(body []byte, fn func(rec []byte) error) error {
	for len(body) > 0 {
		if len(body) < 4 {
			return fmt.Errorf("%w: truncated record header", ErrProtocol)
		}
		n := int(binary.LittleEndian.Uint32(body))
		if n > len(body)-4 {
			return fmt.Errorf("%w: record of %d bytes in %d", ErrProtocol, n, len(body)-4)
		}
		if err := fn(body[4 : 4+n]); err != nil {
			return err
		}
		body = body[4+n:]
	}
	return nil
}
