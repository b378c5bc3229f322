package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"artifactstore/store"
)

const (
	sessionCookie = "artifactstore_session"
	// loginCSRFCookie carries the login form's CSRF token (double submit):
	// there is no session yet to hold it.
	loginCSRFCookie = "artifactstore_login"
)

// session is one login. It keeps the presented token so every request is
// checked against the token store again: a revoked or expired token ends
// the session at once.
type session struct {
	id      string
	token   string
	csrf    string
	expires time.Time
}

// sessions is the in-memory table of logins. Logins do not survive a
// restart of the service; users log in again.
type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	max int
	now func() time.Time
}

func newSessions(max int, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, max: max, now: now}
}

func randomString() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *sessions) create(token string, expires time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.m) >= s.max {
		for id, x := range s.m {
			if !now.Before(x.expires) {
				delete(s.m, id)
			}
		}
		// Still full: drop the login closest to its expiry.
		for len(s.m) >= s.max {
			var oldest *session
			for _, x := range s.m {
				if oldest == nil || x.expires.Before(oldest.expires) {
					oldest = x
				}
			}
			delete(s.m, oldest.id)
		}
	}
	x := &session{id: randomString(), token: token, csrf: randomString(), expires: expires}
	s.m[x.id] = x
	return x
}

func (s *sessions) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.m[id]
	if x == nil {
		return nil
	}
	if !s.now().Before(x.expires) {
		delete(s.m, id)
		return nil
	}
	return x
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// viewer is who is looking: a token (through a session) or anonymous.
type viewer struct {
	token   *store.Token // nil when anonymous
	session *session     // nil when anonymous
}

func (v *viewer) Anonymous() bool { return v.token == nil }
func (v *viewer) Admin() bool     { return v.token != nil && v.token.Allows(store.ScopeAdmin) }

// CSRF is the token every state-changing form of this session carries.
func (v *viewer) CSRF() string {
	if v.session == nil {
		return ""
	}
	return v.session.csrf
}

// Name describes the viewer in the header.
func (v *viewer) Name() string {
	if v.token == nil {
		return "anonymous"
	}
	return v.token.Name
}

// TokenID is the viewer's token id ("" when anonymous).
func (v *viewer) TokenID() string {
	if v.token == nil {
		return ""
	}
	return v.token.ID
}

func (v *viewer) Scope() string {
	if v.token == nil {
		return "read"
	}
	return v.token.Scope
}

type pageHandler func(w http.ResponseWriter, r *http.Request, v *viewer)

// need guards a page with the API's token rules: a valid session whose
// token has scope, or anonymous reading when it is allowed. Visitors
// without either are redirected to the login page, and nothing of the page
// is computed; a token without the scope gets 403.
func (u *UI) need(scope string, h pageHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		v := u.viewerOf(r)
		if v.token == nil && !(scope == store.ScopeRead && u.opts.AnonymousRead) {
			u.toLogin(w, r)
			return
		}
		if v.token != nil && !v.token.Allows(scope) {
			u.errorPage(w, r, v, http.StatusForbidden, "Not allowed",
				"Your token ("+v.token.Scope+" scope) may not open this page; it needs an "+scope+" token.")
			return
		}
		h(w, r, v)
	}
}

// viewerOf resolves the session cookie; a cookie of an unknown, expired
// or revoked login is anonymous.
func (u *UI) viewerOf(r *http.Request) *viewer {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return &viewer{}
	}
	s := u.sessions.get(c.Value)
	if s == nil {
		return &viewer{}
	}
	tok, err := u.opts.Tokens.Authenticate(r.Context(), s.token)
	if err != nil {
		if errors.Is(err, store.ErrBadToken) {
			u.sessions.drop(s.id)
		}
		return &viewer{}
	}
	return &viewer{token: tok, session: s}
}

// toLogin redirects to the login page; the body names nothing of the
// page asked for.
func (u *UI) toLogin(w http.ResponseWriter, r *http.Request) {
	target := Prefix + "login"
	if r.Method == http.MethodGet && r.URL.Path != Prefix {
		target += "?next=" + url.QueryEscape(r.URL.RequestURI())
	}
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusSeeOther)
}

