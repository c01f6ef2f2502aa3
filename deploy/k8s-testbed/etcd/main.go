// Command etcd is etcd v3.6.5's server, built from its module (its own go.mod has
// ../ replaces, so `go install` cannot build it directly).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
