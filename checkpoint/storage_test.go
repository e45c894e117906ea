package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func newLocal(t *testing.T) (*Local, string) {
	t.Helper()
	dir := t.TempDir()
	l, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l, dir
}

// leftovers lists temporary files (.tmp-*, .probe-*) anywhere under root.
func leftovers(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".tmp-") || strings.HasPrefix(d.Name(), ".probe-") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLocalPutGet(t *testing.T) {
	ctx := context.Background()
	l, root := newLocal(t)
	if got, want := l.URL(), "file://"+root; got != want {
		t.Fatalf("URL = %q, want %q", got, want)
	}
	objs := map[string][]byte{
		"wc/chk-1/a1-c0-s0.state": []byte("state bytes"),
		"wc/chk-1/_metadata":      []byte(`{"version":1}`),
		"top":                     {},                                   // empty object
		"deep/a/b/c/d":            bytes.Repeat([]byte{0, 0xff}, 1<<16), // binary, 128 KiB
		"/leading-slash":          []byte("x"),
	}
	for name, data := range objs {
		if err := l.Put(ctx, name, data); err != nil {
			t.Fatalf("Put(%q): %v", name, err)
		}
	}
	for name, data := range objs {
		got, err := l.Get(ctx, name)
		if err != nil {
			t.Fatalf("Get(%q): %v", name, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("Get(%q) = %d bytes, want %d", name, len(got), len(data))
		}
	}
	// The object is a plain file at root/name.
	b, err := os.ReadFile(filepath.Join(root, "wc", "chk-1", "a1-c0-s0.state"))
	if err != nil || string(b) != "state bytes" {
		t.Fatalf("file on disk: %q, %v", b, err)
	}
	// A leading slash names the same object.
	if got, err := l.Get(ctx, "leading-slash"); err != nil || string(got) != "x" {
		t.Fatalf("Get(leading-slash) = %q, %v", got, err)
	}
	// Put replaces.
	if err := l.Put(ctx, "top", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Get(ctx, "top"); string(got) != "v2" {
		t.Fatalf("after overwrite Get = %q", got)
	}
	if lo := leftovers(t, root); len(lo) != 0 {
		t.Fatalf("temporary files left behind: %v", lo)
	}
}

func TestLocalPutIfAbsent(t *testing.T) {
	ctx := context.Background()
	l, root := newLocal(t)
	name := "wc/chk-3/_metadata"
	if err := l.PutIfAbsent(ctx, name, []byte("first")); err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{[]byte("second"), []byte("first"), nil} {
		err := l.PutIfAbsent(ctx, name, data)
		if !errors.Is(err, ErrExists) {
			t.Fatalf("PutIfAbsent over an existing object: err = %v, want ErrExists", err)
		}
		if !strings.Contains(err.Error(), root+"/"+name) {
			t.Fatalf("error %q does not name the object", err)
		}
	}
	if got, _ := l.Get(ctx, name); string(got) != "first" {
		t.Fatalf("refused PutIfAbsent changed the object to %q", got)
	}
	// An object written by Put is also protected.
	if err := l.Put(ctx, "p", []byte("put")); err != nil {
		t.Fatal(err)
	}
	if err := l.PutIfAbsent(ctx, "p", []byte("x")); !errors.Is(err, ErrExists) {
		t.Fatalf("PutIfAbsent over a Put object: %v", err)
	}
	// After Delete it can be created again.
	if err := l.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := l.PutIfAbsent(ctx, name, []byte("again")); err != nil {
		t.Fatalf("PutIfAbsent after Delete: %v", err)
	}
	if lo := leftovers(t, root); len(lo) != 0 {
		t.Fatalf("temporary files left behind (also after refused writes): %v", lo)
	}
}

// Racing create-only writers: exactly one wins and its bytes are stored
// whole.
func TestLocalPutIfAbsentRace(t *testing.T) {
	ctx := context.Background()
	l, root := newLocal(t)
	const n = 16
	for round := 0; round < 5; round++ {
		name := fmt.Sprintf("job/chk-%d/_metadata", round)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = l.PutIfAbsent(ctx, name, bytes.Repeat([]byte{byte('a' + i)}, 4096))
			}()
		}
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
		got, err := l.Get(ctx, name)
		if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{byte('a' + winner)}, 4096)) {
			t.Fatalf("round %d: stored object is not the winner's: %v", round, err)
		}
	}
	if lo := leftovers(t, root); len(lo) != 0 {
		t.Fatalf("temporary files left behind: %v", lo)
	}
}

func TestLocalGetMissing(t *testing.T) {
	ctx := context.Background()
	l, root := newLocal(t)
	for _, name := range []string{"nope", "wc/chk-9/_metadata", "wc/chk-9/a1-c0-s0.state"} {
		_, err := l.Get(ctx, name)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(%q): err = %v, want ErrNotFound", name, err)
		}
		if want := "file://" + root + "/" + name; !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not name %s", err, want)
		}
	}
	// A folder is not an object.
	if err := l.Put(ctx, "d/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(ctx, "d"); err == nil {
		t.Fatal("Get of a folder succeeded")
	}
}

