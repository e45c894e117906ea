// Package wordcount is the bundled wordcount job: lines → tokens →
// KeyBy(word) → running count → exactly-once file sink. The k-th occurrence
// of a word emits the line "word\tk".
//
// A token is a maximal run of characters for which unicode.IsLetter or
// unicode.IsDigit holds, lowercased with unicode.ToLower.
package wordcount

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/connectors/filesink"
	"github.com/ebbflow/ebbflow/connectors/filesource"
)

// Args are the job's flags.
type Args struct {
	Input  string  `flag:"input" usage:"file or folder of text files to count"`
	Output string  `flag:"output" usage:"folder for the committed output (word<TAB>count lines)"`
	Rate   float64 `flag:"rate" usage:"total input rate in lines per second (0 = unthrottled)"`
}

// Validate checks the flags before the job starts.
func (a *Args) Validate() error {
	if a.Input == "" {
		return errors.New("--input is required")
	}
	if a.Output == "" {
		return errors.New("--output is required")
	}
	if a.Rate < 0 {
		return errors.New("--rate must not be negative")
	}
	if err := filesource.Check(a.Input); err != nil {
		return err
	}
	return filesink.Check(a.Output)
}

// Count is one output record.
type Count struct {
	Word  string
	Count int64
}

// Register adds the job to app as "wordcount".
func Register(app *ebbflow.App) {
	ebbflow.Register(app, "wordcount", "count words: the k-th occurrence of a word emits word<TAB>k", Build)
}

// Build fills in the job graph.
func Build(job *ebbflow.Job, args *Args) error {
	lines := ebbflow.Source(job, "lines", filesource.Lines(args.Input), ebbflow.WithRate(args.Rate))
	words := ebbflow.FlatMap(lines, "tokenize", Tokenize)
	counts := ebbflow.Process(ebbflow.KeyBy(words, func(w string) string { return w }), "count",
		func(s *ebbflow.KeyedSetup[string]) ebbflow.KeyedProcessFunc[string, string, Count] {
			n := ebbflow.NewValueState[int64](s, "n")
			return func(ctx *ebbflow.KeyedContext[string], w string, out ebbflow.Collector[Count]) {
				c, _ := n.Get()
				c++
				n.Set(c)
				out.Collect(Count{Word: w, Count: c})
			}
		})
	ebbflow.Sink(counts, "out", filesink.Lines(args.Output, Format))
	return nil
}

// Format renders a count as "word\tk".
func Format(dst []byte, c Count) []byte {
	dst = append(dst, c.Word...)
	dst = append(dst, '\t')
	return strconv.AppendInt(dst, c.Count, 10)
}

// Tokenize emits the tokens of a line.
func Tokenize(line string, out ebbflow.Collector[string]) {
	start := -1 // start of the current token
	lower := true
	for i := 0; i < len(line); {
		c := line[i]
		if c < utf8.RuneSelf {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
				if start < 0 {
					start, lower = i, true
				}
			case c >= 'A' && c <= 'Z':
				if start < 0 {
					start, lower = i, true
				}
				lower = false
			default:
				if start >= 0 {
					emit(line[start:i], lower, out)
					start = -1
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(line[i:])
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if start < 0 {
				start = i
			}
			lower = false // let emit lowercase it properly
		} else if start >= 0 {
			emit(line[start:i], lower, out)
			start = -1
		}
		i += size
	}
	if start >= 0 {
		emit(line[start:], lower, out)
	}
}

func emit(tok string, lower bool, out ebbflow.Collector[string]) {
	if !lower {
		tok = strings.Map(unicode.ToLower, tok)
	}
	out.Collect(tok)
}
