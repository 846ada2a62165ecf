// Command huddle is Huddle's single binary: the server (`huddle serve`) and the operator's
// tools (migrate, token, projections, audit, tail, bench). `huddle --help` lists them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// The first SIGINT/SIGTERM cancels ctx and starts a graceful shutdown; once it did, signals
	// get their default effect again, so a second Ctrl-C ends the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
