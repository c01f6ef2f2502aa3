// composecheck loads a compose file with compose-go, the loader `docker compose` is built
// on: schema validation, interpolation, YAML merges and normalization, without a Docker
// engine. It prints the normalized project as JSON (every profile enabled), or the
// loader's error on stderr and exits 1.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func load(file string) ([]byte, error) {
	options, err := cli.NewProjectOptions(
		[]string{file}, cli.WithOsEnv, cli.WithProfiles([]string{"*"}),
	)
	if err != nil {
		return nil, err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return nil, err
	}
	return project.MarshalJSON()
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck FILE")
		os.Exit(2)
	}
	out, err := load(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
