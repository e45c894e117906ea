package filesink

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/checkpoint"
	"github.com/ebbflow/ebbflow/internal/graph"
)

const (
	s3CommittableVersion = 3
	// s3PartSize is the buffered size at which a transaction's records go
	// up as one part of its multipart upload.
	s3PartSize = 8 << 20
	s3MaxParts = 10000
	// s3OpTimeout bounds one S3 request (minio-go retries included).
	s3OpTimeout = 5 * time.Minute
)

// Environment variables of the S3 connection of s3:// outputs.
const (
	envS3Endpoint      = "EBBFLOW_S3_ENDPOINT"
	envS3AccessKey     = "EBBFLOW_S3_ACCESS_KEY"
	envS3SecretKey     = "EBBFLOW_S3_SECRET_KEY"
	envS3SecretKeyFile = "EBBFLOW_S3_SECRET_KEY_FILE"
	envS3TLS           = "EBBFLOW_S3_TLS"
	envS3Region        = "EBBFLOW_S3_REGION"
	envS3CAFile        = "EBBFLOW_S3_CA_FILE"
	envS3CreateBucket  = "EBBFLOW_S3_CREATE_BUCKET"
)

// s3Names make the messages of the S3 connection name the environment
// variables that the sink reads its settings from.
var s3Names = checkpoint.S3Names{
	Prefix:        "filesink: ",
	URL:           "s3 output",
	Endpoint:      envS3Endpoint,
	Region:        envS3Region,
	AccessKey:     envS3AccessKey,
	SecretKey:     envS3SecretKey,
	SecretKeyFile: envS3SecretKeyFile,
	TLS:           envS3TLS,
	CAFile:        envS3CAFile,
	CreateBucket:  envS3CreateBucket,
	Env:           true,
}

func isS3(dir string) bool { return strings.HasPrefix(dir, "s3://") }

// s3Store is a connection to the bucket of an s3:// output.
type s3Store struct {
	conn     *checkpoint.S3Conn
	client   *minio.Client
	core     minio.Core
	bucket   string
	prefix   string // without slashes at either end; "" is the bucket root
	endpoint string
}

// s3ConfigFromEnv reads the connection settings of an s3:// output from the
// EBBFLOW_S3_* environment. checkpoint.DialS3 validates them.
func s3ConfigFromEnv(dir string) (checkpoint.S3Config, error) {
	cfg := checkpoint.S3Config{
		URL:           dir,
		Endpoint:      os.Getenv(envS3Endpoint),
		Region:        os.Getenv(envS3Region),
		AccessKey:     os.Getenv(envS3AccessKey),
		SecretKey:     os.Getenv(envS3SecretKey),
		SecretKeyFile: os.Getenv(envS3SecretKeyFile),
		CAFile:        os.Getenv(envS3CAFile),
		UseTLS:        true,
	}
	for _, b := range []struct {
		env string
		v   *bool
	}{{envS3TLS, &cfg.UseTLS}, {envS3CreateBucket, &cfg.CreateBucket}} {
		if s := os.Getenv(b.env); s != "" {
			v, err := strconv.ParseBool(s)
			if err != nil {
				return cfg, fmt.Errorf("filesink: %s=%q: want true or false", b.env, s)
			}
			*b.v = v
		}
	}
	return cfg, nil
}

// openS3 connects to the bucket of dir, checking that it exists (creating it
// if EBBFLOW_S3_CREATE_BUCKET allows).
func openS3(dir string) (*s3Store, error) {
	cfg, err := s3ConfigFromEnv(dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := opContext()
	defer cancel()
	c, err := checkpoint.DialS3(ctx, cfg, checkpoint.S3DialOptions{Names: s3Names, AppName: "ebbflow-filesink"})
	if err != nil {
		return nil, err
	}
	return &s3Store{conn: c, client: c.Client, core: minio.Core{Client: c.Client}, bucket: c.Bucket, prefix: c.Prefix, endpoint: c.Endpoint}, nil
}

// close releases the idle connections of the store's transport.
func (s *s3Store) close() { s.conn.Close() }

func (s *s3Store) url() string { return s.conn.URL() }

// key is the S3 key of a name relative to the output prefix.
func (s *s3Store) key(name string) string {
	if s.prefix == "" {
		return name
	}
	return s.prefix + "/" + name
}

// staged is the name relative to the output prefix of a key directly under
// it or directly under its staging folder, or false.
func (s *s3Store) staged(key string) (string, bool) {
	name, ok := key, true
	if s.prefix != "" {
		name, ok = strings.CutPrefix(key, s.prefix+"/")
	}
	base := strings.TrimPrefix(name, stagingDir)
	return name, ok && base != "" && !strings.Contains(base, "/")
}

func (s *s3Store) describe(name string) string { return s.url() + "/" + name }

// wrap translates a minio-go error, naming the operation, the object, the
// endpoint and the EBBFLOW_S3_* variable to fix (checkpoint.S3Names.Describe).
// The requests' own timeouts come out as "did not answer in time".
func (s *s3Store) wrap(op, what string, err error) error {
	return s.conn.Describe(context.Background(), op, what, err)
}

// opContextOf bounds one S3 request made on behalf of parent.
func opContextOf(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s3OpTimeout)
}

func opContext() (context.Context, context.CancelFunc) { return opContextOf(context.Background()) }

// committed returns the names of the committed part objects, sorted.
func (s *s3Store) committed() ([]string, error) {
	names, err := s.list(context.Background(), finalPrefix)
	sort.Strings(names)
	return names, err
}

