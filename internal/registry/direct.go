package registry

import (
	"context"
	"sort"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/internal/logctx"
	"artifactstore/store"
)

// DirectPolicy enables direct downloads from one backend: instead of
// proxying the bytes, the API may send the client to a time-limited URL
// of the storage service (backends.DirectURLProvider).
type DirectPolicy struct {
	// MaxVerifiedAge: only a location whose last deep check matched less
	// than this long ago is handed out; the client then reads bytes the
	// registry has recently seen hash to the digest. Must be positive.
	MaxVerifiedAge time.Duration
	// URLTTL is how long a handed-out URL stays valid.
	URLTTL time.Duration
}

// EnableDirectDownloads sets the backends direct downloads are enabled
// for. It fails if a policy names a backend that is not configured, cannot
// hand out direct URLs (backends.DirectURLProvider) or has a non-positive
// age or lifetime. Call it while wiring, before the registry serves reads.
func (r *Registry) EnableDirectDownloads(policies map[string]DirectPolicy) error {
	d, err := directBackends(r.backends, policies)
	if err != nil {
		return err
	}
	r.direct = d
	return nil
}

// DirectURL returns a URL from which a client can read the whole blob d
// straight from a storage service, or "" when the bytes must be proxied.
// It answers a URL only for a location that (1) is on a backend with a
// DirectPolicy (EnableDirectDownloads) whose backend implements
// backends.DirectURLProvider, (2) has status verified and (3) was verified
// (deep check) within the policy's MaxVerifiedAge; among several, the most
// recently verified wins. A backend that fails to produce a URL is logged
// and skipped. Only a database error is returned; callers then fail the
// request as they would for Open.
func (r *Registry) DirectURL(ctx context.Context, d digest.Digest) (url, backend string, err error) {
	if len(r.direct) == 0 {
		return "", "", nil
	}
	locs, err := r.store.Locations(ctx, d.String())
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	var cands []store.Location
	for _, l := range locs {
		p, ok := r.direct[l.Backend]
		if !ok || l.Status != store.StatusVerified || l.LastVerifiedAt == nil || !verifiedWithin(*l.LastVerifiedAt, now, p.policy.MaxVerifiedAge) {
			continue
		}
		cands = append(cands, l)
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].LastVerifiedAt.After(*cands[j].LastVerifiedAt) })
	for _, l := range cands {
		p := r.direct[l.Backend]
		u, err := p.provider.DirectURL(ctx, d, p.policy.URLTTL)
		if err == nil {
			return u, l.Backend, nil
		}
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		logctx.From(ctx, r.log).Warn("backend could not hand out a direct URL; proxying", "backend", l.Backend, "digest", d.String(), "err", err)
	}
	return "", "", nil
}

type directBackend struct {
	policy   DirectPolicy
	provider backends.DirectURLProvider
}

// directBackends resolves policies against the backends.
func directBackends(bs map[string]backends.Backend, policies map[string]DirectPolicy) (map[string]directBackend, error) {
	out := map[string]directBackend{}
	for id, p := range policies {
		b, ok := bs[id]
		if !ok {
			return nil, &DirectConfigError{Backend: id, Msg: "no such backend"}
		}
		prov, ok := backends.AsDirectURLProvider(b)
		if !ok {
			return nil, &DirectConfigError{Backend: id, Msg: "this backend type cannot hand out direct URLs"}
		}
		if p.MaxVerifiedAge <= 0 || p.URLTTL <= 0 {
			return nil, &DirectConfigError{Backend: id, Msg: "max verified age and URL lifetime must be positive"}
		}
		out[id] = directBackend{policy: p, provider: prov}
	}
	return out, nil
}

// DirectConfigError rejects a direct download policy.
type DirectConfigError struct {
	Backend string
	Msg     string
}

func (e *DirectConfigError) Error() string {
	return "direct downloads from " + e.Backend + ": " + e.Msg
}
