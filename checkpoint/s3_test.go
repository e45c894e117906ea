package checkpoint

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ebbflow/ebbflow/internal/testenv"
)

// s3Config is a configuration for bucket/prefix on a test MinIO.
func s3Config(m *testenv.MinIO, bucket, prefix string) S3Config {
	u := "s3://" + bucket
	if prefix != "" {
		u += "/" + prefix
	}
	return S3Config{URL: u, Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, CreateBucket: true}
}

// openS3 opens an S3 storage that is closed when the test ends.
func openS3(t testing.TB, cfg S3Config) *S3 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := NewS3(ctx, cfg)
	if err != nil {
		t.Fatalf("NewS3(%v): %v", cfg, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newS3 starts a MinIO and opens s3://ebbflow-test/ckpts on it.
func newS3(t *testing.T) (*S3, *testenv.MinIO) {
	t.Helper()
	m := testenv.StartMinIO(t)
	return openS3(t, s3Config(m, "ebbflow-test", "ckpts")), m
}

// rawS3 is a plain minio-go client on the test server, to look behind the
// storage's back.
func rawS3(t testing.TB, m *testenv.MinIO) *minio.Client {
	t.Helper()
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		t.Fatal(err)
	}
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""), Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

// noSecret fails the test if an error (or any string) shows the secret.
func noSecret(t *testing.T, secret string, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("error shows the secret key: %q", err)
		}
	}
}

// newContractS3 opens, for each case of the contract suite, a storage at
// s3://contract-N/ckpts on m (a bucket of its own). When the case ends the
// bucket must hold exactly the keys of the objects List shows: nothing
// outside the prefix, no key List hides, no incomplete upload.
func newContractS3(m *testenv.MinIO) func(t *testing.T) Storage {
	n := 0
	return func(t *testing.T) Storage {
		t.Helper()
		n++
		bucket := fmt.Sprintf("contract-%d", n)
		s := openS3(t, s3Config(m, bucket, "ckpts"))
		raw := rawS3(t, m)
		t.Cleanup(func() {
			ctx := context.Background()
			names, err := s.List(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			want := []string{}
			for _, name := range names {
				want = append(want, "ckpts/"+name)
			}
			keys := []string{}
			for obj := range raw.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
				if obj.Err != nil {
					t.Fatal(obj.Err)
				}
				keys = append(keys, obj.Key)
			}
			sort.Strings(keys)
			if !reflect.DeepEqual(keys, want) {
				t.Errorf("bucket %s holds keys %q, want those of the objects List shows: %q", bucket, keys, want)
			}
			for up := range raw.ListIncompleteUploads(ctx, bucket, "", true) {
				if up.Err != nil {
					t.Fatal(up.Err)
				}
				t.Errorf("incomplete upload left behind: %s %s", up.Key, up.UploadID)
			}
		})
		return s
	}
}

