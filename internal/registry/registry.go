// Package registry is the publish and fetch logic over the metadata store
// and the storage backends: routing a package to a backend, deduplicating
// content, staging uploads, committing atomically, garbage-collecting
// abandoned uploads and reading content back from wherever it lives.
package registry

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/internal/logctx"
	"artifactstore/internal/manifest"
	"artifactstore/store"
)

// Errors callers match with errors.Is (store and backends errors pass
// through wrapped as well).
var (
	ErrUnknownBackend = errors.New("unknown backend")
	ErrNoLocation     = errors.New("no readable location")
	ErrNoRoute        = errors.New("no routing rule matches")
)

// BackendError says which backend failed; it wraps the cause.
type BackendError struct {
	Backend string
	Err     error
}

func (e *BackendError) Error() string { return "backend " + e.Backend + ": " + e.Err.Error() }
func (e *BackendError) Unwrap() error { return e.Err }

// Router picks the backend for a new package.
type Router interface {
	Route(producer, retentionClass string) string
}

// Options configures a Registry.
type Options struct {
	SessionTTL time.Duration
	MaxFiles   int
	Logger     *slog.Logger
	// TrustVerifiedFor: a full read of a location whose deep check matched
	// less than this long ago is served without hashing (the backend's
	// fast path). 0 hashes every full read.
	TrustVerifiedFor time.Duration
}

// Registry is safe for concurrent use.
type Registry struct {
	store    *store.Store
	backends map[string]backends.Backend
	router   Router
	opts     Options
	log      *slog.Logger
	locks    [256]sync.Mutex

	healthMu sync.Mutex
	health   map[string]healthResult

	direct map[string]directBackend // EnableDirectDownloads
}

type healthResult struct {
	at  time.Time
	err error
}

// healthTTL bounds how stale a cached backend health result may be.
const healthTTL = 2 * time.Second

// checkBackend returns the backend's health, cached for healthTTL, so a
// publish to a backend that is down fails fast and names it.
func (r *Registry) checkBackend(ctx context.Context, id string) error {
	r.healthMu.Lock()
	h, ok := r.health[id]
	r.healthMu.Unlock()
	if ok && time.Since(h.at) < healthTTL {
		return h.err
	}
	b, found := r.backends[id]
	if !found {
		return fmt.Errorf("%w %q", ErrUnknownBackend, id)
	}
	hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := b.Health(hctx)
	cancel()
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // the caller gave up; do not cache
	}
	if err != nil {
		if !errors.Is(err, backends.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", backends.ErrUnavailable, err)
		}
		err = &BackendError{Backend: id, Err: err}
	}
	r.healthMu.Lock()
	r.health[id] = healthResult{at: time.Now(), err: err}
	r.healthMu.Unlock()
	return err
}

// New builds a Registry. Every backend id the router can return must be in bs.
func New(st *store.Store, bs map[string]backends.Backend, router Router, opts Options) *Registry {
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{store: st, backends: bs, router: router, opts: opts, log: opts.Logger, health: map[string]healthResult{}}
}

// Store returns the metadata store.
func (r *Registry) Store() *store.Store { return r.store }

// Backend returns a configured backend.
func (r *Registry) Backend(id string) (backends.Backend, bool) {
	b, ok := r.backends[id]
	return b, ok
}

