package print

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ebbflow/ebbflow"
)

func TestLinesSharedWriter(t *testing.T) {
	var buf bytes.Buffer
	sink := Lines(&buf, func(dst []byte, v int) []byte {
		return fmt.Appendf(dst, "value %d", v)
	})
	const writers, per = 4, 500
	var wg sync.WaitGroup
	for s := range writers {
		w, err := sink.NewWriter(ebbflow.SinkContext{Subtask: s, Parallelism: writers})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := range per {
				if err := w.Write(s*per + i); err != nil {
					t.Error(err)
				}
			}
			if c, err := w.PreCommit(1); c != nil || err != nil {
				t.Errorf("PreCommit: %q %v", c, err)
			}
			if err := w.Commit(nil); err != nil {
				t.Error(err)
			}
			w.Close()
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	var got []int
	for _, l := range lines {
		n, err := strconv.Atoi(strings.TrimPrefix(l, "value "))
		if err != nil {
			t.Fatalf("torn line %q", l)
		}
		got = append(got, n)
	}
	slices.Sort(got)
	if len(got) != writers*per || got[0] != 0 || got[len(got)-1] != writers*per-1 || len(slices.Compact(got)) != writers*per {
		t.Fatalf("got %d lines", len(got))
	}
}

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	w, _ := Lines(failing{}, func(dst []byte, v string) []byte { return append(dst, v...) }).NewWriter(ebbflow.SinkContext{})
	if err := w.Write("x"); err == nil {
		t.Fatal("error lost")
	}
}
