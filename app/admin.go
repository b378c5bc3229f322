package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/urfave/cli/v2"

	"artifactstore/backends"
	"artifactstore/internal/cliout"
	"artifactstore/store"
)

// The admin path: operator commands (storage ls, verify, backup, db check)
// talk HTTP to /v1/admin/* either over the running service's unix socket
// or, when no service runs, to the same handler inside the CLI process,
// which then opens the database itself. bbolt allows one process per
// database, so this is how cron jobs work beside the service.

// AdminSocket returns the path of the admin socket.
func (c *Config) AdminSocket() string { return filepath.Join(c.DataDir, "admin.sock") }

// AdminHandler serves the API plus the admin endpoints.
func (s *Service) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", s.API)
	for pattern, h := range s.adminRoutes() {
		mux.Handle(pattern, h)
	}
	return mux
}

// adminRoutes are the operator endpoints.
func (s *Service) adminRoutes() map[string]http.Handler {
	routes := map[string]http.Handler{
		"GET /v1/admin/storage":        http.HandlerFunc(s.adminStorage),
		"POST /v1/admin/verify":        http.HandlerFunc(s.adminVerify),
		"GET /v1/admin/backup":         http.HandlerFunc(s.adminBackup),
		"GET /v1/admin/db/check":       http.HandlerFunc(s.adminDBCheck),
		"POST /v1/admin/db/repair":     http.HandlerFunc(s.adminDBRepair),
		"POST /v1/admin/snapshots":     http.HandlerFunc(s.adminSnapshot),
		"GET /v1/admin/snapshots":      http.HandlerFunc(s.adminSnapshots),
		"GET /v1/admin/tokens":         http.HandlerFunc(s.adminTokenList),
		"POST /v1/admin/tokens":        http.HandlerFunc(s.adminTokenCreate),
		"DELETE /v1/admin/tokens/{id}": http.HandlerFunc(s.adminTokenRevoke),
	}
	for pattern, h := range s.Lifecycle.AdminRoutes() {
		routes[pattern] = h
	}
	for pattern, h := range s.Webhooks.Routes() {
		routes[pattern] = h
	}
	return routes
}

// listenAdmin opens the admin socket, replacing a stale one. The socket is
// only reachable by the service's user (mode 0600). It is created inside a
// fresh directory of mode 0700, made 0600 and then renamed into place, so
// it is never reachable with a wider mode, without touching the process
// umask (which other goroutines creating files would share).
func listenAdmin(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s is in use by another process", path)
	}
	os.Remove(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	private, err := os.MkdirTemp(filepath.Dir(path), ".admin-*")
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // Serve removes path itself
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return ln, nil
}

// storageReport is what `storage ls` shows.
type storageReport struct {
	Backends []backendReport `json:"backends"`
	Routing  RoutingConfig   `json:"routing"`
}

type backendReport struct {
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Target   string         `json:"target"`
	Blobs    int64          `json:"blobs"`
	Bytes    int64          `json:"bytes"`
	ByStatus map[string]int `json:"by_status"`
	Healthy  bool           `json:"healthy"`
	Error    string         `json:"error,omitempty"`
	// IncompleteWrites are writes interrupted by a killed process that
	// the backend still holds (cleanup aborts them after
	// cleanup.incomplete_write_age).
	IncompleteWrites []backends.IncompleteWrite `json:"incomplete_writes,omitempty"`
}

