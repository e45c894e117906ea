// Package filesource is a bounded, replayable ebbflow source of text lines
// read from a file or from the files of a folder.
//
// # Input
//
// The path given to [Lines] is either a file or a folder. A folder's input is
// the regular files directly inside it (symbolic links to regular files
// count, subfolders are not read), sorted by name, skipping names that start
// with '.' or '_'. The input must not change while a job reads it: every
// process enumerates the splits on its own and must find the same files with
// the same sizes.
//
// # Splits
//
// Each file is cut into byte ranges of [WithSplitSize] bytes (default
// 16 MiB); an empty file has no split. The split [start,end) owns exactly the
// lines whose first byte is at an offset in [start,end): a reader of a split
// with start > 0 skips to just after the first '\n' at or after offset
// start-1, and it reads the line that starts before end to its end, even when
// that goes beyond end. Lines are emitted without their trailing "\n" and
// without a trailing "\r", so CRLF files read like LF files. A last line
// without a newline is a line.
//
// # Split state
//
// A split's state is a compact binary record:
//
//	version  byte     1
//	path     uvarint length, then that many bytes
//	start    uvarint  first byte of the range
//	end      uvarint  end of the range (exclusive)
//	pos      uvarint  offset of the next line to read
//
// pos == start means that the reader has not yet looked for the first line
// of the range (and so must skip a partial line when start > 0); pos > start
// is always the offset just after a '\n'. A split with pos >= end is
// finished. Restoring a position checks that the file still has a line
// boundary there and is at least end bytes long; a file that shrank or
// changed is reported as an error naming the file and the offset.
//
// # Reading
//
// A reader goes through its splits in the order given. Poll returns
// EndOfInput, possibly together with the last lines, once all of them are
// finished, and keeps returning it. Snapshot returns the state of every
// split, finished ones included.
package filesource

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebbflow/ebbflow"
)

// DefaultSplitSize is the largest split size used without [WithSplitSize].
// Without that option the split size adapts to the input: the total size
// divided by [TargetSplits], between [MinSplitSize] and DefaultSplitSize,
// so that even a small input spreads over many source subtasks.
const DefaultSplitSize = 16 << 20

// MinSplitSize is the smallest adaptive split size.
const MinSplitSize = 64 << 10

// TargetSplits is the number of splits the adaptive size aims at.
const TargetSplits = 256

const (
	stateVersion = 1
	bufferSize   = 256 << 10
)

// Option configures [Lines].
type Option func(*options)

type options struct {
	splitSize int64
}

// WithSplitSize sets the size in bytes of the ranges files are cut into.
// It must be at least 1.
func WithSplitSize(n int64) Option {
	return func(o *options) {
		o.splitSize = n
		if n == 0 {
			o.splitSize = -1 // an explicit 0 is invalid, not "adaptive"
		}
	}
}

// Lines returns a bounded source of the lines of the file at path, or of the
// files of the folder at path (see the package documentation).
func Lines(path string, opts ...Option) ebbflow.SourceConnector[string] {
	o := options{}
	for _, f := range opts {
		f(&o)
	}
	return &connector{path: path, opts: o}
}

type connector struct {
	path string
	opts options
}

// Splits enumerates the input files and cuts them into ranges.
func (c *connector) Splits() ([][]byte, error) {
	files, err := listFiles(c.path)
	if err != nil {
		return nil, err
	}
	size := c.opts.splitSize
	if size == 0 {
		var total int64
		for _, f := range files {
			total += f.size
		}
		size = min(max(total/TargetSplits, MinSplitSize), DefaultSplitSize)
	}
	if size < 1 {
		return nil, fmt.Errorf("filesource %s: split size %d must be at least 1", c.path, size)
	}
	var out [][]byte
	for _, f := range files {
		for start := int64(0); start < f.size; start += size {
			end := min(start+size, f.size)
			out = append(out, split{path: f.path, start: start, end: end, pos: start}.encode())
		}
	}
	return out, nil
}

