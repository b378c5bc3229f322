package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/internal/logctx"
	"artifactstore/store"
)

// Open reads [off, off+n) of a blob from the first location that has it,
// in the order of orderForRead (verified locations first, the most
// recently verified first, then stored ones), never reading one with a
// failed status; a location whose backend fails is skipped for the next.
//
// A full read (off 0, the whole object) is verified as it streams: the
// returned reader hashes every byte and, if they do not match d, withholds
// the final bytes and fails with digest.ErrMismatch, so a consumer that
// forwards what it reads never delivers a complete wrong body (its WriteTo,
// what io.Copy uses, hashes on another goroutine while it reads and writes,
// with the same promise). The failure is recorded as a mismatch verdict of
// that location (mode "read", with its events), so the next read goes to another location, or answers
// ErrNoLocation if there is none. Only a location verified within
// Options.TrustVerifiedFor is read without hashing (the backend's fast
// path, sendfile for local files). An object shorter than recorded (the
// backend answers ErrInvalidRange for a range inside the recorded size) is
// a mismatch too, and the next location is tried.
func (r *Registry) Open(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error) {
	locs, err := r.store.Locations(ctx, d.String())
	if err != nil {
		return nil, err
	}
	orderForRead(locs)
	var errs []error
	for _, l := range locs {
		if l.Failed() {
			continue
		}
		b, ok := r.backends[l.Backend]
		if !ok {
			errs = append(errs, fmt.Errorf("%w %q", ErrUnknownBackend, l.Backend))
			continue
		}
		rn := n
		if rn < 0 {
			rn = l.Size - off
		}
		full := off == 0 && rn == l.Size
		rc, err := b.Open(ctx, d, off, rn)
		if err == nil {
			if full && !r.trusted(l) {
				return r.verifying(ctx, rc, d, l), nil
			}
			return rc, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		if errors.Is(err, backends.ErrInvalidRange) {
			if off < 0 || rn < 0 || off+rn > l.Size {
				return nil, err // the caller's range, not the object
			}
			// The range lies inside the recorded size: the object is short.
			r.recordReadMismatch(ctx, l, fmt.Errorf("object shorter than the recorded %d bytes: %w", l.Size, err))
		} else {
			logctx.From(ctx, r.log).Warn("read from backend failed; trying the next location", "backend", l.Backend, "digest", d.String(), "err", err)
		}
		errs = append(errs, &BackendError{Backend: l.Backend, Err: err})
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%s: %w", d, ErrNoLocation)
	}
	return nil, fmt.Errorf("%s: %w: %w", d, ErrNoLocation, errors.Join(errs...))
}

func rank(l store.Location) int {
	switch l.Status {
	case store.StatusVerified:
		return 0
	case store.StatusStored:
		return 1
	}
	return 2
}

// trusted reports whether a full read of l may skip hashing: a deep check
// matched within Options.TrustVerifiedFor. A check dated in the future
// (the clock was stepped back since) is not trusted: its age is unknown.
func (r *Registry) trusted(l store.Location) bool {
	return r.opts.TrustVerifiedFor > 0 && l.Status == store.StatusVerified &&
		l.LastVerifiedAt != nil && verifiedWithin(*l.LastVerifiedAt, time.Now(), r.opts.TrustVerifiedFor)
}

// verifiedWithin reports whether a check at at is at most window old at
// now, and not in now's future.
func verifiedWithin(at, now time.Time, window time.Duration) bool {
	age := now.Sub(at)
	return age >= 0 && age < window
}

// verifying wraps a full read of l in a digest check.
func (r *Registry) verifying(ctx context.Context, rc io.ReadCloser, d digest.Digest, l store.Location) io.ReadCloser {
	vr := &verifiedReader{rc: rc, d: d, size: l.Size, v: digest.NewVerifier(rc, d, l.Size)}
	vr.fail = func(err error) { r.recordReadMismatch(ctx, l, err) }
	return vr
}

// verifiedReader checks a full read against its digest, one way or the
// other: Read through a digest.Verifier, or WriteTo (what io.Copy uses)
// with hashing on another goroutine, digest.StreamVerified. Both withhold
// the final bytes of a body that does not match.
type verifiedReader struct {
	rc   io.ReadCloser
	d    digest.Digest
	size int64
	v    *digest.Verifier
	used bool // Read was called: WriteTo goes on through v
	fail func(error)
	once sync.Once
}

func (vr *verifiedReader) Read(p []byte) (int, error) {
	vr.used = true
	n, err := vr.v.Read(p)
	vr.failed(err)
	return n, err
}

// streamFrom is the size from which WriteTo hashes on another goroutine;
// below it the handoff costs more than it saves.
const streamFrom = 4 << 20

// streamChunk is the size of a chunk in flight; streamChunks of them are.
const (
	streamChunk  = 1 << 20
	streamChunks = 3
)

var streamBufs = sync.Pool{New: func() any { b := make([]byte, streamChunk); return &b }}

// WriteTo copies the whole object to w. Hashing runs on another goroutine
// while this one reads the next chunk and writes the previous one, and the
// final chunk is written only after the digest matched, so w never
// receives a complete body that fails. w gets no ReadFrom (a response's
// would read the body 32 KiB at a time), chunks of 1 MiB instead.
func (vr *verifiedReader) WriteTo(w io.Writer) (int64, error) {
	if vr.used || vr.size < streamFrom {
		bp := streamBufs.Get().(*[]byte)
		defer streamBufs.Put(bp)
		return io.CopyBuffer(writerOnly{w}, readerOnly{vr}, *bp)
	}
	vr.used = true
	var bps [streamChunks]*[]byte
	bufs := make([][]byte, len(bps))
	for i := range bps {
		bps[i] = streamBufs.Get().(*[]byte)
		bufs[i] = *bps[i]
	}
	n, err := digest.StreamVerified(w, vr.rc, vr.d, vr.size, bufs)
	// StreamVerified has returned: its hasher is done with every buffer.
	for _, bp := range bps {
		streamBufs.Put(bp)
	}
	vr.failed(err)
	return n, err
}

// failed records a mismatch verdict for an error that is the object's:
// wrong bytes or extra bytes. A stream cut short is the transport's
// failure, not the object's (a short object fails at Open).
func (vr *verifiedReader) failed(err error) {
	if err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) &&
		(errors.Is(err, digest.ErrMismatch) || errors.Is(err, digest.ErrSizeMismatch)) {
		vr.once.Do(func() { vr.fail(err) })
	}
}

