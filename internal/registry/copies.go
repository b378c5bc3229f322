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
	"sync"
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

// copyObject copies d from src to dst with Replace, which checks every
// byte against the digest before the object becomes visible (a source
// that does not match fails with errSource and digest.ErrMismatch, and
// dst keeps what it had), so a corrupt object at the target is rewritten
// too; with reverify the copy is then read back and hashed. lim, if set,
// paces the bytes read.
func (r *Registry) copyObject(ctx context.Context, src, dst backends.Backend, d digest.Digest, size int64, lim *rate.Limiter, reverify bool) error {
	// The whole object, not a range of the recorded size: a storage
	// service serves a plain read at least as fast, and Replace checks
	// the size anyway.
	rc, err := src.Open(ctx, d, 0, -1)
	if err != nil {
		return fmt.Errorf("%w %s: %w", errSource, src.ID(), err)
	}
	// The target's Replace is the digest-checking reader: by the SPI's
	// contract the object becomes visible only if the bytes hash to d, so
	// a second hash of the same stream here would only cost CPU. A
	// mismatch it reports is the source's (those are the bytes it read).
	body := &sourceReader{r: paced(ctx, rc, lim)}
	err = dst.Replace(ctx, d, size, body)
	rc.Close()
	if body.err != nil {
		return fmt.Errorf("%w %s: %w", errSource, src.ID(), body.err)
	}
	if errors.Is(err, backends.ErrDigestMismatch) || errors.Is(err, backends.ErrSizeMismatch) {
		return fmt.Errorf("%w %s: %w", errSource, src.ID(), err)
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
	res := r.CopyMany(ctx, []CopyItem{{Digest: d, Target: target}}, o, 1)
	return &res[0].CopyResult, res[0].Err
}

// CopyItem is one content to copy to Target.
type CopyItem struct {
	Digest digest.Digest
	Target string
}

// CopyManyResult is the outcome of one CopyItem.
type CopyManyResult struct {
	CopyResult
	Err error
}

// CopyMany is CopyContent for many items, concurrency of them at once,
// with the database work batched: one read to find sources, one
// transaction for the leases of all sources and targets, one to record
// every copy, one to release the leases. Items may repeat a digest with
// different targets.
func (r *Registry) CopyMany(ctx context.Context, items []CopyItem, o CopyOptions, concurrency int) []CopyManyResult {
	out := make([]CopyManyResult, len(items))
	var ds []string
	for i, it := range items {
		out[i].Digest, out[i].Target = it.Digest.String(), it.Target
		ds = append(ds, it.Digest.String())
	}
	fail := func(err error) []CopyManyResult {
		for i := range out {
			if out[i].Err == nil {
				out[i].Err = err
			}
		}
		return out
	}
	locs, err := r.store.LocationsOf(ctx, ds)
	if err != nil {
		return fail(err)
	}
	// What to do for each item, before any write.
	todo := make([]bool, len(items))
	var refs, stale []store.Ref
	for i, it := range items {
		ds := it.Digest.String()
		if _, ok := r.backends[it.Target]; !ok {
			out[i].Err = fmt.Errorf("%w %q", ErrUnknownBackend, it.Target)
			continue
		}
		var cur *store.Location
		sources := 0
		for _, l := range locs[ds] {
			if l.Backend == it.Target {
				cur = &l
			} else if r.canSource(l, it.Target, o) {
				sources++
				refs = append(refs, store.Ref{Backend: l.Backend, Digest: ds})
			}
		}
		switch {
		case cur != nil && !cur.Failed():
			// Nothing to do; a pending copy of it is stale.
			stale = append(stale, store.Ref{Backend: it.Target, Digest: ds})
		case sources == 0:
			out[i].Err = fmt.Errorf("%s to %s: %w", ds, it.Target, ErrNoSource)
		default:
			if err := r.checkBackend(ctx, it.Target); err != nil {
				out[i].Err = err
				continue
			}
			todo[i] = true
			refs = append(refs, store.Ref{Backend: it.Target, Digest: ds})
		}
	}
	if len(stale) > 0 {
		if err := r.store.DropPendingCopies(ctx, stale); err != nil {
			return fail(err)
		}
	}
	if !slices.Contains(todo, true) {
		return out
	}
	// Lease every source and target under their key locks: from now on gc
	// neither removes their locations nor deletes their objects.
	holder := newHolder()
	slices.SortFunc(refs, func(a, b store.Ref) int { return strings.Compare(a.Backend+"\x00"+a.Digest, b.Backend+"\x00"+b.Digest) })
	refs = slices.Compact(refs)
	unlock := r.lockRefs(refs)
	err = r.store.HoldLeases(ctx, holder, refs)
	unlock()
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := r.store.ReleaseLeases(context.WithoutCancel(ctx), holder, refs); err != nil {
			logctx.From(ctx, r.log).Warn("releasing copy leases failed", "err", err)
		}
	}()
	referenced, err := r.store.ReferencedAll(ctx, ds)
	if err != nil {
		return fail(err)
	}
	if locs, err = r.store.LocationsOf(ctx, ds); err != nil {
		return fail(err)
	}
	hadTarget := make([]bool, len(items))
	var recs []store.CopyRecord
	var recIdx []int
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(concurrency, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rec, had, err := r.copyOne(ctx, items[i], locs[items[i].Digest.String()], o)
				mu.Lock()
				hadTarget[i] = had
				if err != nil {
					out[i].Err = err
				} else {
					out[i].Source, out[i].Bytes = rec.Source, rec.Size
					recs, recIdx = append(recs, rec), append(recIdx, i)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range items {
		if !todo[i] {
			continue
		}
		if !referenced[items[i].Digest.String()] {
			out[i].Err = fmt.Errorf("%s: %w", items[i].Digest, store.ErrNotReferenced)
			continue
		}
		if ctx.Err() != nil {
			out[i].Err = ctx.Err()
			continue
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if len(recs) == 0 {
		return out
	}
	outs, errs, err := r.store.RecordCopies(context.WithoutCancel(ctx), recs)
	var garbage []store.Ref
	for j, i := range recIdx {
		switch {
		case err != nil:
			out[i].Err = err
		case errs[j] != nil:
			out[i].Err = errs[j]
			if !hadTarget[i] {
				garbage = append(garbage, store.Ref{Backend: items[i].Target, Digest: items[i].Digest.String()})
			}
		default:
			out[i].Outcome = outs[j]
		}
	}
	if len(garbage) > 0 {
		// Not recorded: remove what we wrote once our leases are gone.
		defer r.gc(context.WithoutCancel(ctx), garbage)
	}
	return out
}

// copyOne copies one item from the best of locs that may be its source
// (leased by the caller), trying the next on failure.
func (r *Registry) copyOne(ctx context.Context, it CopyItem, locs []store.Location, o CopyOptions) (store.CopyRecord, bool, error) {
	ds := it.Digest.String()
	orderForRead(locs)
	had := slices.ContainsFunc(locs, func(l store.Location) bool { return l.Backend == it.Target })
	dst := r.backends[it.Target]
	var errs []error
	for _, l := range locs {
		if !r.canSource(l, it.Target, o) {
			continue
		}
		err := r.copyObject(ctx, r.backends[l.Backend], dst, it.Digest, l.Size, o.Limiter, o.Verify)
		if err != nil {
			if ctx.Err() != nil {
				return store.CopyRecord{}, had, ctx.Err()
			}
			if errors.Is(err, errSource) && (errors.Is(err, digest.ErrMismatch) || errors.Is(err, digest.ErrSizeMismatch)) {
				r.recordReadMismatch(ctx, l, err)
			}
			errs = append(errs, &BackendError{Backend: l.Backend + " -> " + it.Target, Err: err})
			continue
		}
		rec := store.CopyRecord{Digest: ds, Size: l.Size, Source: l.Backend, Target: it.Target, Reason: o.Reason}
		if o.Verify {
			rec.VerifiedAt = time.Now().UTC()
		}
		return rec, had, nil
	}
	if len(errs) > 0 {
		return store.CopyRecord{}, had, errors.Join(errs...)
	}
	return store.CopyRecord{}, had, fmt.Errorf("%s to %s: %w", ds, it.Target, ErrNoSource)
}

// lockRefs takes the key locks of objects on several backends in one
// fixed order and returns the function that releases them.
func (r *Registry) lockRefs(refs []store.Ref) func() {
	var stripes []int
	for _, ref := range refs {
		stripes = append(stripes, r.stripe(ref.Backend, ref.Digest))
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

// RouteOf returns the route the rules give a package now.
func (r *Registry) RouteOf(producer, retentionClass string) Route {
	return r.router.Route(producer, retentionClass)
}

// DropCopy removes the copy of d on backend (location and object) if
// another usable copy remains (on keep, when not empty) and no upload
// counts on this one (store.RemoveCopy; otherwise store.ErrLastCopy or
// store.ErrCopyInUse, and nothing changes). It returns the bytes freed
// (0: there was no such copy).
func (r *Registry) DropCopy(ctx context.Context, d digest.Digest, backend, keep, runID string) (int64, error) {
	res := r.DropMany(ctx, []store.Ref{{Backend: backend, Digest: d.String()}}, keep, runID, 1)
	return res[0].Bytes, res[0].Err
}

// DropResult is the outcome of one DropMany ref.
type DropResult struct {
	Bytes int64
	Err   error
}

// DropMany is DropCopy for many refs: the key locks of all of them are
// held from the one transaction that removes their locations (with delete
// intents) until their objects are deleted (concurrency at once), as
// garbage collection deletes, so no upload can start counting on an
// object in between; then one transaction drops the intents.
func (r *Registry) DropMany(ctx context.Context, refs []store.Ref, keep, runID string, concurrency int) []DropResult {
	out := make([]DropResult, len(refs))
	for i, ref := range refs {
		if _, ok := r.backends[ref.Backend]; !ok {
			out[i].Err = fmt.Errorf("%w %q", ErrUnknownBackend, ref.Backend)
		}
	}
	unlock := r.lockRefs(refs)
	defer unlock()
	removed, errs, err := r.store.RemoveCopies(ctx, refs, keep, runID)
	if err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	var done []store.Ref
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(concurrency, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				d, _ := digest.Parse(refs[i].Digest)
				err := r.backends[refs[i].Backend].Delete(ctx, d)
				mu.Lock()
				if err != nil {
					out[i].Err = &BackendError{Backend: refs[i].Backend, Err: err}
				} else {
					out[i].Bytes = removed[i].Size
					done = append(done, refs[i])
				}
				mu.Unlock()
			}
		}()
	}
	for i := range refs {
		if out[i].Err != nil {
			continue
		}
		if errs[i] != nil {
			out[i].Err = errs[i]
			continue
		}
		if removed[i] != nil {
			work <- i
		}
	}
	close(work)
	wg.Wait()
	if len(done) > 0 {
		// A failed delete keeps its intent: the next gc or run finishes it.
		if err := r.store.DropIntents(context.WithoutCancel(ctx), done); err != nil {
			logctx.From(ctx, r.log).Warn("dropping delete intents failed; gc finishes them", "err", err)
		}
	}
	return out
}

// FinishIntents deletes the objects of delete intents a run left (a
// crash between RemoveCopy and the delete), as garbage collection would.
func (r *Registry) FinishIntents(ctx context.Context, runID string) error {
	ins, err := r.store.PendingIntents(ctx)
	if err != nil {
		return err
	}
	for _, in := range ins {
		b, ok := r.backends[in.Backend]
		d, perr := digest.Parse(in.Digest)
		if in.RunID != runID || !ok || perr != nil {
			continue
		}
		unlock := r.lockKeys(in.Backend, []string{in.Digest})
		err := r.deleteIntent(ctx, b, d)
		unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// deleteIntent deletes an object whose location was removed with an
// intent, unless it is wanted again, then drops the intent. The caller
// holds the object's key lock.
func (r *Registry) deleteIntent(ctx context.Context, b backends.Backend, d digest.Digest) error {
	ref := store.Ref{Backend: b.ID(), Digest: d.String()}
	wanted, err := r.store.IntentWanted(ctx, ref)
	if err != nil {
		return err
	}
	if wanted {
		if err := b.Delete(ctx, d); err != nil {
			return &BackendError{Backend: b.ID(), Err: err}
		}
	}
	return r.store.DropIntents(context.WithoutCancel(ctx), []store.Ref{ref})
}