func (s *Service) storageReport(ctx context.Context) (*storageReport, error) {
	usage, err := s.Store.Usage(ctx)
	if err != nil {
		return nil, err
	}
	health := s.Registry.Health(ctx)
	rep := &storageReport{Routing: s.Config.Routing}
	for _, id := range s.Registry.BackendIDs() {
		bc := s.Config.Backends[id]
		br := backendReport{ID: id, Type: bc.Type, Target: backendTarget(bc), ByStatus: map[string]int{}, Healthy: health[id] == nil}
		if u := usage[id]; u != nil {
			br.Blobs, br.Bytes, br.ByStatus = u.Blobs, u.Bytes, u.ByStatus
		}
		if err := health[id]; err != nil {
			br.Error = err.Error()
		} else if iw, ok := backends.AsIncompleteWriter(s.Backends[id]); ok {
			ws, err := iw.IncompleteWrites(ctx)
			if err != nil {
				return nil, fmt.Errorf("backend %s: %w", id, err)
			}
			br.IncompleteWrites = ws
		}
		rep.Backends = append(rep.Backends, br)
	}
	// Locations on backends no longer configured still count.
	var gone []string
	for id := range usage {
		if _, ok := s.Config.Backends[id]; !ok {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		u := usage[id]
		rep.Backends = append(rep.Backends, backendReport{ID: id, Type: "(not configured)", Blobs: u.Blobs, Bytes: u.Bytes, ByStatus: u.ByStatus, Error: "locations name a backend that is not configured"})
	}
	return rep, nil
}

func backendTarget(bc BackendConfig) string {
	if bc.Type == "local" {
		return bc.Path + "/" + bc.KeyPrefix
	}
	return bc.S3.Target(bc.KeyPrefix)
}

func (s *Service) adminStorage(w http.ResponseWriter, r *http.Request) {
	rep, err := s.storageReport(r.Context())
	if err != nil {
		adminError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(rep)
}

// adminConn is how a CLI command reaches the admin handler.
type adminConn struct {
	http  *http.Client
	close func() error
	// Remote is true when a running service answers.
	Remote bool
}

const adminBase = "http://artifactstore-admin"

// dialAdmin connects to the running service's admin socket, or, if none
// answers, opens the database and backends in this process. It never hangs
// on the database lock: the lock timeout bounds the wait.
func dialAdmin(ctx context.Context, cfg *Config, log *slog.Logger) (*adminConn, error) {
	sock := cfg.AdminSocket()
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		return &adminConn{http: &http.Client{Transport: tr}, close: func() error { tr.CloseIdleConnections(); return nil }, Remote: true}, nil
	}
	svc, err := NewService(ctx, cfg, log)
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return nil, fmt.Errorf("%w; and the service's admin socket %s does not answer", err, sock)
		}
		return nil, err
	}
	return &adminConn{http: &http.Client{Transport: handlerTransport{svc.AdminHandler()}}, close: svc.Close}, nil
}

// handlerTransport runs an http.Handler in-process, streaming its response.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	rw := &pipeWriter{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	go func() {
		defer func() {
			rw.WriteHeader(http.StatusOK)
			pw.Close()
		}()
		t.h.ServeHTTP(rw, req)
	}()
	select {
	case <-rw.ready:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	return &http.Response{StatusCode: rw.status, Status: http.StatusText(rw.status), Header: rw.header,
		Body: pr, Request: req, ContentLength: -1, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

type pipeWriter struct {
	header http.Header
	pw     *io.PipeWriter
	status int
	ready  chan struct{}
	wrote  bool
}

func (p *pipeWriter) Header() http.Header { return p.header }
func (p *pipeWriter) WriteHeader(code int) {
	if p.wrote {
		return
	}
	p.wrote, p.status = true, code
	close(p.ready)
}
func (p *pipeWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.pw.Write(b)
}
func (p *pipeWriter) Flush() {}

// adminGetJSON loads the config, reaches the admin path (running service
// or in process) and decodes one admin endpoint's JSON answer.
func adminGetJSON(c *cli.Context, env Env, path string, out any) (*Config, error) {
	cfg, err := loadFromCLI(c, env, nil)
	if err != nil {
		return nil, err
	}
	conn, err := dialAdmin(c.Context, cfg, NewLogger(env.Stderr, cfg.Log))
	if err != nil {
		return cfg, err
	}
	defer conn.close()
	return cfg, conn.getJSON(c.Context, path, out)
}

// getJSON fetches an admin endpoint and decodes its JSON answer.
func (a *adminConn) getJSON(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminBase+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return fmt.Errorf("%s: %s: %s", path, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// adminError answers in the API's error format.
func adminError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	cliout.JSON(w, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
