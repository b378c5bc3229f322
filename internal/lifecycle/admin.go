package lifecycle

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"text/tabwriter"
)

// AdminRoutes are the operator endpoints of the lifecycle, mounted under
// the admin path (unix socket, or an admin token on the API):
//
//	POST /v1/admin/gc?dry_run=1&orphans=1   -> GCReport
//	POST /v1/admin/retention?dry_run=1      -> RetentionReport
//	POST /v1/admin/events/prune             -> PruneReport
func (m *Manager) AdminRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		"POST /v1/admin/gc":           http.HandlerFunc(m.adminGC),
		"POST /v1/admin/retention":    http.HandlerFunc(m.adminRetention),
		"POST /v1/admin/events/prune": http.HandlerFunc(m.adminPrune),
	}
}

func flag(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	return strconv.ParseBool(v)
}

func answer(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		// The report says how far the run got; the error is in it too.
		w.Header().Set("X-Lifecycle-Error", "1")
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func badRequest(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "bad_request", "message": msg}})
}

func (m *Manager) adminGC(w http.ResponseWriter, r *http.Request) {
	dry, err1 := flag(r, "dry_run")
	orphans, err2 := flag(r, "orphans")
	if err1 != nil || err2 != nil {
		badRequest(w, "dry_run and orphans must be booleans")
		return
	}
	rep, err := m.GC(r.Context(), GCOptions{DryRun: dry, Orphans: orphans})
	answer(w, rep, err)
}

func (m *Manager) adminRetention(w http.ResponseWriter, r *http.Request) {
	dry, err := flag(r, "dry_run")
	if err != nil {
		badRequest(w, "dry_run must be a boolean")
		return
	}
	rep, err := m.ApplyRetention(r.Context(), dry)
	answer(w, rep, err)
}

func (m *Manager) adminPrune(w http.ResponseWriter, r *http.Request) {
	rep, err := m.PruneEvents(r.Context())
	answer(w, rep, err)
}

// PrintGC writes a gc report for people.
func PrintGC(w io.Writer, r *GCReport) {
	verb := "deleted"
	if r.DryRun {
		verb = "would delete"
	}
	if r.Resumed > 0 {
		fmt.Fprintf(w, "finished %d deletes left by an interrupted run\n", r.Resumed)
	}
	if r.Cancelled > 0 {
		fmt.Fprintf(w, "%d deletes called off: the content was published again\n", r.Cancelled)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "BACKEND\tOBJECTS (%s)\tBYTES\tFAILED", verb)
	if r.Orphans {
		fmt.Fprint(tw, "\tORPHANS\tORPHANS DELETED\tWAITING (grace)")
	}
	fmt.Fprintln(tw)
	for _, id := range sortedKeys(r.Backends) {
		b := r.Backends[id]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d", id, b.Objects, b.Bytes, b.Failed)
		if r.Orphans {
			fmt.Fprintf(tw, "\t%d\t%d\t%d", b.OrphansFound, b.OrphansDeleted, b.OrphansWaiting)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if r.Error != "" {
		fmt.Fprintf(w, "error: %s\n", r.Error)
	}
}

// PrintRetention writes a retention report for people.
func PrintRetention(w io.Writer, r *RetentionReport) {
	verb := "deleted"
	if r.DryRun {
		verb = "would delete"
	}
	for _, d := range r.Deleted {
		fmt.Fprintf(w, "%s %s@%s (%s, published %s)\n", verb, d.Name, d.Version, d.Reason, d.CreatedAt.Format("2006-01-02 15:04"))
	}
	fmt.Fprintf(w, "%d packages %s, %d kept by their class's policy\n", len(r.Deleted), verb, r.Kept)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tOBJECTS FREED\tBYTES FREED")
	for _, id := range sortedKeys(r.Freed) {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", id, r.Freed[id].Objects, r.Freed[id].Bytes)
	}
	tw.Flush()
	if r.DryRun {
		fmt.Fprintln(w, "(content another package still uses is not counted; nothing was changed)")
	}
	if r.GC != nil {
		fmt.Fprintln(w, "garbage collection:")
		PrintGC(w, r.GC)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "error: %s\n", r.Error)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
