package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// DefaultCredits is the number of buffers a consumer grants per channel.
const DefaultCredits = 8

// EventKind is what an input event carries.
type EventKind int

const (
	EventData EventKind = iota
	EventBarrier
	EventWatermark
	EventEOS
	EventError
)

// Event is one item from an input gate.
type Event struct {
	Kind    EventKind
	Channel int // index in the gate
	Body    []byte
	Barrier int64
	Flags   byte
	Err     error
	buf     []byte
}

// Gate is the consumer end of all channels into one task input: it merges
// them into one event stream. After a channel delivers a barrier, the gate
// stops reading it until Resume, which is how barriers align.
type Gate struct {
	key      GateKey
	n        int
	offsets  map[int]int // edge id → first channel index
	inputs   []GateInput
	events   chan Event
	credits  int
	bufSize  int
	attached chan struct{} // closed when all channels are attached

	mu     sync.Mutex
	chans  []*inChannel
	count  int
	closed bool
	wg     sync.WaitGroup
	pool   sync.Pool
}

type inChannel struct {
	conn   net.Conn
	resume chan struct{}
	wmu    sync.Mutex
}

// GateInput is one input edge of a gate and its number of producers.
type GateInput struct {
	Edge      int
	Producers int
}

// NewGate makes a gate for the given input edges; channel indexes are
// assigned edge by edge in order. The events channel holds up to
// channels*credits buffers, exactly what producers may have in flight, so
// readers never block on it except while aligned.
func NewGate(key GateKey, inputs []GateInput, credits, bufSize int) *Gate {
	offsets := map[int]int{}
	n := 0
	for _, in := range inputs {
		offsets[in.Edge] = n
		n += in.Producers
	}
	if credits <= 0 {
		credits = DefaultCredits
	}
	if bufSize <= 0 {
		bufSize = DefaultBufferSize
	}
	g := &Gate{key: key, n: n, credits: credits, bufSize: bufSize, offsets: offsets, inputs: inputs,
		events: make(chan Event, n*(credits+2)), chans: make([]*inChannel, n), attached: make(chan struct{})}
	g.pool.New = func() any { return make([]byte, 0, bufSize+2048) }
	return g
}

// Events is the merged stream.
func (g *Gate) Events() <-chan Event { return g.events }

// Attached is closed once every channel has connected.
func (g *Gate) Attached() <-chan struct{} { return g.attached }

// Channels is the number of channels.
func (g *Gate) Channels() int { return g.n }

// ChannelOf returns the channel index of producer from on edge.
func (g *Gate) ChannelOf(edge, from int) int { return g.offsets[edge] + from }

// EdgeOf returns the edge of channel index c.
func (g *Gate) EdgeOf(c int) int {
	for i := len(g.inputs) - 1; i >= 0; i-- {
		if c >= g.offsets[g.inputs[i].Edge] {
			return g.inputs[i].Edge
		}
	}
	return -1
}

func (g *Gate) attach(edge, from int, conn net.Conn) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errors.New("gate closed")
	}
	off, ok := g.offsets[edge]
	if !ok {
		return fmt.Errorf("edge %d is not an input of this task", edge)
	}
	var producers int
	for _, in := range g.inputs {
		if in.Edge == edge {
			producers = in.Producers
		}
	}
	if from < 0 || from >= producers {
		return fmt.Errorf("producer subtask %d out of range [0,%d) on edge %d", from, producers, edge)
	}
	from += off
	if g.chans[from] != nil {
		return fmt.Errorf("producer subtask %d connected twice", from)
	}
	ch := &inChannel{conn: conn, resume: make(chan struct{}, 1)}
	g.chans[from] = ch
	g.count++
	if g.count == g.n {
		close(g.attached)
	}
	if err := ch.grant(uint32(g.credits)); err != nil {
		return err
	}
	g.wg.Add(1)
	go g.read(from, ch)
	return nil
}

func (c *inChannel) grant(n uint32) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], n)
	_, err := c.conn.Write(eventFrame(FrameCredit, b[:]))
	return err
}

