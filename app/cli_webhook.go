package app

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/urfave/cli/v2"

	"artifactstore/internal/replication"
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

// migrateCommand registers `storage migrate` (internal/replication) over
// the admin path; its progress streams back as the migration runs.
func migrateCommand(env Env) *cli.Command {
	return replication.MigrateCommand(replication.CLI{
		Stream: func(c *cli.Context, path string) (io.ReadCloser, error) {
			cfg, err := loadFromCLI(c, env, nil)
			if err != nil {
				return nil, err
			}
			conn, err := dialAdmin(c.Context, cfg, NewLogger(env.Stderr, cfg.Log))
			if err != nil {
				return nil, err
			}
			req, err := http.NewRequestWithContext(c.Context, http.MethodPost, adminBase+path, nil)
			if err != nil {
				conn.close()
				return nil, err
			}
			resp, err := conn.http.Do(req)
			if err != nil {
				conn.close()
				return nil, err
			}
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
				resp.Body.Close()
				conn.close()
				return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
			}
			return closeBoth{resp.Body, conn.close}, nil
		},
		Stdout: env.Stdout,
		Flags:  func() []cli.Flag { return []cli.Flag{configFlag()} },
	})
}

// closeBoth closes a response body, then the admin connection.
type closeBoth struct {
	io.ReadCloser
	after func() error
}

func (c closeBoth) Close() error {
	err := c.ReadCloser.Close()
	c.after()
	return err
}
