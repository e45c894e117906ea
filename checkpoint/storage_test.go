package checkpoint

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// newContractLocal is a Local storage in a folder of its own, for the
// contract suite. When the case ends nothing may be left beside the
// objects: no temporary file of a write (a refused one too), nothing outside
// the folder.
func newContractLocal(t *testing.T) Storage {
	t.Helper()
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	l, err := NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if lo := leftovers(t, root); len(lo) != 0 {
			t.Errorf("temporary files left behind: %v", lo)
		}
		ents, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		var beside []string
		for _, e := range ents {
			if e.Name() != "root" {
				beside = append(beside, e.Name())
			}
		}
		if len(beside) != 0 {
			t.Errorf("files written outside the root: %q", beside)
		}
	})
	return l
}

// An object is a plain file at root/name.
func TestLocalFiles(t *testing.T) {
	ctx := context.Background()
	l, root := newLocal(t)
	if got, want := l.URL(), "file://"+root; got != want {
		t.Fatalf("URL = %q, want %q", got, want)
	}
	for name, data := range map[string]string{"wc/chk-1/a1-c0-s0.state": "state bytes", "/leading-slash": "x"} {
		if err := l.Put(ctx, name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	for file, want := range map[string]string{
		filepath.Join(root, "wc", "chk-1", "a1-c0-s0.state"): "state bytes",
		filepath.Join(root, "leading-slash"):                 "x",
	} {
		if b, err := os.ReadFile(file); err != nil || string(b) != want {
			t.Fatalf("file on disk %s: %q, %v; want %q", file, b, err, want)
		}
	}
}

// Stray temporary files (a crash mid-write) are not objects.
func TestLocalListSkipsTemporaryFiles(t *testing.T) {
	l, root := newLocal(t)
	listContract(t, l, func() {
		if err := os.WriteFile(filepath.Join(root, "wc", "chk-2", ".tmp-123"), []byte("torn"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, ".probe-9"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	})
}

// A folder prefix removes the folder itself, not only the files in it.
func TestLocalDeletePrefixRemovesTheFolder(t *testing.T) {
	ctx := context.Background()
	l, root := newLocal(t)
	for _, n := range []string{"wc/chk-1/a", "wc/chk-1/sub/deep", "wc/chk-10/_metadata"} {
		if err := l.Put(ctx, n, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.DeletePrefix(ctx, "wc/chk-1/"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "wc", "chk-1")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("folder wc/chk-1 still exists: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "wc", "chk-10", "_metadata")); err != nil {
		t.Fatalf("wc/chk-10 went too: %v", err)
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
