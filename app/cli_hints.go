package app

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"artifactstore/internal/client"
)

// apiFailed is the exit-1 error of a client command whose request failed.
// The server's 401 speaks HTTP ("Authorization: Bearer <token>"); a CLI
// user needs to hear which variable to set.
func apiFailed(cl *client.Client, err error) error {
	if code := client.Code(err); code == "unauthorized" || code == "invalid_token" {
		if cl.Token == "" {
			err = fmt.Errorf("%w\nno token was sent: set ARTIFACTSTORE_TOKEN to an access token (or ARTIFACTSTORE_TOKEN_FILE to a file holding one); an operator creates one with `artifactstore token create`", err)
		} else {
			err = fmt.Errorf("%w\nthe token from ARTIFACTSTORE_TOKEN (or ARTIFACTSTORE_TOKEN_FILE) was refused: it is unknown, revoked or expired; set ARTIFACTSTORE_TOKEN to a valid token", err)
		}
	}
	return cli.Exit(err, exitFail)
}
