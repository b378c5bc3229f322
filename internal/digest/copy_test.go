package digest

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestCopyVerified(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80,000 bytes: many chunks
	d := FromBytes(data)
	bufs := func() [][]byte { return [][]byte{make([]byte, 4096), make([]byte, 4096), make([]byte, 4096)} }
	boom := errors.New("boom")
	for _, c := range []struct {
		name string
		r    io.Reader
		want Digest
		size int64
		err  error
	}{
		{"exact", bytes.NewReader(data), d, int64(len(data)), nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data)), d, int64(len(data)), nil},
		{"empty", bytes.NewReader(nil), FromBytes(nil), 0, nil},
		{"wrong digest", bytes.NewReader(data), FromBytes([]byte("x")), int64(len(data)), ErrMismatch},
		{"short", bytes.NewReader(data[:1000]), d, int64(len(data)), io.ErrUnexpectedEOF},
		{"long", bytes.NewReader(append(append([]byte{}, data...), 'x')), d, int64(len(data)), ErrSizeMismatch},
		{"reader error", io.MultiReader(bytes.NewReader(data[:5000]), iotest.ErrReader(boom)), d, int64(len(data)), boom},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := CopyVerified(&out, c.r, c.want, c.size, bufs())
			if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if c.err == nil && (n != c.size || !bytes.Equal(out.Bytes(), data[:c.size])) {
				t.Fatalf("copied %d bytes (%d in w), want %d", n, out.Len(), c.size)
			}
		})
	}
	if _, err := CopyVerified(io.Discard, bytes.NewReader(data), d, int64(len(data)), [][]byte{make([]byte, 10)}); err == nil {
		t.Fatal("one buffer accepted")
	}
}

// TestStreamVerifiedWithholdsTheEnd: whatever fails, w never holds the
// whole body; what it holds is a prefix of the body and the count says how
// much.
func TestStreamVerifiedWithholdsTheEnd(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80,000 bytes: 19.5 chunks of 4096
	d := FromBytes(data)
	bad := append([]byte{}, data...)
	bad[len(bad)-1] ^= 1 // only the last byte differs
	bufs := func(size int) [][]byte { return [][]byte{make([]byte, size), make([]byte, size)} }
	for _, c := range []struct {
		name  string
		r     io.Reader
		want  Digest
		chunk int
		err   error
	}{
		{"exact", bytes.NewReader(data), d, 4096, nil},
		{"exact, chunks divide the size", bytes.NewReader(data), d, 16000, nil},
		{"one chunk", bytes.NewReader(data), d, 1 << 20, nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data)), d, 4096, nil},
		{"last byte wrong", bytes.NewReader(bad), d, 4096, ErrMismatch},
		{"last byte wrong, one chunk", bytes.NewReader(bad), d, 1 << 20, ErrMismatch},
		{"last byte wrong, chunks divide the size", bytes.NewReader(bad), d, 16000, ErrMismatch},
		{"long", bytes.NewReader(append(append([]byte{}, data...), 'x')), d, 4096, ErrSizeMismatch},
		{"short", bytes.NewReader(data[:1000]), d, 4096, io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := StreamVerified(&out, c.r, c.want, int64(len(data)), bufs(c.chunk))
			if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if n != int64(out.Len()) || !bytes.Equal(out.Bytes(), data[:out.Len()]) {
				t.Fatalf("returned %d, w holds %d bytes (a prefix: %v)", n, out.Len(), bytes.Equal(out.Bytes(), data[:out.Len()]))
			}
			if c.err == nil && out.Len() != len(data) {
				t.Fatalf("w holds %d bytes, want %d", out.Len(), len(data))
			}
			if c.err != nil && out.Len() >= len(data) {
				t.Fatalf("w holds %d bytes after %v: the whole body", out.Len(), err)
			}
		})
	}
	var empty bytes.Buffer
	if n, err := StreamVerified(&empty, bytes.NewReader(nil), FromBytes(nil), 0, bufs(16)); n != 0 || err != nil || empty.Len() != 0 {
		t.Fatalf("empty: %d, %v", n, err)
	}
	if _, err := StreamVerified(io.Discard, bytes.NewReader(nil), FromBytes([]byte("x")), 0, bufs(16)); !errors.Is(err, ErrMismatch) {
		t.Fatalf("empty body, wrong digest: %v", err)
	}
}
