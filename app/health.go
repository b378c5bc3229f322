package app

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"artifactstore/internal/lifecycle"
	"artifactstore/internal/recovery"
	"artifactstore/internal/verify"
	"artifactstore/internal/webhook"
	"artifactstore/store"
)

// healthDocument is GET /v1/health: backends, locations by verdict, the
// failed locations and the verification schedule. Failed locations make
// the status "degraded" (the service still serves everything else); a
// backend that is down makes it "degraded" too; readiness is /readyz.
type healthDocument struct {
	Status          string                  `json:"status"` // ok, degraded
	Backends        []backendHealth         `json:"backends"`
	FailedLocations []verify.FailedLocation `json:"failed_locations"` // each with what to do
	// Action is the operator's next step when locations failed.
	Action      string `json:"action,omitempty"`
	FailedTotal int    `json:"failed_total"`
	// Lifecycle: last gc, retention and event pruning runs, and deletes
	// decided but not yet confirmed by a backend.
	Lifecycle *lifecycle.Status `json:"lifecycle,omitempty"`
	// Webhooks: every subscription's position, lag and failure state; a
	// failing one makes the status "degraded".
	Webhooks []webhook.Status `json:"webhooks"`
	// Recovery: manifest records still to be written and the last
	// database snapshot; a failed last snapshot makes the status
	// "degraded".
	Recovery *recovery.Status `json:"recovery,omitempty"`
}

type backendHealth struct {
	ID           string                       `json:"id"`
	Up           bool                         `json:"up"`
	Error        string                       `json:"error,omitempty"`
	Objects      int64                        `json:"objects"`
	Bytes        int64                        `json:"bytes"`
	Locations    map[string]int               `json:"locations_by_status"`
	Verification map[string]verificationState `json:"verification"`
}

type verificationState struct {
	Running       bool              `json:"running"`
	Current       *store.RunSummary `json:"current,omitempty"`
	LastRun       *store.RunSummary `json:"last_run,omitempty"`
	LastSuccessAt *time.Time        `json:"last_success_at,omitempty"`
	NextRunAt     *time.Time        `json:"next_run_at,omitempty"`
	Overruns      int               `json:"overruns"`
	LastOverrunAt *time.Time        `json:"last_overrun_at,omitempty"`
}

const maxFailedListed = 100

func (s *Service) health(ctx context.Context) (*healthDocument, error) {
	usage, err := s.Store.Usage(ctx)
	if err != nil {
		return nil, err
	}
	failed, total, err := s.Store.FailedLocations(ctx, maxFailedListed)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	down := s.Registry.Health(hctx)
	cancel()
	described, err := verify.Describe(ctx, s.Store, failed)
	if err != nil {
		return nil, err
	}
	doc := &healthDocument{Status: "ok", FailedLocations: described, FailedTotal: total}
	if total > 0 {
		doc.Action = "failed locations are never served; republish the packages holding their content (artifactstore push) or restore the objects from a copy, then run artifactstore verify; see docs/OPERATOR.md, \"Verification failed, what now\""
	}
	if total > 0 || len(down) > 0 {
		doc.Status = "degraded"
	}
	if doc.Webhooks, err = s.Webhooks.Statuses(ctx); err != nil {
		return nil, err
	}
	for _, w := range doc.Webhooks {
		if w.Failing {
			doc.Status = "degraded"
		}
	}
	for _, id := range s.Registry.BackendIDs() {
		bh := backendHealth{ID: id, Up: down[id] == nil, Locations: map[string]int{}, Verification: map[string]verificationState{}}
		if err := down[id]; err != nil {
			bh.Error = err.Error()
		}
		if u := usage[id]; u != nil {
			bh.Locations, bh.Objects, bh.Bytes = u.ByStatus, u.Blobs, u.Bytes
		}
		for _, mode := range []string{store.ModeDeep, store.ModeQuick} {
			st, err := s.Store.GetVerifyState(ctx, id, mode)
			if err != nil {
				return nil, err
			}
			bh.Verification[mode] = verificationState{Running: st.Current != nil, Current: st.Current, LastRun: st.Last,
				LastSuccessAt: st.LastSuccessAt, NextRunAt: st.NextAt, Overruns: st.Overruns, LastOverrunAt: st.LastOverrunAt}
		}
		doc.Backends = append(doc.Backends, bh)
	}
	if doc.Lifecycle, err = s.Lifecycle.Status(ctx); err != nil {
		return nil, err
	}
	if doc.Recovery, err = s.Recovery.Status(ctx); err != nil {
		return nil, err
	}
	if doc.Recovery.LastSnapshotError != "" {
		doc.Status = "degraded"
	}
	return doc, nil
}

func (s *Service) healthDoc(w http.ResponseWriter, r *http.Request) {
	doc, err := s.health(r.Context())
	if err != nil {
		adminError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(doc)
}
