package verify

import (
	"context"

	"artifactstore/store"
)

// FailedLocation is a location with a failed status and what the operator
// can do about it.
type FailedLocation struct {
	store.Location
	Action string `json:"action"`
}

// Advice says how to clear a failed location. A failed status is cleared
// only by evidence that covers it: republishing the package that holds the
// content (a verified rewrite, event location_repaired), or putting the
// object back from a copy and running a deep verification.
func Advice(l store.Location) string {
	switch l.Status {
	case store.StatusMismatch:
		return "the stored bytes do not match the digest and are never served: republish a package holding this content (artifactstore push, or the staged protocol) to rewrite the object, or restore the object from a copy and run a deep verify of backend " + l.Backend
	case store.StatusMissing:
		return "the object is gone from backend " + l.Backend + ": republish a package holding this content (artifactstore push) to upload it again, or restore the object from a copy and run verify"
	case store.StatusUnreadable:
		return "backend " + l.Backend + " could not read the object: check the backend (artifactstore storage check), then run verify again; if it stays unreadable, republish the content"
	}
	return ""
}

// FailedOn returns up to limit failed locations of backend with advice,
// and how many there are.
func FailedOn(ctx context.Context, st *store.Store, backend string, limit int) ([]FailedLocation, int, error) {
	locs, err := st.LocationsOn(ctx, backend)
	if err != nil {
		return nil, 0, err
	}
	out := []FailedLocation{}
	total := 0
	for _, l := range locs {
		if !l.Failed() {
			continue
		}
		total++
		if len(out) < limit {
			out = append(out, FailedLocation{Location: l, Action: Advice(l)})
		}
	}
	return out, total, nil
}
