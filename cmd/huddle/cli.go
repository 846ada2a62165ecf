package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/huddle-chat/huddle/internal/app"
	"github.com/huddle-chat/huddle/internal/config"
)

// Command is one `huddle <name>` subcommand. Each lives in its own file and registers itself
// from init(). Run parses its own flags (newFlagSet + parseFlags, so `--help` works and a bad
// flag exits 2) and reads configuration with setup().
type Command struct {
	Name    string
	Summary string // one line for `huddle --help`
	Usage   string // full help: synopsis, description, flags are appended by newFlagSet
	Run     func(ctx context.Context, args []string) error
}

var commands = map[string]*Command{}

// Output streams of the running command (tests swap them).
var (
	stdout io.Writer = os.Stdout
	stderr io.Writer = os.Stderr
)

func register(c *Command) {
	if _, dup := commands[c.Name]; dup {
		panic("huddle: command registered twice: " + c.Name)
	}
	commands[c.Name] = c
}

// usageError marks an error in how the command was called: main prints it with the usage
// and exits 2.
type usageError struct {
	msg     string
	printed bool // the flag package already printed the message and the usage
}

func (e *usageError) Error() string { return e.msg }

// usagef returns a usage error (exit status 2).
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// newFlagSet returns a flag set whose -h/--help prints the command's Usage and its flags.
func newFlagSet(c *Command) *flag.FlagSet {
	fs := flag.NewFlagSet("huddle "+c.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), strings.TrimSpace(c.Usage))
		var has bool
		fs.VisitAll(func(*flag.Flag) { has = true })
		if has {
			fmt.Fprintln(fs.Output(), "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args; --help yields flag.ErrHelp (exit 0), a bad flag a usage error
// (exit 2). The flag package has already printed the message and usage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &usageError{msg: err.Error(), printed: true}
}

// setup loads the configuration and builds the logger every command uses.
func setup() (config.Config, *slog.Logger, error) { return setupWith(config.Load) }

// setupWith is setup with another loader (config.LoadExisting for huddle token). It warns
// about HUDDLE_* variables nothing reads, since a misspelt one leaves its default in force.
func setupWith(load func() (config.Config, error)) (config.Config, *slog.Logger, error) {
	cfg, err := load()
	// Warned even when loading failed (cfg's zero level is info): a typo may be the cause.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	for _, u := range config.UnknownVars(os.Environ()) {
		if u.Closest != "" {
			log.Warn("unknown environment variable ignored; did you mean "+u.Closest+"?", "variable", u.Name, "closest", u.Closest)
		} else {
			log.Warn("unknown environment variable ignored", "variable", u.Name)
		}
	}
	if err != nil {
		return config.Config{}, nil, err
	}
	return cfg, log, nil
}

// openDatabase loads the configuration and opens Huddle's database: HUDDLE_DATABASE_URL, or the
// managed cluster in the data directory (attaching to it while huddle serve runs). The caller
// closes it with db.Close(context.WithoutCancel(ctx)).
func openDatabase(ctx context.Context) (config.Config, *slog.Logger, *app.Database, error) {
	cfg, log, err := setup()
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	db, err := app.OpenDatabase(ctx, cfg, log)
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	return cfg, log, db, nil
}

// run dispatches to a subcommand and returns the process exit status.
func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	stdout, stderr = out, errOut
	if len(args) == 0 {
		printUsage(errOut)
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(rest) > 0 {
			if c, ok := commands[rest[0]]; ok {
				name, rest = c.Name, []string{"--help"}
				break
			}
			fmt.Fprintf(errOut, "huddle: unknown command %q\n\n", rest[0])
			printUsage(errOut)
			return 2
		}
		printUsage(out)
		return 0
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(errOut, "huddle: unknown command %q\n\n", name)
		printUsage(errOut)
		return 2
	}
	err := c.Run(ctx, rest)
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		if !ue.printed {
			fmt.Fprintf(errOut, "huddle %s: %s\nRun 'huddle %s --help' for usage.\n", name, ue.msg, name)
		}
		return 2
	default:
		fmt.Fprintf(errOut, "huddle %s: %v\n", name, err)
		return 1
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, `Huddle: event-sourced chat for clinic staff.

Usage:
  huddle <command> [flags]
  huddle help <command>

Commands:`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintln(w, `
Configuration comes from HUDDLE_* environment variables (see README.md); with none set,
huddle serve runs its embedded default with all state in ./huddle-data.`)
}