// An object is a plain S3 object at prefix/name.
func TestS3Keys(t *testing.T) {
	ctx := context.Background()
	s, m := newS3(t)
	if got, want := s.URL(), "s3://ebbflow-test/ckpts"; got != want {
		t.Fatalf("URL = %q, want %q", got, want)
	}
	for name, data := range map[string]string{"wc/chk-1/a1-c0-s0.state": "state bytes", "/leading-slash": "x", "d/x": "1"} {
		if err := s.Put(ctx, name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	raw := rawS3(t, m)
	obj, err := raw.GetObject(ctx, "ebbflow-test", "ckpts/wc/chk-1/a1-c0-s0.state", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(obj); err != nil || buf.String() != "state bytes" {
		t.Fatalf("raw object: %q, %v", buf.String(), err)
	}
	obj.Close()
	if _, err := raw.StatObject(ctx, "ebbflow-test", "ckpts/leading-slash", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("leading slash not dropped from the key: %v", err)
	}
	// A "folder" is not an object, and S3 has none: not found.
	if _, err := s.Get(ctx, "d"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a folder: %v, want ErrNotFound", err)
	}
	// A bad prefix is refused by List too.
	if _, err := s.List(ctx, "../"); err == nil {
		t.Fatal(`List("../") accepted`)
	}
}

// A create-only write larger than the part size goes up as a multipart
// upload; the condition must hold for it too.
func TestS3PutIfAbsentMultipart(t *testing.T) {
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	cfg := s3Config(m, "ebbflow-test", "")
	cfg.PartSize = 5 << 20
	s := openS3(t, cfg)
	big1 := bytes.Repeat([]byte("1"), 12<<20)
	big2 := bytes.Repeat([]byte("2"), 12<<20)
	if err := s.PutIfAbsent(ctx, "big", big1); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIfAbsent(ctx, "big", big2); !errors.Is(err, ErrExists) {
		t.Fatalf("multipart PutIfAbsent over an existing object: %v, want ErrExists", err)
	}
	if err := s.PutIfAbsent(ctx, "small-first", []byte("s")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIfAbsent(ctx, "small-first", big2); !errors.Is(err, ErrExists) {
		t.Fatalf("multipart PutIfAbsent over a small object: %v, want ErrExists", err)
	}
	if got, err := s.Get(ctx, "big"); err != nil || !bytes.Equal(got, big1) {
		t.Fatalf("refused multipart write changed the object: %v", err)
	}
	if got, err := s.Get(ctx, "small-first"); err != nil || string(got) != "s" {
		t.Fatalf("refused multipart write changed the object: %v", err)
	}
	// Refused multipart uploads leave no incomplete upload behind.
	for up := range rawS3(t, m).ListIncompleteUploads(ctx, "ebbflow-test", "", true) {
		if up.Err != nil {
			t.Fatal(up.Err)
		}
		t.Errorf("incomplete upload left behind: %s %s", up.Key, up.UploadID)
	}
}

// Objects beside the storage's prefix are not its objects, and a folder
// marker made by another tool is not an object.
func TestS3ListBesideThePrefix(t *testing.T) {
	ctx := context.Background()
	s, m := newS3(t)
	raw := rawS3(t, m)
	listContract(t, s, func() {
		for _, key := range []string{"ckpts2/wc/chk-1/_metadata", "ckpt", "outside", "ckpts/wc/chk-2/"} {
			if _, err := raw.PutObject(ctx, "ebbflow-test", key, bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	})
	// A storage at the bucket root sees every key.
	root := openS3(t, s3Config(m, "ebbflow-test", ""))
	got, err := root.List(ctx, "ckpt")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 || got[0] != "ckpt" || got[1] != "ckpts/other/chk-1/_metadata" || got[7] != "ckpts2/wc/chk-1/_metadata" {
		t.Fatalf("root List(ckpt) = %q", got)
	}
}

// More objects than fit one ListObjects page (1000) or one multi-delete.
func TestS3ListAndDeleteManyObjects(t *testing.T) {
	ctx := context.Background()
	s, _ := newS3(t)
	const n = 1234
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errs := make([]error, n)
	want := make([]string, n)
	for i := 0; i < n; i++ {
		want[i] = fmt.Sprintf("wc/chk-1/a1-c0-s%04d.state", i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = s.Put(ctx, want[i], []byte{byte(i)})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "wc/chk-2/_metadata", []byte("keep")); err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, "wc/chk-1/")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List returned %d names, want %d", len(got), len(want))
	}
	if err := s.DeletePrefix(ctx, "wc/chk-1/"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.List(ctx, ""); err != nil || !reflect.DeepEqual(got, []string{"wc/chk-2/_metadata"}) {
		t.Fatalf("after DeletePrefix: %q, %v", got, err)
	}
}

// DeletePrefix("") empties the storage's prefix, and only that.
func TestS3DeletePrefixStaysInsideThePrefix(t *testing.T) {
	ctx := context.Background()
	s, m := newS3(t)
	for _, n := range []string{"wc/chk-1/a", "wc/chk-2/_metadata", "top"} {
		if err := s.Put(ctx, n, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	raw := rawS3(t, m)
	if _, err := raw.PutObject(ctx, "ebbflow-test", "ckpts2/x", bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePrefix(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := s.List(ctx, ""); err != nil || len(got) != 0 {
		t.Fatalf("after DeletePrefix(\"\"): %q, %v", got, err)
	}
	if _, err := raw.StatObject(ctx, "ebbflow-test", "ckpts2/x", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("DeletePrefix(\"\") removed an object beside the prefix: %v", err)
	}
}

// A 40 MB object goes up in 5 MiB parts and comes back whole.
func TestS3LargeObjectMultipart(t *testing.T) {
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	cfg := s3Config(m, "ebbflow-test", "ckpts")
	cfg.PartSize = 5 << 20
	s := openS3(t, cfg)
	data := make([]byte, 40_000_000)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "wc/chk-1/a1-c0-s0.state", data); err != nil {
		t.Fatal(err)
	}
	info, err := rawS3(t, m).StatObject(ctx, "ebbflow-test", "ckpts/wc/chk-1/a1-c0-s0.state", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A multipart ETag is "<md5 of part md5s>-<parts>": 40 MB / 5 MiB = 8.
	if !strings.HasSuffix(info.ETag, "-8") || info.Size != int64(len(data)) {
		t.Fatalf("object ETag %q size %d: not an 8-part multipart upload of %d bytes", info.ETag, info.Size, len(data))
	}
	got, err := s.Get(ctx, "wc/chk-1/a1-c0-s0.state")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("40 MB round trip: got %d bytes, not equal", len(got))
	}
	// With the default part size it is one PUT.
	s16 := openS3(t, s3Config(m, "ebbflow-test", "ckpts"))
	if err := s16.Put(ctx, "small", data[:16<<20]); err != nil {
		t.Fatal(err)
	}
	info, err = rawS3(t, m).StatObject(ctx, "ebbflow-test", "ckpts/small", minio.StatObjectOptions{})
	if err != nil || strings.Contains(info.ETag, "-") {
		t.Fatalf("16 MiB with the default part size: ETag %q, %v; want a single PUT", info.ETag, err)
	}
	// Up to a larger part size it is one PUT too (minio-go on its own would
	// go multipart above 16 MiB).
	cfg.PartSize = 32 << 20
	s32 := openS3(t, cfg)
	if err := s32.Put(ctx, "mid", data[:20<<20]); err != nil {
		t.Fatal(err)
	}
	info, err = rawS3(t, m).StatObject(ctx, "ebbflow-test", "ckpts/mid", minio.StatObjectOptions{})
	if err != nil || strings.Contains(info.ETag, "-") {
		t.Fatalf("20 MiB with 32 MiB parts: ETag %q, %v; want a single PUT", info.ETag, err)
	}
	if got, err := s32.Get(ctx, "mid"); err != nil || !bytes.Equal(got, data[:20<<20]) {
		t.Fatalf("20 MiB round trip: %v", err)
	}
}

func TestS3MissingBucket(t *testing.T) {
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	cfg := s3Config(m, "not-there", "ckpts")
	cfg.CreateBucket = false
	s, err := NewS3(ctx, cfg)
	if err == nil {
		s.Close()
		t.Fatal("NewS3 of a missing bucket succeeded")
	}
	for _, want := range []string{`"not-there"`, "does not exist", "s3.create-bucket", m.Endpoint} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	noSecret(t, m.SecretKey, err)
	// With s3.create-bucket it is created.
	cfg.CreateBucket = true
	s = openS3(t, cfg)
	if ok, err := rawS3(t, m).BucketExists(ctx, "not-there"); err != nil || !ok {
		t.Fatalf("bucket not created: %v, %v", ok, err)
	}
	if err := s.Put(ctx, "x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	// Opening again (the bucket now exists) is fine, with or without it.
	openS3(t, cfg)
	cfg.CreateBucket = false
	openS3(t, cfg)
	// OpenS3 is the same as a Storage.
	st, err := OpenS3(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.(*S3).Close()
	if b, err := st.Get(ctx, "x"); err != nil || string(b) != "1" {
		t.Fatalf("OpenS3 storage Get = %q, %v", b, err)
	}
	cfg.URL = "s3://still-not-there"
	if st, err := OpenS3(ctx, cfg); err == nil || st != nil {
		t.Fatalf("OpenS3 of a missing bucket = %v, %v; want a nil Storage and an error", st, err)
	}
}

func TestS3WrongCredentials(t *testing.T) {
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	const badSecret = "wrong-secret-0123456789"
	for _, tc := range []struct {
		name string
		edit func(*S3Config)
	}{
		{"secret key", func(c *S3Config) { c.SecretKey = badSecret }},
		{"access key", func(c *S3Config) { c.AccessKey = "nobody"; c.SecretKey = badSecret }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, create := range []bool{false, true} {
				cfg := s3Config(m, "ebbflow-test", "ckpts")
				cfg.CreateBucket = create
				tc.edit(&cfg)
				start := time.Now()
				s, err := NewS3(ctx, cfg)
				if err == nil {
					s.Close()
					t.Fatal("NewS3 with wrong credentials succeeded")
				}
				if d := time.Since(start); d > 10*time.Second {
					t.Errorf("refused credentials took %v to report", d)
				}
				if want := "credentials refused by " + m.Endpoint; !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q lacks %q", err, want)
				}
				noSecret(t, badSecret, err)
				noSecret(t, m.SecretKey, err)
				if strings.Contains(fmt.Sprint(cfg), badSecret) || strings.Contains(fmt.Sprintf("%+v %#v", cfg, cfg), badSecret) {
					t.Fatal("the config prints the secret")
				}
			}
		})
	}
	// Credentials that are refused after opening (rotated): every operation
	// says so, without the secret.
	s := openS3(t, s3Config(m, "ebbflow-test", "ckpts"))
	s.client, _ = minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, badSecret, ""), Transport: s.tr})
	errs := s3OpErrors(ctx, s)
	for op, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "credentials refused by "+m.Endpoint) {
			t.Errorf("%s with a refused secret: %v", op, err)
		}
		noSecret(t, badSecret, err)
	}
}

// s3OpErrors runs every Storage operation, all at once (in an outage each
// takes as long as minio-go's retries), and returns their errors.
func s3OpErrors(ctx context.Context, s Storage) map[string]error {
	ops := map[string]func() error{
		"Put":          func() error { return s.Put(ctx, "wc/chk-1/a", []byte("x")) },
		"PutIfAbsent":  func() error { return s.PutIfAbsent(ctx, "wc/chk-1/_metadata", []byte("x")) },
		"Get":          func() error { _, err := s.Get(ctx, "wc/chk-1/_metadata"); return err },
		"List":         func() error { _, err := s.List(ctx, "wc/"); return err },
		"Delete":       func() error { return s.Delete(ctx, "wc/chk-2/a") },
		"DeletePrefix": func() error { return s.DeletePrefix(ctx, "wc/chk-3/") },
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := map[string]error{}
	for op, f := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f()
			mu.Lock()
			errs[op] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errs
}

func TestS3UnreachableEndpoint(t *testing.T) {
	ctx := context.Background()
	endpoint := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) // nobody listens there
	cfg := S3Config{URL: "s3://ebbflow-test/ckpts", Endpoint: endpoint, AccessKey: "ebbflow-test", SecretKey: "ebbflow-unreachable-secret", CreateBucket: true}
	start := time.Now()
	s, err := NewS3(ctx, cfg)
	if err == nil {
		s.Close()
		t.Fatal("NewS3 of an unreachable endpoint succeeded")
	}
	t.Logf("unreachable endpoint reported after %v: %v", time.Since(start).Round(time.Millisecond), err)
	for _, want := range []string{endpoint, "unreachable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	noSecret(t, cfg.SecretKey, err)

	// An endpoint that accepts connections but never answers: the
	// context's deadline ends the wait, and stays visible.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		<-accepted
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	cfg.Endpoint = ln.Addr().String()
	ctx2, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = NewS3(ctx2, cfg)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "s3://ebbflow-test/ckpts") || !strings.Contains(err.Error(), cfg.Endpoint) {
		t.Fatalf("NewS3 of a silent endpoint with a deadline: %v, want DeadlineExceeded naming the storage and endpoint", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the deadline was not respected: %v", d)
	}
}

// MinIO goes away mid-way: operations fail with errors that say where;
// once it is back, the same storage works again.
func TestS3Outage(t *testing.T) {
	ctx := context.Background()
	s, m := newS3(t)
	if err := s.Put(ctx, "wc/chk-1/a", []byte("before")); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	opCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	err := s.Put(opCtx, "wc/chk-2/a", []byte("during"))
	t.Logf("Put during the outage failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("Put succeeded while MinIO was stopped")
	}
	for _, want := range []string{"s3://ebbflow-test/ckpts/wc/chk-2/a", m.Endpoint} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	for op, err := range s3OpErrors(opCtx, s) {
		if err == nil {
			t.Errorf("%s succeeded while MinIO was stopped", op)
		} else if !strings.Contains(err.Error(), m.Endpoint) {
			t.Errorf("%s: error %q does not name the endpoint", op, err)
		}
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) {
			t.Errorf("%s: an outage reported as %v", op, err)
		}
		noSecret(t, m.SecretKey, err)
	}
	m.Start(t)
	if err := s.Put(ctx, "wc/chk-2/a", []byte("after")); err != nil {
		t.Fatalf("Put after MinIO came back: %v", err)
	}
	for name, want := range map[string]string{"wc/chk-1/a": "before", "wc/chk-2/a": "after"} {
		if got, err := s.Get(ctx, name); err != nil || string(got) != want {
			t.Fatalf("Get(%s) after the outage = %q, %v", name, got, err)
		}
	}
}

func TestS3ContextCancelled(t *testing.T) {
	s, m := newS3(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for op, err := range s3OpErrors(ctx, s) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", op, err)
		}
	}
	// A large upload stops when its context is cancelled.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	err := s.Put(ctx, "big", make([]byte, 160<<20))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Put cancelled mid-way: %v, want context.Canceled", err)
	}
	if _, err := s.Get(context.Background(), "big"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a cancelled Put left an object (or Get failed): %v", err)
	}
	// The cancelled multipart upload was aborted.
	for up := range rawS3(t, m).ListIncompleteUploads(context.Background(), "ebbflow-test", "", true) {
		if up.Err != nil {
			t.Fatal(up.Err)
		}
		t.Errorf("cancelled upload left behind: %s %s", up.Key, up.UploadID)
	}
}

// The checkpoint write and restore path of the runtime on S3: task data
// objects, _metadata create-only, then Assign/Load onto other parallelisms.
func TestS3CheckpointRestore(t *testing.T) {
	ctx := context.Background()
	s, _ := newS3(t)
	const maxP = 16
	for p := 1; p <= 3; p++ {
		w := writeCheckpoint(t, s, "wc", int64(p), p == 2, p, maxP)
		names, err := s.List(ctx, w.dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(names) != p+1 || names[0] != w.dir+MetadataName {
			t.Fatalf("checkpoint %d objects: %q", p, names)
		}
		// _metadata is create-only: a second completion of the same id fails.
		if err := s.PutIfAbsent(ctx, w.dir+MetadataName, []byte("{}")); !errors.Is(err, ErrExists) {
			t.Fatalf("second _metadata of checkpoint %d: %v", p, err)
		}
		for q := 1; q <= 4; q++ {
			keyed := map[int][]byte{}
			var list, union []string
			for j := 0; j < q; j++ {
				objects := NewReadCache()
				for _, op := range []string{opKeyed, opList, opUnion} {
					rs, err := LoadCached(ctx, s, w.dir, w.md.ID, Assign(w.md, op, j, q), objects)
					if err != nil {
						t.Fatalf("%d->%d subtask %d %s: %v", p, q, j, op, err)
					}
					for kg, b := range rs.KeyGroups {
						keyed[kg] = b
					}
					for _, b := range rs.List {
						switch op {
						case opList:
							list = append(list, string(b))
						case opUnion:
							union = append(union, string(b))
						}
					}
				}
			}
			if !reflect.DeepEqual(keyed, w.keyed) {
				t.Fatalf("%d->%d: restored %d key groups, want %d", p, q, len(keyed), len(w.keyed))
			}
			if len(list) != len(w.list) {
				t.Fatalf("%d->%d: restored %d list entries, want %d", p, q, len(list), len(w.list))
			}
			if len(union) != q*len(w.union) {
				t.Fatalf("%d->%d: restored %d union entries, want %d", p, q, len(union), q*len(w.union))
			}
		}
	}
	// A corrupt object is ErrCorrupt naming it by its S3 URL.
	w := writeCheckpoint(t, s, "wc", 10, false, 2, maxP)
	name := w.dir + w.objects[0]
	orig, err := s.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), orig...)
	bad[0] ^= 0x20
	if err := s.Put(ctx, name, bad); err != nil {
		t.Fatal(err)
	}
	var corrupt error
	for _, op := range []string{opKeyed, opList, opUnion} {
		if _, err := Load(ctx, s, w.dir, w.md.ID, Assign(w.md, op, 0, 1)); err != nil {
			corrupt = err
		}
	}
	if !errors.Is(corrupt, ErrCorrupt) || !strings.Contains(corrupt.Error(), "s3://ebbflow-test/ckpts/"+name) {
		t.Fatalf("flipped byte: %v, want ErrCorrupt naming s3://ebbflow-test/ckpts/%s", corrupt, name)
	}
	// A missing object is ErrNotFound naming it.
	if err := s.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	_, err = Load(ctx, s, w.dir, w.md.ID, Assign(w.md, opUnion, 0, 1))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "s3://ebbflow-test/ckpts/"+name) {
		t.Fatalf("missing object: %v", err)
	}
	// Cleaning up a checkpoint folder.
	if err := s.DeletePrefix(ctx, w.dir); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMetadata(ctx, s, w.dir); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadMetadata after DeletePrefix: %v", err)
	}
}