// NewReader decodes the split states and returns a reader over them. Files
// are opened lazily, one at a time.
func (c *connector) NewReader(ctx ebbflow.SourceContext, states [][]byte) (ebbflow.SourceReader[string], error) {
	r := &reader{splits: make([]split, len(states))}
	for i, b := range states {
		s, err := decodeSplit(b)
		if err != nil {
			return nil, fmt.Errorf("filesource %s: split state %d: %w", c.path, i, err)
		}
		r.splits[i] = s
	}
	return r, nil
}

type file struct {
	path string
	size int64
}

// listFiles returns the input files of path with their sizes.
func listFiles(path string) ([]file, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("filesource: %w", err)
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("filesource: %s is not a regular file or a folder", path)
		}
		return []file{{path: path, size: fi.Size()}}, nil
	}
	entries, err := os.ReadDir(path) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("filesource: %w", err)
	}
	var files []file
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			continue
		}
		p := filepath.Join(path, name)
		fi, err := os.Stat(p) // follows symbolic links
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // dangling link, or removed meanwhile
			}
			return nil, fmt.Errorf("filesource: %w", err)
		}
		if fi.Mode().IsRegular() {
			files = append(files, file{path: p, size: fi.Size()})
		}
	}
	return files, nil
}

// Check reports whether path can be read as input: it must exist and be
// readable, and a folder must hold at least one readable input file. The
// error names the path.
func Check(path string) error {
	files, err := listFiles(path)
	if err != nil {
		return err
	}
	if len(files) == 1 && files[0].path == path { // a file
		fh, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("filesource: %w", err)
		}
		return fh.Close()
	}
	var firstErr error
	for _, f := range files {
		fh, err := os.Open(f.path)
		if err == nil {
			fh.Close()
			return nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return fmt.Errorf("filesource: folder %s has no readable file: %w", path, firstErr)
	}
	return fmt.Errorf("filesource: folder %s has no input files", path)
}

// split is the decoded state of one split.
type split struct {
	path       string
	start, end int64
	pos        int64
}

func (s split) done() bool { return s.pos >= s.end }

func (s split) encode() []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64*4+len(s.path))
	b = append(b, stateVersion)
	b = binary.AppendUvarint(b, uint64(len(s.path)))
	b = append(b, s.path...)
	b = binary.AppendUvarint(b, uint64(s.start))
	b = binary.AppendUvarint(b, uint64(s.end))
	b = binary.AppendUvarint(b, uint64(s.pos))
	return b
}

func decodeSplit(b []byte) (split, error) {
	var s split
	if len(b) == 0 {
		return s, errors.New("empty state")
	}
	if b[0] != stateVersion {
		return s, fmt.Errorf("unknown state version %d", b[0])
	}
	b = b[1:]
	var vals [4]uint64
	for i := range vals {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > 1<<62 {
			return s, errors.New("malformed state")
		}
		b = b[n:]
		vals[i] = v
		if i == 0 { // path length, then the path
			if uint64(len(b)) < v {
				return s, errors.New("malformed state")
			}
			s.path = string(b[:v])
			b = b[v:]
		}
	}
	if len(b) != 0 {
		return s, errors.New("malformed state: trailing bytes")
	}
	s.start, s.end, s.pos = int64(vals[1]), int64(vals[2]), int64(vals[3])
	if s.start > s.end || s.pos < s.start {
		return s, fmt.Errorf("inconsistent state: range [%d,%d) position %d", s.start, s.end, s.pos)
	}
	return s, nil
}

// reader reads its splits in order.
type reader struct {
	splits []split
	cur    int      // index of the split being read
	f      *os.File // open file of splits[cur], or nil
	br     *bufio.Reader
	line   []byte // reused for lines longer than the buffer
}

// Poll emits up to max lines. It returns EndOfInput, possibly together with
// the last lines, once every split is finished.
func (r *reader) Poll(out ebbflow.Collector[string], max int) (ebbflow.PollStatus, error) {
	for n := 0; n < max; {
		if r.skipDone() {
			break
		}
		s := &r.splits[r.cur]
		if r.f == nil {
			if err := r.open(s); err != nil {
				return 0, err
			}
			continue // aligning may have finished the split
		}
		line, err := r.readLine(s)
		if err != nil {
			return 0, err
		}
		out.Collect(string(line))
		n++
	}
	if r.skipDone() {
		return ebbflow.EndOfInput, nil
	}
	return ebbflow.MoreAvailable, nil
}