// safeNext keeps only redirects to pages of this interface.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return Prefix
	}
	if p, err := url.Parse(next); err != nil || p.Host != "" || p.Scheme != "" {
		return Prefix
	}
	return next
}

func (u *UI) cookie(r *http.Request, name, value string, expires time.Time) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: Prefix, HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode}
	if value == "" {
		c.MaxAge = -1
		c.Expires = time.Unix(1, 0)
	} else {
		c.Expires = expires
		c.MaxAge = int(expires.Sub(u.opts.Now()).Seconds())
	}
	return c
}

type loginData struct {
	CSRF  string
	Next  string
	Error string
}

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	csrf := randomString()
	http.SetCookie(w, u.cookie(r, loginCSRFCookie, csrf, u.opts.Now().Add(time.Hour)))
	u.render(w, r, &viewer{}, http.StatusOK, "login", "Log in", loginData{CSRF: csrf, Next: safeNext(r.URL.Query().Get("next"))})
}

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		u.errorPage(w, r, &viewer{}, http.StatusBadRequest, "Bad form", "The login form could not be read.")
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	c, err := r.Cookie(loginCSRFCookie)
	if err != nil || !sameSecret(c.Value, r.PostForm.Get("csrf")) {
		u.errorPage(w, r, &viewer{}, http.StatusForbidden, "Form expired",
			"The login form was stale or came from another site. Open the login page again.")
		return
	}
	again := func(msg string) {
		csrf := randomString()
		http.SetCookie(w, u.cookie(r, loginCSRFCookie, csrf, u.opts.Now().Add(time.Hour)))
		u.render(w, r, &viewer{}, http.StatusUnauthorized, "login", "Log in", loginData{CSRF: csrf, Next: next, Error: msg})
	}
	secret := strings.TrimSpace(r.PostForm.Get("token"))
	if secret == "" {
		again("Enter a token.")
		return
	}
	tok, err := u.opts.Tokens.Authenticate(r.Context(), secret)
	if err != nil {
		if errors.Is(err, store.ErrBadToken) {
			again("That token is unknown, revoked or expired.")
		} else {
			u.log.Error("login: token check failed", "err", err)
			again("The token could not be checked; try again.")
		}
		return
	}
	exp := u.opts.Now().Add(u.opts.SessionTTL)
	if tok.ExpiresAt != nil && tok.ExpiresAt.Before(exp) {
		exp = *tok.ExpiresAt
	}
	s := u.sessions.create(secret, exp)
	http.SetCookie(w, u.cookie(r, sessionCookie, s.id, exp))
	http.SetCookie(w, u.cookie(r, loginCSRFCookie, "", time.Time{}))
	u.log.Info("ui login", "token_id", tok.ID, "scope", tok.Scope)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	v := u.viewerOf(r)
	if v.session != nil {
		if err := r.ParseForm(); err != nil || !sameSecret(v.session.csrf, r.PostForm.Get("csrf")) {
			u.errorPage(w, r, v, http.StatusForbidden, "Form expired", "The logout form was stale or came from another site.")
			return
		}
		u.sessions.drop(v.session.id)
	}
	http.SetCookie(w, u.cookie(r, sessionCookie, "", time.Time{}))
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// checkCSRF answers 403 unless the posted form carries the session's CSRF
// token.
func (u *UI) checkCSRF(w http.ResponseWriter, r *http.Request, v *viewer) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		u.errorPage(w, r, v, http.StatusBadRequest, "Bad form", "The form could not be read.")
		return false
	}
	if v.session == nil || !sameSecret(v.session.csrf, r.PostForm.Get("csrf")) {
		u.errorPage(w, r, v, http.StatusForbidden, "Form expired", "The form was stale or came from another site. Reload the page and try again.")
		return false
	}
	return true
}

func sameSecret(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