func TestS3URLHasNoSecrets(t *testing.T) {
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	for _, tc := range []struct{ url, want string }{
		{"s3://ckpt-bucket/ckpts", "s3://ckpt-bucket/ckpts"},
		{"s3://ckpt-bucket/ckpts/", "s3://ckpt-bucket/ckpts"},
		{"s3://ckpt-bucket/a/b/c", "s3://ckpt-bucket/a/b/c"},
		{"s3://ckpt-bucket", "s3://ckpt-bucket"},
		{"s3://ckpt-bucket/", "s3://ckpt-bucket"},
	} {
		cfg := s3Config(m, "", "")
		cfg.URL = tc.url
		s := openS3(t, cfg)
		if s.URL() != tc.want {
			t.Errorf("URL() of %s = %q, want %q", tc.url, s.URL(), tc.want)
		}
		for _, shown := range []string{s.URL(), fmt.Sprint(s), fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg), cfg.String()} {
			if strings.Contains(shown, m.SecretKey) {
				t.Fatalf("%q shows the secret key", shown)
			}
		}
		if s.URL() != fmt.Sprint(s) || strings.Contains(s.URL(), m.AccessKey) {
			t.Errorf("URL %q / String %q", s.URL(), fmt.Sprint(s))
		}
	}
	cfg := s3Config(m, "ebbflow-test", "")
	if !strings.Contains(cfg.String(), "[redacted]") || !strings.Contains(cfg.String(), m.AccessKey) {
		t.Errorf("String() = %s, want the access key and a redacted secret", cfg)
	}
	if strings.Contains(S3Config{}.String(), "[redacted]") {
		t.Errorf("String() of an empty config claims a secret: %s", S3Config{})
	}
	_ = ctx
}

