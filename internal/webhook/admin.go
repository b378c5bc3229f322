package webhook

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"artifactstore/store"
)

// CreateRequest is the body of POST /v1/admin/webhooks.
type CreateRequest struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	Types          []string `json:"types"`
	Producer       string   `json:"producer"`
	RetentionClass string   `json:"retention_class"`
	// Secret signs deliveries (at least 16 bytes); empty: one is generated
	// and returned once.
	Secret string `json:"secret"`
	// From is "now" (default: only events committed from now on) or
	// "start" (every event still in the log).
	From string `json:"from"`
}

// Created answers POST /v1/admin/webhooks.
type Created struct {
	Subscription Status `json:"subscription"`
	// Secret is set only when the server generated it.
	Secret string `json:"secret,omitempty"`
}

// Routes are the admin endpoints, mounted by the service under admin
// scope (and on the admin socket).
func (m *Manager) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		"GET /v1/admin/webhooks":            http.HandlerFunc(m.list),
		"POST /v1/admin/webhooks":           http.HandlerFunc(m.create),
		"DELETE /v1/admin/webhooks/{id}":    http.HandlerFunc(m.remove),
		"POST /v1/admin/webhooks/{id}/test": http.HandlerFunc(m.test),
	}
}

func (m *Manager) list(w http.ResponseWriter, r *http.Request) {
	sts, err := m.Statuses(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sts)
}

func (m *Manager) create(w http.ResponseWriter, r *http.Request) {
	var req CreateRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody("bad_request", "malformed webhook request: "+err.Error()))
		return
	}
	fromNow := true
	switch req.From {
	case "", "now":
	case "start":
		fromNow = false
	default:
		writeError(w, &FieldError{"from", `must be "now" or "start"`})
		return
	}
	generated := req.Secret == ""
	sub, err := m.Add(r.Context(), store.Subscription{ID: req.ID, URL: req.URL, Types: req.Types, Producer: req.Producer,
		RetentionClass: req.RetentionClass, Secret: req.Secret}, fromNow)
	if err != nil {
		writeError(w, err)
		return
	}
	out := Created{Subscription: Status{ID: sub.ID, URL: sub.URL, Types: sub.Types, Producer: sub.Producer,
		RetentionClass: sub.RetentionClass, CreatedAt: sub.CreatedAt, Cursor: sub.Cursor}}
	if out.Subscription.Types == nil {
		out.Subscription.Types = []string{}
	}
	if generated {
		out.Secret = sub.Secret
	}
	writeJSON(w, http.StatusCreated, out)
}

func (m *Manager) remove(w http.ResponseWriter, r *http.Request) {
	if err := m.Remove(r.Context(), r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Manager) test(w http.ResponseWriter, r *http.Request) {
	res, err := m.Test(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func errorBody(code, msg string) map[string]any {
	return map[string]any{"error": map[string]string{"code": code, "message": msg}}
}

// writeError maps the package's and the store's errors to the API's
// error envelope.
func writeError(w http.ResponseWriter, err error) {
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_webhook", "webhook "+err.Error()))
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusNotFound, errorBody("not_found", err.Error()))
	case errors.Is(err, store.ErrConflict), errors.Is(err, ErrFromConfig):
		writeJSON(w, http.StatusConflict, errorBody("conflict", err.Error()))
	default:
		writeJSON(w, http.StatusInternalServerError, errorBody("internal", err.Error()))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
