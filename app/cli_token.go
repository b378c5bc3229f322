package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"artifactstore/internal/cliout"
	"artifactstore/store"
)

type tokenRequest struct {
	Name      string        `json:"name"`
	Scope     string        `json:"scope"`
	Producers []string      `json:"producers"`
	Expires   time.Duration `json:"expires_ns"`
}

type tokenCreated struct {
	Token  string       `json:"token"`
	Record *store.Token `json:"record"`
}

func (s *Service) adminTokenCreate(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		adminError(w, http.StatusBadRequest, "bad_request", "malformed token request: "+err.Error())
		return
	}
	secret, rec, err := s.Store.CreateToken(r.Context(), req.Name, req.Scope, req.Producers, req.Expires)
	if err != nil {
		adminError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	s.Log.Info("token created", "token_id", rec.ID, "name", rec.Name, "scope", rec.Scope, "producers", rec.Producers)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	cliout.JSON(w, tokenCreated{Token: secret, Record: rec})
}

func (s *Service) adminTokenList(w http.ResponseWriter, r *http.Request) {
	ts, err := s.Store.ListTokens(r.Context())
	if err != nil {
		adminError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	if ts == nil {
		ts = []store.Token{}
	}
	w.Header().Set("Content-Type", "application/json")
	cliout.JSON(w, ts)
}

func (s *Service) adminTokenRevoke(w http.ResponseWriter, r *http.Request) {
	if err := s.Store.RevokeToken(r.Context(), r.PathValue("id")); err != nil {
		adminError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	s.Log.Info("token revoked", "token_id", r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

// adminDo sends one request to the admin path and returns the body.
func adminDo(c *cli.Context, env Env, method, path string, body io.Reader, want int) ([]byte, error) {
	cfg, err := loadFromCLI(c, env, nil)
	if err != nil {
		return nil, err
	}
	conn, err := dialAdmin(c.Context, cfg, NewLogger(env.Stderr, cfg.Log))
	if err != nil {
		return nil, err
	}
	defer conn.close()
	req, err := http.NewRequestWithContext(c.Context, method, adminBase+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := conn.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s", strings.TrimSpace(string(b)))
	}
	return b, nil
}

func tokenCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "manage access tokens (only a hash of each token is stored)",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "create a token and print it once",
				Flags: []cli.Flag{configFlag(), jsonFlag,
					&cli.StringFlag{Name: "name", Required: true, Usage: "what the token is for"},
					&cli.StringFlag{Name: "scope", Required: true, Usage: "read, publish or admin"},
					&cli.StringSliceFlag{Name: "producer", Usage: "producer a publish token may publish as (repeatable; required for publish)"},
					&cli.StringFlag{Name: "expires", Usage: "token lifetime `DURATION`, e.g. 720h or 30d", DefaultText: "no expiry"},
				},
				Action: func(c *cli.Context) error {
					var expires time.Duration
					if v := c.String("expires"); v != "" {
						d, err := ParseDuration(v)
						if err != nil || d <= 0 {
							return &UsageError{Command: "artifactstore token create", Msg: fmt.Sprintf("--expires %q is not a positive duration such as 720h or 30d", v)}
						}
						expires = d
					}
					req, _ := json.Marshal(tokenRequest{Name: c.String("name"), Scope: c.String("scope"), Producers: c.StringSlice("producer"), Expires: expires})
					b, err := adminDo(c, env, http.MethodPost, "/v1/admin/tokens", strings.NewReader(string(req)), http.StatusCreated)
					if err != nil {
						return cli.Exit(err, 1)
					}
					var tc tokenCreated
					if err := json.Unmarshal(b, &tc); err != nil {
						return cli.Exit(err, 1)
					}
					if c.Bool("json") {
						return cliout.JSON(env.Stdout, tc)
					}
					fmt.Fprintln(env.Stdout, tc.Token)
					fmt.Fprintf(env.Stderr, "token %s (%s scope) created; it is shown only now\n", tc.Record.ID, tc.Record.Scope)
					return nil
				},
			},
			{
				Name:  "ls",
				Usage: "list tokens (never their secrets)",
				Flags: []cli.Flag{configFlag(), jsonFlag},
				Action: func(c *cli.Context) error {
					b, err := adminDo(c, env, http.MethodGet, "/v1/admin/tokens", nil, http.StatusOK)
					if err != nil {
						return cli.Exit(err, 1)
					}
					var ts []store.Token
					if err := json.Unmarshal(b, &ts); err != nil {
						return cli.Exit(err, 1)
					}
					if c.Bool("json") {
						return cliout.JSON(env.Stdout, ts)
					}
					tw := cliout.Table(env.Stdout)
					fmt.Fprintln(tw, "ID\tNAME\tSCOPE\tPRODUCERS\tCREATED\tEXPIRES")
					for _, t := range ts {
						exp := "never"
						if t.ExpiresAt != nil {
							exp = t.ExpiresAt.Format(time.RFC3339)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Scope, strings.Join(t.Producers, ","), t.CreatedAt.Format(time.RFC3339), exp)
					}
					return tw.Flush()
				},
			},
			{
				Name:      "revoke",
				Usage:     "revoke a token by id",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{configFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("want one token ID", 2)
					}
					if _, err := adminDo(c, env, http.MethodDelete, "/v1/admin/tokens/"+c.Args().First(), nil, http.StatusNoContent); err != nil {
						return cli.Exit(err, 1)
					}
					fmt.Fprintf(env.Stdout, "token %s revoked\n", c.Args().First())
					return nil
				},
			},
		},
	}
}