// list returns the names (relative to the output prefix) of the part
// objects and stages whose names start with prefix.
func (s *s3Store) list(parent context.Context, prefix string) ([]string, error) {
	ctx, cancel := opContextOf(parent)
	defer cancel()
	var names []string
	for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.key(prefix), Recursive: true}) {
		if obj.Err != nil {
			return nil, s.wrap("list", s.describe(prefix+"*"), obj.Err)
		}
		if name, ok := s.staged(obj.Key); ok && strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	return names, nil
}

// upload is an incomplete multipart upload.
type upload struct{ name, id string }

// uploads lists the incomplete uploads of keys starting with prefix (a name
// relative to the output prefix). Some stores (MinIO) list only the
// uploads of the exact key given.
func (s *s3Store) uploads(parent context.Context, prefix string) ([]upload, error) {
	ctx, cancel := opContextOf(parent)
	defer cancel()
	var out []upload
	for u := range s.client.ListIncompleteUploads(ctx, s.bucket, s.key(prefix), true) {
		if u.Err != nil {
			return nil, s.wrap("list uploads of", s.describe(prefix+"*"), u.Err)
		}
		if name, ok := s.staged(u.Key); ok {
			out = append(out, upload{name, u.UploadID})
		}
	}
	return out, nil
}

func (s *s3Store) abort(parent context.Context, name, id string) error {
	ctx, cancel := opContextOf(parent)
	defer cancel()
	if err := s.core.AbortMultipartUpload(ctx, s.bucket, s.key(name), id); err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
		return s.wrap("abort upload of", s.describe(name), err)
	}
	return nil
}

// checkS3 is Check for an s3:// dir.
func checkS3(dir string) error {
	s, err := openS3(dir)
	if err != nil {
		return err
	}
	s.close()
	return nil
}

// readCommittedS3 is ReadCommitted for an s3:// dir.
func readCommittedS3(dir string) ([]string, error) {
	s, err := openS3(dir)
	if err != nil {
		return nil, err
	}
	defer s.close()
	names, err := s.committed()
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, name := range names {
		b, err := s.get(name)
		if err != nil {
			return nil, err
		}
		str := string(b)
		for len(str) > 0 {
			line, rest, _ := strings.Cut(str, "\n")
			lines = append(lines, line)
			str = rest
		}
	}
	return lines, nil
}

func (s *s3Store) get(name string) ([]byte, error) {
	ctx, cancel := opContext()
	defer cancel()
	body, _, _, err := s.core.GetObject(ctx, s.bucket, s.key(name), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", s.describe(name), err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, s.wrap("get", s.describe(name), err)
	}
	return b, nil
}

// stagingDir holds the staged objects of pre-committed transactions,
// prefix/_staging/part-…, until Commit copies them to their final names. A
// leading '_' hides the folder from Hadoop-style readers of the prefix, and
// ReadCommitted lists only part objects directly under the prefix.
const stagingDir = "_staging/"

// stageName is the name, relative to the output prefix, of the staged object
// of final name name.
func stageName(name string) string { return stagingDir + name }

// txnMetaKey is the user metadata (x-amz-meta-ebbflow-txn) that marks a
// staged object, and the final object copied from it, with its transaction.
const txnMetaKey = "Ebbflow-Txn"

// maxCopySize is the largest object a single CopyObject copies; larger
// stages are copied part by part (ComposeObject). A variable for tests.
var maxCopySize int64 = 5 << 30

// s3Committable is a pre-committed transaction.
//
// Version 3 is a staged object: PreCommit wrote the whole transaction to
// prefix/_staging/<name> (one PUT, or a multipart upload it completed), and
// Commit copies it to prefix/<name> on the server and deletes the stage.
// Version 2 (written by earlier releases, still committed after a restore)
// is a multipart upload to prefix/<name> that Commit completes.
type s3Committable struct {
	version byte
	name    string // final object name, relative to the output prefix

	// version 3
	txn  string // the transaction's mark, in the objects' metadata
	etag string // the staged object's ETag
	size int64  // the staged object's size

	// version 2
	uploadID string
	parts    []minio.CompletePart
}

// encode is, for version 3,
//
//	version   byte     3
//	name      uvarint length, then the final object name (relative to the prefix)
//	txn       uvarint length, then the transaction's mark
//	etag      uvarint length, then the staged object's ETag
//	size      uvarint, the staged object's size in bytes
//
// and for version 2
//
//	version   byte     2
//	name      uvarint length, then the object name (relative to the prefix)
//	upload    uvarint length, then the upload ID
//	parts     uvarint count, then for each: uvarint number, uvarint length, ETag
func (c s3Committable) encode() []byte {
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	if c.version == 2 {
		b := str([]byte{2}, c.name)
		b = str(b, c.uploadID)
		b = binary.AppendUvarint(b, uint64(len(c.parts)))
		for _, p := range c.parts {
			b = binary.AppendUvarint(b, uint64(p.PartNumber))
			b = str(b, p.ETag)
		}
		return b
	}
	b := str([]byte{s3CommittableVersion}, c.name)
	b = str(b, c.txn)
	b = str(b, c.etag)
	return binary.AppendUvarint(b, uint64(c.size))
}

