// Package filesink is an exactly-once ebbflow sink of text lines written to
// files in a folder.
//
// Each writer writes the records of its current transaction (the records
// between two checkpoint barriers) to an in-progress file
//
//	.part-<attempt>-<subtask>-<seq>.inprogress
//
// opened lazily by the first record of the transaction. At the barrier of a
// checkpoint, PreCommit flushes, fsyncs and closes the file and returns one
// committable naming it and its final name
//
//	part-<attempt:06d>-<subtask:04d>-<seq:06d>
//
// (no committable if the transaction is empty). Commit renames in-progress
// files to their final names and fsyncs the folder, so output becomes visible
// only once the checkpoint that holds it is complete. Names starting with '.'
// are hidden from readers of the folder by convention.
//
// Commit is idempotent: an in-progress file that is gone while its final file
// exists was committed before. If both are gone the data is lost and Commit
// fails naming the file.
//
// Subtask 0 tidies up when it starts: after a restore it commits all the
// committables of the snapshot and then deletes in-progress files of older
// attempts; on a fresh start it deletes in-progress files of older attempts
// and refuses a folder that already holds committed part files, so that the
// output of a fresh run is never mixed with that of another run.
//
// A committable is encoded as
//
//	version      byte     1
//	inprogress   uvarint length, then the file name
//	final        uvarint length, then the file name
//
// with names relative to the sink's folder.
//
// # S3 outputs
//
// A dir of the form s3://bucket/prefix writes to an S3 (or S3-compatible)
// bucket instead, with the same contract. The connection comes from the
// environment variables the server roles use for S3 checkpoints:
//
//	EBBFLOW_S3_ENDPOINT         host:port, without a scheme
//	EBBFLOW_S3_ACCESS_KEY       access key
//	EBBFLOW_S3_SECRET_KEY       secret key (never logged nor in errors), or
//	EBBFLOW_S3_SECRET_KEY_FILE  a file holding it
//	EBBFLOW_S3_TLS              use https (default true)
//	EBBFLOW_S3_REGION           region (looked up from the bucket if unset)
//	EBBFLOW_S3_CA_FILE          PEM bundle of extra CAs to trust
//	EBBFLOW_S3_CREATE_BUCKET    create the bucket if missing (default false)
//
// Each transaction is staged first, then published by a server-side copy:
//
//   - Records are buffered in memory. Once 8 MiB are buffered they go up as
//     a part of a multipart upload to the transaction's stage,
//     prefix/_staging/part-<attempt:06d>-<subtask:04d>-<seq:06d>.
//   - PreCommit writes the rest: a transaction that never reached 8 MiB is
//     one PUT of the stage; a larger one uploads its last part and
//     completes the upload. Both are conditional on the stage's absence
//     (If-None-Match: *), so two writers with the same attempt and subtask
//     are an error rather than a silent overwrite. The stage carries the
//     transaction's mark in its metadata (x-amz-meta-ebbflow-txn). The
//     committable (version 3) holds the final name, the mark, and the
//     stage's ETag and size.
//   - Commit copies the stage to prefix/part-<attempt>-<subtask>-<seq> on the
//     server (CopyObject, or ComposeObject above 5 GiB), only if the stage
//     still has the pre-committed ETag, and then deletes the stage. The
//     final object appears whole or not at all. The copies run on a
//     goroutine of the writer, in order, so they do not hold up the task.
//     Until a committable is published, the writer reports it
//     (ebbflow.SinkCommitWaiter's Publishing) and the runtime keeps it in
//     every snapshot, so a restore from any later checkpoint publishes it
//     too; a failure fails the writer's next call, and so the task, whose
//     restore commits again. WaitCommitted waits for the copies at the end
//     of input.
//
// Commit is idempotent and can be interrupted anywhere: a final object with
// the transaction's mark was committed before (its stage is deleted if it
// is still there); a final object with another mark belongs to another run
// and is never overwritten (an error); if neither the final object nor the
// stage exists the output is lost and Commit fails naming the object. Until
// version 3, Commit completed a multipart upload to the final key, which
// MinIO does not do atomically: interrupted about 2 ms in, it left neither
// the object nor a usable upload. Version 2 committables of earlier
// releases are still committed that way after a restore.
//
// While the store is unreachable (no answer, a 5xx, "slow down"), a writer
// does not fail its task: a part that cannot go up stays in memory and is
// tried again once another 8 MiB have come (up to 256 MiB); a pre-commit
// that cannot stage declines the checkpoint (ebbflow.DeclineCheckpoint),
// the transaction stays open and goes with the next checkpoint; a commit
// is tried again with backoff. Stage writes that succeeded although their
// answer was lost are recognised by the transaction's mark; a multipart
// completion without an answer is settled by the next pre-commit before
// anything newer goes up (the newer records become a transaction of their
// own). Other errors fail the task as before; a transaction whose stage and
// final object are both gone fails the job (output lost).
//
// Writers start their seq past any final or staged object of their attempt
// and subtask (a run started afresh may repeat attempt numbers). Subtask 0,
// after committing the restored committables, deletes the other stages of
// older attempts (pre-commits of checkpoints that never completed: the
// JobManager deploys only once no checkpoint commit is in flight, so every
// stage of a completed checkpoint is in the one restored) and aborts their
// incomplete uploads, in the background and best-effort: failures
// (say, an IAM policy without s3:ListBucketMultipartUploads) are logged
// and do not stop the job. Some stores (MinIO) list incomplete uploads only
// by exact key; there, the upload that follows each writer's last
// committable or stage is found, and others are left to the store's expiry
// of stale uploads (MinIO: 24 hours; AWS: a lifecycle rule
// AbortIncompleteMultipartUpload). Neither stages nor uploads are ever
// visible as output: ReadCommitted and readers that skip names starting
// with '_' (Hadoop, Spark, Hive) see only committed part objects.
package filesink

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ebbflow/ebbflow"
)

