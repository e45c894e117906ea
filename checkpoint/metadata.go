package checkpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math"
	"path"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/state"
)

// FormatVersion is the version of the checkpoint format written.
const FormatVersion = 1

// MetadataName is the object written last, create-only, in every checkpoint.
const MetadataName = "_metadata"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C used for every span.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Span locates one piece of state inside a data object.
type Span struct {
	KeyGroup int    `json:"kg,omitempty"`
	Off      int64  `json:"off"`
	Len      int64  `json:"len"`
	CRC      uint32 `json:"crc"`
}

// SubtaskState is one old subtask's state of one operator.
type SubtaskState struct {
	Object    string `json:"object"` // name relative to the checkpoint folder
	KeyGroups []Span `json:"keyGroups,omitempty"`
	List      []Span `json:"list,omitempty"`
}

// OperatorState is one operator's state in a snapshot.
type OperatorState struct {
	Union    bool           `json:"union,omitempty"`
	Subtasks []SubtaskState `json:"subtasks"`
}

// Metadata describes a complete checkpoint or savepoint.
type Metadata struct {
	Version        int                       `json:"version"`
	Job            string                    `json:"job"`
	ID             int64                     `json:"id"`
	Savepoint      bool                      `json:"savepoint,omitempty"`
	Attempt        int64                     `json:"attempt"`
	MaxParallelism int                       `json:"maxParallelism"`
	Parallelism    int                       `json:"parallelism"`
	CreatedAt      time.Time                 `json:"createdAt"`
	Bytes          int64                     `json:"bytes"`
	Operators      map[string]*OperatorState `json:"operators"`
}

// Dir is the folder (prefix) of checkpoint id of job.
func Dir(job string, id int64) string { return fmt.Sprintf("%s/chk-%d/", job, id) }

// SavepointDir is the folder of a savepoint.
func SavepointDir(job string, id int64) string { return fmt.Sprintf("%s/savepoint-%d/", job, id) }

// EncodeTaskState lays out the snapshots of one task's operators in one data
// object and returns the bytes and each operator's SubtaskState.
func EncodeTaskState(object string, snaps map[string]graph.Snapshot) ([]byte, map[string]SubtaskState, map[string]bool) {
	out := map[string]SubtaskState{}
	union := map[string]bool{}
	names := make([]string, 0, len(snaps))
	size := 0
	for n, s := range snaps {
		names = append(names, n)
		for _, b := range s.KeyGroups {
			size += len(b)
		}
		for _, b := range s.List {
			size += len(b)
		}
	}
	sort.Strings(names)
	// One allocation of the final size: state can be gigabytes, and
	// growing by appends would copy it several times over.
	buf := make([]byte, 0, size)
	for _, n := range names {
		s := snaps[n]
		st := SubtaskState{Object: object}
		kgs := make([]int, 0, len(s.KeyGroups))
		for kg := range s.KeyGroups {
			kgs = append(kgs, kg)
		}
		sort.Ints(kgs)
		for _, kg := range kgs {
			b := s.KeyGroups[kg]
			st.KeyGroups = append(st.KeyGroups, Span{KeyGroup: kg, Off: int64(len(buf)), Len: int64(len(b)), CRC: Checksum(b)})
			buf = append(buf, b...)
		}
		for _, b := range s.List {
			st.List = append(st.List, Span{Off: int64(len(buf)), Len: int64(len(b)), CRC: Checksum(b)})
			buf = append(buf, b...)
		}
		out[n] = st
		union[n] = s.Union
	}
	return buf, out, union
}

// EncodeMetadata serializes metadata.
func EncodeMetadata(md *Metadata) ([]byte, error) {
	md.Version = FormatVersion
	return json.MarshalIndent(md, "", " ")
}

// DecodeMetadata parses a _metadata object; name is used in errors.
func DecodeMetadata(name string, b []byte) (*Metadata, error) {
	var md Metadata
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w: %v", name, ErrCorrupt, err)
	}
	if md.Version != FormatVersion {
		return nil, fmt.Errorf("checkpoint: %s: format version %d, this build reads %d", name, md.Version, FormatVersion)
	}
	if md.MaxParallelism < 1 || md.Parallelism < 1 {
		return nil, fmt.Errorf("checkpoint: %s: %w: parallelism %d / max %d", name, ErrCorrupt, md.Parallelism, md.MaxParallelism)
	}
	return &md, nil
}

// ReadMetadata loads the metadata of the checkpoint in folder dir.
func ReadMetadata(ctx context.Context, st Storage, dir string) (*Metadata, error) {
	name := path.Join(dir, MetadataName)
	b, err := st.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return DecodeMetadata(st.URL()+"/"+name, b)
}

// piece is one span to read for a restore.
type piece struct {
	object string
	span   Span
	list   bool
}

// Assignment is what one new subtask restores of one operator.
type Assignment struct {
	pieces []piece
}

// Empty reports whether nothing is assigned.
func (a *Assignment) Empty() bool { return a == nil || len(a.pieces) == 0 }

