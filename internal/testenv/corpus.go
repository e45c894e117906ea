package testenv

import (
	"bufio"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// WriteCorpus writes lines of deterministic wordcount input to the file at
// path: mixed case, unicode letters and digits, punctuation, empty lines
// and, about one line in 200, a long line of 400 words. The same lines and
// seed give the same bytes. The file is readable by everyone (a container
// running as another user reads it); an input of several files is one call
// per file, each with its own seed.
func WriteCorpus(t testing.TB, path string, lines int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	vocab := []string{"the", "Quick", "brown", "FOX", "jumps", "over", "lazy", "dog", "Ébène", "naïve", "straße", "Δέλτα", "数据", "42", "x1", "état", "ÀÉÎ"}
	for i := 0; i < 300; i++ {
		vocab = append(vocab, "w"+strconv.Itoa(i))
	}
	seps := []string{" ", "  ", ", ", ". ", "—", "\t", "-", "'", "!? "}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := 0; i < lines; i++ {
		n := rng.IntN(14)
		if rng.IntN(200) == 0 {
			n = 400
		}
		for j := 0; j < n; j++ {
			if j > 0 {
				w.WriteString(seps[rng.IntN(len(seps))])
			}
			w.WriteString(vocab[rng.IntN(len(vocab))])
		}
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
