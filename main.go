// Command artifactstore is a self-hosted, content-addressed artifact store.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"artifactstore/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args, app.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ()})
	stop()
	os.Exit(code)
}
