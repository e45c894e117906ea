// Command gentext writes a deterministic English-like text corpus for the
// demo and the benchmarks: words drawn from a Zipf distribution over a
// generated vocabulary, with capitals, punctuation and some non-ASCII
// letters, so it exercises the tokenizer like real text does.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"
)

var common = strings.Fields(`the of and to a in is it you that he was for on are with as I his they be at one
have this from or had by hot word but what some we can out other were all there when up use your how said an
each she which do their time if will way about many then them write would like so these her long make thing see
him two has look more day could go come did number sound no most people my over know water than call first who
may down side been now find any new work part take get place made live where after back little only round man
year came show every good me give our under name very through just form sentence great think say help low line
differ turn cause much mean before move right boy old too same tell does set three want air well also play small
end put home read hand port large spell add even land here must big high such follow act why ask men change went
light kind off need house picture try us again animal point mother world near build self earth father stream
state river flow ebb tide café naïve façade résumé straße über Ökonomie 2026 42`)

func main() {
	out := flag.String("out", "", "output file (required)")
	lines := flag.Int("lines", 1000000, "number of lines")
	words := flag.Int("words", 10, "average words per line")
	seed := flag.Uint64("seed", 1, "random seed")
	vocab := flag.Int("vocab", 50000, "vocabulary size")
	flag.Parse()
	if *out == "" || *lines < 0 || *words < 1 || *vocab < len(common) {
		fmt.Fprintln(os.Stderr, "usage: gentext -out FILE [-lines N] [-words W] [-vocab V] [-seed S]")
		os.Exit(2)
	}
	rng := rand.New(rand.NewPCG(*seed, *seed^0x9e3779b97f4a7c15))
	dict := append([]string(nil), common...)
	const letters = "abcdefghijklmnopqrstuvwxyz"
	for len(dict) < *vocab {
		n := 3 + rng.IntN(8)
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteByte(letters[rng.IntN(len(letters))])
		}
		dict = append(dict, b.String())
	}
	zipf := rand.NewZipf(rng, 1.1, 1, uint64(len(dict)-1))
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := 0; i < *lines; i++ {
		n := 1 + rng.IntN(2**words-1)
		for j := 0; j < n; j++ {
			word := dict[zipf.Uint64()]
			if j == 0 || rng.IntN(20) == 0 {
				r, size := utf8.DecodeRuneInString(word)
				word = string(unicode.ToUpper(r)) + word[size:]
			}
			w.WriteString(word)
			switch r := rng.IntN(30); {
			case j == n-1:
				w.WriteByte('.')
			case r == 0:
				w.WriteString(", ")
			case r == 1:
				w.WriteString("; ")
			default:
				w.WriteByte(' ')
			}
		}
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