const (
	committableVersion = 1
	bufferSize         = 256 << 10
	inProgressPrefix   = ".part-"
	inProgressSuffix   = ".inprogress"
	finalPrefix        = "part-"
)

// Lines returns an exactly-once sink writing one line per record to part
// files in dir. format appends the bytes of v's line, without the newline,
// to dst and returns the extended slice; the sink adds the '\n'.
func Lines[T any](dir string, format func(dst []byte, v T) []byte) ebbflow.SinkConnector[T] {
	if isS3(dir) {
		return &s3Connector[T]{dir: dir, format: format}
	}
	return &connector[T]{dir: dir, format: format}
}

type connector[T any] struct {
	dir    string
	format func(dst []byte, v T) []byte
}

// NewWriter prepares dir and returns subtask ctx.Subtask's writer; subtask 0
// also commits restored committables and removes leftovers.
func (c *connector[T]) NewWriter(ctx ebbflow.SinkContext) (ebbflow.SinkWriter[T], error) {
	if err := Check(c.dir); err != nil {
		return nil, err
	}
	w := &writer[T]{dir: c.dir, format: c.format, attempt: ctx.Attempt, subtask: ctx.Subtask}
	if ctx.Subtask != 0 {
		return w, nil
	}
	if ctx.Restored {
		if err := w.Commit(ctx.Committables); err != nil {
			return nil, err
		}
	} else if final, err := committedFiles(c.dir); err != nil {
		return nil, err
	} else if len(final) > 0 {
		return nil, ebbflow.Unrecoverable(fmt.Errorf("filesink: output folder %s already holds committed output of another run (%s); use an empty folder",
			c.dir, final[0]))
	}
	keep := make(map[string]bool, len(ctx.Committables))
	for _, b := range ctx.Committables {
		if cm, err := decodeCommittable(b); err == nil {
			keep[cm.inProgress] = true
		}
	}
	if err := removeLeftovers(c.dir, ctx.Attempt, keep, ctx.Logf); err != nil {
		return nil, err
	}
	return w, nil
}

// removeLeftovers deletes in-progress files of attempts before attempt that
// are not in keep.
func removeLeftovers(dir string, attempt int64, keep map[string]bool, logf func(string, ...any)) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("filesink: %w", err)
	}
	removed := false
	for _, e := range entries {
		name := e.Name()
		a, ok := inProgressAttempt(name)
		if !ok || a >= attempt || keep[name] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("filesink: removing leftover: %w", err)
		}
		removed = true
		if logf != nil {
			logf("filesink: removed leftover %s of attempt %d", filepath.Join(dir, name), a)
		}
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}

// inProgressAttempt parses the attempt out of an in-progress file name.
func inProgressAttempt(name string) (int64, bool) {
	rest, ok := strings.CutPrefix(name, inProgressPrefix)
	if !ok {
		return 0, false
	}
	a, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(a, 10, 64)
	return n, err == nil
}

