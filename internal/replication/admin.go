package replication

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"artifactstore/internal/cliout"
	"artifactstore/store"
)

// AdminRoutes are the operator endpoints of replication, mounted under the
// admin path (unix socket, or an admin token on the API):
//
//	POST /v1/admin/repair -> Report: one pass now over every pending copy
//	                         and failed location, retry delays ignored
//	                         (what `verify --repair` runs).
//	POST /v1/admin/migrate?from=&to=&by_rules=&producer=&retention_class=
//	     &delete_source=&dry_run=&concurrency= -> NDJSON MigrateLines
//	                         (what `storage migrate` runs).
func (m *Manager) AdminRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		"POST /v1/admin/repair":  http.HandlerFunc(m.adminRepair),
		"POST /v1/admin/migrate": http.HandlerFunc(m.adminMigrate),
	}
}

// MigrateLine is one line of the migration stream: "progress" after each
// page of packages, then one "report" or "error".
type MigrateLine struct {
	Type  string              `json:"type"`
	Run   *store.MigrationRun `json:"run,omitempty"`
	Error string              `json:"error,omitempty"`
}

func (m *Manager) adminMigrate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	o := MigrateOptions{From: q.Get("from"), To: q.Get("to"), Producer: q.Get("producer"), RetentionClass: q.Get("retention_class")}
	var errs []error
	flag := func(name string) bool {
		if q.Get(name) == "" {
			return false
		}
		v, err := strconv.ParseBool(q.Get(name))
		errs = append(errs, err)
		return v
	}
	o.ByRules, o.DeleteSource, o.DryRun = flag("by_rules"), flag("delete_source"), flag("dry_run")
	if c := q.Get("concurrency"); c != "" {
		n, err := strconv.Atoi(c)
		o.Concurrency = n
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		badRequest(w, "by_rules, delete_source and dry_run must be booleans, concurrency a number: "+err.Error())
		return
	}
	if err := o.validate(m); err != nil {
		badRequest(w, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	// A write error means the reader went away, which also cancels
	// r.Context() and so the run.
	send := cliout.NDJSON(w)
	run, err := m.Migrate(r.Context(), o, func(run store.MigrationRun) { send(MigrateLine{Type: "progress", Run: &run}) })
	if err != nil {
		send(MigrateLine{Type: "error", Run: run, Error: err.Error()})
		return
	}
	send(MigrateLine{Type: "report", Run: run})
}

func badRequest(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "bad_request", "message": msg}})
}

func (m *Manager) adminRepair(w http.ResponseWriter, r *http.Request) {
	rep, err := m.Pass(r.Context(), true)
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "internal", "message": err.Error()}})
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(rep)
}
