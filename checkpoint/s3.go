package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"
)

// DefaultS3PartSize is the multipart part size when S3Config.PartSize is 0.
const DefaultS3PartSize = 16 << 20

// S3 part sizes allowed by the protocol.
const (
	minS3PartSize = 5 << 20
	maxS3PartSize = 5 << 30
)

// S3 is a Storage in an S3 bucket under a prefix. Put is atomic by S3
// semantics (a multipart upload becomes visible only when completed), and
// PutIfAbsent is a conditional write (If-None-Match: *).
type S3 struct {
	client   *minio.Client
	tr       *http.Transport
	bucket   string
	prefix   string // without slashes at either end; "" is the bucket root
	endpoint string
	partSize uint64
	// rangeSize is the size of one ranged read of a download.
	rangeSize int64
}

// OpenS3 is NewS3 as a Storage. Callers that are done with it should close
// it through io.Closer.
func OpenS3(ctx context.Context, cfg S3Config) (Storage, error) {
	s, err := NewS3(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// NewS3 connects to the endpoint (DialS3) and checks that the bucket
// exists, creating it if cfg.CreateBucket is set.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := DialS3(ctx, cfg, S3DialOptions{Names: checkpointS3Names, AppName: "ebbflow"})
	if err != nil {
		return nil, err
	}
	s := &S3{client: c.Client, tr: c.Transport, bucket: c.Bucket, prefix: c.Prefix, endpoint: c.Endpoint, partSize: cfg.PartSize}
	if s.partSize == 0 {
		s.partSize = DefaultS3PartSize
	}
	s.rangeSize = s3RangeSize
	return s, nil
}

// Close releases the idle connections of the storage's HTTP transport.
func (s *S3) Close() error {
	s.tr.CloseIdleConnections()
	return nil
}

// URL is s3://bucket/prefix (never with credentials).
func (s *S3) URL() string { return s3URL(s.bucket, s.prefix) }

// String is URL.
func (s *S3) String() string { return s.URL() }

func (s *S3) describe(name string) string { return s.URL() + "/" + strings.TrimPrefix(name, "/") }

// key maps an object name to its S3 key, with the same rules as Local:
// slash-separated, a leading slash ignored, no "..".
func (s *S3) key(name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" || strings.Contains(name, "..") || strings.Contains(name, "\\") {
		return "", fmt.Errorf("checkpoint: bad object name %q", name)
	}
	if s.prefix == "" {
		return clean[1:], nil
	}
	return s.prefix + clean, nil
}

// keyPrefix maps a List/DeletePrefix prefix to an S3 key prefix. Unlike a
// name, a prefix may be empty or end in "/".
func (s *S3) keyPrefix(prefix string) (string, error) {
	if strings.Contains(prefix, "..") || strings.Contains(prefix, "\\") {
		return "", fmt.Errorf("checkpoint: bad object prefix %q", prefix)
	}
	p := strings.TrimLeft(prefix, "/")
	if s.prefix == "" {
		return p, nil
	}
	return s.prefix + "/" + p, nil
}

// wrap translates a minio-go error at the boundary: NoSuchKey and
// PreconditionFailed become the package's sentinels, the rest is explained
// by S3Names.Describe (naming the endpoint and the s3.* key to fix), and a
// cancelled context stays visible to errors.Is.
func (s *S3) wrap(ctx context.Context, op, what string, err error) error {
	var resp minio.ErrorResponse
	if ctx.Err() == nil && errors.As(err, &resp) {
		switch resp.Code {
		case "NoSuchKey":
			return fmt.Errorf("checkpoint: %s: %w", what, ErrNotFound)
		case "PreconditionFailed":
			return fmt.Errorf("checkpoint: %s: %w", what, ErrExists)
		}
	}
	return checkpointS3Names.Describe(ctx, s.endpoint, s.bucket, op, what, err)
}

// s3PartUploads is how many parts of one object go up at once (minio-go's
// default too).
const s3PartUploads = 4

// s3MaxParts is the most parts S3 takes in one multipart upload.
const s3MaxParts = 10000

// abortTimeout bounds the clean-up of a failed multipart upload, which runs
// even when the caller's context is done.
const abortTimeout = 10 * time.Second

// Put implements Storage. Objects larger than the part size go up as a
// multipart upload, which S3 makes visible only when it completes.
func (s *S3) Put(ctx context.Context, name string, data []byte) error {
	return s.put(ctx, name, data, false)
}

// PutIfAbsent implements Storage with a conditional write (If-None-Match:
// *): the server refuses it with 412 if the object exists, atomically with
// respect to other writers. For a multipart upload the condition is on the
// CompleteMultipartUpload, which is where the object comes to exist.
func (s *S3) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	return s.put(ctx, name, data, true)
}

