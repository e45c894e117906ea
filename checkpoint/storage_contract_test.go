package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/ebbflow/ebbflow/internal/testenv"
)

// The Storage contract, checked the same way for every implementation: Local
// in a temporary folder, S3 on a real MinIO. What only one storage does —
// where its bytes land, temporary files and folders, keys beside its
// prefix, credentials, TLS, multipart uploads, ranged downloads — is tested
// in storage_test.go and s3_test.go.

func TestLocalStorageContract(t *testing.T) {
	testStorageContract(t, newContractLocal)
}

func TestS3StorageContract(t *testing.T) {
	testStorageContract(t, newContractS3(testenv.StartMinIO(t)))
}

// testStorageContract runs every case of the contract, each on a fresh,
// empty storage from newStorage. newStorage may register cleanups that
// check, behind the storage's back, that the case left nothing but the
// objects List shows.
func testStorageContract(t *testing.T, newStorage func(t *testing.T) Storage) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, st Storage)
	}{
		{"PutGet", contractPutGet},
		{"PutIfAbsent", contractPutIfAbsent},
		{"PutIfAbsentRace", contractPutIfAbsentRace},
		{"GetMissing", contractGetMissing},
		{"GetRange", contractGetRange},
		{"BadNames", contractBadNames},
		{"List", func(t *testing.T, st Storage) { listContract(t, st, nil) }},
		{"Delete", contractDelete},
		{"DeletePrefix", contractDeletePrefix},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newStorage(t)) })
	}
}

// wantNamed fails unless err names the object by the storage's URL.
func wantNamed(t *testing.T, st Storage, err error, name string) {
	t.Helper()
	if want := st.URL() + "/" + name; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}

func contractPutGet(t *testing.T, st Storage) {
	ctx := context.Background()
	objs := map[string][]byte{
		"wc/chk-1/a1-c0-s0.state": []byte("state bytes"),
		"wc/chk-1/_metadata":      []byte(`{"version":1}`),
		"top":                     {},                                   // empty object
		"deep/a/b/c/d":            bytes.Repeat([]byte{0, 0xff}, 1<<16), // binary, 128 KiB
		"/leading-slash":          []byte("x"),
	}
	for name, data := range objs {
		if err := st.Put(ctx, name, data); err != nil {
			t.Fatalf("Put(%q): %v", name, err)
		}
	}
	for name, data := range objs {
		got, err := st.Get(ctx, name)
		if err != nil {
			t.Fatalf("Get(%q): %v", name, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("Get(%q) = %d bytes, want %d", name, len(got), len(data))
		}
	}
	// A leading slash names the same object.
	if got, err := st.Get(ctx, "leading-slash"); err != nil || string(got) != "x" {
		t.Fatalf("Get(leading-slash) = %q, %v", got, err)
	}
	// Put replaces.
	if err := st.Put(ctx, "top", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Get(ctx, "top"); string(got) != "v2" {
		t.Fatalf("after overwrite Get = %q", got)
	}
}

func contractPutIfAbsent(t *testing.T, st Storage) {
	ctx := context.Background()
	name := "wc/chk-3/_metadata"
	if err := st.PutIfAbsent(ctx, name, []byte("first")); err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{[]byte("second"), []byte("first"), nil} {
		err := st.PutIfAbsent(ctx, name, data)
		if !errors.Is(err, ErrExists) {
			t.Fatalf("PutIfAbsent over an existing object: err = %v, want ErrExists", err)
		}
		wantNamed(t, st, err, name)
	}
	if got, _ := st.Get(ctx, name); string(got) != "first" {
		t.Fatalf("refused PutIfAbsent changed the object to %q", got)
	}
	// An object written by Put is also protected.
	if err := st.Put(ctx, "p", []byte("put")); err != nil {
		t.Fatal(err)
	}
	if err := st.PutIfAbsent(ctx, "p", []byte("x")); !errors.Is(err, ErrExists) {
		t.Fatalf("PutIfAbsent over a Put object: %v", err)
	}
	// After Delete it can be created again.
	if err := st.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := st.PutIfAbsent(ctx, name, []byte("again")); err != nil {
		t.Fatalf("PutIfAbsent after Delete: %v", err)
	}
	if got, _ := st.Get(ctx, name); string(got) != "again" {
		t.Fatalf("after re-create Get = %q", got)
	}
}

// Racing create-only writers: exactly one wins and its bytes are stored
// whole.
func contractPutIfAbsentRace(t *testing.T, st Storage) {
	for round := 0; round < 5; round++ {
		racePutIfAbsent(t, st, round, 16, 4096)
	}
}

// racePutIfAbsent starts n writers of objects of size bytes under one name
// at once and checks that exactly one created it, with its bytes.
func racePutIfAbsent(t *testing.T, st Storage, round, n, size int) {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("job/chk-%d/_metadata", round)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = st.PutIfAbsent(ctx, name, bytes.Repeat([]byte{byte('a' + i)}, size))
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner != -1 {
				t.Fatalf("round %d: writers %d and %d both created %s", round, winner, i, name)
			}
			winner = i
		case !errors.Is(err, ErrExists):
			t.Fatalf("round %d writer %d: %v", round, i, err)
		}
	}
	if winner == -1 {
		t.Fatalf("round %d: no writer won", round)
	}
	got, err := st.Get(ctx, name)
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{byte('a' + winner)}, size)) {
		t.Fatalf("round %d: stored object is not the winner's: %v", round, err)
	}
}

