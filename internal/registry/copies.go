package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/internal/logctx"
	"artifactstore/store"
)

// Copies on several backends. A route may name several backends; the
// first healthy one receives the uploads, and Commit copies every file
// from it to the others before the package becomes visible. Later copies
// (pending ones, repairs, migrations) go through CopyContent, which
// internal/replication calls.

// ErrNoSource: no backend other than the target holds a usable copy.
var ErrNoSource = errors.New("no usable copy to copy from")

// LeasePrefix starts the holder id of every lease a copy takes
// (store.HoldLeases); at start-up the leases of a killed process are
// dropped by it (store.DropLeasesOf).
const LeasePrefix = "copy-"

func newHolder() string {
	var b [8]byte
	rand.Read(b[:])
	return LeasePrefix + hex.EncodeToString(b[:])
}

// pickPrimary checks the route's backends and returns the first healthy
// one (it receives the uploads) and the others. Fewer healthy backends
// than the route's minimum fails with the BackendError of the first one
// that is down (a 503 naming it).
func (r *Registry) pickPrimary(ctx context.Context, route Route) (string, []string, error) {
	type result struct {
		i   int
		err error
	}
	ch := make(chan result, len(route.Backends))
	for i, id := range route.Backends {
		go func() { ch <- result{i, r.checkBackend(ctx, id)} }()
	}
	errs := make([]error, len(route.Backends))
	for range route.Backends {
		res := <-ch
		errs[res.i] = res.err
	}
	var up, down []string
	var firstDown error
	for i, id := range route.Backends {
		if errs[i] != nil {
			if firstDown == nil {
				firstDown = errs[i]
			}
			down = append(down, id)
			continue
		}
		up = append(up, id)
	}
	if ctx.Err() != nil {
		return "", nil, ctx.Err()
	}
	if len(up) < route.minCopies() {
		if len(route.Backends) > 1 {
			var be *BackendError
			if errors.As(firstDown, &be) {
				return "", nil, &BackendError{Backend: strings.Join(down, ", "), Err: fmt.Errorf(
					"%d of %d copies required and only %d backends are up: %w", route.minCopies(), len(route.Backends), len(up), be.Err)}
			}
		}
		return "", nil, firstDown
	}
	primary := up[0]
	var others []string
	for _, id := range route.Backends {
		if id != primary {
			others = append(others, id)
		}
	}
	return primary, others, nil
}

// writeCopies copies every content of the session's package from its
// backend to each of sess.Copies (checked against the digest on the way),
// holding leases so garbage collection leaves the copies alone until the
// commit records them. A copy backend that is down or fails gets pending
// copies instead, as long as sess.MinCopies backends hold the content;
// otherwise the commit fails with that backend's error. release drops the
// leases and, if the commit did not record them, the copies.
func (r *Registry) writeCopies(ctx context.Context, sess *store.Session) (copies, pending []store.Ref, release func(committed bool), err error) {
	if len(sess.Draft.Files) == 0 {
		return nil, nil, func(bool) {}, nil
	}
	primaryID := sess.Draft.Files[0].Backend
	src, ok := r.backends[primaryID]
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w %q", ErrUnknownBackend, primaryID)
	}
	sizes := map[string]int64{}
	var ds []string
	for _, f := range sess.Draft.Files {
		if _, ok := sizes[f.Digest]; !ok {
			sizes[f.Digest] = f.Size
			ds = append(ds, f.Digest)
		}
	}
	holder := LeasePrefix + sess.ID
	var leased []store.Ref
	release = func(committed bool) {
		bg := context.WithoutCancel(ctx)
		if err := r.store.ReleaseLeases(bg, holder, leased); err != nil {
			logctx.From(ctx, r.log).Warn("releasing copy leases failed", "err", err)
		}
		if !committed {
			r.gc(bg, copies)
		}
	}
	holders := 1
	var firstErr error
	for _, id := range sess.Copies {
		dst, ok := r.backends[id]
		if !ok {
			release(false)
			return nil, nil, nil, fmt.Errorf("%w %q", ErrUnknownBackend, id)
		}
		var refs []store.Ref
		for _, d := range ds {
			refs = append(refs, store.Ref{Backend: id, Digest: d})
		}
		failed := r.checkBackend(ctx, id)
		if failed == nil {
			unlock := r.lockKeys(id, ds)
			failed = r.store.HoldLeases(ctx, holder, refs)
			unlock()
			if failed == nil {
				leased = append(leased, refs...)
			}
		}
		for _, d := range ds {
			if failed != nil {
				pending = append(pending, store.Ref{Backend: id, Digest: d})
				continue
			}
			have, err := r.store.HasLocation(ctx, d, id)
			if err != nil {
				release(false)
				return nil, nil, nil, err
			}
			if have {
				continue
			}
			dg, _ := digest.Parse(d)
			if err := r.copyObject(ctx, src, dst, dg, sizes[d], nil, false); err != nil {
				if errors.Is(err, errSource) {
					release(false)
					return nil, nil, nil, err
				}
				failed = &BackendError{Backend: id, Err: err}
				pending = append(pending, store.Ref{Backend: id, Digest: d})
				continue
			}
			copies = append(copies, store.Ref{Backend: id, Digest: d})
		}
		if failed == nil {
			holders++
		} else if firstErr == nil {
			firstErr = failed
			logctx.From(ctx, r.log).Warn("copy backend failed at publish", "backend", id, "upload_id", sess.ID, "err", failed)
		}
	}
	if holders < sess.MinCopies || (sess.MinCopies == 0 && firstErr != nil) {
		release(false)
		if !errors.Is(firstErr, backends.ErrUnavailable) {
			var be *BackendError
			if errors.As(firstErr, &be) {
				firstErr = &BackendError{Backend: be.Backend, Err: fmt.Errorf("%w: %w", backends.ErrUnavailable, be.Err)}
			}
		}
		return nil, nil, nil, firstErr
	}
	return copies, pending, release, nil
}