func TestS3ConfigValidate(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	const secret = "validate-secret-0123456789"
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	good := S3Config{URL: "s3://bucket/prefix", Endpoint: "127.0.0.1:9000", AccessKey: "ak", SecretKey: secret}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, edit := range []func(*S3Config){
		func(c *S3Config) { c.Endpoint = "s3.example.com" }, // default port
		func(c *S3Config) { c.Endpoint = "[::1]:9000" },
		func(c *S3Config) { c.Region = "eu-west-1" },
		func(c *S3Config) { c.SecretKey, c.SecretKeyFile = "", secretFile },
		func(c *S3Config) { c.PartSize = 5 << 20 },
		func(c *S3Config) { c.URL = "s3://bucket" },
		func(c *S3Config) { c.URL = "s3://my.bucket-1/a/b/" },
	} {
		c := good
		edit(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%v): %v", c, err)
		}
	}
	for _, tc := range []struct {
		edit func(*S3Config)
		want []string
	}{
		{func(c *S3Config) { c.URL = "" }, []string{"checkpoint.dir", "empty"}},
		{func(c *S3Config) { c.URL = "file:///tmp/x" }, []string{"checkpoint.dir", "s3://"}},
		{func(c *S3Config) { c.URL = "s3:///prefix" }, []string{"checkpoint.dir", "no bucket"}},
		{func(c *S3Config) { c.URL = "s3://Bad_Bucket/x" }, []string{"checkpoint.dir", `"Bad_Bucket"`}},
		{func(c *S3Config) { c.URL = "s3://bucket/x/../y" }, []string{"checkpoint.dir", "prefix"}},
		{func(c *S3Config) { c.URL = "s3://bucket/a?versionId=1" }, []string{"checkpoint.dir", "query"}},
		{func(c *S3Config) { c.URL = "s3://ak:" + secret + "@bucket/x" }, []string{"checkpoint.dir", "credentials", "s3.secret-key-file"}},
		{func(c *S3Config) { c.Endpoint = "" }, []string{"s3.endpoint", "empty"}},
		{func(c *S3Config) { c.Endpoint = "http://127.0.0.1:9000" }, []string{"s3.endpoint", "scheme", "s3.tls"}},
		{func(c *S3Config) { c.Endpoint = "127.0.0.1:9000/path" }, []string{"s3.endpoint", "host:port"}},
		{func(c *S3Config) { c.Endpoint = "127.0.0.1:port" }, []string{"s3.endpoint", "port"}},
		{func(c *S3Config) { c.Endpoint = ":9000" }, []string{"s3.endpoint", "host"}},
		{func(c *S3Config) { c.Region = "EU West" }, []string{"s3.region"}},
		{func(c *S3Config) { c.AccessKey = "" }, []string{"s3.access-key", "empty"}},
		{func(c *S3Config) { c.SecretKey = "" }, []string{"s3.secret-key", "s3.secret-key-file"}},
		{func(c *S3Config) { c.SecretKeyFile = secretFile }, []string{"s3.secret-key", "s3.secret-key-file", "only one"}},
		{func(c *S3Config) { c.SecretKey, c.SecretKeyFile = "", filepath.Join(dir, "missing") }, []string{"s3.secret-key-file", "missing", "no such file"}},
		{func(c *S3Config) { c.SecretKey, c.SecretKeyFile = "", emptyFile }, []string{"s3.secret-key-file", "empty"}},
		{func(c *S3Config) { c.SecretKey, c.SecretKeyFile = "", dir }, []string{"s3.secret-key-file", dir}},
		{func(c *S3Config) { c.CAFile = notPEM }, []string{"s3.ca-file", "s3.tls"}},
		{func(c *S3Config) { c.UseTLS, c.CAFile = true, notPEM }, []string{"s3.ca-file", "no PEM certificate"}},
		{func(c *S3Config) { c.UseTLS, c.CAFile = true, filepath.Join(dir, "nope.pem") }, []string{"s3.ca-file", "nope.pem"}},
		{func(c *S3Config) { c.PartSize = 1 << 20 }, []string{"s3.part-size"}},
	} {
		c := good
		tc.edit(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("Validate(%v) accepted it", c)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%v): error %q lacks %q", c, err, w)
			}
		}
		noSecret(t, secret, err)
		// NewS3 refuses it the same way, before any network traffic.
		if _, err2 := NewS3(context.Background(), c); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("NewS3(%v) = %v, want %v", c, err2, err)
		}
		if strings.Contains(c.String(), secret) {
			t.Errorf("String() shows the secret: %s", c)
		}
	}
}