func (s *S3) put(ctx context.Context, name string, data []byte, ifAbsent bool) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", SendContentMd5: false}
	if ifAbsent {
		opts.SetMatchETagExcept("*")
	}
	for attempt := 0; ; attempt++ {
		if uint64(len(data)) <= s.partSize {
			// One PUT. DisableMultipart because minio-go, given no part
			// size, would switch to its own multipart path above 16 MiB.
			single := opts
			single.DisableMultipart = true
			_, err = s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), single)
		} else {
			err = s.putMultipart(ctx, key, data, opts)
		}
		if err == nil {
			return nil
		}
		// S3 answers 409 ConditionalRequestConflict while a concurrent
		// conditional write of the same key is in flight: try again,
		// which then fails with 412 if that write won.
		if !ifAbsent || minio.ToErrorResponse(err).Code != "ConditionalRequestConflict" || attempt >= 5 || ctx.Err() != nil {
			return s.wrap(ctx, "put", s.describe(name), err)
		}
		select {
		case <-ctx.Done():
			return s.wrap(ctx, "put", s.describe(name), ctx.Err())
		case <-time.After(time.Duration(50<<attempt) * time.Millisecond):
		}
	}
}

// putMultipart uploads data in parts, s3PartUploads at a time, and
// completes the upload with opts' headers (If-None-Match included: minio-go's
// own multipart PutObject drops them on the completion, and its parallel
// uploader leaks goroutines when a part fails). A failed upload is aborted.
func (s *S3) putMultipart(ctx context.Context, key string, data []byte, opts minio.PutObjectOptions) (err error) {
	core := minio.Core{Client: s.client}
	partSize := int(s.partSize)
	if n := (len(data) + partSize - 1) / partSize; n > s3MaxParts {
		partSize = ((len(data)+s3MaxParts-1)/s3MaxParts + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
	}
	nparts := (len(data) + partSize - 1) / partSize
	uploadID, err := core.NewMultipartUpload(ctx, s.bucket, key, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
			defer cancel()
			_ = core.AbortMultipartUpload(actx, s.bucket, key, uploadID)
		}
	}()
	parts := make([]minio.CompletePart, nparts)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s3PartUploads)
	for i := 0; i < nparts && gctx.Err() == nil; i++ {
		chunk := data[i*partSize : min((i+1)*partSize, len(data))]
		g.Go(func() error {
			p, err := core.PutObjectPart(gctx, s.bucket, key, uploadID, i+1, bytes.NewReader(chunk), int64(len(chunk)), minio.PutObjectPartOptions{})
			if err != nil {
				return err
			}
			parts[i] = minio.CompletePart{PartNumber: i + 1, ETag: p.ETag}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err = core.CompleteMultipartUpload(ctx, s.bucket, key, uploadID, parts, opts)
	return err
}

// Get implements Storage. The first request reads up to s3RangeSize bytes
// and learns the object's size; the rest is read in ranges of that size,
// s3RangeReads at a time, straight into one buffer. Every range is pinned to
// the first response's ETag, so an object replaced in between is an error,
// not a mix of two versions.
func (s *S3) Get(ctx context.Context, name string) ([]byte, error) {
	return s.get(ctx, name, 0, -1)
}

// GetRange implements Storage, with the same parallel ranged reads as Get.
func (s *S3) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("checkpoint: %s: %w: range [%d,+%d) is negative", s.describe(name), ErrCorrupt, off, n)
	}
	if n == 0 {
		// No bytes to read, but the object must exist and reach off.
		key, err := s.key(name)
		if err != nil {
			return nil, err
		}
		info, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
		if err != nil {
			return nil, s.wrap(ctx, "stat", s.describe(name), err)
		}
		if off > info.Size {
			return nil, fmt.Errorf("checkpoint: %s: %w: offset %d beyond the object's end at %d", s.describe(name), ErrCorrupt, off, info.Size)
		}
		return []byte{}, nil
	}
	return s.get(ctx, name, off, n)
}

