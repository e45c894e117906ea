package network

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startServer(t *testing.T) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(ln, 5*time.Second, t.Logf)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve() }()
	t.Cleanup(func() { s.Close(); <-done })
	return s
}

func record(b []byte, v uint64) []byte {
	b = binary.LittleEndian.AppendUint32(b, 8)
	return binary.LittleEndian.AppendUint64(b, v)
}

// Records sent over several producers arrive in order per channel, barriers
// follow the records before them, and end of stream ends each channel.
func TestGateDeliversInOrderWithBarriers(t *testing.T) {
	s := startServer(t)
	key := GateKey{Job: "j", Attempt: 1, Chain: 1, To: 0}
	g := NewGate(key, []GateInput{{Edge: 3, Producers: 2}}, 2, 64)
	s.Register(key, g)
	defer g.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const perProducer = 2000
	var wg sync.WaitGroup
	for from := 0; from < 2; from++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := Dial(ctx, s.Addr(), Hello{Job: "j", Attempt: 1, Chain: 1, Edge: 3, From: from, To: 0})
			if err != nil {
				t.Error(err)
				return
			}
			defer ch.Close()
			w := NewWriter([]*OutChannel{ch}, 64)
			for i := 0; i < perProducer; i++ {
				w.Put(0, record(w.Buf(0), uint64(i)))
				if i == perProducer/2 {
					if err := w.BroadcastBarrier(7, 0); err != nil {
						t.Error(err)
						return
					}
				}
			}
			if err := w.EndOfStream(); err != nil {
				t.Error(err)
			}
			// Wait for the consumer to finish before closing (credits flow back).
			<-ctx.Done()
		}()
	}
	next := []uint64{0, 0}
	barrierAt := []int{-1, -1}
	eos := 0
	barriers := 0
	for eos < 2 {
		ev := <-g.Events()
		switch ev.Kind {
		case EventData:
			err := Records(ev.Body, func(rec []byte) error {
				v := binary.LittleEndian.Uint64(rec)
				if v != next[ev.Channel] {
					t.Fatalf("channel %d: got %d want %d", ev.Channel, v, next[ev.Channel])
				}
				next[ev.Channel]++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := g.Release(ev); err != nil {
				t.Fatal(err)
			}
		case EventBarrier:
			if ev.Barrier != 7 {
				t.Fatalf("barrier %d", ev.Barrier)
			}
			barrierAt[ev.Channel] = int(next[ev.Channel])
			barriers++
			if barriers == 2 {
				g.Resume(0)
				g.Resume(1)
			}
		case EventEOS:
			eos++
		case EventError:
			t.Fatal(ev.Err)
		}
	}
	cancel()
	wg.Wait()
	for c := 0; c < 2; c++ {
		if next[c] != perProducer {
			t.Fatalf("channel %d got %d records", c, next[c])
		}
		if barrierAt[c] != perProducer/2+1 {
			t.Fatalf("channel %d: barrier after %d records, want %d", c, barrierAt[c], perProducer/2+1)
		}
	}
}

// A consumer that stops reading stops the producer after its credits are
// spent: memory stays bounded instead of growing.
func TestCreditsBoundInFlightBuffers(t *testing.T) {
	s := startServer(t)
	key := GateKey{Job: "j", Attempt: 1, Chain: 0, To: 0}
	const credits = 3
	const buffers = 20
	g := NewGate(key, []GateInput{{Edge: 0, Producers: 1}}, credits, 16)
	s.Register(key, g)
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := Dial(ctx, s.Addr(), Hello{Job: "j", Attempt: 1, Chain: 0, Edge: 0, From: 0, To: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	var sent sync.WaitGroup
	sent.Add(1)
	go func() {
		defer sent.Done()
		w := NewWriter([]*OutChannel{ch}, 16) // every record fills a buffer
		for i := 0; i < buffers; i++ {
			w.Put(0, record(w.Buf(0), uint64(i)))
			if w.Err() != nil {
				return
			}
		}
	}()
	var held []Event
	for i := 0; i < credits; i++ {
		held = append(held, <-g.Events())
	}
	// The producer has spent its credits: it must be waiting for one, with
	// nothing more in flight.
	waitFor(t, func() bool {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		return ch.credits == 0
	})
	if n := len(g.Events()); n != 0 {
		t.Fatalf("%d buffers arrived beyond the %d granted credits", n, credits)
	}
	// Each release lets exactly one more buffer through.
	if err := g.Release(held[0]); err != nil {
		t.Fatal(err)
	}
	held = append(held[1:], <-g.Events())
	for received := credits + 1; received < buffers; received++ {
		if err := g.Release(held[0]); err != nil {
			t.Fatal(err)
		}
		held = append(held[1:], <-g.Events())
	}
	for _, ev := range held {
		if err := g.Release(ev); err != nil {
			t.Fatal(err)
		}
	}
	sent.Wait()
}

// waitFor polls a condition that another goroutine makes true.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRecordsRejectsTruncatedFrames(t *testing.T) {
	b := record(nil, 1)
	for i := 1; i < len(b); i++ {
		if err := Records(b[:i], func([]byte) error { return nil }); err == nil {
			t.Fatalf("truncated body of %d bytes accepted", i)
		}
	}
}

func TestServerRejectsBadHello(t *testing.T) {
	s := startServer(t)
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err == nil {
		t.Fatal("server kept a connection with a bad hello")
	}
}