func TestS3SecretKeyFile(t *testing.T) {
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(m.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := s3Config(m, "ebbflow-test", "ckpts")
	cfg.SecretKey, cfg.SecretKeyFile = "", file
	s := openS3(t, cfg)
	if err := s.Put(ctx, "x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cfg.String(), m.SecretKey) {
		t.Fatal("String shows the secret")
	}
	// A wrong secret in the file: refused, and its content is not shown.
	if err := os.WriteFile(file, []byte("file-secret-that-is-wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewS3(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "credentials refused by "+m.Endpoint) {
		t.Fatalf("wrong secret in the file: %v", err)
	}
	noSecret(t, "file-secret-that-is-wrong", err)
}

// Every failure path's error, gathered in one place: none shows the
// secret key.
func TestS3ErrorsNeverShowTheSecret(t *testing.T) {
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	secrets := []string{m.SecretKey, "a-wrong-secret-key-42"}
	var errs []error
	collect := func(err error) {
		if err == nil {
			t.Helper()
			t.Fatal("expected an error")
		}
		errs = append(errs, err)
	}
	open := func(edit func(*S3Config)) {
		cfg := s3Config(m, "ebbflow-test", "ckpts")
		edit(&cfg)
		s, err := NewS3(ctx, cfg)
		if err == nil {
			s.Close()
		}
		collect(err)
	}
	open(func(c *S3Config) { c.SecretKey = secrets[1] })
	open(func(c *S3Config) { c.AccessKey = "nobody" })
	open(func(c *S3Config) { c.URL, c.CreateBucket = "s3://missing", false })
	open(func(c *S3Config) { c.URL = "s3://ak:" + m.SecretKey + "@bucket" })
	open(func(c *S3Config) { c.URL = "s3://" + m.SecretKey + "@bucket" })
	open(func(c *S3Config) { c.Endpoint = "http://ak:" + m.SecretKey + "@127.0.0.1:1" })
	open(func(c *S3Config) { c.SecretKeyFile = "/nonexistent" })
	open(func(c *S3Config) { c.Endpoint = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) })
	if s, err := NewS3(ctx, func() S3Config { c := s3Config(m, "ebbflow-test", "ckpts"); c.Region = "eu-central-1"; return c }()); err == nil {
		s.Close() // MinIO without a configured region takes any
	} else {
		errs = append(errs, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := NewS3(cctx, s3Config(m, "ebbflow-test", "ckpts"))
	collect(err)

	s := openS3(t, s3Config(m, "ebbflow-test", "ckpts"))
	_, err = s.Get(ctx, "missing")
	collect(err)
	if err := s.PutIfAbsent(ctx, "once", nil); err != nil {
		t.Fatal(err)
	}
	collect(s.PutIfAbsent(ctx, "once", nil))
	collect(s.Put(ctx, "../bad", nil))
	for _, err := range s3OpErrors(cctx, s) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	// Rotated credentials and an outage.
	bad := openS3(t, s3Config(m, "ebbflow-test", "ckpts"))
	bad.client, _ = minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, secrets[1], ""), Transport: bad.tr})
	for _, err := range s3OpErrors(ctx, bad) {
		collect(err)
	}
	m.Stop()
	octx, ocancel := context.WithTimeout(ctx, time.Minute)
	defer ocancel()
	for _, err := range s3OpErrors(octx, s) {
		collect(err)
	}
	open(func(c *S3Config) {})
	for _, err := range errs {
		for _, sec := range secrets {
			noSecret(t, sec, err)
		}
	}
	t.Logf("%d errors checked", len(errs))
}

