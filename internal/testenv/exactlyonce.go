package testenv

import (
	"os"
	"sort"
	"strconv"
	"testing"
	"unicode"
)

// The end-to-end tests (processes and containers) check wordcount's
// committed output against this reference, written from the job's
// documented contract rather than its code.

// WordcountReference is an independent reference: for each word occurring n
// times, the lines word\t1 .. word\tn.
func WordcountReference(t testing.TB, paths ...string) []string {
	t.Helper()
	counts := map[string]int{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var tok []rune
		flush := func() {
			if len(tok) > 0 {
				counts[string(tok)]++
				tok = tok[:0]
			}
		}
		for _, r := range string(b) {
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				tok = append(tok, unicode.ToLower(r))
			} else {
				flush()
			}
		}
		flush()
	}
	var out []string
	for w, n := range counts {
		for k := 1; k <= n; k++ {
			out = append(out, w+"\t"+strconv.Itoa(k))
		}
	}
	sort.Strings(out)
	return out
}

// AssertExactlyOnce compares sorted committed output with the reference and
// reports missing and duplicated lines.
func AssertExactlyOnce(t testing.TB, got, want []string) {
	t.Helper()
	gc, wc := map[string]int{}, map[string]int{}
	for _, l := range got {
		gc[l]++
	}
	for _, l := range want {
		wc[l]++
	}
	var missing, dup, extra []string
	for l, n := range wc {
		if gc[l] < n {
			missing = append(missing, l)
		}
	}
	for l, n := range gc {
		switch {
		case wc[l] == 0:
			extra = append(extra, l)
		case n > wc[l]:
			dup = append(dup, l)
		}
	}
	if len(missing)+len(dup)+len(extra) > 0 {
		sort.Strings(missing)
		sort.Strings(dup)
		sort.Strings(extra)
		t.Fatalf("output is not exactly-once: %d lines, want %d; %d missing (e.g. %q), %d duplicated (e.g. %q), %d unexpected (e.g. %q)",
			len(got), len(want), len(missing), head(missing), len(dup), head(dup), len(extra), head(extra))
	}
}

func head(s []string) []string {
	if len(s) > 3 {
		return s[:3]
	}
	return s
}
