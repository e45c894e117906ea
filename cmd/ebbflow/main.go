// Command ebbflow is the ebbflow binary with the bundled example jobs: run
// it as `ebbflow local JOB ...`, `ebbflow jobmanager JOB ...` or
// `ebbflow taskmanager`.
package main

import (
	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/examples/passthrough"
	"github.com/ebbflow/ebbflow/examples/statebench"
	"github.com/ebbflow/ebbflow/examples/wordcount"
)

func main() {
	app := ebbflow.NewApp("ebbflow")
	wordcount.Register(app)
	passthrough.Register(app)
	statebench.Register(app)
	app.Main()
}