// committedFiles returns the names of the committed part files in dir,
// sorted.
func committedFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("filesink: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), finalPrefix) && !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Check makes sure dir exists, creating it if needed, and is writable. The
// error names dir. For an s3:// dir it validates the EBBFLOW_S3_* settings
// and reaches the bucket, creating it if EBBFLOW_S3_CREATE_BUCKET allows.
func Check(dir string) error {
	if isS3(dir) {
		return checkS3(dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("filesink: cannot create output folder %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".check-*")
	if err != nil {
		return fmt.Errorf("filesink: output folder %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("filesink: output folder %s: %w", dir, err)
	}
	return nil
}

// ReadCommitted returns the lines of the committed part files in dir, files
// in name order and lines in file order.
func ReadCommitted(dir string) ([]string, error) {
	if isS3(dir) {
		return readCommittedS3(dir)
	}
	names, err := committedFiles(dir)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("filesink: %w", err)
		}
		s := string(b)
		for len(s) > 0 {
			line, rest, _ := strings.Cut(s, "\n")
			lines = append(lines, line)
			s = rest
		}
	}
	return lines, nil
}

type committable struct {
	inProgress, final string
}

func (c committable) encode() []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(c.inProgress)+len(c.final))
	b = append(b, committableVersion)
	b = binary.AppendUvarint(b, uint64(len(c.inProgress)))
	b = append(b, c.inProgress...)
	b = binary.AppendUvarint(b, uint64(len(c.final)))
	b = append(b, c.final...)
	return b
}

func decodeCommittable(b []byte) (committable, error) {
	if len(b) == 0 || b[0] != committableVersion {
		return committable{}, errors.New("filesink: unknown committable version")
	}
	b = b[1:]
	var names [2]string
	for i := range names {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return committable{}, errors.New("filesink: malformed committable")
		}
		names[i], b = string(b[k:k+int(n)]), b[k+int(n):]
		if names[i] == "" || strings.ContainsAny(names[i], `/\`) || names[i] == "." || names[i] == ".." {
			return committable{}, fmt.Errorf("filesink: malformed committable: bad file name %q", names[i])
		}
	}
	if len(b) != 0 {
		return committable{}, errors.New("filesink: malformed committable: trailing bytes")
	}
	return committable{inProgress: names[0], final: names[1]}, nil
}

type writer[T any] struct {
	dir     string
	format  func(dst []byte, v T) []byte
	attempt int64
	subtask int
	seq     int64

	f    *os.File // current in-progress file, or nil
	name string   // its name
	bw   *bufio.Writer
	line []byte
}

// Write appends v's line to the current transaction, opening its file if it
// is the first record.
func (w *writer[T]) Write(v T) error {
	if w.f == nil {
		if err := w.open(); err != nil {
			return err
		}
	}
	w.line = append(w.format(w.line[:0], v), '\n')
	if _, err := w.bw.Write(w.line); err != nil {
		return fmt.Errorf("filesink: writing %s: %w", filepath.Join(w.dir, w.name), err)
	}
	return nil
}

func (w *writer[T]) open() error {
	var f *os.File
	for {
		w.name = fmt.Sprintf("%s%d-%d-%d%s", inProgressPrefix, w.attempt, w.subtask, w.seq, inProgressSuffix)
		var err error
		f, err = os.OpenFile(filepath.Join(w.dir, w.name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			break
		}
		// Only this writer makes names of its attempt and subtask, so an
		// existing one is a leftover of an earlier run of the job that
		// started over with the same attempt numbers (ebbflow local
		// --fresh): leave it, take the next sequence number.
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("filesink: %w", err)
		}
		w.seq++
	}
	w.f = f
	if w.bw == nil {
		w.bw = bufio.NewWriterSize(f, bufferSize)
	} else {
		w.bw.Reset(f)
	}
	return nil
}

// PreCommit finishes the current transaction: it flushes, fsyncs and closes
// its file and returns its committable, or nothing if the transaction is
// empty.
func (w *writer[T]) PreCommit(checkpointID int64) ([][]byte, error) {
	if w.f == nil {
		return nil, nil
	}
	path := filepath.Join(w.dir, w.name)
	err := w.bw.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("filesink: checkpoint %d: finishing %s: %w", checkpointID, path, err)
	}
	// The file's directory entry must survive a crash as well.
	if err := syncDir(w.dir); err != nil {
		return nil, err
	}
	c := committable{
		inProgress: w.name,
		final:      fmt.Sprintf("%s%06d-%04d-%06d", finalPrefix, w.attempt, w.subtask, w.seq),
	}
	w.seq++
	return [][]byte{c.encode()}, nil
}

// Commit publishes the committables' files. It is idempotent, and any writer
// of the sink may commit any committable.
func (w *writer[T]) Commit(committables [][]byte) error {
	renamed := false
	for _, b := range committables {
		c, err := decodeCommittable(b)
		if err != nil {
			return fmt.Errorf("%w (in %s)", err, w.dir)
		}
		src, dst := filepath.Join(w.dir, c.inProgress), filepath.Join(w.dir, c.final)
		// Link then remove: unlike rename, a link never replaces an existing
		// committed file, so output of another attempt is never overwritten.
		err = os.Link(src, dst)
		if err == nil {
			if err := os.Remove(src); err != nil {
				return fmt.Errorf("filesink: committing %s: %w", dst, err)
			}
			renamed = true
			continue
		}
		if errors.Is(err, fs.ErrExist) {
			if _, serr := os.Stat(src); serr == nil {
				return ebbflow.Unrecoverable(fmt.Errorf("filesink: cannot commit %s: %s already exists (two attempts with the same number wrote to one output folder)", src, dst))
			}
			continue // committed before
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("filesink: committing: %w", err)
		}
		if _, serr := os.Stat(dst); serr == nil {
			continue // committed before
		}
		return fmt.Errorf("filesink: cannot commit %s: neither it nor its committed file %s exists: output lost", src, dst)
	}
	if renamed {
		return syncDir(w.dir)
	}
	return nil
}

// Close aborts the current transaction, removing its file. Pre-committed
// files stay for Commit.
func (w *writer[T]) Close() error {
	if w.f == nil {
		return nil
	}
	path := filepath.Join(w.dir, w.name)
	w.f.Close()
	w.f = nil
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("filesink: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("filesink: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("filesink: syncing folder %s: %w", dir, err)
	}
	return nil
}
