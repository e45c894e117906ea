// Package state owns keyed state: the key-group arithmetic that decides which
// subtask holds a key, and the in-memory keyed state backend whose snapshots
// are split by key group so they can be restored at any parallelism.
package state

import "fmt"

// DefaultMaxParallelism is the number of key groups a job gets when none is
// configured. It is fixed for the lifetime of a job's state.
const DefaultMaxParallelism = 128

// MaxMaxParallelism bounds the number of key groups (Flink's limit, 2^15).
const MaxMaxParallelism = 1 << 15

// Hash returns the stable 64-bit hash of a key's canonical encoding (its codec
// bytes). It is FNV-1a followed by the murmur3 64-bit finalizer, so it is the
// same on every process, architecture and release: changing it would move
// keys between key groups and break every existing checkpoint.
func Hash(key []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range key {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return fmix64(h)
}

// HashString is Hash for a string key without converting it to bytes.
func HashString(key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return fmix64(h)
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// KeyGroupOf maps a key hash to its key group in [0, maxP).
func KeyGroupOf(hash uint64, maxP int) int {
	return int(hash % uint64(maxP))
}

// OperatorIndexOf returns the subtask that owns key group kg at parallelism p:
// kg * p / maxP.
func OperatorIndexOf(kg, maxP, p int) int {
	return kg * p / maxP
}

// Range is an inclusive range of key groups [Start, End]. An empty range has
// End < Start.
type Range struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// Len is the number of key groups in the range.
func (r Range) Len() int {
	if r.End < r.Start {
		return 0
	}
	return r.End - r.Start + 1
}

// Contains reports whether kg is inside the range.
func (r Range) Contains(kg int) bool { return kg >= r.Start && kg <= r.End }

func (r Range) String() string { return fmt.Sprintf("[%d,%d]", r.Start, r.End) }

// RangeFor returns the key groups owned by subtask i at parallelism p:
// [ceil(i*maxP/p), floor(((i+1)*maxP-1)/p)].
func RangeFor(i, maxP, p int) Range {
	start := (i*maxP + p - 1) / p
	end := ((i+1)*maxP - 1) / p
	return Range{Start: start, End: end}
}

// ValidateParallelism checks that p subtasks can share maxP key groups.
func ValidateParallelism(p, maxP int) error {
	if maxP < 1 || maxP > MaxMaxParallelism {
		return fmt.Errorf("state: max parallelism %d out of range [1,%d]", maxP, MaxMaxParallelism)
	}
	if p < 1 || p > maxP {
		return fmt.Errorf("state: parallelism %d out of range [1,%d] (max parallelism)", p, maxP)
	}
	return nil
}