// skipDone moves past finished splits, closing their file, and reports
// whether all splits are finished. A fresh split that continues the range
// just read in the same file goes on with the open file: the position after
// the previous split's last line is the first line start at or after its
// end, which is where the next split begins.
func (r *reader) skipDone() bool {
	for r.cur < len(r.splits) && r.splits[r.cur].done() {
		prev := r.splits[r.cur]
		r.cur++
		if r.f != nil && r.cur < len(r.splits) {
			next := &r.splits[r.cur]
			if next.path == prev.path && next.start == prev.end && next.pos == next.start {
				next.pos = prev.pos
				continue
			}
		}
		r.closeFile()
	}
	return r.cur == len(r.splits)
}

// open opens s's file and positions the buffered reader at s.pos, skipping
// the partial first line of a fresh split.
func (r *reader) open(s *split) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("filesource: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("filesource: %w", err)
	}
	if fi.Size() < s.end {
		f.Close()
		return fmt.Errorf("filesource: %s changed: it has %d bytes, split [%d,%d) at offset %d needs at least %d",
			s.path, fi.Size(), s.start, s.end, s.pos, s.end)
	}
	// Look at the byte before pos: a fresh split skips up to the first
	// newline at or after it, a restored position must follow a newline.
	seek := s.pos - 1
	if s.pos == 0 {
		seek = 0
	}
	if _, err := f.Seek(seek, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("filesource: %s: seek to offset %d: %w", s.path, seek, err)
	}
	if r.br == nil {
		r.br = bufio.NewReaderSize(f, bufferSize)
	} else {
		r.br.Reset(f)
	}
	r.f = f
	if s.pos == 0 {
		return nil
	}
	if s.pos > s.start {
		c, err := r.br.ReadByte()
		if err != nil || c != '\n' {
			r.closeFile()
			return fmt.Errorf("filesource: %s changed: no line starts at restored offset %d", s.path, s.pos)
		}
		return nil
	}
	// Fresh split with start > 0: skip to just after the first '\n' at or
	// after start-1.
	skipped := int64(0)
	for {
		chunk, err := r.br.ReadSlice('\n')
		skipped += int64(len(chunk))
		if err == nil {
			break
		}
		if err == io.EOF {
			break // no line starts in the rest of the file
		}
		if err != bufio.ErrBufferFull {
			r.closeFile()
			return fmt.Errorf("filesource: %s at offset %d: %w", s.path, seek+skipped, err)
		}
	}
	// At EOF without a newline, seek+skipped is the file size, which is at
	// least end: no line starts in the split.
	s.pos = max(seek+skipped, s.start)
	return nil
}

// readLine reads the line at s.pos and advances s.pos past it. The returned
// slice is valid until the next read.
func (r *reader) readLine(s *split) ([]byte, error) {
	r.line = r.line[:0]
	var line []byte
	for {
		chunk, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			r.line = append(r.line, chunk...)
			continue
		}
		if len(r.line) > 0 {
			r.line = append(r.line, chunk...)
			line = r.line
		} else {
			line = chunk
		}
		if err == io.EOF && len(line) == 0 {
			return nil, fmt.Errorf("filesource: %s changed: unexpected end of file at offset %d", s.path, s.pos)
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("filesource: %s at offset %d: %w", s.path, s.pos, err)
		}
		break
	}
	s.pos += int64(len(line))
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	} else if !s.done() {
		// A last line without newline must reach the split's end, which
		// is then the file's end.
		return nil, fmt.Errorf("filesource: %s changed: unexpected end of file at offset %d", s.path, s.pos)
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func (r *reader) closeFile() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// Snapshot returns the state of every split, finished ones included.
func (r *reader) Snapshot() ([][]byte, error) {
	out := make([][]byte, len(r.splits))
	for i, s := range r.splits {
		out[i] = s.encode()
	}
	return out, nil
}

// Close closes the open file, if any.
func (r *reader) Close() error {
	r.closeFile()
	r.cur = len(r.splits)
	return nil
}