func contractGetMissing(t *testing.T, st Storage) {
	ctx := context.Background()
	for _, name := range []string{"nope", "wc/chk-9/_metadata", "wc/chk-9/a1-c0-s0.state"} {
		_, err := st.Get(ctx, name)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(%q): err = %v, want ErrNotFound", name, err)
		}
		wantNamed(t, st, err, name)
	}
	// A folder is not an object.
	if err := st.Put(ctx, "d/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "d"); err == nil {
		t.Fatal("Get of a folder succeeded")
	}
}

// GetRange reads exactly the bytes asked for; a range past the object's end
// is ErrCorrupt (a restore must never read a short span), a missing object
// ErrNotFound.
func contractGetRange(t *testing.T, st Storage) {
	ctx := context.Background()
	if err := st.Put(ctx, "r/ten", []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "r/empty", nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		off, n int64
		want   string
	}{
		{"r/ten", 0, 10, "0123456789"},
		{"r/ten", 3, 4, "3456"},
		{"r/ten", 9, 1, "9"},
		{"r/ten", 0, 0, ""},
		{"r/ten", 10, 0, ""}, // at the end
		{"r/empty", 0, 0, ""},
	} {
		got, err := st.GetRange(ctx, tc.name, tc.off, tc.n)
		if err != nil || string(got) != tc.want {
			t.Fatalf("GetRange(%s, %d, %d) = %q, %v; want %q", tc.name, tc.off, tc.n, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name   string
		off, n int64
	}{
		{"r/ten", 8, 3},
		{"r/ten", 10, 1},
		{"r/ten", 11, 0},
		{"r/ten", 100, 5},
		{"r/ten", -1, 2},
		{"r/ten", 0, -1},
		{"r/empty", 0, 1},
	} {
		_, err := st.GetRange(ctx, tc.name, tc.off, tc.n)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("GetRange(%s, %d, %d): err = %v, want ErrCorrupt", tc.name, tc.off, tc.n, err)
		}
		wantNamed(t, st, err, tc.name)
	}
	for _, n := range []int64{0, 1} {
		_, err := st.GetRange(ctx, "r/nope", 0, n)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetRange(r/nope, 0, %d): err = %v, want ErrNotFound", n, err)
		}
		wantNamed(t, st, err, "r/nope")
	}
}

func contractBadNames(t *testing.T, st Storage) {
	ctx := context.Background()
	bad := []string{"", "/", ".", "..", "../x", "a/../../x", "a/..", "x/../y", `..\x`}
	for _, name := range bad {
		for op, f := range map[string]func() error{
			"Put":         func() error { return st.Put(ctx, name, []byte("x")) },
			"PutIfAbsent": func() error { return st.PutIfAbsent(ctx, name, []byte("x")) },
			"Get":         func() error { _, err := st.Get(ctx, name); return err },
			"GetRange":    func() error { _, err := st.GetRange(ctx, name, 0, 1); return err },
			"Delete":      func() error { return st.Delete(ctx, name) },
		} {
			err := f()
			if err == nil {
				t.Fatalf("%s(%q) accepted a bad name", op, name)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
				t.Errorf("%s(%q): error %q does not quote the name", op, name, err)
			}
		}
	}
	if err := st.DeletePrefix(ctx, "../"); err == nil {
		t.Fatal(`DeletePrefix("../") accepted`)
	}
	// (That nothing escaped the storage is for the cleanups of newStorage
	// to check.)
	if names, err := st.List(ctx, ""); err != nil || len(names) != 0 {
		t.Fatalf("bad names created objects: %q, %v", names, err)
	}
}

