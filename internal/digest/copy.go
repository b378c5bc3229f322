package digest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// CopyVerified copies exactly size bytes from r to w and checks that they
// hash to want, with the same verdicts as a Verifier: ErrMismatch,
// ErrSizeMismatch for a body longer than size (one byte is probed past the
// end) or shorter (wrapping io.ErrUnexpectedEOF). Errors of r and w are
// returned as they are.
//
// Hashing runs on its own goroutine while this one reads the next chunk
// and writes the last, so a large copy uses two cores instead of doing
// read, hash and write one after another. bufs (at least two, all the same
// size) are the chunks in flight. Unlike a Verifier, w receives every byte
// before the verdict: use it only where w is not visible until the caller
// acts on a nil error (a temp file renamed afterwards); StreamVerified
// withholds the final chunk.
func CopyVerified(w io.Writer, r io.Reader, want Digest, size int64, bufs [][]byte) (int64, error) {
	return copyVerified(w, r, want, size, bufs, false)
}

// StreamVerified is CopyVerified for a w that is seen at once (an HTTP
// response): like a Verifier it withholds the final chunk until the bytes
// matched want, so w never receives a complete body that fails. On a
// failure w has received at most size minus the final chunk; the count
// returned is what w received.
func StreamVerified(w io.Writer, r io.Reader, want Digest, size int64, bufs [][]byte) (int64, error) {
	return copyVerified(w, r, want, size, bufs, true)
}

func copyVerified(w io.Writer, r io.Reader, want Digest, size int64, bufs [][]byte, withhold bool) (int64, error) {
	if len(bufs) < 2 {
		return 0, errors.New("CopyVerified needs at least two buffers")
	}
	free := make(chan []byte, len(bufs))
	for _, b := range bufs {
		free <- b
	}
	toHash := make(chan []byte, len(bufs))
	sum := make(chan string, 1)
	var failed atomic.Bool // after an error the verdict is moot: stop hashing
	go func() {
		h := want.NewHash()
		for chunk := range toHash {
			if !failed.Load() {
				h.Write(chunk)
			}
			free <- chunk[:cap(chunk)]
		}
		sum <- hex.EncodeToString(h.Sum(nil))
	}()
	var n int64
	var err error
	var last []byte // the withheld final chunk
	for n < size && err == nil {
		buf := <-free
		if rem := size - n; int64(len(buf)) > rem {
			buf = buf[:rem]
		}
		var k int
		k, err = io.ReadFull(r, buf)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%w: got %d of %d bytes: %w", ErrSizeMismatch, n+int64(k), size, io.ErrUnexpectedEOF)
		}
		if k == 0 {
			free <- buf
			continue
		}
		toHash <- buf[:k]
		if withhold && err == nil && n+int64(k) == size {
			// The hasher hands buf back to free, which nobody takes from
			// any more: it holds the final chunk until the verdict.
			last = buf[:k]
			break
		}
		if _, werr := w.Write(buf[:k]); werr != nil && err == nil {
			err = werr
		}
		n += int64(k)
	}
	if err != nil {
		// Return without hashing what is queued, so the caller removes
		// its temp file at once (a shutdown may be waiting on it).
		failed.Store(true)
	}
	close(toHash)
	got := <-sum
	if err != nil {
		return n, err
	}
	var one [1]byte
	for {
		k, perr := r.Read(one[:])
		if k > 0 {
			return n, fmt.Errorf("%w: body is longer than the declared %d bytes", ErrSizeMismatch, size)
		}
		if perr == io.EOF {
			break
		}
		if perr != nil {
			return n, perr
		}
	}
	if got != want.Hex {
		return n, fmt.Errorf("%w: declared %s, content hashes to %s:%s", ErrMismatch, want, want.Algorithm, got)
	}
	if len(last) > 0 {
		k, werr := w.Write(last)
		n += int64(k)
		if werr != nil {
			return n, werr
		}
	}
	return n, nil
}
