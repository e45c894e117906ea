// Command userapp is a complete ebbflow application written the way a user
// writes one: its own main, its own job, ebbflow's command line. Build it and
// run `userapp local visits --input FILE --output DIR`. It is shown in
// docs/job-api.md; a test keeps the two identical.
package main

import (
	"errors"
	"strconv"
	"strings"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/connectors/filesink"
	"github.com/ebbflow/ebbflow/connectors/filesource"
)

// VisitsArgs are the job's flags: exported fields tagged `flag`.
type VisitsArgs struct {
	Input  string `flag:"input" usage:"file or folder of 'user page' lines"`
	Output string `flag:"output" usage:"folder for committed output"`
	Min    int64  `flag:"min" default:"1" usage:"report a page once a user visited it this often"`
}

// Validate runs before the job starts; errors name the flag.
func (a *VisitsArgs) Validate() error {
	if a.Input == "" || a.Output == "" {
		return errors.New("--input and --output are required")
	}
	if a.Min < 1 {
		return errors.New("--min must be at least 1")
	}
	return filesource.Check(a.Input)
}

// Visit is one parsed input line.
type Visit struct {
	User string
	Page string
}

// Report says that a user reached n visits of a page, and how many distinct
// pages the user has visited so far.
type Report struct {
	User     string
	Page     string
	Visits   int64
	Distinct int64
}

func main() {
	app := ebbflow.NewApp("userapp")
	ebbflow.Register(app, "visits", "per-user page visit counts", buildVisits)
	app.Main() // local | jobmanager | taskmanager | jobs
}

func buildVisits(job *ebbflow.Job, args *VisitsArgs) error {
	lines := ebbflow.Source(job, "lines", filesource.Lines(args.Input))
	valid := ebbflow.Filter(lines, "non-empty", func(l string) bool { return strings.TrimSpace(l) != "" })
	visits := ebbflow.Map(valid, "parse", func(l string) Visit {
		user, page, _ := strings.Cut(strings.TrimSpace(l), " ")
		return Visit{User: user, Page: page}
	})
	byUser := ebbflow.KeyBy(visits, func(v Visit) string { return v.User })
	reports := ebbflow.Process(byUser, "count-visits",
		func(s *ebbflow.KeyedSetup[string]) ebbflow.KeyedProcessFunc[string, Visit, Report] {
			// Keyed state: one map and one value per user, checkpointed
			// and redistributed by key group on rescale.
			perPage := ebbflow.NewMapState[string, int64](s, "visits-per-page")
			distinct := ebbflow.NewValueState[int64](s, "distinct-pages")
			return func(ctx *ebbflow.KeyedContext[string], v Visit, out ebbflow.Collector[Report]) {
				n, seen := perPage.Get(v.Page)
				n++
				perPage.Put(v.Page, n)
				d, _ := distinct.Get()
				if !seen {
					d++
					distinct.Set(d)
				}
				if n >= args.Min {
					out.Collect(Report{User: ctx.Key(), Page: v.Page, Visits: n, Distinct: d})
				}
			}
		})
	ebbflow.Sink(reports, "out", filesink.Lines(args.Output, func(dst []byte, r Report) []byte {
		dst = append(dst, r.User...)
		dst = append(dst, '\t')
		dst = append(dst, r.Page...)
		dst = append(dst, '\t')
		dst = strconv.AppendInt(dst, r.Visits, 10)
		dst = append(dst, '\t')
		return strconv.AppendInt(dst, r.Distinct, 10)
	}))
	return nil
}