// listContract puts objects, lets litter (if not nil) add things behind the
// storage's back that are not its objects, and checks List.
func listContract(t *testing.T, st Storage, litter func()) {
	t.Helper()
	ctx := context.Background()
	names := []string{"wc/chk-10/_metadata", "wc/chk-2/a1-c0-s0.state", "wc/chk-2/_metadata", "wc/chk-1/a1-c1-s0.state", "wc/savepoint-4/_metadata", "other/chk-1/_metadata"}
	for _, n := range names {
		if err := st.Put(ctx, n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	if litter != nil {
		litter()
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"other/chk-1/_metadata", "wc/chk-1/a1-c1-s0.state", "wc/chk-10/_metadata", "wc/chk-2/_metadata", "wc/chk-2/a1-c0-s0.state", "wc/savepoint-4/_metadata"}},
		{"wc/chk-", []string{"wc/chk-1/a1-c1-s0.state", "wc/chk-10/_metadata", "wc/chk-2/_metadata", "wc/chk-2/a1-c0-s0.state"}},
		{"wc/chk-1", []string{"wc/chk-1/a1-c1-s0.state", "wc/chk-10/_metadata"}}, // a prefix, not a folder
		{"wc/chk-1/", []string{"wc/chk-1/a1-c1-s0.state"}},
		{"wc/savepoint-", []string{"wc/savepoint-4/_metadata"}},
		{"nothing/", nil},
	} {
		got, err := st.List(ctx, tc.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.prefix, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

func contractDelete(t *testing.T, st Storage) {
	ctx := context.Background()
	if err := st.Put(ctx, "a/b", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "a/b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := st.Delete(ctx, "a/b"); err != nil {
		t.Fatalf("Delete of a missing object: %v", err)
	}
	if err := st.Delete(ctx, "never/was"); err != nil {
		t.Fatalf("Delete of a missing object in a missing folder: %v", err)
	}
}

func contractDeletePrefix(t *testing.T, st Storage) {
	ctx := context.Background()
	put := func(names ...string) {
		for _, n := range names {
			if err := st.Put(ctx, n, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	list := func(prefix string) []string {
		got, err := st.List(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	put("wc/chk-1/a", "wc/chk-1/_metadata", "wc/chk-1/sub/deep", "wc/chk-10/_metadata", "wc/chk-2/_metadata")

	// A folder prefix removes exactly that folder, also its subfolders.
	if err := st.DeletePrefix(ctx, "wc/chk-1/"); err != nil {
		t.Fatal(err)
	}
	if got, want := list("wc/"), []string{"wc/chk-10/_metadata", "wc/chk-2/_metadata"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after DeletePrefix(wc/chk-1/): %q, want %q", got, want)
	}
	// A missing folder is fine.
	if err := st.DeletePrefix(ctx, "wc/chk-77/"); err != nil {
		t.Fatalf("DeletePrefix of a missing folder: %v", err)
	}
	// A name prefix removes every object whose name starts with it (like an
	// S3 prefix): chk-1 also matches chk-10.
	put("wc/chk-1/a")
	if err := st.DeletePrefix(ctx, "wc/chk-1"); err != nil {
		t.Fatal(err)
	}
	if got, want := list("wc/"), []string{"wc/chk-2/_metadata"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after DeletePrefix(wc/chk-1): %q, want %q", got, want)
	}
	if err := st.DeletePrefix(ctx, "wc/nothing"); err != nil {
		t.Fatal(err)
	}
	if got := list(""); len(got) != 1 {
		t.Fatalf("unrelated objects deleted: %q", got)
	}
	// DeletePrefix("") empties the storage.
	put("top", "deep/a/b")
	if err := st.DeletePrefix(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := list(""); len(got) != 0 {
		t.Fatalf("after DeletePrefix(\"\"): %q", got)
	}
}
