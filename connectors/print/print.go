// Package print is an ebbflow sink that writes one line per record to an
// io.Writer as records arrive, for demos and debugging.
//
// It is not exactly-once: it has no transactions, so records replayed after
// a failure and restore are printed again, and records of a checkpoint that
// never completes are printed anyway.
package print

import (
	"io"
	"sync"

	"github.com/ebbflow/ebbflow"
)

// Lines returns a sink writing, for each record, the bytes format appends to
// dst followed by '\n'. The writers of all subtasks in the process share w;
// a mutex keeps their lines whole.
func Lines[T any](w io.Writer, format func(dst []byte, v T) []byte) ebbflow.SinkConnector[T] {
	return &connector[T]{w: w, format: format, mu: new(sync.Mutex)}
}

type connector[T any] struct {
	w      io.Writer
	format func(dst []byte, v T) []byte
	mu     *sync.Mutex
}

// NewWriter returns a writer sharing the connector's io.Writer.
func (c *connector[T]) NewWriter(ctx ebbflow.SinkContext) (ebbflow.SinkWriter[T], error) {
	return &writer[T]{c: c}, nil
}

type writer[T any] struct {
	c    *connector[T]
	line []byte
}

// Write formats v and writes its line in one call to the io.Writer.
func (w *writer[T]) Write(v T) error {
	w.line = append(w.c.format(w.line[:0], v), '\n')
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	_, err := w.c.w.Write(w.line)
	return err
}

// PreCommit does nothing: lines are written at once.
func (w *writer[T]) PreCommit(checkpointID int64) ([][]byte, error) { return nil, nil }

// Commit does nothing.
func (w *writer[T]) Commit(committables [][]byte) error { return nil }

// Close does nothing; the io.Writer belongs to the caller.
func (w *writer[T]) Close() error { return nil }