// BackendIDs returns the configured backend ids, sorted.
func (r *Registry) BackendIDs() []string {
	ids := make([]string, 0, len(r.backends))
	for id := range r.backends {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// keyLock serialises garbage collection of one object against new
// references to it (see gc and Upload).
func (r *Registry) keyLock(backend, d string) *sync.Mutex { return &r.locks[r.stripe(backend, d)] }

func (r *Registry) stripe(backend, d string) int {
	h := fnv.New32a()
	h.Write([]byte(backend))
	h.Write([]byte{0})
	h.Write([]byte(d))
	return int(h.Sum32() % uint32(len(r.locks)))
}

// LockKeys takes the key locks of objects on a backend and returns the
// function that releases them. Upload sessions record their refs under
// these locks; anything that deletes objects (garbage collection) checks
// for references and deletes under them too.
func (r *Registry) LockKeys(backend string, digests []string) func() {
	return r.lockKeys(backend, digests)
}

// lockKeys takes the key locks of several objects in a fixed order (no
// deadlock) and returns the function that releases them.
func (r *Registry) lockKeys(backend string, digests []string) func() {
	var stripes []int
	for _, d := range digests {
		stripes = append(stripes, r.stripe(backend, d))
	}
	sort.Ints(stripes)
	stripes = slices.Compact(stripes)
	for _, i := range stripes {
		r.locks[i].Lock()
	}
	return func() {
		for _, i := range stripes {
			r.locks[i].Unlock()
		}
	}
}

// NeededFile is a file the client must upload.
type NeededFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// BeginResult answers a publish request.
type BeginResult struct {
	// Session is nil when the identical package is already committed.
	Session  *store.Session
	Existing *store.Package
	Backend  string
	Needed   []NeededFile
	// SkippedBytes is the content already stored that need not be uploaded.
	SkippedBytes int64
	// Repair is true when the identical package exists but some of its
	// content has a failed location on the routed backend: the session
	// asks for that content again and its upload rewrites the objects.
	Repair bool
}

// Begin validates m, routes it, and opens an upload session listing the
// contents the backend does not hold yet.
func (r *Registry) Begin(ctx context.Context, m *manifest.Manifest) (*BeginResult, error) {
	if err := m.Validate(r.opts.MaxFiles); err != nil {
		return nil, err
	}
	backendID := r.router.Route(m.Producer, m.RetentionClass)
	if backendID == "" {
		return nil, fmt.Errorf("producer %q, retention class %q: %w and no default backend is configured", m.Producer, m.RetentionClass, ErrNoRoute)
	}
	if _, ok := r.backends[backendID]; !ok {
		return nil, fmt.Errorf("route %s/%s: %w %q", m.Producer, m.RetentionClass, ErrUnknownBackend, backendID)
	}
	draft := draftOf(m, backendID)
	var repair map[string]bool // failed content of an existing package
	if existing, err := r.store.GetPackage(ctx, m.Name, m.Version); err == nil {
		if !store.SamePackage(existing, &draft) {
			return nil, &store.ConflictError{Name: m.Name, Version: m.Version, Diff: store.PackageDiff(existing, &draft)}
		}
		var ds []string
		for _, f := range draft.Files {
			ds = append(ds, f.Digest)
		}
		if repair, err = r.failedOn(ctx, backendID, ds); err != nil {
			return nil, err
		}
		if len(repair) == 0 {
			return &BeginResult{Existing: existing, Backend: backendID}, nil
		}
		// Republishing repairs: the session asks for the failed content.
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err := r.checkBackend(ctx, backendID); err != nil {
		return nil, err
	}
	// Garbage collection may remove a location between the dedup check
	// and the session's transaction; CreateSession then refuses with
	// ErrStaleBegin and the content is looked up (and uploaded) again.
	for attempt := 1; ; attempt++ {
		res, err := r.begin(ctx, draft, backendID, repair != nil)
		if errors.Is(err, store.ErrStaleBegin) && attempt < 5 {
			continue
		}
		return res, err
	}
}

// begin lists the needed content and opens the session. repair marks a
// session that republishes an existing package to repair it.
func (r *Registry) begin(ctx context.Context, draft store.Package, backendID string, repair bool) (*BeginResult, error) {
	res := &BeginResult{Backend: backendID, Needed: []NeededFile{}, Repair: repair}
	var neededDigests []string
	for _, f := range draft.Files {
		if slices.Contains(neededDigests, f.Digest) {
			res.SkippedBytes += f.Size // same content twice in one package
			continue
		}
		// A location with a failed status is no location: its content is
		// needed again, and its upload repairs the object (storeObject).
		have, err := r.store.HasLocation(ctx, f.Digest, backendID)
		if err != nil {
			return nil, err
		}
		if have {
			res.SkippedBytes += f.Size
			continue
		}
		neededDigests = append(neededDigests, f.Digest)
		d, _ := digest.Parse(f.Digest)
		res.Needed = append(res.Needed, NeededFile{Path: f.Path, SHA256: d.Hex, Size: f.Size})
	}
	// The refs the session records must not interleave with a garbage
	// collection deciding to delete the same objects.
	unlock := r.lockKeys(backendID, neededDigests)
	sess, err := r.store.CreateSession(ctx, draft, neededDigests, r.opts.SessionTTL)
	unlock()
	if err != nil {
		return nil, err
	}
	res.Session = sess
	return res, nil
}

func draftOf(m *manifest.Manifest, backendID string) store.Package {
	p := store.Package{Name: m.Name, Version: m.Version, Producer: m.Producer,
		RetentionClass: m.RetentionClass, Labels: m.Labels}
	for _, f := range m.Files {
		p.Files = append(p.Files, store.File{Path: f.Path, Size: f.Size,
			Digest: f.Digest().String(), MediaType: f.MediaType, Backend: backendID})
	}
	return p
}

// Upload streams one needed content into the session's backend. The body
// must be exactly the declared size and hash to d; otherwise nothing is
// kept and the error wraps digest.ErrMismatch or digest.ErrSizeMismatch.
func (r *Registry) Upload(ctx context.Context, sessionID string, d digest.Digest, size int64, body io.Reader) error {
	sess, err := r.store.GetSession(ctx, sessionID)
	if err != nil {
		return err
	}
	ds := d.String()
	if !slices.Contains(sess.Needed, ds) {
		return fmt.Errorf("%s: %w", ds, store.ErrNotNeeded)
	}
	var declared int64 = -1
	for _, f := range sess.Draft.Files {
		if f.Digest == ds {
			declared = f.Size
		}
	}
	if size >= 0 && size != declared {
		return fmt.Errorf("%s: body of %d bytes for a file declared as %d: %w", ds, size, declared, digest.ErrSizeMismatch)
	}
	backendID, _ := sess.BackendOf(ds)
	b, ok := r.backends[backendID]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownBackend, backendID)
	}
	return r.storeObject(ctx, b, sessionID, d, declared, body)
}

// Commit makes the session's package visible. created is false when an
// identical package existed already.
func (r *Registry) Commit(ctx context.Context, sessionID string) (*store.Package, bool, error) {
	sess, err := r.store.GetSession(ctx, sessionID)
	if err != nil {
		return nil, false, err
	}
	// Proof of upload is the object itself: every needed content must be
	// in its backend with the declared size.
	var stored []string
	for _, ds := range sess.Needed {
		backendID, _ := sess.BackendOf(ds)
		b, ok := r.backends[backendID]
		d, perr := digest.Parse(ds)
		if !ok || perr != nil {
			continue
		}
		info, err := b.Stat(ctx, d)
		if errors.Is(err, backends.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, false, &BackendError{Backend: backendID, Err: err}
		}
		for _, f := range sess.Draft.Files {
			if f.Digest == ds && f.Size == info.Size {
				stored = append(stored, ds)
				break
			}
		}
	}
	res, err := r.store.Commit(ctx, sessionID, stored)
	if len(res.Garbage) > 0 {
		r.gc(context.WithoutCancel(ctx), res.Garbage)
	}
	if err != nil {
		return nil, false, err
	}
	return res.Package, res.Created, nil
}

// Abort drops a session and removes what only it had staged.
func (r *Registry) Abort(ctx context.Context, sessionID string) error {
	refs, err := r.store.DropSession(ctx, sessionID)
	if err != nil {
		return err
	}
	r.gc(context.WithoutCancel(ctx), refs)
	return nil
}

// SweepSessions drops expired sessions, or all sessions when all is true
// (at start-up, when no client of the previous process can continue), and
// garbage-collects what they staged. It returns how many it dropped.
func (r *Registry) SweepSessions(ctx context.Context, all bool) (int, error) {
	ids, err := r.store.SessionIDs(ctx, all)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		refs, err := r.store.DropSession(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // committed or aborted meanwhile
		}
		if err != nil {
			return n, err
		}
		n++
		r.gc(ctx, refs)
	}
	if n > 0 {
		r.log.Info("upload sessions dropped", "count", n, "all", all)
	}
	return n, nil
}

