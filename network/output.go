package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// DefaultBufferSize is the size at which a record buffer is sent.
const DefaultBufferSize = 32 << 10

// OutChannel is the producer end of one channel.
type OutChannel struct {
	conn net.Conn
	addr string

	mu      sync.Mutex
	cond    *sync.Cond
	credits int
	err     error // set when the credit reader stops
	closed  bool

	done chan struct{} // closed when the credit reader exits
}

// Dial connects to the consumer's data server at addr and sends the hello.
// It retries until ctx ends, because the consumer may still be starting.
func Dial(ctx context.Context, addr string, h Hello) (*OutChannel, error) {
	var d net.Dialer
	backoff := 20 * time.Millisecond
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetNoDelay(true)
			}
			if err := writeHello(conn, h); err != nil {
				conn.Close()
				return nil, fmt.Errorf("network: hello to %s: %w", addr, err)
			}
			c := &OutChannel{conn: conn, addr: addr, done: make(chan struct{})}
			c.cond = sync.NewCond(&c.mu)
			go c.readCredits()
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("network: connect to data address %s: %w", addr, err)
		case <-time.After(backoff):
		}
		if backoff < 500*time.Millisecond {
			backoff *= 2
		}
	}
}

func (c *OutChannel) readCredits() {
	defer close(c.done)
	var buf []byte
	for {
		typ, body, b, err := readFrame(c.conn, buf)
		buf = b
		if err == nil && (typ != FrameCredit || len(body) != 4) {
			err = fmt.Errorf("%w: unexpected frame %d from consumer", ErrProtocol, typ)
		}
		c.mu.Lock()
		if err != nil {
			if c.err == nil {
				c.err = fmt.Errorf("network: channel to %s: %w", c.addr, err)
			}
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		c.credits += int(binary.LittleEndian.Uint32(body))
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// SendData waits for a credit and sends a data frame. frame must hold the
// 5-byte header space followed by the body; SendData fills the header.
func (c *OutChannel) SendData(frame []byte) error {
	c.mu.Lock()
	for c.credits == 0 && c.err == nil && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		c.mu.Unlock()
		return errors.New("network: channel closed")
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.credits--
	c.mu.Unlock()
	binary.LittleEndian.PutUint32(frame, uint32(len(frame)-4))
	frame[4] = FrameData
	if _, err := c.conn.Write(frame); err != nil {
		return fmt.Errorf("network: send to %s: %w", c.addr, err)
	}
	return nil
}

// SendEvent sends a small event frame; events need no credit.
func (c *OutChannel) SendEvent(typ byte, body []byte) error {
	if _, err := c.conn.Write(eventFrame(typ, body)); err != nil {
		return fmt.Errorf("network: send to %s: %w", c.addr, err)
	}
	return nil
}

// Close closes the connection and waits for the credit reader. Safe to call
// twice.
func (c *OutChannel) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	if already {
		<-c.done
		return nil
	}
	err := c.conn.Close()
	<-c.done
	return err
}

// CloseWrite half-closes after end of stream so the consumer sees EOF after
// the last frame while credits may still arrive.
func (c *OutChannel) closeWrite() {
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// Writer is the network output of one producer subtask for one edge: a
// record buffer per channel. It implements graph.RecordWriter. It is used by
// the task goroutine only.
type Writer struct {
	chans   []*OutChannel
	bufs    [][]byte
	size    int
	err     error
	records int64
	bytes   int64
}

// NewWriter wraps channels (one per consumer subtask reachable by the edge).
func NewWriter(chans []*OutChannel, bufferSize int) *Writer {
	if bufferSize <= 0 {
		bufferSize = DefaultBufferSize
	}
	w := &Writer{chans: chans, bufs: make([][]byte, len(chans)), size: bufferSize}
	for i := range w.bufs {
		w.bufs[i] = make([]byte, headerLen, bufferSize+1024)
	}
	return w
}

// Channels is the number of channels.
func (w *Writer) Channels() int { return len(w.chans) }

// Buf returns channel c's buffer.
func (w *Writer) Buf(c int) []byte { return w.bufs[c] }

// Put stores channel c's buffer and sends it when full.
func (w *Writer) Put(c int, b []byte) {
	w.records++
	if len(b) >= w.size {
		w.send(c, b)
		return
	}
	w.bufs[c] = b
}

func (w *Writer) send(c int, b []byte) {
	if w.err == nil {
		w.bytes += int64(len(b))
		w.err = w.chans[c].SendData(b)
	}
	w.bufs[c] = b[:headerLen]
}

// Flush sends every non-empty buffer.
func (w *Writer) Flush() error {
	for c, b := range w.bufs {
		if len(b) > headerLen {
			w.send(c, b)
		}
	}
	return w.err
}

// Err is the first send error.
func (w *Writer) Err() error { return w.err }

// Records is the number of records written.
func (w *Writer) Records() int64 { return w.records }

// Broadcast flushes and then sends an event to every channel, so the event
// follows every record written before it.
func (w *Writer) Broadcast(typ byte, body []byte) error {
	if err := w.Flush(); err != nil {
		return err
	}
	for _, c := range w.chans {
		if err := c.SendEvent(typ, body); err != nil {
			w.err = err
			return err
		}
	}
	return nil
}

// BroadcastBarrier sends a checkpoint barrier to every channel.
func (w *Writer) BroadcastBarrier(id int64, flags byte) error {
	return w.Broadcast(FrameBarrier, barrierBody(id, flags))
}

// EndOfStream flushes, sends end of stream and half-closes every channel.
func (w *Writer) EndOfStream() error {
	if err := w.Broadcast(FrameEOS, nil); err != nil {
		return err
	}
	for _, c := range w.chans {
		c.closeWrite()
	}
	return nil
}

// Close closes every channel.
func (w *Writer) Close() error {
	var errs []error
	for _, c := range w.chans {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
