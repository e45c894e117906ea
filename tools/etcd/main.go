// Command etcd is the real etcd server, built from etcd's own server module
// for the integration tests (`go install` of etcd's server refuses its
// replace directives, so this five-line module builds it instead).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
