package verify

import (
	"context"
	"strings"

	"artifactstore/store"
)

// FailedLocation is a location with a failed status, the packages that
// hold its content, and what the operator can do about it.
type FailedLocation struct {
	store.Location
	// Packages lists up to five packages ("name@version") with this
	// content: republishing any of them repairs the object.
	Packages []string `json:"packages"`
	Action   string   `json:"action"`
}

// Advice says how to clear a failed location. A failed status is cleared
// only by evidence that covers it: republishing a package that holds the
// content (a verified rewrite, event location_repaired), or putting the
// object back from a copy and running a deep verification.
func Advice(l store.Location, packages []string) string {
	which := "a package holding this content"
	if len(packages) > 0 {
		which = strings.Join(packages, " or ")
	}
	switch l.Status {
	case store.StatusMismatch:
		return "the stored bytes do not match the digest and are never served: republish " + which +
			" (artifactstore push, the staged protocol or the one-request form) to rewrite the object, or restore the object from a copy and run a deep verify of backend " + l.Backend
	case store.StatusMissing:
		return "the object is gone from backend " + l.Backend + ": republish " + which +
			" (artifactstore push, the staged protocol or the one-request form) to upload it again, or restore the object from a copy and run verify"
	case store.StatusUnreadable:
		return "backend " + l.Backend + " could not read the object: check it (artifactstore storage check --backend " + l.Backend +
			"), then run verify again; if it stays unreadable, republish " + which
	}
	return ""
}

// Describe adds the packages and the advice to failed locations.
func Describe(ctx context.Context, st *store.Store, locs []store.Location) ([]FailedLocation, error) {
	var ds []string
	for _, l := range locs {
		ds = append(ds, l.Digest)
	}
	pkgs, err := st.PackagesHolding(ctx, ds, 5)
	if err != nil {
		return nil, err
	}
	out := make([]FailedLocation, 0, len(locs))
	for _, l := range locs {
		p := pkgs[l.Digest]
		if p == nil {
			p = []string{}
		}
		out = append(out, FailedLocation{Location: l, Packages: p, Action: Advice(l, p)})
	}
	return out, nil
}

// FailedOn returns up to limit failed locations of backend, described,
// and how many there are. It reads the failed index and the counters, not
// every location of the backend.
func FailedOn(ctx context.Context, st *store.Store, backend string, limit int) ([]FailedLocation, int, error) {
	failed, total, err := st.FailedLocationsOn(ctx, backend, limit)
	if err != nil {
		return nil, 0, err
	}
	out, err := Describe(ctx, st, failed)
	return out, total, err
}
