package web

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/internal/manifest"
	"artifactstore/internal/registry"
	"artifactstore/store"
)

// apiError is the body of every error response:
// {"error": {"code": "...", "message": "..."}}.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Backend string `json:"backend,omitempty"`
}

func (e *apiError) Error() string { return e.Message }

func newErr(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

// classify maps an error from any layer to a status and stable code.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var me *manifest.Error
	if errors.As(err, &me) {
		return newErr(http.StatusBadRequest, me.Code, me.Error())
	}
	var bre *bodyReadError
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return newErr(http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds the limit of "+itoa(mbe.Limit)+" bytes")
	}
	e := func(status int, code string) *apiError { return newErr(status, code, err.Error()) }
	if errors.As(err, &bre) && !errors.Is(err, digest.ErrSizeMismatch) {
		return bodyError(err)
	}
	var be *registry.BackendError
	backend := ""
	if errors.As(err, &be) {
		backend = be.Backend
	}
	var out *apiError
	switch {
	case errors.Is(err, digest.ErrMismatch):
		out = e(http.StatusBadRequest, "digest_mismatch")
	case errors.Is(err, digest.ErrSizeMismatch):
		out = e(http.StatusBadRequest, "size_mismatch")
	case errors.Is(err, digest.ErrInvalid):
		out = e(http.StatusBadRequest, "invalid_digest")
	case errors.Is(err, store.ErrConflict):
		out = e(http.StatusConflict, "conflict")
	case errors.Is(err, store.ErrSessionExpired):
		out = e(http.StatusGone, "upload_expired")
	case errors.Is(err, store.ErrIncomplete):
		out = e(http.StatusConflict, "upload_incomplete")
	case errors.Is(err, store.ErrNotNeeded):
		out = e(http.StatusBadRequest, "content_not_needed")
	case errors.Is(err, store.ErrInvalidReason):
		out = e(http.StatusBadRequest, "invalid_reason")
	case errors.Is(err, store.ErrEventsPruned):
		out = e(http.StatusGone, "events_pruned")
	case errors.Is(err, store.ErrBadCursor):
		out = e(http.StatusBadRequest, "invalid_cursor")
	case errors.Is(err, store.ErrNotFound), errors.Is(err, backends.ErrNotFound) && backend == "":
		out = e(http.StatusNotFound, "not_found")
	case errors.Is(err, backends.ErrInvalidRange):
		out = e(http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable")
	case errors.Is(err, backends.ErrUnavailable), errors.Is(err, registry.ErrUnknownBackend):
		out = e(http.StatusServiceUnavailable, "backend_unavailable")
	case errors.Is(err, registry.ErrNoRoute):
		out = e(http.StatusUnprocessableEntity, "no_route")
	case errors.Is(err, registry.ErrNoLocation):
		out = e(http.StatusServiceUnavailable, "content_unavailable")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		out = e(http.StatusServiceUnavailable, "cancelled")
	case backend != "":
		out = e(http.StatusServiceUnavailable, "backend_unavailable")
	default:
		out = newErr(http.StatusInternalServerError, "internal", "internal error; see the server log")
	}
	if out.Status >= 500 {
		out.Backend = backend // the backend is at fault only for server-side failures
	}
	return out
}

// bodyError maps a failure reading a request body. The message never
// carries the underlying network error, which names socket addresses.
func bodyError(err error) *apiError {
	var sb *slowBodyError
	if errors.As(err, &sb) {
		return newErr(http.StatusRequestTimeout, "body_timeout", sb.Error())
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return newErr(http.StatusRequestTimeout, "body_timeout", "the request body stalled (server.body_read_timeout)")
	}
	return newErr(http.StatusBadRequest, "body_read_failed", "reading the request body failed: the client closed or reset the connection")
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	ae := classify(err)
	log := loggerFrom(r.Context(), s.log)
	if ae.Status >= 500 {
		log.Error("request failed", "status", ae.Status, "code", ae.Code, "err", err)
	} else {
		log.Info("request rejected", "status", ae.Status, "code", ae.Code, "err", err)
	}
	// A failure is of its moment: no cache may keep it (a content route's
	// 503 must not be served for a year as if it were the content).
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, ae.Status, map[string]any{"error": ae})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