// errSource marks a failure of the copy's source (its bytes, or reading
// them), as opposed to the target's.
var errSource = errors.New("copy source")

// copyObject copies d from src to dst: every byte is read through a digest
// check (a source that does not match fails with errSource and
// digest.ErrMismatch, and dst keeps nothing), written with Replace (so a
// corrupt object at the target is rewritten too), and with reverify the
// copy is read back and hashed. lim, if set, paces reads and writes alike.
func (r *Registry) copyObject(ctx context.Context, src, dst backends.Backend, d digest.Digest, size int64, lim *rate.Limiter, reverify bool) error {
	rc, err := src.Open(ctx, d, 0, size)
	if err != nil {
		return fmt.Errorf("%w %s: %w", errSource, src.ID(), err)
	}
	body := &sourceReader{r: digest.NewVerifier(paced(ctx, rc, lim), d, size)}
	err = dst.Replace(ctx, d, size, body)
	rc.Close()
	if body.err != nil {
		return fmt.Errorf("%w %s: %w", errSource, src.ID(), body.err)
	}
	if err != nil {
		return err
	}
	if !reverify {
		return nil
	}
	return checkObject(ctx, dst, d, size, lim)
}

// checkObject reads an object whole and hashes it (a deep check).
func checkObject(ctx context.Context, b backends.Backend, d digest.Digest, size int64, lim *rate.Limiter) error {
	rc, err := b.Open(ctx, d, 0, size)
	if err != nil {
		return fmt.Errorf("re-read %s on %s: %w", d, b.ID(), err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, digest.NewVerifier(paced(ctx, rc, lim), d, size)); err != nil {
		return fmt.Errorf("re-read %s on %s: %w", d, b.ID(), err)
	}
	return nil
}

// sourceReader remembers the source's own failure (wrong bytes, a read
// error), so it is not mistaken for the target's.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

type pacedReader struct {
	ctx context.Context
	r   io.Reader
	lim *rate.Limiter
}

// paced returns r, reading no faster than lim allows (r itself if nil).
func paced(ctx context.Context, r io.Reader, lim *rate.Limiter) io.Reader {
	if lim == nil {
		return r
	}
	return &pacedReader{ctx: ctx, r: r, lim: lim}
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if len(b) > p.lim.Burst() {
		b = b[:p.lim.Burst()]
	}
	n, err := p.r.Read(b)
	if n > 0 {
		if werr := p.lim.WaitN(p.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// CopyOptions tunes CopyContent.
type CopyOptions struct {
	// Source is the backend to copy from; empty picks the best usable
	// location (the read order of Open).
	Source string
	// Reason is recorded in the event ("pending", "repair", "migration").
	Reason string
	// Limiter paces the bytes read (the deep-verification budget).
	Limiter *rate.Limiter
	// Verify re-reads the written copy and records it verified.
	Verify bool
	// VerifiedSource copies only from a location whose last deep check
	// matched (status verified), as self-heal does.
	VerifiedSource bool
}

// CopyResult is what CopyContent did.
type CopyResult struct {
	Digest  string
	Source  string
	Target  string
	Bytes   int64
	Outcome store.CopyOutcome
}

// CopyContent makes sure target holds a good copy of content d that a
// committed package references. A usable location on target means there
// is nothing to do (CopyUnchanged). Otherwise the content is copied from
// a usable location on another backend through the digest-checking
// reader, written with Backend.Replace, re-read if o.Verify, and recorded
// (store.RecordCopy: a new location, or the repair of a failed one with a
// location_repaired event naming source and target).
//
// Garbage collection cannot race it: leases on the source and target
// objects are taken under their key locks before any byte moves, and the
// copy is recorded only if a package still references the content
// (otherwise store.ErrNotReferenced, and the written object is removed).
// A source whose bytes do not match is recorded as a mismatch (as a read
// would) and the next one is tried.
func (r *Registry) CopyContent(ctx context.Context, d digest.Digest, target string, o CopyOptions) (*CopyResult, error) {
	ds := d.String()
	res := &CopyResult{Digest: ds, Target: target}
	dst, ok := r.backends[target]
	if !ok {
		return res, fmt.Errorf("%w %q", ErrUnknownBackend, target)
	}
	if cur, err := r.store.GetLocation(ctx, ds, target); err != nil {
		return res, err
	} else if cur != nil && !cur.Failed() {
		return res, r.store.DropPendingCopy(ctx, ds, target)
	}
	// Without a candidate source there is nothing to lease or write.
	locs, err := r.store.Locations(ctx, ds)
	if err != nil {
		return res, err
	}
	if !slices.ContainsFunc(locs, func(l store.Location) bool { return r.canSource(l, target, o) }) {
		return res, fmt.Errorf("%s to %s: %w", ds, target, ErrNoSource)
	}
	if err := r.checkBackend(ctx, target); err != nil {
		return res, err
	}
	holder := newHolder()
	var leased []store.Ref
	lease := func(backend string) error {
		ref := store.Ref{Backend: backend, Digest: ds}
		unlock := r.lockKeys(backend, []string{ds})
		defer unlock()
		if err := r.store.HoldLeases(ctx, holder, []store.Ref{ref}); err != nil {
			return err
		}
		leased = append(leased, ref)
		return nil
	}
	defer func() {
		if err := r.store.ReleaseLeases(context.WithoutCancel(ctx), holder, leased); err != nil {
			logctx.From(ctx, r.log).Warn("releasing copy leases failed", "err", err)
		}
	}()
	if err := lease(target); err != nil {
		return res, err
	}
	// Under the leases gc can no longer remove a location of d on these
	// backends; whatever is recorded now stays until we are done.
	if ok, err := r.store.Referenced(ctx, ds); err != nil {
		return res, err
	} else if !ok {
		return res, fmt.Errorf("%s: %w", ds, store.ErrNotReferenced)
	}
	if locs, err = r.store.Locations(ctx, ds); err != nil {
		return res, err
	}
	orderForRead(locs)
	var before *store.Location
	var errs []error
	for _, l := range locs {
		if l.Backend == target {
			before = &l
			continue
		}
		if !r.canSource(l, target, o) {
			continue
		}
		src := r.backends[l.Backend]
		if err := lease(l.Backend); err != nil {
			return res, err
		}
		// The lease came after the listing: make sure the location is
		// still there and still good.
		if cur, err := r.store.GetLocation(ctx, ds, l.Backend); err != nil {
			return res, err
		} else if cur == nil || !r.canSource(*cur, target, o) {
			continue
		}
		err := r.copyObject(ctx, src, dst, d, l.Size, o.Limiter, o.Verify)
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			if errors.Is(err, errSource) && (errors.Is(err, digest.ErrMismatch) || errors.Is(err, digest.ErrSizeMismatch)) {
				r.recordReadMismatch(ctx, l, err)
			}
			errs = append(errs, &BackendError{Backend: l.Backend + " -> " + target, Err: err})
			continue
		}
		res.Source, res.Bytes = l.Backend, l.Size
		rec := store.CopyRecord{Digest: ds, Size: l.Size, Source: l.Backend, Target: target, Reason: o.Reason}
		if o.Verify {
			rec.VerifiedAt = time.Now().UTC()
		}
		res.Outcome, err = r.store.RecordCopy(context.WithoutCancel(ctx), rec)
		if errors.Is(err, store.ErrNotReferenced) && before == nil {
			// Not recorded: remove what we wrote once our leases are gone.
			defer r.gc(context.WithoutCancel(ctx), []store.Ref{{Backend: target, Digest: ds}})
		}
		return res, err
	}
	if len(errs) > 0 {
		return res, errors.Join(errs...)
	}
	return res, fmt.Errorf("%s to %s: %w", ds, target, ErrNoSource)
}

// canSource reports whether l may be the source of a copy to target.
func (r *Registry) canSource(l store.Location, target string, o CopyOptions) bool {
	if l.Backend == target || l.Failed() || (o.Source != "" && l.Backend != o.Source) {
		return false
	}
	if o.VerifiedSource && l.Status != store.StatusVerified {
		return false
	}
	_, ok := r.backends[l.Backend]
	return ok
}

// orderForRead sorts locations the way Open tries them: verified ones
// first, the most recently verified first; then stored (never verified,
// or rewritten since); failed ones last (Open skips them). Ties keep
// backend id order.
func orderForRead(locs []store.Location) {
	sort.SliceStable(locs, func(i, j int) bool {
		ri, rj := rank(locs[i]), rank(locs[j])
		if ri != rj {
			return ri < rj
		}
		if ri == 0 {
			ti, tj := verifiedAt(locs[i]), verifiedAt(locs[j])
			return ti.After(tj)
		}
		return false
	})
}

func verifiedAt(l store.Location) time.Time {
	if l.LastVerifiedAt == nil {
		return time.Time{}
	}
	return *l.LastVerifiedAt
}

// Copies returns, for each digest, the backends it has a pending copy on.
func (r *Registry) pendingOf(ctx context.Context, ds []string) (map[string][]string, error) {
	out, err := r.store.PendingCopiesOf(ctx, ds)
	for d := range out {
		slices.Sort(out[d])
	}
	return out, err
}