// TLS with a private CA: s3.ca-file makes it trusted; without it the
// certificate is refused with an error that names the endpoint.
func TestS3TLSWithCAFile(t *testing.T) {
	ctx := context.Background()
	bin := os.Getenv("EBBFLOW_MINIO_BIN")
	if bin == "" {
		t.Fatal("EBBFLOW_MINIO_BIN is not set: run the tests through `make test`, or `eval $(scripts/tools.sh)` first")
	}
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := os.MkdirAll(filepath.Join(certs, "CAs"), 0o755); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	writeTestCert(t, filepath.Join(certs, "public.crt"), filepath.Join(certs, "private.key"), caFile)

	endpoint := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	const ak, sk = "ebbflow-tls", "ebbflow-tls-secret-key"
	cmd := exec.Command(bin, "server", "--quiet", "--certs-dir", certs, "--address", endpoint, "--console-address", "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)), filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+ak, "MINIO_ROOT_PASSWORD="+sk, "MINIO_BROWSER=off", "MINIO_UPDATE=off")
	logf, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}()
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get("https://" + endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("minio exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("TLS MinIO not ready: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}

	cfg := S3Config{URL: "s3://ebbflow-tls/ckpts", Endpoint: endpoint, AccessKey: ak, SecretKey: sk, UseTLS: true, CAFile: caFile, CreateBucket: true}
	s := openS3(t, cfg)
	if err := s.Put(ctx, "wc/chk-1/_metadata", []byte("over tls")); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Get(ctx, "wc/chk-1/_metadata"); err != nil || string(b) != "over tls" {
		t.Fatalf("Get over TLS = %q, %v", b, err)
	}
	// Without the CA the server's certificate is not trusted.
	cfg.CAFile = ""
	start := time.Now()
	_, err = NewS3(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), endpoint) || !strings.Contains(err.Error(), "not trusted") || !strings.Contains(err.Error(), "s3.ca-file") {
		t.Fatalf("TLS without the CA: %v, want a certificate error naming %s", err, endpoint)
	}
	t.Logf("untrusted certificate reported after %v: %v", time.Since(start).Round(time.Millisecond), err)
	noSecret(t, sk, err)
	// Plain http to a TLS port fails too, naming the endpoint.
	cfg.UseTLS = false
	_, err = NewS3(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), endpoint) || !strings.Contains(err.Error(), "s3.tls") {
		t.Fatalf("http to a TLS endpoint: %v", err)
	}
	t.Logf("http to a TLS endpoint: %v", err)
	noSecret(t, sk, err)
}