func TestLocalBadNames(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	l, err := NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	bad := []string{"", "/", ".", "..", "../x", "a/../../x", "a/..", "x/../y", `..\x`}
	for _, name := range bad {
		for op, f := range map[string]func() error{
			"Put":         func() error { return l.Put(ctx, name, []byte("x")) },
			"PutIfAbsent": func() error { return l.PutIfAbsent(ctx, name, []byte("x")) },
			"Get":         func() error { _, err := l.Get(ctx, name); return err },
			"Delete":      func() error { return l.Delete(ctx, name) },
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
	if err := l.DeletePrefix(ctx, "../"); err == nil {
		t.Fatal(`DeletePrefix("../") accepted`)
	}
	// Nothing escaped the root.
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 || ents[0].Name() != "root" {
		t.Fatalf("files written outside the root: %v", ents)
	}
	if names, _ := l.List(ctx, ""); len(names) != 0 {
		t.Fatalf("bad names created objects: %v", names)
	}
}

func TestLocalList(t *testing.T) {
	ctx := context.Background()
	l, root := newLocal(t)
	names := []string{"wc/chk-10/_metadata", "wc/chk-2/a1-c0-s0.state", "wc/chk-2/_metadata", "wc/chk-1/a1-c1-s0.state", "wc/savepoint-4/_metadata", "other/chk-1/_metadata"}
	for _, n := range names {
		if err := l.Put(ctx, n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	// Stray temporary files (a crash mid-write) are not objects.
	if err := os.WriteFile(filepath.Join(root, "wc", "chk-2", ".tmp-123"), []byte("torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ".probe-9"), nil, 0o644); err != nil {
		t.Fatal(err)
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
		got, err := l.List(ctx, tc.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.prefix, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

func TestLocalDelete(t *testing.T) {
	ctx := context.Background()
	l, _ := newLocal(t)
	if err := l.Put(ctx, "a/b", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := l.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(ctx, "a/b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := l.Delete(ctx, "a/b"); err != nil {
		t.Fatalf("Delete of a missing object: %v", err)
	}
	if err := l.Delete(ctx, "never/was"); err != nil {
		t.Fatalf("Delete of a missing object in a missing folder: %v", err)
	}
}

func TestLocalDeletePrefix(t *testing.T) {
	ctx := context.Background()
	l, root := newLocal(t)
	put := func(names ...string) {
		for _, n := range names {
			if err := l.Put(ctx, n, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	list := func(prefix string) []string {
		got, err := l.List(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	put("wc/chk-1/a", "wc/chk-1/_metadata", "wc/chk-1/sub/deep", "wc/chk-10/_metadata", "wc/chk-2/_metadata")

	// A folder prefix removes exactly that folder, also its subfolders.
	if err := l.DeletePrefix(ctx, "wc/chk-1/"); err != nil {
		t.Fatal(err)
	}
	if got, want := list("wc/"), []string{"wc/chk-10/_metadata", "wc/chk-2/_metadata"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after DeletePrefix(wc/chk-1/): %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(root, "wc", "chk-1")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("folder wc/chk-1 still exists: %v", err)
	}
	// A missing folder is fine.
	if err := l.DeletePrefix(ctx, "wc/chk-77/"); err != nil {
		t.Fatalf("DeletePrefix of a missing folder: %v", err)
	}
	// A name prefix removes every object whose name starts with it (like an
	// S3 prefix): chk-1 also matches chk-10.
	put("wc/chk-1/a")
	if err := l.DeletePrefix(ctx, "wc/chk-1"); err != nil {
		t.Fatal(err)
	}
	if got, want := list("wc/"), []string{"wc/chk-2/_metadata"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after DeletePrefix(wc/chk-1): %q, want %q", got, want)
	}
	if err := l.DeletePrefix(ctx, "wc/nothing"); err != nil {
		t.Fatal(err)
	}
	if got := list(""); len(got) != 1 {
		t.Fatalf("unrelated objects deleted: %q", got)
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ckpts")

	st, err := Open("file://" + dir)
	if err != nil {
		t.Fatalf("Open(file://%s): %v", dir, err)
	}
	if st.URL() != "file://"+dir {
		t.Fatalf("URL = %q", st.URL())
	}
	if err := st.Put(ctx, "wc/chk-1/_metadata", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "wc", "chk-1", "_metadata")); err != nil || string(b) != "m" {
		t.Fatalf("object not stored under the folder: %q, %v", b, err)
	}
	// A plain path opens the same folder.
	st2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := st2.Get(ctx, "wc/chk-1/_metadata"); err != nil || string(b) != "m" {
		t.Fatalf("plain path: %q, %v", b, err)
	}
	if lo := leftovers(t, dir); len(lo) != 0 {
		t.Fatalf("Open left probe files: %v", lo)
	}

	for _, tc := range []struct {
		dir  string
		want []string // substrings of the error
	}{
		{"", []string{"checkpoint.dir", "empty"}},
		{"s3://bucket/prefix", []string{"s3://bucket/prefix", "S3"}},
		{"gs://bucket/x", []string{"gs://bucket/x", `"gs"`}},
		{"http://host/x", []string{`"http"`}},
	} {
		_, err := Open(tc.dir)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", tc.dir)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Open(%q): error %q lacks %q", tc.dir, err, w)
			}
		}
	}
}

func TestOpenUnwritable(t *testing.T) {
	parent := t.TempDir()
	// A path below a regular file can never be created, even by root.
	file := filepath.Join(parent, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	below := filepath.Join(file, "ckpts")
	if _, err := Open("file://" + below); err == nil || !strings.Contains(err.Error(), below) {
		t.Fatalf("Open below a regular file: err = %v, want one naming %s", err, below)
	}

	t.Run("read-only folder", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("running as root: permission bits do not stop root from writing")
		}
		ro := filepath.Join(parent, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(ro, 0o755) })
		for _, d := range []string{ro, filepath.Join(ro, "sub")} {
			_, err := Open(d)
			if err == nil || !strings.Contains(err.Error(), d) {
				t.Fatalf("Open(%s) of an unwritable folder: err = %v, want one naming it", d, err)
			}
		}
	})
}