// Assign computes the share of operator op that subtask i of p restores:
// keyed spans whose key group is in i's range, and list entries split
// round-robin in (old subtask, entry) order, or all of them for union state.
func Assign(md *Metadata, op string, i, p int) *Assignment {
	os, ok := md.Operators[op]
	if !ok {
		return nil
	}
	r := state.RangeFor(i, md.MaxParallelism, p)
	a := &Assignment{}
	j := 0
	for _, sub := range os.Subtasks {
		for _, sp := range sub.KeyGroups {
			if r.Contains(sp.KeyGroup) {
				a.pieces = append(a.pieces, piece{object: sub.Object, span: sp})
			}
		}
		for _, sp := range sub.List {
			if os.Union || j%p == i {
				a.pieces = append(a.pieces, piece{object: sub.Object, span: sp, list: true})
			}
			j++
		}
	}
	return a
}

// Objects lists the data objects an assignment reads.
func (a *Assignment) Objects() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range a.pieces {
		if !seen[p.object] {
			seen[p.object] = true
			out = append(out, p.object)
		}
	}
	return out
}

// Load reads an assignment from the checkpoint in folder dir and verifies
// every span's checksum. A missing or corrupt object is an error naming it.
func Load(ctx context.Context, st Storage, dir string, id int64, a *Assignment) (*graph.RestoredState, error) {
	return LoadCached(ctx, st, dir, id, a, NewReadCache())
}

// ReadCache holds the byte ranges of data objects that earlier loads read,
// so that the operators of one chain, which share a data object, read each
// range once.
type ReadCache struct {
	mu     sync.Mutex
	ranges map[string][]fetched
}

type fetched struct {
	off  int64
	data []byte
}

// NewReadCache returns an empty cache.
func NewReadCache() *ReadCache { return &ReadCache{ranges: map[string][]fetched{}} }

func (c *ReadCache) find(object string, lo, hi int64) ([]byte, int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.ranges[object] {
		if f.off <= lo && hi <= f.off+int64(len(f.data)) {
			return f.data, f.off, true
		}
	}
	return nil, 0, false
}

func (c *ReadCache) add(object string, off int64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ranges[object] = append(c.ranges[object], fetched{off: off, data: data})
}

// LoadCached is Load through a cache. It reads from each data object only
// the range that covers the assignment's spans in it (a subtask restores its
// own key groups, not the whole object of an old subtask), several objects
// at a time.
func LoadCached(ctx context.Context, st Storage, dir string, id int64, a *Assignment, cache *ReadCache) (*graph.RestoredState, error) {
	rs := &graph.RestoredState{CheckpointID: id, KeyGroups: map[int][]byte{}}
	if a == nil {
		return rs, nil
	}
	type cover struct{ lo, hi int64 }
	covers := map[string]*cover{}
	var order []string
	for _, p := range a.pieces {
		if p.span.Off < 0 || p.span.Len < 0 || p.span.Off > math.MaxInt64-p.span.Len {
			return nil, fmt.Errorf("%s/%s: %w: bad span [%d,+%d) in the metadata", st.URL(), path.Join(dir, p.object), ErrCorrupt, p.span.Off, p.span.Len)
		}
		c := covers[p.object]
		if c == nil {
			c = &cover{lo: p.span.Off, hi: p.span.Off + p.span.Len}
			covers[p.object] = c
			order = append(order, p.object)
		}
		c.lo, c.hi = min(c.lo, p.span.Off), max(c.hi, p.span.Off+p.span.Len)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, o := range order {
		c := covers[o]
		if _, _, ok := cache.find(o, c.lo, c.hi); ok {
			continue
		}
		g.Go(func() error {
			b, err := st.GetRange(gctx, path.Join(dir, o), c.lo, c.hi-c.lo)
			if err != nil {
				return err
			}
			cache.add(o, c.lo, b)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, p := range a.pieces {
		end := p.span.Off + p.span.Len
		data, at, ok := cache.find(p.object, p.span.Off, end)
		if !ok {
			return nil, fmt.Errorf("checkpoint: internal error: span [%d,%d) of %s was not read", p.span.Off, end, p.object)
		}
		b := data[p.span.Off-at : end-at : end-at]
		if Checksum(b) != p.span.CRC {
			what := "list entry"
			if !p.list {
				what = fmt.Sprintf("key group %d", p.span.KeyGroup)
			}
			return nil, fmt.Errorf("%s/%s: %w: checksum mismatch in %s at offset %d", st.URL(), path.Join(dir, p.object), ErrCorrupt, what, p.span.Off)
		}
		if p.list {
			rs.List = append(rs.List, b)
		} else {
			rs.KeyGroups[p.span.KeyGroup] = b
		}
	}
	return rs, nil
}

// CheckCompatible verifies that a snapshot can restore a job graph: same max
// parallelism, and no state for operators the job no longer has unless
// allowDrop.
func CheckCompatible(md *Metadata, g *graph.Graph, allowDrop bool) error {
	if md.MaxParallelism != g.MaxParallelism {
		return fmt.Errorf("checkpoint %d of job %q has max parallelism %d but the job now has %d; max parallelism is fixed for a job's state", md.ID, md.Job, md.MaxParallelism, g.MaxParallelism)
	}
	have := map[string]bool{}
	for _, v := range g.Vertices {
		have[v.Name] = true
	}
	var missing []string
	for op, os := range md.Operators {
		if have[op] {
			continue
		}
		empty := true
		for _, s := range os.Subtasks {
			if len(s.KeyGroups)+len(s.List) > 0 {
				empty = false
			}
		}
		if !empty {
			missing = append(missing, op)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 && !allowDrop {
		return fmt.Errorf("checkpoint %d holds state of operators %q that the job no longer has; allow dropping it explicitly to restore anyway", md.ID, missing)
	}
	return nil
}
