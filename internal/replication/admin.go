package replication

import (
	"encoding/json"
	"net/http"
)

// AdminRoutes are the operator endpoints of replication, mounted under the
// admin path (unix socket, or an admin token on the API):
//
//	POST /v1/admin/repair -> Report: one pass now over every pending copy
//	                         and failed location, retry delays ignored
//	                         (what `verify --repair` runs).
func (m *Manager) AdminRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		"POST /v1/admin/repair": http.HandlerFunc(m.adminRepair),
	}
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