// get reads n bytes at off, or with n < 0 the whole object.
func (s *S3) get(ctx context.Context, name string, off, n int64) ([]byte, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, err
	}
	core := minio.Core{Client: s.client}
	firstLen := s.rangeSize
	if n >= 0 {
		firstLen = min(firstLen, n)
	}
	first := minio.GetObjectOptions{}
	if err := first.SetRange(off, off+firstLen-1); err != nil {
		return nil, err
	}
	body, info, hdr, err := core.GetObject(ctx, s.bucket, key, first)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "InvalidRange" {
			if n < 0 {
				// An empty object has no byte 0: S3 answers 416.
				return s.getWhole(ctx, core, key, name)
			}
			return nil, fmt.Errorf("checkpoint: %s: %w: range [%d,%d) beyond the object's end", s.describe(name), ErrCorrupt, off, off+n)
		}
		return nil, s.wrap(ctx, "get", s.describe(name), err)
	}
	total, ok := contentRangeTotal(hdr.Get("Content-Range"))
	if !ok {
		// No Content-Range: the server sent the whole object.
		defer body.Close()
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, s.wrap(ctx, "get", s.describe(name), err)
		}
		if n >= 0 {
			if off+n > int64(len(b)) {
				return nil, fmt.Errorf("checkpoint: %s: %w: range [%d,%d) beyond the object's end at %d", s.describe(name), ErrCorrupt, off, off+n, len(b))
			}
			b = b[off : off+n]
		}
		return b, nil
	}
	end := total // end of what to read
	if n >= 0 {
		if off+n > total {
			body.Close()
			return nil, fmt.Errorf("checkpoint: %s: %w: range [%d,%d) beyond the object's end at %d", s.describe(name), ErrCorrupt, off, off+n, total)
		}
		end = off + n
	}
	buf := make([]byte, end-off)
	firstEnd := min(off+firstLen, end)
	_, err = io.ReadFull(body, buf[:firstEnd-off])
	body.Close()
	if err != nil {
		return nil, s.wrap(ctx, "get", s.describe(name), err)
	}
	if firstEnd == end {
		return buf, nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s3RangeReads)
	for at := firstEnd; at < end; at += s.rangeSize {
		to := min(at+s.rangeSize, end)
		g.Go(func() error {
			opts := minio.GetObjectOptions{}
			if err := opts.SetMatchETag(info.ETag); err != nil {
				return err
			}
			if err := opts.SetRange(at, to-1); err != nil {
				return err
			}
			body, _, _, err := core.GetObject(gctx, s.bucket, key, opts)
			if err != nil {
				return err
			}
			defer body.Close()
			_, err = io.ReadFull(body, buf[at-off:to-off])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		if minio.ToErrorResponse(err).Code == "PreconditionFailed" {
			return nil, fmt.Errorf("checkpoint: get %s: the object changed while it was read (S3 endpoint %s)", s.describe(name), s.endpoint)
		}
		return nil, s.wrap(ctx, "get", s.describe(name), err)
	}
	return buf, nil
}

func (s *S3) getWhole(ctx context.Context, core minio.Core, key, name string) ([]byte, error) {
	body, _, _, err := core.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap(ctx, "get", s.describe(name), err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, s.wrap(ctx, "get", s.describe(name), err)
	}
	return b, nil
}

// contentRangeTotal parses the complete length of "bytes a-b/total".
func contentRangeTotal(h string) (int64, bool) {
	i := strings.LastIndexByte(h, '/')
	if !strings.HasPrefix(h, "bytes ") || i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(h[i+1:], 10, 64)
	return n, err == nil && n >= 0
}

// s3RangeSize and s3RangeReads shape a download: ranges of 16 MiB, four at a
// time (docs/benchmarks.md has the measurements behind them).
const (
	s3RangeSize  = 16 << 20
	s3RangeReads = 4
)

// List implements Storage: the names (relative to the storage's prefix) of
// every object whose name starts with prefix, sorted.
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	kp, err := s.keyPrefix(prefix)
	if err != nil {
		return nil, err
	}
	strip := ""
	if s.prefix != "" {
		strip = s.prefix + "/"
	}
	var out []string
	for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: kp, Recursive: true}) {
		if obj.Err != nil {
			return nil, s.wrap(ctx, "list", s.describe(prefix), obj.Err)
		}
		if name, ok := strings.CutPrefix(obj.Key, strip); ok && name != "" && !strings.HasSuffix(name, "/") {
			out = append(out, name) // (a key ending in "/" is a folder marker made by another tool)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, s.wrap(ctx, "list", s.describe(prefix), err)
	}
	sort.Strings(out)
	return out, nil
}

// Delete implements Storage.
func (s *S3) Delete(ctx context.Context, name string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil
		}
		return s.wrap(ctx, "delete", s.describe(name), err)
	}
	return nil
}

// DeletePrefix implements Storage: every object whose name starts with
// prefix is removed, with multi-object deletes of up to 1000 keys.
func (s *S3) DeletePrefix(ctx context.Context, prefix string) error {
	kp, err := s.keyPrefix(prefix)
	if err != nil {
		return err
	}
	what := s.describe(prefix) + "*"
	var listErr error
	objects := func(yield func(minio.ObjectInfo) bool) {
		for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: kp, Recursive: true}) {
			if obj.Err != nil {
				listErr = obj.Err
				return
			}
			if !yield(obj) {
				return
			}
		}
	}
	results, err := s.client.RemoveObjectsWithIter(ctx, s.bucket, objects, minio.RemoveObjectsOptions{})
	if err != nil {
		return s.wrap(ctx, "delete", what, err)
	}
	for res := range results {
		if res.Err != nil && minio.ToErrorResponse(res.Err).Code != "NoSuchKey" {
			return s.wrap(ctx, "delete", what, fmt.Errorf("%s: %w", res.ObjectName, res.Err))
		}
	}
	if listErr != nil {
		return s.wrap(ctx, "delete", what, listErr)
	}
	if err := ctx.Err(); err != nil {
		return s.wrap(ctx, "delete", what, err)
	}
	return nil
}
