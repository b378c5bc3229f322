package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"artifactstore/internal/digest"
	"artifactstore/store"
)

// countingWriter is a response that keeps what it receives.
type countingWriter struct{ bytes.Buffer }

// TestStreamedReadVerifies: io.Copy of a full read (what the download
// handler does) hashes on another goroutine for a large object; a good
// object arrives whole, a corrupted one (a byte flipped at the start, in
// the middle or in the very last chunk) never arrives whole, fails with
// ErrMismatch and leaves a mismatch verdict of mode read. Sizes below and
// above streamFrom, and one that the chunks do not divide.
func TestStreamedReadVerifies(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{streamFrom - 1, streamFrom, 3*streamFrom + 12345} {
		for _, flip := range []int{-1, 0, size / 2, size - 1} {
			f := newFixture(t, Route{Backends: []string{"a"}}, "a")
			data := make([]byte, size)
			rng := rand.New(rand.NewPCG(uint64(size), uint64(flip+2)))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			if _, err := f.publish(ctx, "p", data); err != nil {
				t.Fatal(err)
			}
			d := digest.FromBytes(data)
			if flip >= 0 {
				bad := append([]byte{}, data...)
				bad[flip] ^= 0x40
				if err := os.WriteFile(f.bs["a"].Path(d), bad, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			rc, err := f.reg.Open(ctx, d, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := rc.(io.WriterTo); !ok {
				t.Fatalf("size %d: a verified read is not an io.WriterTo", size)
			}
			var w countingWriter
			n, err := io.Copy(&w, rc)
			rc.Close()
			l, lerr := f.st.GetLocation(ctx, d.String(), "a")
			if lerr != nil {
				t.Fatal(lerr)
			}
			if flip < 0 {
				if err != nil || n != int64(size) || !bytes.Equal(w.Bytes(), data) {
					t.Fatalf("size %d, intact: copied %d, %v, equal %v", size, n, err, bytes.Equal(w.Bytes(), data))
				}
				if l.Status != store.StatusStored {
					t.Fatalf("size %d, intact: location %s", size, l.Status)
				}
				continue
			}
			if !errors.Is(err, digest.ErrMismatch) || w.Len() >= size || n != int64(w.Len()) {
				t.Fatalf("size %d, byte %d flipped: copied %d (%d received) of %d, %v", size, flip, n, w.Len(), size, err)
			}
			if l.Status != store.StatusMismatch || l.LastError == "" {
				t.Fatalf("size %d, byte %d flipped: location %+v", size, flip, l)
			}
		}
	}
}

// TestStreamedReadAfterRead: a WriteTo after a Read goes on through the
// same verifier, so the bytes already read count.
func TestStreamedReadAfterRead(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Route{Backends: []string{"a"}}, "a")
	data := bytes.Repeat([]byte("0123456789abcdef"), (streamFrom+4096)/16)
	if _, err := f.publish(ctx, "p", data); err != nil {
		t.Fatal(err)
	}
	rc, err := f.reg.Open(ctx, digest.FromBytes(data), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	var w countingWriter
	if _, err := io.Copy(&w, rc); err != nil || !bytes.Equal(append(head, w.Bytes()...), data) {
		t.Fatalf("read 1000 bytes, then copied %d: %v", w.Len(), err)
	}
}