func (g *Gate) read(idx int, ch *inChannel) {
	defer g.wg.Done()
	for {
		buf := g.pool.Get().([]byte)
		typ, body, b, err := readFrame(ch.conn, buf[:0])
		ev := Event{Channel: idx, buf: b}
		if err != nil {
			g.pool.Put(b[:0])
			if g.isClosed() {
				return
			}
			g.events <- Event{Kind: EventError, Channel: idx, Err: fmt.Errorf("network: input channel %d (edge %d): %w", idx, g.EdgeOf(idx), err)}
			return
		}
		switch typ {
		case FrameData:
			ev.Kind, ev.Body = EventData, body
		case FrameBarrier:
			if len(body) != 9 {
				g.events <- Event{Kind: EventError, Channel: idx, Err: fmt.Errorf("%w: barrier body %d bytes", ErrProtocol, len(body))}
				return
			}
			ev.Kind, ev.Barrier, ev.Flags = EventBarrier, int64(binary.LittleEndian.Uint64(body)), body[8]
		case FrameWatermark:
			if len(body) != 8 {
				g.events <- Event{Kind: EventError, Channel: idx, Err: fmt.Errorf("%w: watermark body", ErrProtocol)}
				return
			}
			ev.Kind, ev.Barrier = EventWatermark, int64(binary.LittleEndian.Uint64(body))
		case FrameEOS:
			ev.Kind = EventEOS
		default:
			g.events <- Event{Kind: EventError, Channel: idx, Err: fmt.Errorf("%w: frame type %d", ErrProtocol, typ)}
			return
		}
		if ev.Kind != EventData {
			g.pool.Put(b[:0])
			ev.buf = nil
		}
		if g.isClosed() {
			return
		}
		g.events <- ev
		switch ev.Kind {
		case EventBarrier:
			<-ch.resume // aligned: wait until the task has seen every barrier
		case EventEOS:
			return
		}
	}
}

func (g *Gate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Release returns a data event's buffer and grants its channel a credit.
func (g *Gate) Release(ev Event) error {
	if ev.Kind != EventData {
		return nil
	}
	g.pool.Put(ev.buf[:0])
	g.mu.Lock()
	ch := g.chans[ev.Channel]
	g.mu.Unlock()
	if err := ch.grant(1); err != nil {
		return fmt.Errorf("network: grant credit on input channel %d: %w", ev.Channel, err)
	}
	return nil
}

// Resume lets channel idx continue after its barrier.
func (g *Gate) Resume(idx int) {
	g.mu.Lock()
	ch := g.chans[idx]
	g.mu.Unlock()
	select {
	case ch.resume <- struct{}{}:
	default:
	}
}

// Close closes every connection and waits for the readers. Safe to call twice.
func (g *Gate) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	chans := append([]*inChannel(nil), g.chans...)
	g.mu.Unlock()
	for _, ch := range chans {
		if ch != nil {
			ch.conn.Close()
			select {
			case ch.resume <- struct{}{}:
			default:
			}
		}
	}
	// Drain so readers blocked on a full events channel can exit.
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			return nil
		case <-g.events:
		}
	}
}

// Server accepts data connections and hands them to registered gates.
type Server struct {
	ln      net.Listener
	timeout time.Duration

	mu      sync.Mutex
	gates   map[GateKey]*Gate
	pending map[GateKey][]pendingConn
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
	logf    func(string, ...any)
}

type pendingConn struct {
	edge int
	from int
	conn net.Conn
	at   time.Time
}

// NewServer serves on ln. Connections for gates not registered within
// timeout are dropped.
func NewServer(ln net.Listener, timeout time.Duration, logf func(string, ...any)) *Server {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Server{ln: ln, timeout: timeout, gates: map[GateKey]*Gate{}, pending: map[GateKey][]pendingConn{}, stop: make(chan struct{}), logf: logf}
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve accepts until Close.
func (s *Server) Serve() error {
	s.wg.Add(1)
	go s.reap()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("network: accept: %w", err)
		}
		s.wg.Add(1)
		go s.handshake(conn)
	}
}

func (s *Server) handshake(conn net.Conn) {
	defer s.wg.Done()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := readHello(conn)
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		s.logf("data connection from %s: %v", conn.RemoteAddr(), err)
		conn.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	g := s.gates[h.key()]
	if g == nil {
		s.pending[h.key()] = append(s.pending[h.key()], pendingConn{edge: h.Edge, from: h.From, conn: conn, at: time.Now()})
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if err := g.attach(h.Edge, h.From, conn); err != nil {
		s.logf("data connection %+v: %v", h, err)
		conn.Close()
	}
}

// Register makes g receive connections for key, including ones that
// arrived before it registered.
func (s *Server) Register(key GateKey, g *Gate) {
	s.mu.Lock()
	s.gates[key] = g
	pend := s.pending[key]
	delete(s.pending, key)
	s.mu.Unlock()
	for _, p := range pend {
		if err := g.attach(p.edge, p.from, p.conn); err != nil {
			s.logf("data connection for %+v from %d: %v", key, p.from, err)
			p.conn.Close()
		}
	}
}

// Unregister forgets a gate.
func (s *Server) Unregister(key GateKey) {
	s.mu.Lock()
	delete(s.gates, key)
	s.mu.Unlock()
}

func (s *Server) reap() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		for k, ps := range s.pending {
			keep := ps[:0]
			for _, p := range ps {
				if time.Since(p.at) > s.timeout {
					p.conn.Close()
				} else {
					keep = append(keep, p)
				}
			}
			if len(keep) == 0 {
				delete(s.pending, k)
			} else {
				s.pending[k] = keep
			}
		}
		s.mu.Unlock()
	}
}

// Close stops accepting and closes every connection.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	for _, ps := range s.pending {
		for _, p := range ps {
			p.conn.Close()
		}
	}
	s.pending = nil
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}
