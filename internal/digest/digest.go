// Package digest names content by its cryptographic hash and checks streams
// against a declared digest and size.
//
// A Digest is written "algorithm:hex", for example "sha256:e3b0...". Only
// sha256 is accepted today; the algorithm is part of every stored key so a
// second algorithm can be added without moving existing objects.
package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// SHA256 is the primary digest algorithm.
const SHA256 = "sha256"

var (
	// ErrInvalid is returned by Parse for a malformed digest string.
	ErrInvalid = errors.New("invalid digest")
	// ErrMismatch means the bytes read do not hash to the declared digest.
	ErrMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch means the stream was shorter or longer than declared.
	ErrSizeMismatch = errors.New("size mismatch")
)

// Digest identifies content by algorithm and lower-case hex hash.
// The zero value is not a valid digest.
type Digest struct {
	Algorithm string
	Hex       string
}

// Parse parses "sha256:<64 lower-case hex>".
func Parse(s string) (Digest, error) {
	algo, hx, ok := strings.Cut(s, ":")
	if !ok {
		return Digest{}, fmt.Errorf("%w %q: want algorithm:hex", ErrInvalid, truncate(s))
	}
	return FromParts(algo, hx)
}

// FromParts builds a digest from an algorithm and its hex string, checking both.
func FromParts(algo, hx string) (Digest, error) {
	if algo != SHA256 {
		return Digest{}, fmt.Errorf("%w: unsupported algorithm %q (want sha256)", ErrInvalid, truncate(algo))
	}
	if len(hx) != sha256.Size*2 {
		return Digest{}, fmt.Errorf("%w: sha256 hex must be 64 characters, got %d", ErrInvalid, len(hx))
	}
	for i := 0; i < len(hx); i++ {
		c := hx[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return Digest{}, fmt.Errorf("%w: hex must be lower-case 0-9a-f", ErrInvalid)
		}
	}
	return Digest{Algorithm: algo, Hex: hx}, nil
}

// FromBytes returns the sha256 digest of b.
func FromBytes(b []byte) Digest {
	sum := sha256.Sum256(b)
	return Digest{Algorithm: SHA256, Hex: hex.EncodeToString(sum[:])}
}

// String returns "algorithm:hex".
func (d Digest) String() string { return d.Algorithm + ":" + d.Hex }

// IsZero reports whether d is the zero value.
func (d Digest) IsZero() bool { return d.Algorithm == "" && d.Hex == "" }

// NewHash returns a fresh hash for the digest's algorithm.
func (d Digest) NewHash() hash.Hash { return sha256.New() }

// Hasher accumulates bytes and reports their sha256 digest.
type Hasher struct{ h hash.Hash }

// NewHasher returns a sha256 Hasher.
func NewHasher() *Hasher { return &Hasher{h: sha256.New()} }

// Write adds p to the hash; it never fails.
func (h *Hasher) Write(p []byte) (int, error) { return h.h.Write(p) }

// Digest returns the digest of everything written so far.
func (h *Hasher) Digest() Digest {
	return Digest{Algorithm: SHA256, Hex: hex.EncodeToString(h.h.Sum(nil))}
}

// Verifier reads exactly size bytes from an underlying reader and checks
// that they hash to the expected digest.
//
// The check happens on the Read that would deliver the last declared byte,
// not only at EOF: on a mismatch that Read returns 0 bytes and ErrMismatch,
// withholding the final bytes, so a consumer that forwards what it reads
// (such as an HTTP upload to S3) never sends a complete body that fails,
// and a caller that stops at exactly size bytes still learns of it. A body with bytes beyond size fails with ErrSizeMismatch, and a
// body that ends early fails with ErrSizeMismatch wrapping io.ErrUnexpectedEOF.
type Verifier struct {
	r      io.Reader
	want   Digest
	size   int64
	n      int64
	h      hash.Hash
	err    error
	probed bool
}

// NewVerifier wraps r. Reads beyond size are never passed to r except for a
// one-byte probe that detects trailing data.
func NewVerifier(r io.Reader, want Digest, size int64) *Verifier {
	return &Verifier{r: r, want: want, size: size, h: want.NewHash()}
}

// Read implements io.Reader.
func (v *Verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.n == v.size {
		return 0, v.finish()
	}
	if rem := v.size - v.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n == v.size {
		if ferr := v.finish(); ferr != io.EOF {
			// Withhold the final bytes: a consumer that forwards what it
			// reads (an HTTP upload) never sends a complete bad body.
			return 0, ferr
		}
		return n, nil
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		// An HTTP body cut short by the client ends in ErrUnexpectedEOF.
		v.err = fmt.Errorf("%w: got %d of %d bytes: %w", ErrSizeMismatch, v.n, v.size, io.ErrUnexpectedEOF)
		return n, v.err
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

// finish probes for trailing bytes and compares the hash. It returns io.EOF
// on success and the sticky error otherwise.
func (v *Verifier) finish() error {
	if !v.probed {
		v.probed = true
		var one [1]byte
		for {
			n, err := v.r.Read(one[:])
			if n > 0 {
				v.err = fmt.Errorf("%w: body is longer than the declared %d bytes", ErrSizeMismatch, v.size)
				return v.err
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				v.err = err
				return err
			}
		}
		got := hex.EncodeToString(v.h.Sum(nil))
		if got != v.want.Hex {
			v.err = fmt.Errorf("%w: declared %s, content hashes to %s:%s", ErrMismatch, v.want, v.want.Algorithm, got)
			return v.err
		}
		v.err = io.EOF
	}
	return v.err
}

// Err returns the verification failure, or nil if none happened (yet).
func (v *Verifier) Err() error {
	if v.err == io.EOF {
		return nil
	}
	return v.err
}

// Verified reports whether exactly size bytes were read and matched.
func (v *Verifier) Verified() bool { return v.err == io.EOF }

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
