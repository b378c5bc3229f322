package app

import (
	"io"

	"github.com/urfave/cli/v2"

	"artifactstore/internal/webhook"
)

// webhookCommand registers `webhook add|ls|rm|test` (internal/webhook)
// over the admin path.
func webhookCommand(env Env) *cli.Command {
	return webhook.Command(webhook.CLI{
		Do: func(c *cli.Context, method, path string, body io.Reader, want int) ([]byte, error) {
			return adminDo(c, env, method, path, body, want)
		},
		Stdout: env.Stdout,
		Stderr: env.Stderr,
		Flags:  func() []cli.Flag { return []cli.Flag{configFlag()} },
	})
}