func decodeS3Committable(b []byte) (s3Committable, error) {
	if len(b) == 0 || b[0] != s3CommittableVersion && b[0] != 2 {
		return s3Committable{}, errors.New("filesink: unknown s3 committable version")
	}
	c := s3Committable{version: b[0]}
	b = b[1:]
	bad := errors.New("filesink: malformed s3 committable")
	uvarint := func() (uint64, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return n, true
	}
	str := func() (string, bool) {
		n, ok := uvarint()
		if !ok || uint64(len(b)) < n {
			return "", false
		}
		s := string(b[:n])
		b = b[n:]
		return s, true
	}
	var ok bool
	if c.name, ok = str(); !ok || !strings.HasPrefix(c.name, finalPrefix) || strings.ContainsAny(c.name, `/\`) {
		return s3Committable{}, bad
	}
	if c.version == s3CommittableVersion {
		if c.txn, ok = str(); !ok || c.txn == "" {
			return s3Committable{}, bad
		}
		if c.etag, ok = str(); !ok || c.etag == "" {
			return s3Committable{}, bad
		}
		size, ok := uvarint()
		if !ok || size == 0 || size > 5<<40 {
			return s3Committable{}, bad
		}
		c.size = int64(size)
	} else {
		if c.uploadID, ok = str(); !ok || c.uploadID == "" {
			return s3Committable{}, bad
		}
		n, ok := uvarint()
		if !ok || n == 0 || n > s3MaxParts {
			return s3Committable{}, bad
		}
		for i := uint64(0); i < n; i++ {
			num, ok := uvarint()
			if !ok || num != i+1 {
				return s3Committable{}, bad
			}
			etag, ok := str()
			if !ok {
				return s3Committable{}, bad
			}
			c.parts = append(c.parts, minio.CompletePart{PartNumber: int(num), ETag: etag})
		}
	}
	if len(b) != 0 {
		return s3Committable{}, errors.New("filesink: malformed s3 committable: trailing bytes")
	}
	return c, nil
}

// partName parses attempt, subtask and seq out of a part name.
func partName(name string) (attempt int64, subtask int, seq int64, ok bool) {
	rest, ok := strings.CutPrefix(name, finalPrefix)
	if !ok {
		return 0, 0, 0, false
	}
	f := strings.Split(rest, "-")
	if len(f) != 3 {
		return 0, 0, 0, false
	}
	a, err1 := strconv.ParseInt(f[0], 10, 64)
	st, err2 := strconv.Atoi(f[1])
	sq, err3 := strconv.ParseInt(f[2], 10, 64)
	return a, st, sq, err1 == nil && err2 == nil && err3 == nil
}

func partFileName(attempt int64, subtask int, seq int64) string {
	return fmt.Sprintf("%s%06d-%04d-%06d", finalPrefix, attempt, subtask, seq)
}

type s3Connector[T any] struct {
	dir    string
	format func(dst []byte, v T) []byte
}

// s3RestoreRetryFor bounds how long a restored writer tries again, while
// the store is unreachable, to connect and to commit the restored
// committables: the job ran with these settings, so an outage is the likely
// cause, and a restart would not help.
const s3RestoreRetryFor = 2 * time.Minute

// NewWriter connects to the bucket and returns subtask ctx.Subtask's writer;
// subtask 0 also commits restored committables and removes leftovers. After
// a restore, failures that may pass are tried again for s3RestoreRetryFor.
func (c *s3Connector[T]) NewWriter(ctx ebbflow.SinkContext) (ebbflow.SinkWriter[T], error) {
	if ctx.Ctx == nil {
		ctx.Ctx = context.Background()
	}
	if !ctx.Restored {
		return c.newWriter(ctx)
	}
	deadline := time.Now().Add(s3RestoreRetryFor)
	for backoff := 250 * time.Millisecond; ; backoff = min(2*backoff, s3CommitBackoff) {
		w, err := c.newWriter(ctx)
		if err == nil || !checkpoint.S3Transient(err) || graph.IsUnrecoverable(err) || time.Now().Add(backoff).After(deadline) {
			return w, err
		}
		if ctx.Logf != nil {
			ctx.Logf("%v (restoring; trying again in %v)", err, backoff)
		}
		select {
		case <-ctx.Ctx.Done():
			return nil, err
		case <-time.After(backoff):
		}
	}
}

func (c *s3Connector[T]) newWriter(ctx ebbflow.SinkContext) (ebbflow.SinkWriter[T], error) {
	s, err := openS3(c.dir)
	if err != nil {
		return nil, err
	}
	w := &s3Writer[T]{s: s, format: c.format, attempt: ctx.Attempt, subtask: ctx.Subtask, logf: ctx.Logf, ctx: ctx.Ctx, opCtx: opContextOf, nextPart: s3PartSize}
	if w.logf == nil {
		w.logf = func(string, ...any) {}
	}
	if w.seq, err = s.nextSeq(ctx.Attempt, ctx.Subtask); err != nil {
		s.close()
		return nil, err
	}
	if ctx.Subtask != 0 {
		return w, nil
	}
	if err := w.start(ctx); err != nil {
		s.close()
		return nil, err
	}
	return w, nil
}

// stages lists the staged objects, by name relative to the output prefix.
func (s *s3Store) stages(parent context.Context) ([]string, error) {
	return s.list(parent, stagingDir+finalPrefix)
}

// nextSeq is the first seq of writer (attempt, subtask) that names neither
// a final nor a staged object: 0, unless an earlier run with the same
// attempt numbers (a run started afresh) left some.
func (s *s3Store) nextSeq(attempt int64, subtask int) (int64, error) {
	mine := strings.TrimSuffix(partFileName(attempt, subtask, 0), "000000")
	var seq int64
	for _, p := range []string{mine, stagingDir + mine} {
		names, err := s.list(context.Background(), p)
		if err != nil {
			return 0, err
		}
		for _, name := range names {
			if a, st, sq, ok := partName(strings.TrimPrefix(name, stagingDir)); ok && a == attempt && st == subtask {
				seq = max(seq, sq+1)
			}
		}
	}
	return seq, nil
}

func (s *s3Store) remove(parent context.Context, name string) error {
	ctx, cancel := opContextOf(parent)
	defer cancel()
	if err := s.client.RemoveObject(ctx, s.bucket, s.key(name), minio.RemoveObjectOptions{}); err != nil && minio.ToErrorResponse(err).Code != "NoSuchKey" {
		return s.wrap("delete", s.describe(name), err)
	}
	return nil
}

// start is subtask 0's work when it starts: it commits the restored
// committables (or, on a fresh start, refuses a prefix that holds committed
// output), then tidies up older attempts' leftovers in the background.
func (w *s3Writer[T]) start(ctx ebbflow.SinkContext) error {
	if ctx.Restored {
		if err := w.commitNow(ctx.Ctx, ctx.Committables); err != nil {
			return err
		}
	} else if final, err := w.s.committed(); err != nil {
		return err
	} else if len(final) > 0 {
		return ebbflow.Unrecoverable(fmt.Errorf("filesink: output %s already holds committed output of another run (%s); use an empty prefix",
			w.s.url(), w.s.describe(final[0])))
	}
	tctx, cancel := context.WithCancel(context.Background())
	w.tidyCancel, w.tidying = cancel, make(chan struct{})
	go func() {
		defer close(w.tidying)
		if err := w.tidy(tctx, ctx); err != nil && tctx.Err() == nil {
			w.logf("filesink: tidying up older attempts' leftovers in %s: %v (leftovers are never visible; the next start tries again)", w.s.url(), err)
		}
	}()
	return nil
}

// tidy deletes the staged objects and aborts the multipart uploads of
// attempts older than ctx.Attempt: pre-commits of checkpoints that never
// completed, and transactions in progress when a writer died. It is
// housekeeping, never needed for correctness, so it runs beside the new
// attempt (which it never touches) and its failures are only logged: a
// store that refuses listing uploads (an IAM policy without
// s3:ListBucketMultipartUploads) does not stop the job.
func (w *s3Writer[T]) tidy(tctx context.Context, ctx ebbflow.SinkContext) error {
	// Where each writer (attempt, subtask) got to, from the committables
	// and the stages: its upload in progress, if any, has the next seq.
	// Stores that list uploads only by exact key (MinIO) are asked for
	// those keys.
	type writerID struct {
		attempt int64
		subtask int
	}
	next := make(map[writerID]int64)
	attempts := make(map[int64]int) // attempt -> subtasks seen
	saw := func(name string) {
		if a, st, sq, ok := partName(name); ok {
			id := writerID{a, st}
			next[id] = max(next[id], sq+1)
			attempts[a] = max(attempts[a], st+1, ctx.Parallelism)
		}
	}
	keep := make(map[string]bool) // v2 uploads of the committables
	for _, b := range ctx.Committables {
		if cm, err := decodeS3Committable(b); err == nil {
			keep[cm.uploadID] = true
			saw(cm.name)
		}
	}
	stages, err := w.s.stages(tctx)
	if err != nil {
		return err
	}
	for _, st := range stages {
		name := strings.TrimPrefix(st, stagingDir)
		saw(name)
		a, _, _, ok := partName(name)
		if !ok || a >= ctx.Attempt {
			continue
		}
		if err := w.s.remove(tctx, st); err != nil {
			return err
		}
		w.logf("filesink: deleted leftover staged object %s of attempt %d", w.s.describe(st), a)
	}
	for a, n := range attempts {
		for st := 0; st < n; st++ {
			if _, ok := next[writerID{a, st}]; !ok {
				next[writerID{a, st}] = 0
			}
		}
	}
	found, err := w.s.uploads(tctx, stagingDir+finalPrefix)
	if err != nil {
		return err
	}
	for id, seq := range next {
		if id.attempt >= ctx.Attempt {
			continue
		}
		for ; ; seq++ {
			us, err := w.s.uploads(tctx, stageName(partFileName(id.attempt, id.subtask, seq)))
			if err != nil {
				return err
			}
			if len(us) == 0 {
				break
			}
			found = append(found, us...)
		}
	}
	done := make(map[string]bool)
	for _, u := range found {
		a, _, _, ok := partName(strings.TrimPrefix(u.name, stagingDir))
		if !ok || a >= ctx.Attempt || keep[u.id] || done[u.id] {
			continue
		}
		done[u.id] = true
		if err := w.s.abort(tctx, u.name, u.id); err != nil {
			return err
		}
		w.logf("filesink: aborted leftover upload of %s of attempt %d", w.s.describe(u.name), a)
	}
	return nil
}

type s3Writer[T any] struct {
	s       *s3Store
	format  func(dst []byte, v T) []byte
	attempt int64
	subtask int
	seq     int64
	logf    func(format string, args ...any)
	ctx     context.Context // the task's: done when it is cancelled
	nonce   string          // random, per writer: with seq, the transactions' marks
	// opCtx bounds the requests that finish a stage and those of a
	// commit; tests shorten it to interrupt them at any point.
	opCtx func(parent context.Context) (context.Context, context.CancelFunc)
	bg    *s3Committer // started by the first Commit
	// tidying is closed when subtask 0's tidying up is over.
	tidying    chan struct{}
	tidyCancel context.CancelFunc

	buf      []byte // records not uploaded yet
	nextPart int    // buffered size at which Write uploads a part
	uploadID string // the current transaction's multipart upload, if started
	parts    []minio.CompletePart
	size     int64 // bytes in parts
	// completing: the upload's completion failed without an answer, so it
	// may have happened; no part goes up until it is settled.
	completing bool
	// staged are committables of transactions staged by a pre-commit that
	// then declined its checkpoint; the next pre-commit returns them.
	staged [][]byte
}

// name is the final name of the current transaction's object.
func (w *s3Writer[T]) name() string { return partFileName(w.attempt, w.subtask, w.seq) }

// Write appends v's line to the current transaction, uploading a part once
// 8 MiB are buffered.
func (w *s3Writer[T]) Write(v T) error {
	w.buf = append(w.format(w.buf, v), '\n')
	if len(w.buf) >= w.nextPart {
		return w.flushPart()
	}
	return nil
}

// s3MaxBuffered is how much of a transaction a writer keeps in memory while
// its parts cannot be uploaded (the store unreachable) before it fails.
const s3MaxBuffered = 256 << 20

// flushPart uploads the buffer as a part. If the store is unreachable for
// now, the records stay buffered and the upload is tried again once another
// part's worth has come, up to s3MaxBuffered.
func (w *s3Writer[T]) flushPart() error {
	if w.completing {
		if len(w.buf) >= s3MaxBuffered {
			return fmt.Errorf("filesink: %s: more than %d MiB buffered while the completion of its last upload is unsettled", w.s.describe(w.name()), s3MaxBuffered>>20)
		}
		w.nextPart = len(w.buf) + s3PartSize
		return nil
	}
	err := w.uploadPart()
	if err == nil {
		w.nextPart = s3PartSize
		return nil
	}
	if !checkpoint.S3Transient(err) || len(w.buf) >= s3MaxBuffered {
		return err
	}
	w.nextPart = len(w.buf) + s3PartSize
	w.logf("%v (keeping %d MiB of the transaction in memory; trying again after %d MiB more)", err, len(w.buf)>>20, s3PartSize>>20)
	return nil
}

// uploadPart sends the buffer as the next part of the transaction's
// multipart upload to its stage, starting the upload first if need be.
func (w *s3Writer[T]) uploadPart() error {
	ctx, cancel := opContextOf(w.ctx)
	defer cancel()
	stage := stageName(w.name())
	if w.uploadID == "" {
		id, err := w.s.core.NewMultipartUpload(ctx, w.s.bucket, w.s.key(stage), w.putOptions())
		if err != nil {
			return w.s.wrap("start upload of", w.s.describe(stage), err)
		}
		w.uploadID, w.parts = id, nil
	}
	if len(w.parts) >= s3MaxParts {
		return fmt.Errorf("filesink: %s: transaction too large (more than %d parts of %d MiB); checkpoint more often", w.s.describe(w.name()), s3MaxParts, s3PartSize>>20)
	}
	n := len(w.parts) + 1
	p, err := w.s.core.PutObjectPart(ctx, w.s.bucket, w.s.key(stage), w.uploadID, n, bytes.NewReader(w.buf), int64(len(w.buf)), minio.PutObjectPartOptions{})
	if err != nil {
		return w.s.wrap(fmt.Sprintf("upload part %d of", n), w.s.describe(stage), err)
	}
	w.parts = append(w.parts, minio.CompletePart{PartNumber: n, ETag: p.ETag})
	w.size += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// putOptions are the options of the current transaction's stage: its
// content type and its mark, by which Commit tells a final object copied
// from this transaction from one of another run with the same names.
func (w *s3Writer[T]) putOptions() minio.PutObjectOptions {
	return minio.PutObjectOptions{
		ContentType:  "text/plain; charset=utf-8",
		UserMetadata: map[string]string{txnMetaKey: w.txn()},
	}
}

// ifAbsent makes a write of a stage conditional on its absence
// (If-None-Match: *): a stage that exists when its writer finishes it was
// written by another writer with the same attempt and subtask.
func ifAbsent(o minio.PutObjectOptions) minio.PutObjectOptions {
	o.SetMatchETagExcept("*")
	return o
}

// ownStage looks at the stage that made a conditional write of it fail.
// mine: it carries this transaction's mark (a write of this transaction
// that succeeded although its answer was lost, retried by minio-go or by
// the next checkpoint after a declined one); etag is set if it also has
// the expected size, i.e. is the write being made. An error is one of the
// look itself (the store flapping), never a verdict on the stage.
func (w *s3Writer[T]) ownStage(stage string, size int64) (etag string, mine bool, err error) {
	ctx, cancel := opContextOf(w.ctx)
	defer cancel()
	info, err := w.s.client.StatObject(ctx, w.s.bucket, w.s.key(stage), minio.StatObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return "", false, nil
		}
		return "", false, w.s.wrap("stat", w.s.describe(stage), err)
	}
	if info.UserMetadata[txnMetaKey] != w.txn() {
		return "", false, nil
	}
	if info.Size == size {
		return info.ETag, true, nil
	}
	return "", true, nil
}

// stageExists is the error of a stage that another writer with the same
// attempt and subtask wrote.
func (w *s3Writer[T]) stageExists(stage string) error {
	return ebbflow.Unrecoverable(fmt.Errorf("filesink: cannot stage %s: it already exists (two attempts with the same number write to one output)", w.s.describe(stage)))
}

// txn is the mark of the current transaction: a random nonce of the writer
// and the transaction's seq.
func (w *s3Writer[T]) txn() string {
	if w.nonce == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		w.nonce = hex.EncodeToString(b[:])
	}
	return fmt.Sprintf("%s-%d", w.nonce, w.seq)
}

// PreCommit writes the transaction to its stage, in one PUT if it was
// buffered whole or by completing its multipart upload, and returns its
// committable (nothing if it is empty). The stage is not visible as output.
// If the store is unreachable, the checkpoint is declined and the
// transaction stays open; what got staged meanwhile is returned by the next
// pre-commit.
func (w *s3Writer[T]) PreCommit(checkpointID int64) ([][]byte, error) {
	if err := w.commitErr(); err != nil {
		return nil, err
	}
	if w.completing {
		// Settle the completion whose answer was lost before the records
		// that came since, which go up as the next transaction.
		c, err := w.complete()
		if err != nil {
			return nil, w.preCommitFailed(checkpointID, err)
		}
		w.completing = false
		w.staged = append(w.staged, c.encode())
		w.seq++
		w.nextPart = s3PartSize
	}
	if w.uploadID != "" || len(w.buf) > 0 {
		c, err := w.stage()
		if err != nil {
			return nil, w.preCommitFailed(checkpointID, err)
		}
		w.staged = append(w.staged, c.encode())
		w.seq++
		w.nextPart = s3PartSize
	}
	out := w.staged
	w.staged = nil
	return out, nil
}

// preCommitFailed declines the checkpoint if the failure may pass (the
// transaction is intact: buffer, parts and upload), and fails otherwise.
func (w *s3Writer[T]) preCommitFailed(checkpointID int64, err error) error {
	err = fmt.Errorf("filesink: checkpoint %d: %w", checkpointID, err)
	if checkpoint.S3Transient(err) && !graph.IsUnrecoverable(err) {
		return ebbflow.DeclineCheckpoint(err)
	}
	return err
}

// stage writes the current transaction to its stage.
func (w *s3Writer[T]) stage() (s3Committable, error) {
	name := w.name()
	stage := stageName(name)
	c := s3Committable{version: s3CommittableVersion, name: name, txn: w.txn()}
	if w.uploadID == "" {
		ctx, cancel := opContextOf(w.ctx)
		defer cancel()
		put := func(o minio.PutObjectOptions) (minio.UploadInfo, error) {
			return w.s.core.PutObject(ctx, w.s.bucket, w.s.key(stage), bytes.NewReader(w.buf), int64(len(w.buf)), "", "", o)
		}
		info, err := put(ifAbsent(w.putOptions()))
		if err != nil && minio.ToErrorResponse(err).Code == "PreconditionFailed" {
			etag, mine, serr := w.ownStage(stage, int64(len(w.buf)))
			switch {
			case serr != nil:
				return c, serr
			case etag != "":
				info, err = minio.UploadInfo{ETag: etag}, nil
			case mine: // an earlier, shorter write of this transaction
				info, err = put(w.putOptions())
			default:
				return c, w.stageExists(stage)
			}
		}
		if err != nil {
			return c, w.s.wrap("put", w.s.describe(stage), err)
		}
		if info.ETag == "" {
			return c, fmt.Errorf("filesink: put %s: S3 endpoint %s answered no ETag", w.s.describe(stage), w.s.endpoint)
		}
		c.etag, c.size = info.ETag, int64(len(w.buf))
		w.buf = w.buf[:0]
		return c, nil
	}
	if len(w.buf) > 0 {
		if err := w.uploadPart(); err != nil {
			return c, err
		}
	}
	c, err := w.complete()
	if err != nil && checkpoint.S3Transient(err) {
		w.completing = true // it may have happened
	}
	return c, err
}

// complete completes the current transaction's multipart upload, with the
// parts uploaded so far, into its stage.
func (w *s3Writer[T]) complete() (s3Committable, error) {
	name := w.name()
	stage := stageName(name)
	c := s3Committable{version: s3CommittableVersion, name: name, txn: w.txn()}
	ctx, cancel := w.opCtx(w.ctx)
	defer cancel()
	complete := func(o minio.PutObjectOptions) (minio.UploadInfo, error) {
		return w.s.core.CompleteMultipartUpload(ctx, w.s.bucket, w.s.key(stage), w.uploadID, w.parts, o)
	}
	info, err := complete(ifAbsent(minio.PutObjectOptions{}))
	if code := minio.ToErrorResponse(err).Code; err != nil && (code == "PreconditionFailed" || code == "NoSuchUpload") {
		etag, mine, serr := w.ownStage(stage, w.size)
		switch {
		case serr != nil:
			return c, serr
		case etag != "": // completed, the answer lost
			info, err = minio.UploadInfo{ETag: etag}, nil
		case code == "NoSuchUpload": // gone, and the stage is not it
		case mine: // an earlier, shorter write of this transaction
			info, err = complete(minio.PutObjectOptions{})
		default:
			return c, w.stageExists(stage)
		}
	}
	if err != nil {
		return c, w.s.wrap("complete upload of", w.s.describe(stage), err)
	}
	if info.ETag == "" {
		return c, fmt.Errorf("filesink: complete upload of %s: S3 endpoint %s answered no ETag", w.s.describe(stage), w.s.endpoint)
	}
	c.etag, c.size = info.ETag, w.size
	w.uploadID, w.parts, w.size = "", nil, 0
	return c, nil
}

// s3CloseGrace is how long Close lets publishing in progress finish before
// it abandons it to the next restore.
const s3CloseGrace = 10 * time.Second

// s3CommitBackoff bounds the wait between tries of a batch whose commit
// failed for a reason that may pass (the store unreachable).
const s3CommitBackoff = 5 * time.Second

// s3Committer publishes batches of committables in the background, in
// order, so that the server-side copies (about as long as uploading the
// transaction again) do not hold up the task. A batch that fails for a
// reason that may pass is tried again, with backoff, until it succeeds or
// the writer closes. Any other failure is kept and returned by the writer's
// next call, which fails the task. Either way nothing is lost: batches not
// yet published are in every snapshot (Publishing), so the restore commits
// them again.
type s3Committer struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{} // 1 slot

	mu sync.Mutex
	// queue holds the batches not yet published, the one being published
	// first. A batch leaves it only once published: after a failure that
	// will not pass, it stays (Publishing reports it) and nothing more is
	// published.
	queue   [][][]byte // never bounded: Commit must not block the task
	closed  bool
	err     error
	changed chan struct{} // closed and replaced whenever queue or err changes
}

// signal wakes WaitCommitted; bg.mu is held.
func (bg *s3Committer) signal() {
	close(bg.changed)
	bg.changed = make(chan struct{})
}

// Commit starts publishing the committables' transactions in the background
// (WaitCommitted waits for them). Commit is idempotent, and any writer of the
// sink may commit any committable.
func (w *s3Writer[T]) Commit(committables [][]byte) error {
	if err := w.commitErr(); err != nil {
		return err
	}
	for _, b := range committables {
		if _, err := decodeS3Committable(b); err != nil {
			return fmt.Errorf("%w (in %s)", err, w.s.url())
		}
	}
	if w.bg == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w.bg = &s3Committer{ctx: ctx, cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1), changed: make(chan struct{})}
		go w.publish(w.bg)
	}
	bg := w.bg
	bg.mu.Lock()
	bg.queue = append(bg.queue, committables)
	bg.mu.Unlock()
	select {
	case bg.wake <- struct{}{}:
	default:
	}
	return nil
}

// publish is the committer's goroutine.
func (w *s3Writer[T]) publish(bg *s3Committer) {
	defer close(bg.done)
	for {
		bg.mu.Lock()
		if len(bg.queue) == 0 {
			closed := bg.closed
			bg.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-bg.wake:
				continue
			case <-bg.ctx.Done():
				return
			}
		}
		cs := bg.queue[0]
		bg.mu.Unlock()
		for backoff := 250 * time.Millisecond; ; backoff = min(2*backoff, s3CommitBackoff) {
			err := w.commitNow(bg.ctx, cs)
			if bg.ctx.Err() != nil {
				return // closing: what is queued stays in the snapshots
			}
			if err == nil {
				break
			}
			if !checkpoint.S3Transient(err) {
				bg.mu.Lock()
				bg.err = err
				bg.signal()
				bg.mu.Unlock()
				return
			}
			w.logf("%v (trying again in %v)", err, backoff)
			select {
			case <-bg.ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		bg.mu.Lock()
		bg.queue = bg.queue[1:]
		bg.signal()
		bg.mu.Unlock()
	}
}

func (bg *s3Committer) failed() error {
	bg.mu.Lock()
	defer bg.mu.Unlock()
	return bg.err
}

// commitErr is the first failure of a background commit.
func (w *s3Writer[T]) commitErr() error {
	if w.bg == nil {
		return nil
	}
	return w.bg.failed()
}

// Publishing implements ebbflow.SinkCommitWaiter: the committables handed
// to Commit that are not published yet (the batch being published
// included).
func (w *s3Writer[T]) Publishing() [][]byte {
	if w.bg == nil {
		return nil
	}
	w.bg.mu.Lock()
	defer w.bg.mu.Unlock()
	var out [][]byte
	for _, cs := range w.bg.queue {
		out = append(out, cs...)
	}
	return out
}

// WaitCommitted implements ebbflow.SinkCommitWaiter: it returns once every
// committable handed to Commit is published, or the first failure, or when
// the task is cancelled.
func (w *s3Writer[T]) WaitCommitted() error {
	bg := w.bg
	if bg == nil {
		return nil
	}
	for {
		bg.mu.Lock()
		err, idle, changed := bg.err, len(bg.queue) == 0, bg.changed
		bg.mu.Unlock()
		if err != nil || idle {
			return err
		}
		select {
		case <-changed:
		case <-w.ctx.Done():
			return w.ctx.Err()
		case <-bg.done:
			bg.mu.Lock()
			err, idle := bg.err, len(bg.queue) == 0
			bg.mu.Unlock()
			if err == nil && !idle {
				err = fmt.Errorf("filesink: %s: publishing stopped before it was done; the next restore publishes the rest", w.s.url())
			}
			return err
		}
	}
}

// waitTidy waits for subtask 0's tidying up (for tests).
func (w *s3Writer[T]) waitTidy() {
	if w.tidying != nil {
		<-w.tidying
	}
}

// commitNow publishes the committables' transactions, in order.
func (w *s3Writer[T]) commitNow(ctx context.Context, committables [][]byte) error {
	for _, b := range committables {
		c, err := decodeS3Committable(b)
		if err != nil {
			return fmt.Errorf("%w (in %s)", err, w.s.url())
		}
		if c.version == 2 {
			err = w.commitUpload(ctx, c)
		} else {
			err = w.commit(ctx, c)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// commit copies a staged object to its final name on the server and then
// deletes the stage. A final object that exists already is this
// transaction's if it carries its mark (committed before, maybe by a writer
// that died before deleting the stage); otherwise it is another run's and is
// never overwritten. Interrupted at any point, commit can be run again.
func (w *s3Writer[T]) commit(parent context.Context, c s3Committable) error {
	ctx, cancel := w.opCtx(parent)
	defer cancel()
	what, stage := w.s.describe(c.name), stageName(c.name)
	switch mine, err := w.committedBefore(ctx, c); {
	case err != nil:
		return err
	case mine:
		return w.dropStage(parent, stage)
	}
	dst := minio.CopyDestOptions{Bucket: w.s.bucket, Object: w.s.key(c.name)}
	src := minio.CopySrcOptions{Bucket: w.s.bucket, Object: w.s.key(stage), MatchETag: c.etag}
	var err error
	if c.size <= maxCopySize {
		_, err = w.s.client.CopyObject(ctx, dst, src)
	} else {
		err = w.compose(ctx, dst, src)
	}
	if err != nil {
		switch minio.ToErrorResponse(err).Code {
		case "NoSuchKey", "PreconditionFailed":
			// The stage is gone or is not ours: committed meanwhile by
			// another writer, or lost.
			if mine, serr := w.committedBefore(ctx, c); serr != nil || mine {
				return serr
			}
			return ebbflow.Unrecoverable(fmt.Errorf("filesink: cannot commit %s: neither its staged object %s (ETag %s) nor the object exists: output lost", what, w.s.describe(stage), c.etag))
		}
		return w.s.wrap("copy "+w.s.describe(stage)+" to", what, err)
	}
	return w.dropStage(parent, stage)
}

// compose copies a stage larger than one CopyObject takes, part by part.
// ComposeObject does not pin the source to an ETag, so the stage is checked
// first (a stage replaced in between is not ours either way: its mark
// differs, and the next commit finds that).
func (w *s3Writer[T]) compose(ctx context.Context, dst minio.CopyDestOptions, src minio.CopySrcOptions) error {
	info, err := w.s.client.StatObject(ctx, src.Bucket, src.Object, minio.StatObjectOptions{})
	if err != nil {
		return err
	}
	if info.ETag != src.MatchETag {
		return minio.ErrorResponse{Code: "PreconditionFailed", Message: "the staged object changed", StatusCode: http.StatusPreconditionFailed}
	}
	_, err = w.s.client.ComposeObject(ctx, dst, src)
	return err
}

// committedBefore reports whether c's final object exists and is c's. A
// final object of another transaction is an error.
func (w *s3Writer[T]) committedBefore(ctx context.Context, c s3Committable) (bool, error) {
	what := w.s.describe(c.name)
	info, err := w.s.client.StatObject(ctx, w.s.bucket, w.s.key(c.name), minio.StatObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return false, nil
		}
		return false, w.s.wrap("stat", what, err)
	}
	if info.UserMetadata[txnMetaKey] != c.txn {
		return false, ebbflow.Unrecoverable(fmt.Errorf("filesink: cannot commit %s: it already exists and holds another transaction's output (two attempts with the same number wrote to one output)", what))
	}
	return true, nil
}

// dropStage deletes a committed transaction's stage. Failing is harmless
// (the next start of subtask 0 deletes leftover stages), so it is logged,
// not returned.
func (w *s3Writer[T]) dropStage(ctx context.Context, stage string) error {
	if err := w.s.remove(ctx, stage); err != nil {
		w.logf("%v (left for the next start)", err)
	}
	return nil
}

// commitUpload completes the multipart upload of a version 2 committable
// (If-None-Match: *, so that output of another attempt is never
// overwritten).
func (w *s3Writer[T]) commitUpload(parent context.Context, c s3Committable) error {
	ctx, cancel := w.opCtx(parent)
	defer cancel()
	what := w.s.describe(c.name)
	key := w.s.key(c.name)
	opts := minio.PutObjectOptions{}
	opts.SetMatchETagExcept("*")
	_, err := w.s.core.CompleteMultipartUpload(ctx, w.s.bucket, key, c.uploadID, c.parts, opts)
	if err == nil {
		return nil
	}
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchUpload":
	case "PreconditionFailed":
		// The object exists: committed before (the upload is gone), or
		// written by another attempt (the upload is still there).
		_, lerr := w.s.core.ListObjectParts(ctx, w.s.bucket, key, c.uploadID, 0, 1)
		if lerr == nil {
			return ebbflow.Unrecoverable(fmt.Errorf("filesink: cannot commit %s: it already exists (two attempts with the same number wrote to one output)", what))
		}
		if minio.ToErrorResponse(lerr).Code != "NoSuchUpload" {
			return w.s.wrap("complete upload of", what, lerr)
		}
	default:
		return w.s.wrap("complete upload of", what, err)
	}
	if _, serr := w.s.client.StatObject(ctx, w.s.bucket, key, minio.StatObjectOptions{}); serr != nil {
		if minio.ToErrorResponse(serr).Code == "NoSuchKey" {
			return ebbflow.Unrecoverable(fmt.Errorf("filesink: cannot commit %s: neither its upload %s nor the object exists: output lost", what, c.uploadID))
		}
		return w.s.wrap("stat", what, serr)
	}
	return nil // committed before
}

// Close lets publishing in progress finish for up to s3CloseGrace, then
// abandons the rest (it is in the snapshots, and the next restore commits
// it), and aborts the current transaction's upload. Pre-committed stages
// stay for Commit.
func (w *s3Writer[T]) Close() error {
	defer w.s.close()
	if w.tidying != nil {
		w.tidyCancel()
		<-w.tidying
	}
	if bg := w.bg; bg != nil {
		w.bg = nil
		bg.mu.Lock()
		bg.closed = true
		bg.mu.Unlock()
		select {
		case bg.wake <- struct{}{}:
		default:
		}
		select {
		case <-bg.done:
		case <-w.ctx.Done():
			bg.cancel()
			<-bg.done
		case <-time.After(s3CloseGrace):
			w.logf("filesink: %s: publishing of committed checkpoints abandoned after %v; the next restore publishes it", w.s.url(), s3CloseGrace)
			bg.cancel()
			<-bg.done
		}
		bg.cancel()
	}
	w.buf = nil
	if w.uploadID == "" {
		return nil
	}
	id := w.uploadID
	w.uploadID, w.parts, w.size = "", nil, 0
	ctx, cancel := context.WithTimeout(context.Background(), s3CloseGrace)
	defer cancel()
	return w.s.abort(ctx, stageName(w.name()), id)
}
