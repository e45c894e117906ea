package state

import (
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"testing"
)

// Every key group has exactly one owner for every p <= maxP, ranges are
// contiguous and ordered, and the owner computed from a key equals the owner
// of the range that holds its key group.
func TestKeyGroupRangesPartition(t *testing.T) {
	for _, maxP := range []int{1, 2, 3, 7, 64, 128, 129, 1000} {
		for p := 1; p <= maxP; p++ {
			next := 0
			for i := 0; i < p; i++ {
				r := RangeFor(i, maxP, p)
				if r.Start != next {
					t.Fatalf("maxP=%d p=%d subtask %d: range %v starts at %d, want %d (gap or overlap)", maxP, p, i, r, r.Start, next)
				}
				if r.Len() == 0 {
					t.Fatalf("maxP=%d p=%d subtask %d: empty range", maxP, p, i)
				}
				for kg := r.Start; kg <= r.End; kg++ {
					if got := OperatorIndexOf(kg, maxP, p); got != i {
						t.Fatalf("maxP=%d p=%d: kg %d in range of %d but OperatorIndexOf=%d", maxP, p, kg, i, got)
					}
				}
				next = r.End + 1
			}
			if next != maxP {
				t.Fatalf("maxP=%d p=%d: ranges end at %d, want %d", maxP, p, next, maxP)
			}
		}
	}
}

// Naive reference: owner(kg) by scanning ranges must match the formula for
// random keys.
func TestKeyOwnerMatchesRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 20000; n++ {
		maxP := 1 + rng.IntN(300)
		p := 1 + rng.IntN(maxP)
		key := strconv.FormatUint(rng.Uint64(), 36)
		kg := KeyGroupOf(HashString(key), maxP)
		if kg < 0 || kg >= maxP {
			t.Fatalf("kg %d out of [0,%d)", kg, maxP)
		}
		owner := -1
		for i := 0; i < p; i++ {
			if RangeFor(i, maxP, p).Contains(kg) {
				if owner != -1 {
					t.Fatalf("kg %d owned twice", kg)
				}
				owner = i
			}
		}
		if owner != OperatorIndexOf(kg, maxP, p) {
			t.Fatalf("key %q kg %d maxP %d p %d: range owner %d, formula %d", key, kg, maxP, p, owner, OperatorIndexOf(kg, maxP, p))
		}
		if Hash([]byte(key)) != HashString(key) {
			t.Fatalf("Hash and HashString disagree for %q", key)
		}
	}
}

// The hash is part of the checkpoint format: these values must never change.
func TestHashIsStable(t *testing.T) {
	golden := map[string]uint64{
		"":                   0xefd01f60ba992926,
		"a":                  0x82a2a958a9bece5b,
		"hello":              0xe9c562c0fdb23244,
		"ebbflow key groups": 0x9c2af53956441213,
	}
	for k, want := range golden {
		// Cross-check against the standard library's FNV-1a.
		f := fnv.New64a()
		f.Write([]byte(k))
		if ref := fmix64(f.Sum64()); ref != want {
			t.Errorf("reference hash of %q = %#x, golden %#x", k, ref, want)
		}
		if got := HashString(k); got != want {
			t.Errorf("HashString(%q) = %#x, want %#x", k, got, want)
		}
	}
}

func TestKeysSpreadOverGroups(t *testing.T) {
	const maxP = 128
	counts := make([]int, maxP)
	for i := 0; i < 128000; i++ {
		counts[KeyGroupOf(HashString("w"+strconv.Itoa(i)), maxP)]++
	}
	for kg, c := range counts {
		if c < 700 || c > 1300 {
			t.Fatalf("key group %d got %d of 128000 keys; hash spreads badly", kg, c)
		}
	}
}

func TestValidateParallelism(t *testing.T) {
	if err := ValidateParallelism(0, 128); err == nil {
		t.Fatal("p=0 accepted")
	}
	if err := ValidateParallelism(129, 128); err == nil {
		t.Fatal("p>maxP accepted")
	}
	if err := ValidateParallelism(4, 128); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkHashString(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = HashString("streaming")
	}
}
