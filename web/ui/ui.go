// Package ui is the web interface: server-rendered pages over the registry
// for browsing packages, their files and storage locations, the health of
// the backends, the event log, and (for admins) access tokens.
//
// Pages are html/template with embedded static files; they work without
// JavaScript. Access follows the API's token rules: a login form takes a
// token and keeps it in a server-side session behind an HttpOnly,
// SameSite=Strict cookie; downloads go through the API handler itself, so
// ranges, ETags and digests behave exactly as for any other client.
package ui

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"artifactstore/internal/registry"
	"artifactstore/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Catalog is what the pages read from the registry database. Every method
// is safe for concurrent use and honours ctx.
type Catalog interface {
	// RecentNames lists package names newest first (store.NameQuery).
	RecentNames(ctx context.Context, q store.NameQuery) (store.NamePage, error)
	// ListVersions lists a name's versions newest first; ErrBadCursor for
	// a cursor it did not produce.
	ListVersions(ctx context.Context, name, cursor string, limit int) (store.Page, error)
	// LocationsOf returns the locations of each digest.
	LocationsOf(ctx context.Context, digests []string) (map[string][]store.Location, error)
	// EventsBefore lists events newest first.
	EventsBefore(ctx context.Context, q store.EventQuery) ([]store.Event, uint64, error)
	// Events lists events after a sequence number, oldest first.
	Events(ctx context.Context, after uint64, limit int) ([]store.Event, error)
	// PackagesWithDigests finds up to perDigest packages holding each
	// digest, newest first, reading at most maxRefs references of one.
	PackagesWithDigests(ctx context.Context, digests []string, perDigest, maxRefs int) (map[string][]*store.Package, error)
}

// Packages reads one package with its locations (the registry).
type Packages interface {
	// GetPackage returns name@version or an error wrapping store.ErrNotFound.
	GetPackage(ctx context.Context, name, version string) (*registry.PackageView, error)
}

// Tokens resolves and manages access tokens.
type Tokens interface {
	// Authenticate returns the token a secret belongs to, or an error
	// wrapping store.ErrBadToken.
	Authenticate(ctx context.Context, token string) (*store.Token, error)
	ListTokens(ctx context.Context) ([]store.Token, error)
	// CreateToken returns the secret form (shown once) and the record.
	CreateToken(ctx context.Context, name, scope string, producers []string, ttl time.Duration) (string, *store.Token, error)
	// RevokeToken deletes a token; an error wrapping store.ErrNotFound if
	// there is none.
	RevokeToken(ctx context.Context, id string) error
}

// Options configures the interface.
type Options struct {
	Catalog  Catalog
	Packages Packages
	Tokens   Tokens
	// Health returns the JSON health document (GET /v1/health). Fields the
	// page does not know are shown as they are, so new sections of the
	// document (gc, retention, ...) appear without a change here.
	Health func(ctx context.Context) ([]byte, error)
	// API serves the HTTP API; downloads and the live event stream are
	// forwarded to it with the session's token.
	API http.Handler
	// AnonymousRead lets visitors without a session browse (not manage
	// tokens), as auth.anonymous_read does for the API.
	AnonymousRead bool
	// SessionTTL is how long a login lasts (never past the token's own
	// expiry); 0 means 12h.
	SessionTTL time.Duration
	// MaxSessions bounds the logins kept in memory; 0 means 10,000.
	MaxSessions int
	Logger      *slog.Logger
	// Now overrides the clock (tests).
	Now func() time.Time
}

// UI is the web interface's handler, mounted at /ui/.
type UI struct {
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	pages    map[string]*template.Template
	sessions *sessions
	static   http.Handler
	assetVer string
}

// Prefix is where the interface is mounted.
const Prefix = "/ui/"

// New builds the interface.
func New(opts Options) (*UI, error) {
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 10000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pages, err := parsePages(opts.Now)
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	u := &UI{opts: opts, log: opts.Logger, mux: http.NewServeMux(), pages: pages,
		sessions: newSessions(opts.MaxSessions, opts.Now), assetVer: assetVersion()}
	u.static = http.StripPrefix(Prefix+"static/", http.FileServerFS(sub))
	u.routes()
	return u, nil
}

func (u *UI) routes() {
	m := u.mux
	m.HandleFunc("GET /ui/static/", u.serveStatic)
	m.HandleFunc("GET /ui/login", u.loginPage)
	m.HandleFunc("POST /ui/login", u.login)
	m.HandleFunc("POST /ui/logout", u.logout)
	m.HandleFunc("GET /ui/{$}", u.need(store.ScopeRead, u.packagesPage))
	m.HandleFunc("GET /ui/packages/{name}", u.need(store.ScopeRead, u.namePage))
	m.HandleFunc("GET /ui/packages/{name}/{version}", u.need(store.ScopeRead, u.versionPage))
	m.HandleFunc("GET /ui/packages/{name}/{version}/files/{path...}", u.need(store.ScopeRead, u.download))
	m.HandleFunc("GET /ui/health", u.need(store.ScopeRead, u.healthPage))
	m.HandleFunc("GET /ui/events", u.need(store.ScopeRead, u.eventsPage))
	m.HandleFunc("GET /ui/events/stream", u.need(store.ScopeRead, u.eventStream))
	m.HandleFunc("GET /ui/tokens", u.need(store.ScopeAdmin, u.tokensPage))
	m.HandleFunc("POST /ui/tokens", u.need(store.ScopeAdmin, u.createToken))
	m.HandleFunc("POST /ui/tokens/{id}/revoke", u.need(store.ScopeAdmin, u.revokeToken))
	m.HandleFunc("/ui/", u.need(store.ScopeRead, func(w http.ResponseWriter, r *http.Request, v *viewer) {
		u.errorPage(w, r, v, http.StatusNotFound, "No such page", "There is nothing at "+r.URL.Path+".")
	}))
}

// ServeHTTP serves every page under Prefix.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	u.mux.ServeHTTP(w, r)
}

// RedirectRoot answers GET / with a redirect to the interface.
func RedirectRoot(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, Prefix, http.StatusFound)
}

func (u *UI) serveStatic(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("v") == u.assetVer {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "public, max-age=300")
	}
	u.static.ServeHTTP(w, r)
}