// writeTestCert writes a self-signed CA certificate for 127.0.0.1 and its
// key (MinIO's public.crt / private.key), and the CA bundle.
func writeTestCert(t *testing.T, certFile, keyFile, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ebbflow test MinIO"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	for f, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM, caFile: certPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Racing create-only writers of objects larger than the part size
// (multipart uploads): still exactly one wins.
func TestS3PutIfAbsentMultipartRace(t *testing.T) {
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	cfg := s3Config(m, "ebbflow-test", "")
	cfg.PartSize = 5 << 20
	s := openS3(t, cfg)
	for round := 0; round < 3; round++ {
		racePutIfAbsent(t, s, round, 4, 11<<20)
	}
	for up := range rawS3(t, m).ListIncompleteUploads(ctx, "ebbflow-test", "", true) {
		if up.Err != nil {
			t.Fatal(up.Err)
		}
		t.Errorf("incomplete upload left behind: %s %s", up.Key, up.UploadID)
	}
}

// PutIfAbsent of a multipart object relies on the server checking
// If-None-Match when the upload completes, not only when it starts: a
// writer that created the object in between must win.
func TestS3MinIOChecksIfNoneMatchOnComplete(t *testing.T) {
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	openS3(t, s3Config(m, "ebbflow-test", "")) // creates the bucket
	core := minio.Core{Client: rawS3(t, m)}
	opts := minio.PutObjectOptions{}
	opts.SetMatchETagExcept("*")
	id, err := core.NewMultipartUpload(ctx, "ebbflow-test", "k", opts)
	if err != nil {
		t.Fatal(err)
	}
	part, err := core.PutObjectPart(ctx, "ebbflow-test", "k", id, 1, bytes.NewReader([]byte("late")), 4, minio.PutObjectPartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.PutObject(ctx, "ebbflow-test", "k", bytes.NewReader([]byte("early")), 5, "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = core.CompleteMultipartUpload(ctx, "ebbflow-test", "k", id, []minio.CompletePart{{PartNumber: 1, ETag: part.ETag}}, opts)
	if code := minio.ToErrorResponse(err).Code; code != "PreconditionFailed" {
		t.Fatalf("completing a create-only upload over an object created meanwhile: %v (code %q), want PreconditionFailed", err, code)
	}
	_ = core.AbortMultipartUpload(ctx, "ebbflow-test", "k", id)
	obj, err := core.Client.GetObject(ctx, "ebbflow-test", "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(obj); err != nil || buf.String() != "early" {
		t.Fatalf("object = %q, %v; want the early writer's", buf.String(), err)
	}
}

// Downloads are read in ranges, several at a time, into one buffer: every
// size around the range boundaries comes back whole, and an object replaced
// while its ranges are read is an error rather than a mix of two versions.
func TestS3GetRanges(t *testing.T) {
	ctx := context.Background()
	s, m := newS3(t)
	const rs = 1000
	s.rangeSize = rs
	for _, n := range []int{0, 1, rs - 1, rs, rs + 1, 2 * rs, 7*rs + 13, 40 * rs} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*7 + i/rs) // a byte pattern that differs per range
		}
		name := fmt.Sprintf("ranges/%d", n)
		if err := s.Put(ctx, name, data); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, name)
		if err != nil {
			t.Fatalf("Get(%d bytes): %v", n, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("Get(%d bytes) returned %d bytes, different", n, len(got))
		}
	}
	// Replace an object between the first range and the rest: a second
	// storage with the default range size overwrites it from a goroutine
	// while the small-range storage reads it, many times, until one read
	// overlaps a replacement. No read may return a mix.
	other := openS3(t, s3Config(m, "ebbflow-test", "ckpts"))
	a := bytes.Repeat([]byte{'a'}, 200*rs)
	b := bytes.Repeat([]byte{'b'}, 200*rs)
	if err := s.Put(ctx, "ranges/changing", a); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			v := a
			if i%2 == 0 {
				v = b
			}
			if err := other.Put(ctx, "ranges/changing", v); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	changed := 0
	for i := 0; i < 200 && changed == 0; i++ {
		got, err := s.Get(ctx, "ranges/changing")
		if err != nil {
			if !strings.Contains(err.Error(), "changed while it was read") {
				t.Fatalf("Get during overwrites: %v", err)
			}
			changed++
			continue
		}
		if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			t.Fatalf("Get returned a mix of two versions")
		}
	}
	close(stop)
	<-done
	if changed == 0 {
		t.Log("no read overlapped an overwrite in 200 tries; the mix check above still ran on every read")
	}
}
