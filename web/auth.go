package web

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"artifactstore/store"
)

// Authenticator resolves a presented bearer token.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*store.Token, error)
}

type tokenKey struct{}

// tokenFrom returns the request's authenticated token (nil if anonymous).
func tokenFrom(ctx context.Context) *store.Token {
	t, _ := ctx.Value(tokenKey{}).(*store.Token)
	return t
}

// Route scopes. "open" needs no token at all (probes, metrics).
const scopeOpen = "open"

// authed guards h: no token is 401 (except reads when anonymous reads are
// allowed), an unknown, revoked or expired token is 401, a valid token
// without the scope is 403. Tokens are never logged.
func (s *Server) authed(scope string, h http.HandlerFunc) http.HandlerFunc {
	if scope == scopeOpen {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		raw := r.Header.Get("Authorization")
		if raw == "" {
			if scope == store.ScopeRead && s.opts.AnonymousRead {
				h(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="artifactstore"`)
			s.fail(w, r, newErr(http.StatusUnauthorized, "unauthorized", "this endpoint needs a token: Authorization: Bearer <token>"))
			return
		}
		presented, ok := strings.CutPrefix(raw, "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="artifactstore"`)
			s.fail(w, r, newErr(http.StatusUnauthorized, "invalid_token", "the Authorization header must be: Bearer <token>"))
			return
		}
		tok, err := s.opts.Auth.Authenticate(r.Context(), strings.TrimSpace(presented))
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="artifactstore", error="invalid_token"`)
			if errors.Is(err, store.ErrBadToken) {
				s.fail(w, r, newErr(http.StatusUnauthorized, "invalid_token", "the token is unknown, revoked or expired"))
			} else {
				s.fail(w, r, err)
			}
			return
		}
		if !tok.Allows(scope) {
			s.fail(w, r, newErr(http.StatusForbidden, "forbidden", "token "+tok.ID+" ("+tok.Scope+" scope) may not use this endpoint; it needs "+scope))
			return
		}
		loggerFrom(r.Context(), s.log).Debug("authenticated", "token_id", tok.ID, "scope", tok.Scope)
		h(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
	}
}

// mayPublishAs answers 403 unless the request's token may publish for
// producer.
func (s *Server) mayPublishAs(w http.ResponseWriter, r *http.Request, producer string) bool {
	tok := tokenFrom(r.Context())
	if tok != nil && tok.MayPublishAs(producer) {
		return true
	}
	msg := "no token"
	if tok != nil {
		msg = "token " + tok.ID + " may publish only as " + strings.Join(tok.Producers, ", ")
	}
	s.fail(w, r, newErr(http.StatusForbidden, "producer_forbidden", msg+"; the package's producer is "+producer))
	return false
}

// sessionProducer returns the producer of an open upload session.
func (s *Server) sessionProducer(w http.ResponseWriter, r *http.Request) (string, bool) {
	sess, err := s.reg.Store().GetSession(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return "", false
	}
	return sess.Draft.Producer, true
}
