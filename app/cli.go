// Package app wires artifactstore together: configuration (koanf), the
// command line (urfave/cli), backends, the registry and the HTTP server.
// It is the only package that knows every other one.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// Set at build time with -ldflags "-X artifactstore/app.Version=...".
var (
	Version = "dev"
	Commit  = ""
)

// Env is the process environment the CLI runs in; tests substitute it.
type Env struct {
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Environ []string
}

// Main runs the command line and returns the process exit code: 0
// success, 1 the operation failed, 2 bad usage or configuration (see
// exitCodeOf); verify refines 1 and 2.
func Main(ctx context.Context, args []string, env Env) int {
	a := NewCLI(env)
	args, err := prepareArgs(a, args, env.Environ)
	if err == nil {
		err = a.RunContext(ctx, args)
	}
	if err == nil {
		return exitOK
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(env.Stderr, "artifactstore:", msg)
	}
	return exitCodeOf(err)
}

func commit() string {
	if Commit != "" {
		return Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// NewCLI builds the command-line application.
func NewCLI(env Env) *cli.App {
	verifyAll, verifyOne := verifyCommands(env)
	storage := storageCommand(env)
	storage.Subcommands = append(storage.Subcommands, verifyOne)
	a := &cli.App{
		Name:                 "artifactstore",
		Usage:                "a self-hosted, content-addressed artifact store",
		Version:              Version,
		Writer:               env.Stdout,
		ErrWriter:            env.Stderr,
		Reader:               env.Stdin,
		EnableBashCompletion: false,
		HideHelpCommand:      true,
		ExitErrHandler:       func(*cli.Context, error) {}, // Main prints and exits
		Flags:                []cli.Flag{configFlag()},
		Commands: append([]*cli.Command{
			serveCommand(env),
			storage,
			verifyAll,
			{
				Name:  "config",
				Usage: "inspect configuration",
				Subcommands: []*cli.Command{{
					Name:  "check",
					Usage: "validate the configuration, resolve every credential reference, and print the effective config (secrets never shown)",
					Flags: []cli.Flag{configFlag()},
					Action: func(c *cli.Context) error {
						cfg, err := loadFromCLI(c, env, nil)
						if err != nil {
							return err
						}
						refs, err := resolveCredentials(cfg, env)
						if err != nil {
							return err
						}
						out, err := yaml.Marshal(redacted(cfg))
						if err != nil {
							return err
						}
						fmt.Fprintf(env.Stdout, "# configuration is valid\n")
						for _, r := range refs {
							fmt.Fprintf(env.Stdout, "# %s: %s resolves (value not shown)\n", r.key, r.ref)
						}
						fmt.Fprintf(env.Stdout, "%s", out)
						return nil
					},
				}},
			},
			{
				Name:  "version",
				Usage: "print version and commit",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(env.Stdout, "artifactstore %s (commit %s)\n", Version, commit())
					return nil
				},
			},
		}, append(append(append(dbCommands(env), recoverCommand(env), tokenCommand(env), webhookCommand(env)), clientCommands(env)...), lifecycleCommands(env)...)...),
	}
	finishCommands(a)
	return a
}

func configFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML config `FILE` (default: built-in defaults)", EnvVars: []string{"ARTIFACTSTORE_CONFIG"}}
}

// loadFromCLI loads config from --config, the environment and set flags.
func loadFromCLI(c *cli.Context, env Env, flags map[string]any) (*Config, error) {
	file := c.String("config")
	if file == "" {
		for _, a := range c.Lineage() {
			if f := a.String("config"); f != "" {
				file = f
				break
			}
		}
	}
	return LoadConfig(LoadOptions{File: file, Environ: env.Environ, Flags: flags})
}

func serveCommand(env Env) *cli.Command {
	flagKeys := map[string]string{"listen": "server.listen", "data-dir": "data_dir", "log-level": "log.level", "log-format": "log.format"}
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the HTTP API",
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "listen", Usage: "listen `ADDR` (server.listen)"},
			&cli.StringFlag{Name: "data-dir", Usage: "data `DIR` (data_dir)"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error (log.level)"},
			&cli.StringFlag{Name: "log-format", Usage: "text or json (log.format)"},
		},
		Action: func(c *cli.Context) error {
			flags := map[string]any{}
			for name, key := range flagKeys {
				if c.IsSet(name) {
					flags[key] = c.String(name)
				}
			}
			cfg, err := loadFromCLI(c, env, flags)
			if err != nil {
				return err
			}
			log := NewLogger(env.Stderr, cfg.Log)
			svc, err := NewService(c.Context, cfg, log)
			if err != nil {
				return err
			}
			defer svc.Close()
			ln, err := net.Listen("tcp", cfg.Server.Listen)
			if err != nil {
				return fmt.Errorf("listen on %s (server.listen): %w", cfg.Server.Listen, err)
			}
			return svc.Serve(c.Context, ln)
		},
	}
}

// NewLogger builds the process logger from config.
func NewLogger(w io.Writer, cfg LogConfig) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(strings.ToUpper(cfg.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// redacted returns the config to print. It holds no secret values to
// hide: credentials are only ever references (env:NAME, file:PATH), which
// are shown, and the values they point to are never loaded into Config.
func redacted(cfg *Config) *Config {
	c := *cfg
	return &c
}
