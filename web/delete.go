package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"artifactstore/store"
)

// PackageDeleter deletes committed packages (internal/lifecycle). The
// content of a deleted package is left to garbage collection.
type PackageDeleter interface {
	// DeletePackage deletes name@version for the reason and actor in d.
	// Errors: store.ErrNotFound, store.ErrInvalidReason.
	DeletePackage(ctx context.Context, name, version string, d store.Deletion) (*store.Package, error)
}

// deleteRequest is the optional JSON body of a package delete; the
// reason may also be the query parameter "reason".
type deleteRequest struct {
	Reason string `json:"reason"`
}

// deletePackage is DELETE /v1/packages/{name}/{version}: an admin token,
// or (with auth.producer_delete) a publish token of the package's
// producer, deletes a package for a reason.
func (s *Server) deletePackage(w http.ResponseWriter, r *http.Request) {
	if s.opts.Deleter == nil {
		s.fail(w, r, newErr(http.StatusNotImplemented, "not_implemented", "package deletes are not configured"))
		return
	}
	tok := tokenFrom(r.Context())
	admin := tok != nil && tok.Allows(store.ScopeAdmin)
	if !admin && !s.opts.ProducerDelete {
		s.fail(w, r, newErr(http.StatusForbidden, "forbidden", "deleting a package needs an admin token (auth.producer_delete is off)"))
		return
	}
	reason := r.URL.Query().Get("reason")
	if r.ContentLength != 0 {
		var req deleteRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil && err != io.EOF {
			s.fail(w, r, newErr(http.StatusBadRequest, "invalid_request", "the body must be JSON {\"reason\": \"...\"}: "+err.Error()))
			return
		}
		if req.Reason != "" {
			reason = req.Reason
		}
	}
	name, version := r.PathValue("name"), r.PathValue("version")
	view, err := s.reg.GetPackage(r.Context(), name, version)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !admin && !s.mayPublishAs(w, r, view.Producer) {
		return
	}
	by := "admin socket"
	if tok != nil {
		by = "token " + tok.Name + " (" + tok.ID + ")"
	}
	p, err := s.opts.Deleter.DeletePackage(r.Context(), name, version, store.Deletion{Reason: strings.TrimSpace(reason), By: by})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": packageSummary(p, false), "reason": strings.TrimSpace(reason), "by": by})
}
