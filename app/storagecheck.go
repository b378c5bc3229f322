package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/digest"
)

// largeObjectSizer is implemented by backends that store objects above a
// size differently (the S3 backend switches to a multi-request upload).
type largeObjectSizer interface {
	SingleRequestLimit() int64
}

// CheckStep is one step of a backend self-test.
type CheckStep struct {
	Name     string        `json:"name"`
	OK       bool          `json:"ok"`
	Duration time.Duration `json:"duration_ns"`
	Detail   string        `json:"detail,omitempty"`
	Error    string        `json:"error,omitempty"`
	// Stopped, on the failed step that ended the check, says why the
	// remaining steps were not run.
	Stopped string `json:"stopped,omitempty"`
}

// checkGates are the steps whose failure makes the rest meaningless, with
// the reason given to the operator.
var checkGates = map[string]string{
	"health": "the backend is not reachable or not usable",
	"write":  "nothing can be read, listed or deleted when the probe object could not be written",
	"large write (above the single-request limit)": "the large object is not there to read or list",
}

// CheckBackend writes, reads, range-reads, stats, lists and deletes probe
// objects, including one above the backend's single-request limit, and
// removes everything it wrote. It reports each step it ran; ok is false if
// any step failed. A failed step in checkGates ends the check there (the
// step's Stopped says why), so a backend that is down fails in one step
// instead of timing out through all of them.
func CheckBackend(ctx context.Context, b backends.Backend) (steps []CheckStep, ok bool) {
	ok = true
	const total = 12
	stopped := false
	run := func(name string, fn func() (string, error)) bool {
		if stopped {
			return false
		}
		start := time.Now()
		detail, err := fn()
		st := CheckStep{Name: name, OK: err == nil, Duration: time.Since(start), Detail: detail}
		if err != nil {
			st.Error = err.Error()
			ok = false
			if why, gate := checkGates[name]; gate {
				stopped = true
				st.Stopped = fmt.Sprintf("stopped here: %s; skipped the remaining %d of %d steps", why, total-len(steps)-1, total)
			}
		}
		steps = append(steps, st)
		return err == nil
	}
	probe := make([]byte, 64<<10)
	rand.Read(probe)
	d := digest.FromBytes(probe)
	large := int64(8 << 20)
	if ls, isLS := b.(largeObjectSizer); isLS {
		large = ls.SingleRequestLimit() + 1<<20
	}
	// The large probe is made only when its step runs: 65 MiB of random
	// bytes and their hash cost seconds on a small machine.
	var bigData []byte
	var bigD digest.Digest
	absent := digest.FromBytes(append([]byte("artifactstore-check-absent-"), probe[:16]...))
	var written []digest.Digest // puts attempted, so cleanup of a backend that is down costs nothing
	defer func() {
		// Leave nothing behind, whatever failed.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, w := range written {
			b.Delete(cctx, w)
		}
	}()

	run("health", func() (string, error) { return "", b.Health(ctx) })
	run("write", func() (string, error) {
		written = append(written, d)
		return fmt.Sprintf("%d bytes", len(probe)), b.Put(ctx, d, int64(len(probe)), bytes.NewReader(probe))
	})
	run("stat", func() (string, error) {
		info, err := b.Stat(ctx, d)
		if err == nil && info.Size != int64(len(probe)) {
			err = fmt.Errorf("size %d, want %d", info.Size, len(probe))
		}
		return "", err
	})
	run("read", func() (string, error) { return "", readCompare(ctx, b, d, 0, -1, probe) })
	run("range read", func() (string, error) {
		return "bytes 1000-5095", readCompare(ctx, b, d, 1000, 4096, probe[1000:5096])
	})
	run("range past the end is refused", func() (string, error) {
		rc, err := b.Open(ctx, d, int64(len(probe))-10, 20)
		if err == nil {
			rc.Close()
			return "", errors.New("a range past the end was served")
		}
		if !errors.Is(err, backends.ErrInvalidRange) {
			return "", err
		}
		return "", nil
	})
	run("wrong content is refused", func() (string, error) {
		err := b.Put(ctx, absent, int64(len(probe)), bytes.NewReader(probe))
		if !errors.Is(err, backends.ErrDigestMismatch) {
			return "", fmt.Errorf("want a digest mismatch, got %v", err)
		}
		if _, err := b.Stat(ctx, absent); !errors.Is(err, backends.ErrNotFound) {
			return "", fmt.Errorf("refused content is visible: %v", err)
		}
		return "", nil
	})
	run("large write (above the single-request limit)", func() (string, error) {
		bigData = make([]byte, large)
		rand.Read(bigData)
		bigD = digest.FromBytes(bigData)
		written = append(written, bigD)
		return fmt.Sprintf("%d bytes", large), b.Put(ctx, bigD, large, bytes.NewReader(bigData))
	})
	run("large read", func() (string, error) { return "", readCompare(ctx, b, bigD, 0, -1, bigData) })
	run("list", func() (string, error) {
		found := 0
		n := 0
		err := b.Walk(ctx, func(i backends.Info) error {
			n++
			if i.Digest == d || i.Digest == bigD {
				found++
			}
			return nil
		})
		if err == nil && found != 2 {
			err = fmt.Errorf("listing shows %d of the 2 probe objects", found)
		}
		return fmt.Sprintf("%d objects listed", n), err
	})
	run("delete", func() (string, error) {
		if err := b.Delete(ctx, d); err != nil {
			return "", err
		}
		if err := b.Delete(ctx, bigD); err != nil {
			return "", err
		}
		if _, err := b.Stat(ctx, d); !errors.Is(err, backends.ErrNotFound) {
			return "", fmt.Errorf("deleted object still visible: %v", err)
		}
		return "", nil
	})
	run("delete of a missing object succeeds", func() (string, error) { return "", b.Delete(ctx, absent) })
	return steps, ok
}

func readCompare(ctx context.Context, b backends.Backend, d digest.Digest, off, n int64, want []byte) error {
	rc, err := b.Open(ctx, d, off, n)
	if err != nil {
		return err
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("read %d bytes that differ from the %d written", len(got), len(want))
	}
	return nil
}
