package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/iotest"

	"artifactstore/internal/digest"
)

// writeBackCall is one startWriteBack request a put made.
type writeBackCall struct{ off, n int64 }

// recordWriteBack makes startWriteBack record its ranges (and still call
// the real one) for the rest of the test.
func recordWriteBack(t *testing.T) func() []writeBackCall {
	var mu sync.Mutex
	var calls []writeBackCall
	real := startWriteBack
	startWriteBack = func(f *os.File, off, n int64) error {
		mu.Lock()
		calls = append(calls, writeBackCall{off, n})
		mu.Unlock()
		return real(f, off, n)
	}
	t.Cleanup(func() { startWriteBack = real })
	return func() []writeBackCall {
		mu.Lock()
		defer mu.Unlock()
		return append([]writeBackCall(nil), calls...)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	var seed [32]byte
	seed[0] = byte(n)
	rand.NewChaCha8(seed).Read(b)
	return b
}

// A large put starts the write-back of what it has written every
// writeBehindBytes while the body still arrives (the old code left all of
// it to the final fsync), in order, each range once; the object is
// byte-exact and the temp directory empty afterwards.
func TestLargePutStartsWriteBackWhileWriting(t *testing.T) {
	calls := recordWriteBack(t)
	root := t.TempDir()
	b := newTest(t, root)
	data := randomBytes(2*writeBehindBytes + 3<<20 + 123)
	d := digest.FromBytes(data)
	if err := b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got := calls()
	if len(got) != 2 {
		t.Fatalf("write-back started %d times (%v), want 2 for %d bytes", len(got), got, len(data))
	}
	var next int64
	for _, c := range got {
		if c.off != next || c.n < writeBehindBytes {
			t.Fatalf("write-back ranges %v: not consecutive ranges of >= %d bytes from 0", got, writeBehindBytes)
		}
		next = c.off + c.n
	}
	if next > int64(len(data)) || int64(len(data))-next >= writeBehindBytes {
		t.Fatalf("write-back covered %d of %d bytes", next, len(data))
	}
	stored, err := os.ReadFile(b.Path(d))
	if err != nil || !bytes.Equal(stored, data) {
		t.Fatalf("stored object differs from the body (%d of %d bytes): %v", len(stored), len(data), err)
	}
	assertNoTempFiles(t, root)
}

// The write-back request itself works on this system's file system (a
// rejected call would be ignored by puts and silently leave the whole
// write to the fsync again).
func TestStartWriteBackIsAccepted(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "wb-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := startWriteBack(f, 0, 1<<20); err != nil {
		t.Fatalf("start write-back: %v", err)
	}
}

// A put that fails after write-back was started (past writeBehindBytes)
// leaves neither the object nor its temp file, whatever the failure.
func TestFailedLargePutRemovesTempFile(t *testing.T) {
	calls := recordWriteBack(t)
	data := randomBytes(writeBehindBytes + 2<<20)
	d := digest.FromBytes(data)
	boom := errors.New("boom")
	ctx, cancel := context.WithCancel(context.Background())
	for _, c := range []struct {
		name string
		ctx  context.Context
		d    digest.Digest
		body io.Reader
		want error
	}{
		{"content hashes to another digest", context.Background(), digest.FromBytes([]byte("other")), bytes.NewReader(data), digest.ErrMismatch},
		{"body shorter than declared", context.Background(), d, bytes.NewReader(data[:len(data)-1]), digest.ErrSizeMismatch},
		{"body longer than declared", context.Background(), d, io.MultiReader(bytes.NewReader(data), bytes.NewReader([]byte("x"))), digest.ErrSizeMismatch},
		{"body read fails", context.Background(), d, io.MultiReader(bytes.NewReader(data[:writeBehindBytes+1<<20]), iotest.ErrReader(boom)), boom},
		{"request cancelled", ctx, d, io.MultiReader(bytes.NewReader(data[:writeBehindBytes+1<<20]), cancelThenRead{cancel, bytes.NewReader(data[writeBehindBytes+1<<20:])}), context.Canceled},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			b := newTest(t, root)
			before := len(calls())
			err := b.Put(c.ctx, c.d, int64(len(data)), c.body)
			if !errors.Is(err, c.want) {
				t.Fatalf("put: %v, want %v", err, c.want)
			}
			if len(calls()) == before {
				t.Fatal("the put failed before write-back started: this case tests nothing")
			}
			if _, err := os.Stat(b.Path(c.d)); !os.IsNotExist(err) {
				t.Fatalf("object exists after a failed put: %v", err)
			}
			assertNoTempFiles(t, root)
		})
	}
}

// cancelThenRead cancels a context on its first read, then reads r.
type cancelThenRead struct {
	cancel context.CancelFunc
	r      io.Reader
}

func (c cancelThenRead) Read(p []byte) (int, error) {
	c.cancel()
	return c.r.Read(p)
}

func assertNoTempFiles(t *testing.T, root string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, TempDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("temp file left behind: %s", e.Name())
	}
}
