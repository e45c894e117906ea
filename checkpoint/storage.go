// Package checkpoint owns everything about snapshots that outlive processes:
// the storage interface and its local-folder implementation, the layout and
// format of a checkpoint (data objects, then `_metadata` written last and
// create-only), the redistribution of a snapshot's state onto any
// parallelism, and the coordinator's pure bookkeeping of pending
// checkpoints. The commit point (the etcd pointer) belongs to the
// JobManager; see docs/format/checkpoint.md.
package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrNotFound marks a missing object.
var ErrNotFound = errors.New("checkpoint: object not found")

// ErrExists marks a create-only write of an object that exists.
var ErrExists = errors.New("checkpoint: object already exists")

// ErrCorrupt marks checkpoint data that fails its checksum or cannot be parsed.
var ErrCorrupt = errors.New("checkpoint: corrupt checkpoint data")

// Storage holds checkpoint objects under slash-separated names.
type Storage interface {
	// Put writes an object atomically: readers see all of it or nothing.
	Put(ctx context.Context, name string, data []byte) error
	// PutIfAbsent is Put that fails with ErrExists if the object exists.
	PutIfAbsent(ctx context.Context, name string, data []byte) error
	// Get reads a whole object; a missing one is ErrNotFound.
	Get(ctx context.Context, name string) ([]byte, error)
	// GetRange reads n bytes at offset off of an object: a restore reads
	// only the key groups it is assigned. A missing object is ErrNotFound,
	// an object that ends before off+n is ErrCorrupt.
	GetRange(ctx context.Context, name string, off, n int64) ([]byte, error)
	// List returns the names of all objects under prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes an object; a missing one is not an error.
	Delete(ctx context.Context, name string) error
	// DeletePrefix removes every object under prefix.
	DeletePrefix(ctx context.Context, prefix string) error
	// URL is where the storage lives, for messages (never with secrets).
	URL() string
}

// Open returns the storage for a checkpoint.dir value: `file:///abs/dir`
// or a plain path. (s3:// is served by the S3 storage.)
func Open(dir string) (Storage, error) {
	if dir == "" {
		return nil, errors.New("checkpoint: checkpoint.dir is empty")
	}
	if strings.HasPrefix(dir, "s3://") {
		return nil, fmt.Errorf("checkpoint: checkpoint.dir %q: S3 storage is not available in this build yet; use file:///path", dir)
	}
	path := dir
	if strings.Contains(dir, "://") {
		u, err := url.Parse(dir)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: checkpoint.dir %q: %w", dir, err)
		}
		if u.Scheme != "file" {
			return nil, fmt.Errorf("checkpoint: checkpoint.dir %q: unsupported scheme %q (use file:// or s3://)", dir, u.Scheme)
		}
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("checkpoint: checkpoint.dir %q: a file URL needs an absolute path (file:///path), not host %q", dir, u.Host)
		}
		path = u.Path
	}
	return NewLocal(path)
}

// Local is a Storage in a local folder. Writes go to a temporary file that
// is fsynced and renamed into place, so a crash never leaves a torn object.
type Local struct {
	root string
}

// NewLocal creates (if needed) and opens a local folder.
func NewLocal(root string) (*Local, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: folder %q: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: create folder %s: %w", abs, err)
	}
	probe, err := os.CreateTemp(abs, ".probe-*")
	if err != nil {
		return nil, fmt.Errorf("checkpoint: folder %s is not writable: %w", abs, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return &Local{root: abs}, nil
}

// URL is file:// of the folder.
func (l *Local) URL() string { return "file://" + l.root }

func (l *Local) path(name string) (string, error) {
	clean := filepath.Clean("/" + name)
	if clean == "/" || strings.Contains(name, "..") {
		return "", fmt.Errorf("checkpoint: bad object name %q", name)
	}
	return filepath.Join(l.root, filepath.FromSlash(clean)), nil
}

func (l *Local) write(name string, data []byte, exclusive bool) error {
	p, err := l.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if _, err := os.Stat(dir); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("checkpoint: write %s: %w", l.describe(name), err)
		}
		// Make the new folders themselves durable, up to the root.
		for d := dir; d != l.root && strings.HasPrefix(d, l.root); d = filepath.Dir(d) {
			if err := syncDir(filepath.Dir(d)); err != nil {
				return fmt.Errorf("checkpoint: sync folder of %s: %w", l.describe(name), err)
			}
		}
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", l.describe(name), err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("checkpoint: write %s: %w", l.describe(name), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("checkpoint: sync %s: %w", l.describe(name), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", l.describe(name), err)
	}
	if exclusive {
		// A hard link fails if the target exists: create-only and atomic.
		if err := os.Link(tmp.Name(), p); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("checkpoint: %s: %w", l.describe(name), ErrExists)
			}
			return fmt.Errorf("checkpoint: write %s: %w", l.describe(name), err)
		}
	} else if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", l.describe(name), err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (l *Local) describe(name string) string { return l.URL() + "/" + strings.TrimPrefix(name, "/") }

// Put implements Storage.
func (l *Local) Put(_ context.Context, name string, data []byte) error {
	return l.write(name, data, false)
}

// PutIfAbsent implements Storage.
func (l *Local) PutIfAbsent(_ context.Context, name string, data []byte) error {
	return l.write(name, data, true)
}

// Get implements Storage.
func (l *Local) Get(_ context.Context, name string) ([]byte, error) {
	p, err := l.path(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("checkpoint: %s: %w", l.describe(name), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", l.describe(name), err)
	}
	return b, nil
}

// GetRange implements Storage.
func (l *Local) GetRange(_ context.Context, name string, off, n int64) ([]byte, error) {
	p, err := l.path(name)
	if err != nil {
		return nil, err
	}
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("checkpoint: %s: %w: range [%d,+%d) is negative", l.describe(name), ErrCorrupt, off, n)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("checkpoint: %s: %w", l.describe(name), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", l.describe(name), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", l.describe(name), err)
	}
	if off > fi.Size() || n > fi.Size()-off {
		return nil, fmt.Errorf("checkpoint: %s: %w: range [%d,%d) beyond the object's end at %d", l.describe(name), ErrCorrupt, off, off+n, fi.Size())
	}
	b := make([]byte, n)
	got, err := f.ReadAt(b, off)
	if err == io.EOF || (err == nil && int64(got) < n) {
		return nil, fmt.Errorf("checkpoint: %s: %w: range [%d,%d) beyond the object's end", l.describe(name), ErrCorrupt, off, off+n)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", l.describe(name), err)
	}
	return b, nil
}

// List implements Storage.
func (l *Local) List(_ context.Context, prefix string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(l.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") || strings.HasPrefix(d.Name(), ".probe-") {
			return nil
		}
		rel, err := filepath.Rel(l.root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list %s: %w", l.describe(prefix), err)
	}
	sort.Strings(out)
	return out, nil
}

// Delete implements Storage.
func (l *Local) Delete(_ context.Context, name string) error {
	p, err := l.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint: delete %s: %w", l.describe(name), err)
	}
	return nil
}

// DeletePrefix implements Storage. A prefix ending in "/" removes that folder.
func (l *Local) DeletePrefix(ctx context.Context, prefix string) error {
	if strings.HasSuffix(prefix, "/") {
		p, err := l.path(prefix)
		if err != nil {
			return err
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("checkpoint: delete %s: %w", l.describe(prefix), err)
		}
		return nil
	}
	names, err := l.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := l.Delete(ctx, n); err != nil {
			return err
		}
	}
	return nil
}