// gc deletes staged objects nothing references any more. Under the key
// lock, no upload can add a reference between the check and the delete.
func (r *Registry) gc(ctx context.Context, refs []store.Ref) {
	for _, ref := range refs {
		b, ok := r.backends[ref.Backend]
		if !ok {
			continue
		}
		d, err := digest.Parse(ref.Digest)
		if err != nil {
			continue
		}
		mu := r.keyLock(ref.Backend, ref.Digest)
		mu.Lock()
		used, err := r.store.IsReferenced(ctx, ref)
		if err == nil && !used {
			err = b.Delete(ctx, d)
		}
		mu.Unlock()
		if err != nil {
			logctx.From(ctx, r.log).Warn("staged object not garbage-collected; it will be reported as an orphan",
				"backend", ref.Backend, "digest", ref.Digest, "err", err)
		}
	}
}

// PackageView is a package with the locations of each of its files.
type PackageView struct {
	*store.Package
	Locations map[string][]store.Location
}

// GetPackage returns name@version with its file locations.
func (r *Registry) GetPackage(ctx context.Context, name, version string) (*PackageView, error) {
	p, err := r.store.GetPackage(ctx, name, version)
	if err != nil {
		return nil, err
	}
	ds := make([]string, len(p.Files))
	for i, f := range p.Files {
		ds[i] = f.Digest
	}
	locs, err := r.store.LocationsOf(ctx, ds)
	if err != nil {
		return nil, err
	}
	return &PackageView{Package: p, Locations: locs}, nil
}

// Readable reports, from the registry alone (no backend is asked), whether
// a read of d would have a location to try: one whose status is not a
// failed verdict, on a configured backend. HEAD answers from it; a location
// that lost its object unnoticed is found by verification, not by HEAD.
func (r *Registry) Readable(ctx context.Context, d digest.Digest) error {
	locs, err := r.store.Locations(ctx, d.String())
	if err != nil {
		return err
	}
	for _, l := range locs {
		if _, ok := r.backends[l.Backend]; ok && !l.Failed() {
			return nil
		}
	}
	return fmt.Errorf("%s: %w", d, ErrNoLocation)
}

// Health checks every backend, returning the failures by backend id. A
// result is cached for healthTTL (as for publishes), so frequent callers
// (readiness probes) cost at most one backend check per backend and TTL.
func (r *Registry) Health(ctx context.Context) map[string]error {
	type result struct {
		id  string
		err error
	}
	ch := make(chan result, len(r.backends))
	for id := range r.backends {
		go func() { ch <- result{id, r.checkBackend(ctx, id)} }()
	}
	out := map[string]error{}
	for range r.backends {
		res := <-ch
		if res.err != nil {
			out[res.id] = res.err
		}
	}
	return out
}