// writerOnly and readerOnly hide ReadFrom and WriteTo, so io.CopyBuffer
// uses the buffer it is given.
type (
	writerOnly struct{ io.Writer }
	readerOnly struct{ io.Reader }
)

func (vr *verifiedReader) Close() error { return vr.rc.Close() }

// recordReadMismatch records a mismatch verdict found by a read. The
// verdict carries the location's generation, so a read of bytes that a
// repair has replaced meanwhile records nothing.
func (r *Registry) recordReadMismatch(ctx context.Context, l store.Location, cause error) {
	logctx.From(ctx, r.log).Error("stored object does not match its digest; location marked mismatch",
		"backend", l.Backend, "digest", l.Digest, "err", cause)
	v := store.Verdict{Digest: l.Digest, Backend: l.Backend, Mode: store.ModeRead, Verdict: store.StatusMismatch,
		At: time.Now().UTC(), Error: "read: " + cause.Error(), Generation: l.Repairs}
	if err := r.store.RecordVerdict(context.WithoutCancel(ctx), v); err != nil {
		logctx.From(ctx, r.log).Error("recording a read mismatch failed", "backend", l.Backend, "digest", l.Digest, "err", err)
	}
}

// store writes a needed content into its backend. If the registry records
// a failed location for it there (mismatch, missing, unreadable), the
// object is rewritten with Backend.Replace: the new bytes are verified
// against d before they replace the old object, which stays in place (and
// keeps being reported) if the upload fails. A successful rewrite is
// recorded as a repair (store.RecordRepair: status stored, event
// location_repaired). Otherwise it is a plain Put, a no-op when the
// object exists.
//
// No object is deleted here: a failed location's record keeps garbage
// collection away from its object (store.IsReferenced), and an open
// session's upload ref protects new content, so concurrent sessions
// repairing or staging the same content never remove each other's bytes.
func (r *Registry) storeObject(ctx context.Context, b backends.Backend, sessionID string, d digest.Digest, size int64, body io.Reader) error {
	l, err := r.store.GetLocation(ctx, d.String(), b.ID())
	if err != nil {
		return err
	}
	if l == nil || !l.Failed() {
		if err := b.Put(ctx, d, size, body); err != nil {
			return &BackendError{Backend: b.ID(), Err: err}
		}
		return nil
	}
	if err := b.Replace(ctx, d, size, body); err != nil {
		return &BackendError{Backend: b.ID(), Err: err}
	}
	repaired, err := r.store.RecordRepair(context.WithoutCancel(ctx), d.String(), b.ID(), sessionID)
	if err != nil {
		return err
	}
	if repaired {
		logctx.From(ctx, r.log).Info("failed location repaired by a verified upload", "backend", b.ID(), "digest", d.String(), "previous", l.Status, "upload_id", sessionID)
	}
	return nil
}

// failedOn returns the digests among ds whose location on backend has a
// failed status.
func (r *Registry) failedOn(ctx context.Context, backend string, ds []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, d := range ds {
		l, err := r.store.GetLocation(ctx, d, backend)
		if err != nil {
			return nil, err
		}
		if l != nil && l.Failed() {
			out[d] = true
		}
	}
	return out, nil
}
